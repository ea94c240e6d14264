"""Sampling of contaminated splits for each protocol: pure functions over labels, seeded.

Protocols (`data.protocol`):
- `inductive`: train and validation from the official train split (disjoint), test from the test
  split, each with the requested share of outliers.
- `transductive` (RSRAE's code): one set, drawn from the official test split, is fitted and scored:
  every image of the inlier classes plus outliers.
- `unimodal` (RaPP): validation and test hold as many outliers as inliers.
- `multimodal` (RaPP): validation and test hold every held-out image of the outlier classes.

Outliers are images of other classes, or (`outlier_source=corruption`) inlier-class images that
will be corrupted: then each split's inlier pool is divided into clean inliers and outliers, so
no image appears both clean and corrupted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from robustad.errors import ConfigError

log = logging.getLogger(__name__)

PROTOCOLS = ("inductive", "transductive", "unimodal", "multimodal")


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


@dataclass(frozen=True)
class Amount:
    """How many outliers a split gets: a fraction of it, outliers per inlier, or all there are."""

    key: str  # the config key that set it, named in errors
    kind: str  # "fraction" | "ratio" | "all"
    value: float = 0.0
    setting: object = None  # the value of `key` shown in errors, when it is not `value`

    def outliers_for(self, n_inliers: int, pool: int) -> int:
        if self.kind == "all":
            return pool
        if self.kind == "ratio":
            return round(self.value * n_inliers)
        return round(self.value * n_inliers / (1.0 - self.value))

    def share(self) -> float:
        """Outliers as a fraction of the split (for dividing one pool into inliers and outliers)."""
        if self.kind == "all":
            raise ValueError("`all` has no fixed share")
        return self.value if self.kind == "fraction" else self.value / (1.0 + self.value)

    @property
    def is_zero(self) -> bool:
        return self.kind != "all" and self.value == 0.0

    @property
    def shown(self) -> object:
        return self.value if self.setting is None else self.setting


def check_contamination(key: str, value: float) -> float:
    """Contamination is a fraction of outliers: 0 <= c < 1."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise ConfigError(key, value, "a fraction of outliers with 0 <= value < 1")
    return float(value)


def check_ratio(key: str, value: float) -> float:
    """An outlier ratio is outliers per inlier (RSRAE's c): any finite value >= 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0.0 <= value < float("inf")
    ):
        raise ConfigError(
            key, value, "outliers per inlier, a finite number >= 0 (e.g. 0.1 ... 0.9)"
        )
    return float(value)


def class_pool(labels: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    return torch.nonzero(torch.isin(labels, torch.as_tensor(list(classes))), as_tuple=True)[0]


def shuffled(pool: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return pool[torch.randperm(len(pool), generator=generator)]


def draw(
    pool: torch.Tensor, n: int, generator: torch.Generator, what: str, key: str
) -> torch.Tensor:
    """Draw `n` indices from `pool` without replacement, or say how many exist."""
    if n > len(pool):
        raise ConfigError(
            key,
            f"{n} {what} requested",
            f"at most {len(pool)} {what} exist for this class selection; "
            "lower the contamination or ratio",
        )
    return pool[torch.randperm(len(pool), generator=generator)[:n]]


def divide(pool: torch.Tensor, amount: Amount, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a shuffled pool into inliers and outliers-to-corrupt with the requested share."""
    n_out = round(amount.share() * len(pool))
    if n_out >= len(pool) and len(pool) > 0:
        raise ConfigError(
            amount.key, amount.shown, f"a share that leaves some inliers in the {what} split"
        )
    return pool[: len(pool) - n_out], pool[len(pool) - n_out :]


def assemble(
    source: str, inliers: torch.Tensor, outliers: torch.Tensor, generator: torch.Generator
) -> Split:
    """Concatenate inliers and outliers and shuffle them together."""
    indices = torch.cat([inliers, outliers])
    is_outlier = torch.cat(
        [torch.zeros(len(inliers), dtype=torch.bool), torch.ones(len(outliers), dtype=torch.bool)]
    )
    order = torch.randperm(len(indices), generator=generator)
    return Split(source, indices[order], is_outlier[order])


def _require_outliers(split: Split, what: str, amount: Amount) -> None:
    """A scored split without outliers has no AUROC: refuse it before training, with its size."""
    if split.n_outliers == 0:
        raise ConfigError(
            amount.key,
            amount.shown,
            f"an amount that gives the {what} split at least one outlier to score; it has "
            f"{len(split)} inliers and the amount rounds to 0 outliers (raise it, or use more "
            "inlier classes)",
        )


def _require_inliers(pool: torch.Tensor, source: str) -> None:
    if len(pool) == 0:
        raise ConfigError(
            "data.inlier_classes", "no images", f"classes that have images in the {source} split"
        )


