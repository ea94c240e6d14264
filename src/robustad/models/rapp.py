"""RaPP (Kim et al., ICLR 2020): anomaly scores from hidden activations along the projection path.

For input x and reconstruction x~, the encoder is run on both; d(x) concatenates the differences
h_i(x) - h_i(x~) over the layers i = 0 (the input itself) .. l (the code).
SAP sums their squares; NAP first centres and whitens d(x) with the training set's statistics,
so layers and directions that differ a lot even for normal data count less.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from robustad.models.losses import flat


def path_differences(
    hidden_x: list[torch.Tensor], hidden_x_hat: list[torch.Tensor]
) -> torch.Tensor:
    """(B, P): every layer's activation difference, flattened and concatenated."""
    return torch.cat(
        [flat(a) - flat(b) for a, b in zip(hidden_x, hidden_x_hat, strict=True)], dim=1
    )


def sap_score(differences: torch.Tensor) -> torch.Tensor:
    """Simple aggregation along the projection pathway: sum_i ||h_i(x) - h_i(x~)||^2."""
    return differences.pow(2).sum(dim=1)


class NAPStatistics(nn.Module):
    """Training-set mean and principal axes of d(x); buffers, so they travel in checkpoints.

    Directions with a singular value below `rtol` x the largest carry no training variance and
    are dropped, as are all but the `max_components` largest (this bounds checkpoint size for
    conv nets, whose concatenated activations have thousands of dimensions).
    """

    def __init__(self, max_components: int | None = None, rtol: float = 1e-5) -> None:
        super().__init__()
        self.max_components, self.rtol = max_components, rtol
        self.register_buffer("mean", torch.zeros(0))
        self.register_buffer("axes", torch.zeros(0, 0))  # (k, P), orthonormal rows
        self.register_buffer("scales", torch.zeros(0))  # (k,), standard deviation along each axis

    @property
    def fitted(self) -> bool:
        return self.scales.numel() > 0

    @torch.no_grad()
    def fit(self, differences: torch.Tensor) -> None:
        n = len(differences)
        if n < 2:
            raise ValueError(f"NAP needs at least 2 training samples, got {n}")
        mean = differences.mean(dim=0)
        _, singular, vh = torch.linalg.svd(differences - mean, full_matrices=False)
        self._keep_axes(mean, singular, vh, n)

    @torch.no_grad()
    def fit_batches(self, batches: Iterable[torch.Tensor], dense_limit: int = 4096) -> None:
        """`fit` over batches without holding the N x P matrix: for P <= `dense_limit` the
        P x P covariance is summed in float64 and diagonalised (same axes and scales as the SVD,
        far cheaper for large N); wider paths (conv nets) fall back to the full SVD."""
        iterator = iter(batches)
        first = next(iterator, None)
        if first is None:
            raise ValueError("NAP needs at least 2 training samples, got 0")
        if first.shape[1] > dense_limit:
            self.fit(torch.cat([first, *iterator]))
            return
        total = torch.zeros(first.shape[1], dtype=torch.float64, device=first.device)
        gram = torch.zeros(first.shape[1], first.shape[1], dtype=torch.float64, device=first.device)
        n = 0
        for batch in itertools.chain([first], iterator):
            batch = batch.double()
            total += batch.sum(dim=0)
            gram += batch.T @ batch
            n += len(batch)
        if n < 2:
            raise ValueError(f"NAP needs at least 2 training samples, got {n}")
        mean = total / n
        scatter = gram - n * torch.outer(mean, mean)  # sum of (d - mean)(d - mean)^T
        eigenvalues, eigenvectors = torch.linalg.eigh(scatter)  # ascending
        singular = eigenvalues.flip(0).clamp_min(0).sqrt()
        vh = eigenvectors.flip(1).T
        dtype = first.dtype
        self._keep_axes(mean.to(dtype), singular.to(dtype), vh.to(dtype), n)

    def _keep_axes(
        self, mean: torch.Tensor, singular: torch.Tensor, vh: torch.Tensor, n: int
    ) -> None:
        """Keep the axes with real training variance (and at most `max_components`)."""
        keep = singular > self.rtol * singular[0].clamp_min(torch.finfo(singular.dtype).tiny)
        if self.max_components is not None:
            keep[self.max_components :] = False
        self.mean = mean
        self.axes = vh[keep].contiguous()
        self.scales = singular[keep] / (n - 1) ** 0.5

    def score(self, differences: torch.Tensor) -> torch.Tensor:
        """||(d(x) - mu) V S^-1||^2: Mahalanobis distance of d(x) from the training differences."""
        if not self.fitted:
            raise RuntimeError(
                "NAP statistics are not fitted; call fit() on training differences first"
            )
        return (((differences - self.mean) @ self.axes.T) / self.scales).pow(2).sum(dim=1)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Buffers change shape when fitted: resize them to the checkpoint's before loading."""
        for name in ("mean", "axes", "scales"):
            if prefix + name in state_dict:
                setattr(
                    self, name, torch.empty_like(state_dict[prefix + name], device=self.mean.device)
                )
        super()._load_from_state_dict(state_dict, prefix, *args)
