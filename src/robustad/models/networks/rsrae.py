"""RSRAE network (Lai, Zou & Lerman, ICLR 2020): encoder -> RSR layer A -> decoder."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from robustad.errors import ArgumentError
from robustad.models.arguments import RecordsArguments
from robustad.models.networks.conv import conv_stacks
from robustad.models.networks.mlp import check_widths, mlp, trace


class RSRLayer(nn.Module):
    """Linear map A (d x D) to the recovered subspace; orthogonal init so A A^T = I_d at start."""

    def __init__(self, d: int, D: int, D_source: str = "D") -> None:
        super().__init__()
        if not 0 < d < D:
            where = f"D = {D}" if D_source == "D" else f"D = {D_source} = {D}"
            raise ArgumentError("d", d, f"an integer with 0 < d < D ({where})")
        self.A = nn.Parameter(nn.init.orthogonal_(torch.empty(d, D)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.A.T


class RSRAEOutput(NamedTuple):
    z: torch.Tensor  # encoder output, (B, D)
    z_rsr: torch.Tensor  # A z, (B, d), before renormalisation
    x_hat: torch.Tensor  # reconstruction, input shape


class RSRNetwork(RecordsArguments, nn.Module):
    """Shared forward: encoder to D dims, RSR layer to d dims, optional L2 renorm, decoder."""

    input_shape: tuple[int, ...]
    rsr: RSRLayer
    encoder: nn.Sequential
    decoder: nn.Sequential
    renormalize: bool

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def code(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(A z, what the decoder sees): renormalised onto the unit sphere when configured."""
        z_rsr = self.rsr(z)
        return z_rsr, F.normalize(z_rsr, dim=1) if self.renormalize else z_rsr

    def forward(self, x: torch.Tensor) -> RSRAEOutput:
        z = self.encode(x)
        z_rsr, code = self.code(z)
        x_hat = self.decoder(code).view(-1, *self.input_shape)
        return RSRAEOutput(z, z_rsr, x_hat)

    def hidden_activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder activations, then the code the decoder sees (RaPP's h_1..h_l)."""
        hidden = self.encoder_trace(x)
        return [*hidden, self.code(hidden[-1].flatten(1))[1]]

    def encoder_trace(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError


class RSRAutoencoder(RSRNetwork):
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
        hidden_dims = check_widths("hidden_dims", hidden_dims)
        self.input_shape = tuple(input_shape)
        n_in = math.prod(self.input_shape)
        self.rsr = RSRLayer(d, D)  # first, so d >= D fails before any other work
        self.encoder = mlp([n_in, *hidden_dims, D], activation, batch_norm)
        self.decoder = mlp(
            [d, *reversed(hidden_dims), n_in], activation, batch_norm, output_activation
        )
        self.renormalize = renormalize

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))

    def encoder_trace(self, x: torch.Tensor) -> list[torch.Tensor]:
        return trace(self.encoder, x.flatten(1))


class ConvRSRAutoencoder(RSRNetwork):
    """The official code's convolutional RSRAE: stride-2 conv encoder with batch norm, D = the
    flattened conv features, RSR layer to d dims, linear + transposed-conv decoder."""

    def __init__(
        self,
        input_shape: Sequence[int],
        channels: Sequence[int] = (32, 64, 128),
        kernel_sizes: int | Sequence[int] = (5, 5, 3),
        d: int = 10,
        activation: str = "tanh",
        output_activation: str = "sigmoid",
        batch_norm: bool = True,
        renormalize: bool = True,
    ) -> None:
        super().__init__()
        self.input_shape = tuple(int(n) for n in input_shape)
        self.encoder, D, self.decoder = conv_stacks(
            self.input_shape, channels, kernel_sizes, d, activation, batch_norm, output_activation
        )
        self.rsr = RSRLayer(d, D, "the flattened conv features")
        self.renormalize = renormalize

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).flatten(1)

    def encoder_trace(self, x: torch.Tensor) -> list[torch.Tensor]:
        return trace(self.encoder, x)
