"""Residual MLP autoencoder (the deterministic twin of the residual VAE).

Blocks use identity mappings with pre-activation (He et al., 2016): BN -> act -> linear, twice,
plus the skip. Stages of `n_layers` blocks keep their width; a pre-activated linear layer
between stages shrinks it. With the skip switched off (`residual=False`) the same stack is a
plain deep MLP of exactly the same depth and size: the control for the degradation problem.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from robustad.errors import ArgumentError
from robustad.models.networks.mlp import (
    ACTIVATION_TYPES,
    FlatAutoencoder,
    check_latent_dim,
    check_widths,
)
from robustad.models.networks.mlp import activation as make_activation


class PreActResidualBlock(nn.Module):
    """x + F(x), F = (BN -> act -> linear) x 2; F's last linear starts at zero: identity at init."""

    def __init__(self, width: int, act: str, residual: bool = True) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm1d(width),
            make_activation(act),
            nn.Linear(width, width),
            nn.BatchNorm1d(width),
            make_activation(act),
            nn.Linear(width, width),
        )
        self.residual = residual
        if residual:
            nn.init.zeros_(self.body[-1].weight)
            nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out


# RaPP's hidden activations for residual stacks: every block output and every stage activation.
RESIDUAL_TRACE_POINTS = (*ACTIVATION_TYPES, PreActResidualBlock)


def check_stages(widths: Sequence[int], n_layers: int) -> list[int]:
    """Stage widths (at least one stage) and residual blocks per stage."""
    values = check_widths("widths", widths)
    if not values:
        raise ArgumentError("widths", values, "a non-empty list of integers >= 1")
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 0:
        raise ArgumentError("n_layers", n_layers, "an integer >= 0 (residual blocks per stage)")
    return values


def residual_mlp(
    n_in: int, widths: Sequence[int], n_out: int, n_layers: int, act: str, residual: bool
) -> nn.Sequential:
    """linear(n_in -> w_0); per stage: n_layers blocks, BN -> act -> linear(w_i -> next)."""
    layers: list[nn.Module] = [nn.Linear(n_in, widths[0])]
    for i, width in enumerate(widths):
        layers += [PreActResidualBlock(width, act, residual) for _ in range(n_layers)]
        nxt = widths[i + 1] if i + 1 < len(widths) else n_out
        layers += [nn.BatchNorm1d(width), make_activation(act), nn.Linear(width, nxt)]
    return nn.Sequential(*layers)


class ResidualAutoencoder(FlatAutoencoder):
    """Residual MLP encoder to `latent_dim`, mirrored residual MLP decoder."""

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
        super().__init__()
        widths = check_stages(widths, n_layers)
        check_latent_dim(latent_dim)
        self.input_shape = tuple(int(n) for n in input_shape)
        n_in = math.prod(self.input_shape)
        self.encoder = residual_mlp(n_in, widths, latent_dim, n_layers, activation, residual)
        self.decoder = nn.Sequential(
            *residual_mlp(latent_dim, widths[::-1], n_in, n_layers, activation, residual),
            make_activation(output_activation),
        )
