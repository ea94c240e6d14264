"""RSRAE network (Lai, Zou & Lerman, ICLR 2020): encoder -> RSR layer A -> decoder."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from robustad.errors import ConfigError
from robustad.models.networks.mlp import mlp


class RSRLayer(nn.Module):
    """Linear map A (d x D) to the recovered subspace; orthogonal init so A A^T = I_d at start."""

    def __init__(self, d: int, D: int) -> None:
        super().__init__()
        if not 0 < d < D:
            raise ConfigError("model.net.d", d, f"an integer with 0 < d < D (D = model.net.D = {D})")
        self.A = nn.Parameter(nn.init.orthogonal_(torch.empty(d, D)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.A.T


class RSRAEOutput(NamedTuple):
    z: torch.Tensor  # encoder output, (B, D)
    z_rsr: torch.Tensor  # A z, (B, d), before renormalisation
    x_hat: torch.Tensor  # reconstruction, input shape


class RSRAutoencoder(nn.Module):
    """MLP encoder to D dims, RSR layer to d dims, optional L2 renormalisation, MLP decoder."""

    def __init__(
        self,
        input_shape: Sequence[int],
        hidden_dims: Sequence[int] = (392, 196),
        D: int = 128,
        d: int = 16,
        activation: str = "leaky_relu",
        output_activation: str = "sigmoid",
        batch_norm: bool = False,
        renormalize: bool = True,
    ) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        n_in = math.prod(self.input_shape)
        self.rsr = RSRLayer(d, D)  # first, so d >= D fails before any other work
        self.encoder = mlp([n_in, *hidden_dims, D], activation, batch_norm)
        self.decoder = mlp([d, *reversed(hidden_dims), n_in], activation, batch_norm, output_activation)
        self.renormalize = renormalize

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))

    def forward(self, x: torch.Tensor) -> RSRAEOutput:
        z = self.encode(x)
        z_rsr = self.rsr(z)
        code = F.normalize(z_rsr, dim=1) if self.renormalize else z_rsr
        x_hat = self.decoder(code).view(-1, *self.input_shape)
        return RSRAEOutput(z, z_rsr, x_hat)