def draw_for(
    pool: torch.Tensor, amount: Amount, n_inliers: int, generator: torch.Generator, split: str
) -> torch.Tensor:
    """Outliers drawn from `pool` for a split of `n_inliers` inliers, as `amount` says."""
    n = amount.outliers_for(n_inliers, len(pool))
    return draw(pool, n, generator, f"{split} outliers", amount.key)


def held_out_splits(
    train_labels: torch.Tensor,
    test_labels: torch.Tensor,
    inlier_classes: Sequence[int],
    outlier_classes: Sequence[int] | None,
    train_amount: Amount,
    eval_amount: Amount,
    val_fraction: float,
    seed: int,
) -> dict[str, Split]:
    """Inductive, unimodal, multimodal: train and val from the train split, test from test;
    a `calibration` split (val's inliers, outliers at the training amount) where validation
    gets another amount of outliers than training.

    Every inlier of the pool is used; validation gets `val_fraction` of both pools, set aside
    first. `outlier_classes=None` means corrupted inliers (each pool divided, not added to).
    """
    generator = torch.Generator().manual_seed(seed)
    inliers = shuffled(class_pool(train_labels, inlier_classes), generator)
    _require_inliers(inliers, "train")
    n_val_in = round(len(inliers) * val_fraction)
    if n_val_in < 1 or len(inliers) - n_val_in < 2:
        raise ConfigError(
            "data.val_fraction",
            val_fraction,
            "a fraction that leaves inliers both to validate on and (at least 2) to train on: "
            f"of {len(inliers)} inliers it puts {n_val_in} in validation and "
            f"{len(inliers) - n_val_in} in training",
        )
    val_in, train_in = inliers[:n_val_in], inliers[n_val_in:]
    held_in = val_in  # the held-out training-pool inliers, before any are corrupted
    test_in = class_pool(test_labels, inlier_classes)
    _require_inliers(test_in, "test")
    if outlier_classes is None:  # corruption: outliers come out of each split's own inliers
        train_in, train_out = divide(train_in, train_amount, "training")
        val_in, val_out = divide(val_in, eval_amount, "validation")
        test_in, test_out = divide(shuffled(test_in, generator), eval_amount, "test")
    else:
        outliers = shuffled(class_pool(train_labels, outlier_classes), generator)
        n_val_out_pool = round(len(outliers) * val_fraction)
        val_out_pool, train_out_pool = outliers[:n_val_out_pool], outliers[n_val_out_pool:]
        train_out = draw_for(train_out_pool, train_amount, len(train_in), generator, "training")
        val_out = draw_for(val_out_pool, eval_amount, len(val_in), generator, "validation")
        test_out_pool = class_pool(test_labels, outlier_classes)
        test_out = draw_for(test_out_pool, eval_amount, len(test_in), generator, "test")
    splits = {
        "train": assemble("train", train_in, train_out, generator),
        "val": assemble("train", val_in, val_out, generator),
        "test": assemble("test", test_in, test_out, generator),
    }
    if (eval_amount.kind, eval_amount.value) != (train_amount.kind, train_amount.value):
        # Validation is built like the test split (RaPP's protocols: clean training, half novel
        # evaluation), so it cannot stand in for new training data when a threshold is chosen:
        # the same held-out inliers with outliers at the training amount can.
        if outlier_classes is None:
            cal_in, cal_out = divide(held_in, train_amount, "calibration")
        else:
            cal_in = held_in
            cal_out = draw_for(val_out_pool, train_amount, len(cal_in), generator, "calibration")
        splits["calibration"] = assemble("train", cal_in, cal_out, generator)
    _require_outliers(splits["test"], "test", eval_amount)
    if splits["val"].n_outliers == 0:  # only monitoring suffers; the test result stands
        log.warning(
            "the validation split's %d inliers get 0 outliers from %s=%s: val/auroc is "
            "meaningless (raise data.val_fraction or the amount)",
            len(splits["val"]),
            eval_amount.key,
            eval_amount.shown,
        )
    return splits


def transductive_split(
    test_labels: torch.Tensor,
    inlier_classes: Sequence[int],
    outlier_classes: Sequence[int] | None,
    amount: Amount,
    seed: int,
) -> Split:
    """RSRAE's protocol: every test image of the inlier classes plus outliers, fitted and scored."""
    generator = torch.Generator().manual_seed(seed)
    inliers = class_pool(test_labels, inlier_classes)
    _require_inliers(inliers, "test")
    if outlier_classes is None:
        inliers, outliers = divide(shuffled(inliers, generator), amount, "transductive")
    else:
        pool = class_pool(test_labels, outlier_classes)
        n = amount.outliers_for(len(inliers), len(pool))
        outliers = draw(pool, n, generator, "outliers", amount.key)
    split = assemble("test", inliers, outliers, generator)
    _require_outliers(split, "transductive", amount)
    return split
