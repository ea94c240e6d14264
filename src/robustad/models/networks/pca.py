"""Closed-form rank-k PCA reconstruction: the classical reference row of every results table."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from robustad.errors import ArgumentError
from robustad.models.arguments import RecordsArguments


class PCAReconstructor(RecordsArguments, nn.Module):
    """x -> mean + C^T C (x - mean), C = the top-`rank` principal directions of the training data.

    Training statistics (count, sum, sum of outer products) accumulate in float64 over any number
    of batches; `fit()` turns them into the mean and components, which are buffers (checkpointed).
    """

    def __init__(self, input_shape: Sequence[int], rank: int = 16) -> None:
        super().__init__()
        self.input_shape = tuple(int(n) for n in input_shape)
        n_in = math.prod(self.input_shape)
        if isinstance(rank, bool) or not 1 <= int(rank) <= n_in:
            raise ArgumentError("rank", rank, f"an integer with 1 <= rank <= {n_in} (the pixels)")
        self.rank = int(rank)
        self.register_buffer("mean", torch.zeros(n_in))
        self.register_buffer("components", torch.zeros(self.rank, n_in))
        self.reset_statistics()

    def reset_statistics(self) -> None:
        self._count = 0
        self._sum: torch.Tensor | None = None
        self._outer: torch.Tensor | None = None

    @property
    def has_statistics(self) -> bool:
        return self._count > 0

    @torch.no_grad()
    def accumulate(self, x: torch.Tensor) -> None:
        flat = x.flatten(1).double()
        if self._sum is None or self._outer is None:
            self._sum = flat.sum(dim=0)
            self._outer = flat.T @ flat
        else:
            self._sum += flat.sum(dim=0)
            self._outer += flat.T @ flat
        self._count += len(flat)

    @torch.no_grad()
    def fit(self) -> torch.Tensor:
        """Set mean and components from the accumulated data; return the training mean sq. error.

        That error is the sum of the covariance eigenvalues left out, so no second pass is needed.
        """
        if self._sum is None or self._outer is None or self._count == 0:
            raise RuntimeError("PCAReconstructor.fit() called before any accumulate()")
        mean = self._sum / self._count
        covariance = self._outer / self._count - torch.outer(mean, mean)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
        top = eigenvectors[:, -self.rank :].flip(1).T
        self.mean.copy_(mean.to(self.mean.dtype))
        self.components.copy_(top.to(self.components.dtype))
        return eigenvalues[: -self.rank].clamp_min(0).sum().to(self.mean.dtype)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) - self.mean) @ self.components.T

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return (codes @ self.components + self.mean).view(-1, *self.input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def hidden_activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.encode(x)]
