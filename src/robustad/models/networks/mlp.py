"""Plain torch MLP building blocks and autoencoder (no Lightning inside: exportable)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

from robustad.errors import ArgumentError
from robustad.models.arguments import RecordsArguments

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "identity": nn.Identity,
}


# Where RaPP reads hidden activations: after every activation module of an encoder.
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = tuple(ACTIVATIONS.values())


def check_widths(key: str, widths: Sequence[int]) -> list[int]:
    """Layer widths from a config: positive integers (a width of 0 builds an empty layer that
    trains without error and learns nothing)."""
    values = list(widths) if isinstance(widths, Sequence) and not isinstance(widths, str) else None
    if values is None or not all(isinstance(w, int) and not isinstance(w, bool) for w in values):
        raise ArgumentError(key, widths, "a list of integers >= 1, e.g. [256, 64]")
    if any(w < 1 for w in values):
        raise ArgumentError(key, values, "a list of integers >= 1, e.g. [256, 64]")
    return values


def check_latent_dim(latent_dim: int, key: str = "latent_dim") -> int:
    if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
        raise ArgumentError(key, latent_dim, "an integer >= 1")
    return latent_dim


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ArgumentError("activation", name, f"one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def mlp(
    widths: Sequence[int], act: str, batch_norm: bool = False, last_activation: str | None = None
) -> nn.Sequential:
    """Linear layers through `widths`; `act` between them, `last_activation` (if any) at the end."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(widths) - 2:
            if batch_norm:
                layers.append(nn.BatchNorm1d(n_out))
            layers.append(activation(act))
    if last_activation is not None:
        layers.append(activation(last_activation))
    return nn.Sequential(*layers)


def trace(
    layers: nn.Sequential, x: torch.Tensor, points: tuple[type[nn.Module], ...] = ACTIVATION_TYPES
) -> list[torch.Tensor]:
    """Outputs after each top-level layer that is one of `points`, plus the final output.

    The hidden activations h_1..h_l that RaPP compares for an input and its reconstruction.
    """
    outputs: list[torch.Tensor] = []
    for i, layer in enumerate(layers):
        x = layer(x)
        if isinstance(layer, points) or i == len(layers) - 1:
            outputs.append(x)
    return outputs


class FlatAutoencoder(RecordsArguments, nn.Module):
    """An `encoder` and `decoder` over flattened images, built by subclasses: encode flattens,
    decode restores `input_shape`, RaPP's pathway is the encoder's outputs at `trace_points`."""

    encoder: nn.Sequential
    decoder: nn.Sequential
    input_shape: tuple[int, ...]
    trace_points: tuple[type[nn.Module], ...] = ACTIVATION_TYPES

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(-1, *self.input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def hidden_activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        return trace(self.encoder, x.flatten(1), self.trace_points)


class MLPAutoencoder(FlatAutoencoder):
    """Flatten -> MLP encoder -> latent -> mirrored MLP decoder -> image shape."""

    def __init__(
        self,
        input_shape: Sequence[int],
        hidden_dims: Sequence[int] = (256, 64),
        latent_dim: int = 16,
        activation: str = "leaky_relu",
        output_activation: str = "sigmoid",
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        hidden_dims = check_widths("hidden_dims", hidden_dims)
        check_latent_dim(latent_dim)
        self.input_shape = tuple(input_shape)
        n_in = math.prod(self.input_shape)
        self.encoder = mlp([n_in, *hidden_dims, latent_dim], activation, batch_norm)
        self.decoder = mlp(
            [latent_dim, *reversed(hidden_dims), n_in], activation, batch_norm, output_activation
        )
