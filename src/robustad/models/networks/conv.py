"""Convolutional encoder/decoder stacks and the convolutional autoencoder (CAE).

Every layer halves the spatial size (stride 2, padding k // 2); the decoder's transposed
convolutions get the output padding that lands exactly on the encoder's sizes, so odd sizes
(28 -> 14 -> 7 -> 4 -> 7 -> 14 -> 28) and tiny ones (8 -> 4 -> 2 -> 1) both round-trip.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from robustad.errors import ArgumentError
from robustad.models.arguments import RecordsArguments
from robustad.models.networks.mlp import activation as make_activation
from robustad.models.networks.mlp import trace

Size = tuple[int, int]


def per_layer(key: str, value: int | Sequence[int], n: int) -> list[int]:
    """One value for every layer: an int is repeated, a list must have one entry per layer."""
    values = [int(value)] * n if isinstance(value, int) else [int(v) for v in value]
    if len(values) != n or any(v < 1 for v in values):
        raise ArgumentError(
            key, value, f"a positive int or a list of {n} positive ints (one per layer)"
        )
    return values


def conv_out(size: Size, kernel: int) -> Size:
    pad = kernel // 2
    h, w = ((s + 2 * pad - kernel) // 2 + 1 for s in size)
    return h, w


def conv_encoder(
    input_shape: Sequence[int],
    channels: Sequence[int],
    kernel_sizes: int | Sequence[int],
    act: str,
    batch_norm: bool,
) -> tuple[nn.Sequential, list[Size]]:
    """Conv -> [BN] -> activation per layer; returns the stack and spatial sizes."""
    if not channels or any(int(c) < 1 for c in channels):
        raise ArgumentError("channels", list(channels), "a non-empty list of positive ints")
    kernels = per_layer("kernel_sizes", kernel_sizes, len(channels))
    sizes: list[Size] = [(int(input_shape[1]), int(input_shape[2]))]
    layers: list[nn.Module] = []
    n_in = int(input_shape[0])
    for n_out, k in zip(channels, kernels, strict=True):
        nxt = conv_out(sizes[-1], k)
        if min(nxt) < 1:
            raise ArgumentError(
                "channels",
                list(channels),
                f"fewer stride-2 layers for a {sizes[0][0]}x{sizes[0][1]} input "
                f"(layer {len(sizes)} would shrink {sizes[-1]} to {nxt})",
            )
        layers += [nn.Conv2d(n_in, n_out, k, stride=2, padding=k // 2)]
        layers += [nn.BatchNorm2d(n_out)] if batch_norm else []
        layers += [make_activation(act)]
        sizes.append(nxt)
        n_in = n_out
    return nn.Sequential(*layers), sizes


def conv_decoder(
    input_shape: Sequence[int],
    channels: Sequence[int],
    kernel_sizes: int | Sequence[int],
    sizes: list[Size],
    act: str,
    batch_norm: bool,
    output_activation: str,
) -> nn.Sequential:
    """Mirror of `conv_encoder`: transposed convs from the smallest size back to the input."""
    kernels = per_layer("kernel_sizes", kernel_sizes, len(channels))
    targets = [int(input_shape[0]), *channels[:-1]]
    layers: list[nn.Module] = []
    for i in reversed(range(len(channels))):
        k, pad = kernels[i], kernels[i] // 2
        base = [(s - 1) * 2 - 2 * pad + k for s in sizes[i + 1]]
        out_pad = tuple(t - b for t, b in zip(sizes[i], base, strict=True))
        layers.append(
            nn.ConvTranspose2d(channels[i], targets[i], k, 2, pad, output_padding=out_pad)
        )
        if i > 0:
            layers += [nn.BatchNorm2d(targets[i])] if batch_norm else []
            layers += [make_activation(act)]
    layers.append(make_activation(output_activation))
    return nn.Sequential(*layers)


def conv_stacks(
    input_shape: Sequence[int],
    channels: Sequence[int],
    kernel_sizes: int | Sequence[int],
    code_dim: int,
    act: str,
    batch_norm: bool,
    output_activation: str,
) -> tuple[nn.Sequential, int, nn.Sequential]:
    """Conv feature stack, its flattened size, and the decoder from a `code_dim` code back to
    the image (linear -> unflatten -> transposed convs): shared by the CAE and conv RSRAE."""
    channels = [int(c) for c in channels]
    features, sizes = conv_encoder(input_shape, channels, kernel_sizes, act, batch_norm)
    feature_shape = (channels[-1], *sizes[-1])
    n_features = math.prod(feature_shape)
    decoder = nn.Sequential(
        nn.Linear(code_dim, n_features),
        make_activation(act),
        nn.Unflatten(1, feature_shape),
        *conv_decoder(
            input_shape, channels, kernel_sizes, sizes, act, batch_norm, output_activation
        ),
    )
    return features, n_features, decoder


class ConvAutoencoder(RecordsArguments, nn.Module):
    """Conv encoder -> linear latent code -> linear -> transposed-conv decoder, any (C, H, W)."""

    def __init__(
        self,
        input_shape: Sequence[int],
        channels: Sequence[int] = (16, 32, 64),
        kernel_sizes: int | Sequence[int] = 3,
        latent_dim: int = 16,
        activation: str = "leaky_relu",
        output_activation: str = "sigmoid",
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ArgumentError("latent_dim", latent_dim, "an integer >= 1")
        self.input_shape = tuple(int(n) for n in input_shape)
        features, n_features, self.decoder = conv_stacks(
            self.input_shape,
            channels,
            kernel_sizes,
            latent_dim,
            activation,
            batch_norm,
            output_activation,
        )
        self.encoder = nn.Sequential(*features, nn.Flatten(), nn.Linear(n_features, latent_dim))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def hidden_activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        return trace(self.encoder, x)
