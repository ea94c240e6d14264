"""Gaussian VAEs: an encoder emitting (mu, log variance), the reparameterisation trick, a decoder.

`MLPVAE` uses plain MLPs, `ResidualVAE` the residual stacks of `networks.residual` (the RVAE).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from robustad.models.networks.mlp import (
    FlatAutoencoder,
    check_latent_dim,
    check_widths,
    mlp,
)
from robustad.models.networks.mlp import activation as make_activation
from robustad.models.networks.residual import RESIDUAL_TRACE_POINTS, check_stages, residual_mlp

# exp(20) ~ 5e8: wide enough for any real posterior, narrow enough that exp never overflows.
LOGVAR_RANGE = (-30.0, 20.0)


class VAEOutput(NamedTuple):
    x_hat: torch.Tensor  # decoder output for the sampled code, input shape
    mu: torch.Tensor  # posterior mean, (B, latent)
    logvar: torch.Tensor  # posterior log variance, (B, latent)


class GaussianVAE(FlatAutoencoder):
    """Shared VAE logic; subclasses build `encoder` (to 2 x latent) and `decoder` (to pixels)."""

    def __init__(self, input_shape: Sequence[int], latent_dim: int) -> None:
        super().__init__()
        check_latent_dim(latent_dim)
        self.input_shape = tuple(int(n) for n in input_shape)
        self.latent_dim = latent_dim

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x.flatten(1)).chunk(2, dim=1)
        return mu, logvar.clamp(*LOGVAR_RANGE)

    def sample(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """z = mu + sigma * eps: the sample stays differentiable in mu and sigma."""
        return mu + (0.5 * logvar).exp() * torch.randn_like(mu)

    def forward(self, x: torch.Tensor) -> VAEOutput:
        mu, logvar = self.encode(x)
        return VAEOutput(self.decode(self.sample(mu, logvar)), mu, logvar)


class MLPVAE(GaussianVAE):
    def __init__(
        self,
        input_shape: Sequence[int],
        hidden_dims: Sequence[int] = (392, 196),
        latent_dim: int = 16,
        activation: str = "leaky_relu",
        output_activation: str = "sigmoid",
        batch_norm: bool = False,
    ) -> None:
        super().__init__(input_shape, latent_dim)
        hidden_dims = check_widths("hidden_dims", hidden_dims)
        n_in = math.prod(self.input_shape)
        self.encoder = mlp([n_in, *hidden_dims, 2 * latent_dim], activation, batch_norm)
        self.decoder = mlp(
            [latent_dim, *reversed(hidden_dims), n_in], activation, batch_norm, output_activation
        )


class ResidualVAE(GaussianVAE):
    """RVAE: residual pre-activation MLP stages in encoder and decoder (`n_layers` per stage)."""

    trace_points = RESIDUAL_TRACE_POINTS

    def __init__(
        self,
        input_shape: Sequence[int],
        widths: Sequence[int] = (256, 128),
        n_layers: int = 2,
        latent_dim: int = 16,
        activation: str = "relu",
        output_activation: str = "sigmoid",
        residual: bool = True,
    ) -> None:
        super().__init__(input_shape, latent_dim)
        widths = check_stages(widths, n_layers)
        n_in = math.prod(self.input_shape)
        self.encoder = residual_mlp(n_in, widths, 2 * latent_dim, n_layers, activation, residual)
        self.decoder = nn.Sequential(
            *residual_mlp(latent_dim, widths[::-1], n_in, n_layers, activation, residual),
            make_activation(output_activation),
        )
