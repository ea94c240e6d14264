"""Contaminated splits: exact counts, disjointness and determinism under the sampling seed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import make_datamodule, write_mnist_like

from robustad.data import ContaminatedDataModule
from robustad.data.sources import load_mnist
from robustad.errors import ConfigError


def make_dm(data_dir: Path, **overrides) -> ContaminatedDataModule:
    return make_datamodule(data_dir, **{**dict(contamination=0.25, val_fraction=0.2), **overrides})


def test_exact_counts(mnist_dir: Path) -> None:
    dm = make_dm(mnist_dir)
    # 30 train images of class 4: 6 to validation, 24 to training; outliers make up 25 %.
    assert dm.split_sizes == {
        "train": {"n": 32, "outliers": 8},
        "val": {"n": 8, "outliers": 2},
        "test": {"n": 16, "outliers": 4},
    }
    for name, split in dm.splits.items():
        inlier_labels = split.labels[split.targets == 0]
        outlier_labels = split.labels[split.targets == 1]
        assert set(inlier_labels.tolist()) == {4}, name
        assert 4 not in set(outlier_labels.tolist()), name


def test_contamination_zero_keeps_training_clean(mnist_dir: Path) -> None:
    dm = make_dm(mnist_dir, contamination=0.0, eval_contamination=0.25)
    assert dm.split_sizes["train"] == {"n": 24, "outliers": 0}
    assert dm.split_sizes["test"]["outliers"] == 4


def _train_pool_rows(dm: ContaminatedDataModule, name: str) -> set[bytes]:
    return {img.numpy().tobytes() for img in dm.splits[name].images}


def test_train_and_validation_are_disjoint(mnist_dir: Path) -> None:
    dm = make_dm(mnist_dir)
    # Synthetic images carry per-image noise, so equal bytes would mean the same source image.
    assert not _train_pool_rows(dm, "train") & _train_pool_rows(dm, "val")
    raw = load_mnist(mnist_dir, download=False)
    test_rows = {img.numpy().tobytes() for img in raw.test_images}
    assert _train_pool_rows(dm, "test") <= test_rows


def test_same_seed_same_splits_other_seed_differs(mnist_dir: Path) -> None:
    a, b, c = (make_dm(mnist_dir, seed=s) for s in (0, 0, 1))
    for name in ("train", "val", "test"):
        assert torch.equal(a.splits[name].images, b.splits[name].images)
    assert not torch.equal(a.splits["train"].images, c.splits["train"].images)


def test_sampling_ignores_the_training_seed(mnist_dir: Path) -> None:
    torch.manual_seed(123)
    a = make_dm(mnist_dir)
    torch.manual_seed(456)
    b = make_dm(mnist_dir)
    assert torch.equal(a.splits["train"].images, b.splits["train"].images)


@pytest.mark.parametrize("gz", [True, False])
def test_real_idx_loading_path_reads_raw_and_gzipped(tmp_path: Path, gz: bool) -> None:
    root = write_mnist_like(tmp_path / "d", n_train_per_class=3, n_test_per_class=2, gz=gz)
    images = load_mnist(root, download=False)
    assert images.train_images.shape == (30, 28, 28) and images.train_images.dtype == torch.uint8
    assert images.test_labels.tolist().count(7) == 2


def test_batches_are_float_images_in_unit_range(mnist_dir: Path) -> None:
    dm = make_dm(mnist_dir, batch_size=5)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (5, 28, 28)
    batch = dm.on_after_batch_transfer(batch, 0)
    assert batch["image"].shape == (5, 1, 28, 28) and batch["image"].dtype == torch.float32
    assert batch["image"].min() >= 0.0 and batch["image"].max() <= 1.0


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        # 24 training inliers at c = 0.95 need 456 outliers; 216 of the other classes remain.
        (dict(contamination=0.95), r"data\.contamination.*456 training outliers.*at most 216"),
        (
            dict(contamination=0.1, eval_contamination=0.95),
            r"data\.eval_contamination.*validation outliers.*at most 54",
        ),
        # Corrupted inliers: 0.99 of 24 training images would leave none clean.
        (
            dict(contamination=0.99, outlier_source="corruption", corruptions=["fog"]),
            r"data\.contamination.*0\.99.*leaves some inliers in the training split",
        ),
    ],
)
def test_more_outliers_than_exist_is_refused_with_the_counts(
    mnist_dir: Path, overrides: dict, pattern: str
) -> None:
    with pytest.raises(ConfigError, match=pattern):
        make_dm(mnist_dir, **overrides)
