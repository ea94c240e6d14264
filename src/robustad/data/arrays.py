"""Images a user hands over: arrays (the Python API, the scorer) and folders of image files.

The same splits, batches and conversion as the contaminated benchmarks: a seeded
`val_fraction` of the (unlabelled, contaminated) training images is held out, the weights never
fit it and the threshold is chosen on its scores; test images, when given with labels, are
scored like a benchmark's test split.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustad.data.datamodule import ImageSplitsDataModule, IndexedImages
from robustad.errors import ConfigError, RobustADError
from robustad.validation import int_at_least, is_number, require

log = logging.getLogger(__name__)

UNLABELLED = -1  # target of an image whose inlier/outlier status nobody gave


def as_images(array: Any, key: str) -> torch.Tensor:
    """(N, C, H, W) images from numpy or torch: (N, H, W) grayscale or (N, C, H, W); uint8
    (0-255) kept as uint8, float taken as already in [0, 1]."""
    if isinstance(array, np.ndarray):
        array = torch.from_numpy(np.ascontiguousarray(array))
    if not isinstance(array, torch.Tensor):
        raise ConfigError(key, type(array).__name__, "a numpy array or torch tensor of images")
    if array.ndim == 3:
        array = array.unsqueeze(1)
    if array.ndim != 4 or len(array) == 0:
        raise ConfigError(key, f"shape {tuple(array.shape)}", "(N, H, W) or (N, C, H, W), N >= 1")
    if array.dtype == torch.uint8:
        return array.contiguous()
    if not array.dtype.is_floating_point:
        raise ConfigError(key, f"dtype {array.dtype}", "uint8 (0-255) or float (0-1) images")
    array = array.float()
    if not bool(torch.isfinite(array).all()) or array.min() < 0 or array.max() > 1:
        raise ConfigError(key, "float values outside [0, 1]", "uint8 0-255 or float 0-1 images")
    return array.contiguous()


def as_targets(values: Any, n: int, key: str) -> torch.Tensor:
    """0 = inlier, 1 = outlier for each of n images; none given = unlabelled (-1)."""
    if values is None:
        return torch.full((n,), UNLABELLED, dtype=torch.long)
    targets = torch.as_tensor(np.asarray(values)).long().reshape(-1)
    if len(targets) != n or bool(((targets != 0) & (targets != 1)).any()):
        raise ConfigError(key, f"{len(targets)} values", f"{n} values, each 0 (inlier) or 1")
    return targets


class ArrayDataModule(ImageSplitsDataModule):
    """Training images (contaminated, unlabelled unless `targets`), optional test images with
    targets, and images to predict. `contamination` is the share of outliers the user expects
    in the training images (PyOD's `contamination`), used by the threshold rule."""

    KEY_PREFIX = ""  # how errors name the settings: Python arguments here, `data.*` in configs

    def __init__(
        self,
        images: Any = None,
        targets: Any = None,
        test_images: Any = None,
        test_targets: Any = None,
        predict_images: Any = None,
        contamination: float | None = None,
        val_fraction: float = 0.1,
        batch_size: int = 128,
        eval_batch_size: int = 1024,
        seed: int = 0,
    ) -> None:
        super().__init__()
        require(
            self.KEY_PREFIX + "val_fraction",
            val_fraction,
            is_number(val_fraction) and 0.0 < val_fraction < 1.0,
            "a fraction 0 < f < 1",
        )
        int_at_least(self.KEY_PREFIX + "batch_size", batch_size, 1)
        int_at_least(self.KEY_PREFIX + "eval_batch_size", eval_batch_size, 1)
        int_at_least(self.KEY_PREFIX + "seed", seed, 0)
        if contamination is not None:
            require(
                self.KEY_PREFIX + "contamination",
                contamination,
                is_number(contamination) and 0.0 <= contamination < 0.5,
                "a fraction 0 <= c < 0.5 (the expected share of outliers)",
            )
        self.contamination = contamination
        self.val_fraction, self.seed = val_fraction, seed
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, 0
        self.split_sizes: dict[str, dict[str, int]] = {}
        self.split_details: dict[str, dict[str, Any]] = {}
        if images is not None:
            self._split_training(as_images(images, "images"), targets)
        if test_images is not None:
            test = as_images(test_images, "test_images")
            self._add("test", test, as_targets(test_targets, len(test), "test_targets"))
        if predict_images is not None:
            self.set_predict_images(predict_images)

    def _split_training(self, images: torch.Tensor, targets: Any) -> None:
        n = len(images)
        n_val = round(self.val_fraction * n)
        if n_val < 1 or n - n_val < 2:
            raise ConfigError(
                "images",
                f"{n} images",
                f"enough to hold out val_fraction={self.val_fraction} and still train on >= 2",
            )
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        all_targets = as_targets(targets, n, "targets")
        self._add("train", images[order[n_val:]], all_targets[order[n_val:]])
        self._add("val", images[order[:n_val]], all_targets[order[:n_val]])

    def _add(self, name: str, images: torch.Tensor, targets: torch.Tensor) -> None:
        self.splits[name] = IndexedImages(images, targets, targets.clone())
        labelled = bool((targets >= 0).all())
        outliers = int((targets > 0).sum()) if labelled else None
        self.split_sizes[name] = {"n": len(images), "outliers": outliers}
        self.split_details[name] = {"n": len(images), "outliers": outliers}

    def set_predict_images(self, images: Any) -> None:
        images = as_images(images, "images")
        self._add("predict", images, as_targets(None, len(images), "images"))

    @property
    def image_shape(self) -> tuple[int, ...]:
        split = next(iter(self.splits.values()), None)
        if split is None:
            raise RobustADError("no images given")
        return tuple(split.images.shape[1:])

    @property
    def train_contamination(self) -> float:
        """The expected outlier share: as given, else the training targets' share if labelled."""
        if self.contamination is not None:
            return float(self.contamination)
        sizes = self.split_sizes.get("train", {})
        if sizes.get("outliers") is None:
            raise ConfigError(
                self.KEY_PREFIX + "contamination",
                None,
                "the expected share of outliers in the training images (needed by the "
                "contamination threshold), or use a label-free threshold method (mad, iqr)",
            )
        return sizes["outliers"] / sizes["n"]

    def has_split(self, name: str) -> bool:
        return name in self.splits

    @property
    def validation_labelled(self) -> bool:
        """Whether validation AUROC/AP exist (held-out images with known targets)."""
        val = self.splits.get("val")
        return val is not None and bool((val.targets >= 0).all())

    def setup(self, stage: str | None = None) -> None:
        needed = {"fit": "train", "validate": "val", "test": "test", "predict": "predict"}
        name = needed.get(stage or "fit")
        if name not in self.splits:
            raise RobustADError(f"stage {stage!r} needs {name} images, but none were given")


class FolderDataModule(ArrayDataModule):
    """Your own images, from folders: `train_dir` holds the (contaminated, unlabelled) training
    images; `test_dir`, optional, holds `inliers/` and `outliers/` subfolders scored like a
    benchmark's test split. Every image must have `image_shape` (grayscale or RGB)."""

    KEY_PREFIX = "data."

    def __init__(
        self,
        train_dir: str | None,
        image_shape: Sequence[int] | None,
        test_dir: str | None = None,
        contamination: float | None = None,
        val_fraction: float = 0.1,
        batch_size: int = 128,
        eval_batch_size: int = 1024,
        seed: int = 0,
        dataset: str = "folder",
    ) -> None:
        from robustad.images import read_folder

        self.dataset = dataset
        if train_dir is None:
            raise ConfigError("data.train_dir", None, "the folder of training images")
        _, train = read_folder(Path(train_dir).expanduser(), "data.train_dir")
        check_folder_shape(train, image_shape, "data.train_dir", train_dir)
        test_images = test_targets = None
        if test_dir is not None:
            parts = []
            for target, sub in enumerate(("inliers", "outliers")):
                folder = Path(test_dir).expanduser() / sub
                _, images = read_folder(folder, "data.test_dir")
                check_folder_shape(images, image_shape, "data.test_dir", folder)
                parts.append((images, np.full(len(images), target)))
            test_images = np.concatenate([p[0] for p in parts])
            test_targets = np.concatenate([p[1] for p in parts])
        super().__init__(
            train,
            None,
            test_images,
            test_targets,
            contamination=contamination,
            val_fraction=val_fraction,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            seed=seed,
        )


def check_folder_shape(
    images: np.ndarray, expected: Sequence[int] | None, key: str, where: Any
) -> None:
    got = list(images.shape[1:])
    if expected is None or got != [int(n) for n in expected]:
        raise ConfigError(
            "data.image_shape",
            list(expected),
            f"{got} ([channels, height, width] of the images in {key}={where})",
        )
