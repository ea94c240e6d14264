"""Sampling of contaminated splits: pure functions over labels, deterministic under a seed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from robustad.errors import ConfigError


@dataclass(frozen=True)
class Split:
    """Indices into one source split (`train` or `test`) and which of them are outliers."""

    source: str
    indices: torch.Tensor  # (N,) int64, shuffled so any batch mixes inliers and outliers
    is_outlier: torch.Tensor  # (N,) bool

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def n_outliers(self) -> int:
        return int(self.is_outlier.sum())


def check_contamination(key: str, value: float) -> float:
    """Contamination is a fraction of outliers: 0 <= c < 1."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise ConfigError(key, value, "a fraction of outliers with 0 <= value < 1")
    return float(value)


def outliers_for(n_inliers: int, contamination: float) -> int:
    """Number of outliers that makes them `contamination` of the whole set."""
    return round(contamination * n_inliers / (1.0 - contamination))


def class_pool(labels: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    return torch.nonzero(torch.isin(labels, torch.as_tensor(list(classes))), as_tuple=True)[0]


def draw(pool: torch.Tensor, n: int, generator: torch.Generator, what: str, key: str) -> torch.Tensor:
    """Draw `n` indices from `pool` without replacement, or say how many exist."""
    if n > len(pool):
        raise ConfigError(
            key,
            f"{n} {what} requested",
            f"at most {len(pool)} {what} exist for this class selection; lower the contamination",
        )
    return pool[torch.randperm(len(pool), generator=generator)[:n]]


def assemble(source: str, inliers: torch.Tensor, outliers: torch.Tensor, generator: torch.Generator) -> Split:
    """Concatenate inliers and outliers and shuffle them together."""
    indices = torch.cat([inliers, outliers])
    is_outlier = torch.cat(
        [torch.zeros(len(inliers), dtype=torch.bool), torch.ones(len(outliers), dtype=torch.bool)]
    )
    order = torch.randperm(len(indices), generator=generator)
    return Split(source, indices[order], is_outlier[order])


def inductive_splits(
    train_labels: torch.Tensor,
    test_labels: torch.Tensor,
    inlier_classes: Sequence[int],
    outlier_classes: Sequence[int],
    contamination: float,
    eval_contamination: float,
    val_fraction: float,
    seed: int,
) -> dict[str, Split]:
    """Train and val from the official train split (disjoint), test from the test split.

    Every inlier of the pool is used; outliers are added so that they make up the requested
    fraction of each split. Validation gets `val_fraction` of both pools, set aside first.
    """
    generator = torch.Generator().manual_seed(seed)
    inliers = class_pool(train_labels, inlier_classes)
    outliers = class_pool(train_labels, outlier_classes)
    inliers = inliers[torch.randperm(len(inliers), generator=generator)]
    outliers = outliers[torch.randperm(len(outliers), generator=generator)]
    n_val_in = round(len(inliers) * val_fraction)
    n_val_out_pool = round(len(outliers) * val_fraction)
    val_in, train_in = inliers[:n_val_in], inliers[n_val_in:]
    val_out_pool, train_out_pool = outliers[:n_val_out_pool], outliers[n_val_out_pool:]

    key = "data.contamination"
    train_out = draw(train_out_pool, outliers_for(len(train_in), contamination), generator, "training outliers", key)
    eval_key = "data.eval_contamination"
    val_out = draw(val_out_pool, outliers_for(len(val_in), eval_contamination), generator, "validation outliers", eval_key)
    test_in = class_pool(test_labels, inlier_classes)
    test_out_pool = class_pool(test_labels, outlier_classes)
    test_out = draw(test_out_pool, outliers_for(len(test_in), eval_contamination), generator, "test outliers", eval_key)
    return {
        "train": assemble("train", train_in, train_out, generator),
        "val": assemble("train", val_in, val_out, generator),
        "test": assemble("test", test_in, test_out, generator),
    }
