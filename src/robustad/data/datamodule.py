"""LightningDataModule for outlier-contaminated image sets, batched by tensor slicing."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

from robustad.data.contamination import Split, check_contamination, inductive_splits
from robustad.data.sources import SOURCES, ImageSet
from robustad.errors import ConfigError

log = logging.getLogger(__name__)


class IndexedImages:
    """A split held as one uint8 tensor; indexing with a list of indices returns a whole batch."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.targets, self.labels = images, targets, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: list[int]) -> dict[str, torch.Tensor]:
        index_tensor = torch.as_tensor(index)
        return {
            "image": self.images[index_tensor],
            "target": self.targets[index_tensor],
            "label": self.labels[index_tensor],
        }


class ContaminatedDataModule(pl.LightningDataModule):
    """Inlier classes plus sampled outliers; the training split itself is contaminated.

    Labels travel with each batch only so that validation and test can be scored:
    `target` is 1 for outliers (the positive class), `label` the original class.
    """

    def __init__(
        self,
        dataset: str = "mnist",
        data_dir: str = "data",
        image_shape: Sequence[int] = (1, 28, 28),
        inlier_classes: Sequence[int] = (4,),
        outlier_classes: Sequence[int] | None = None,
        contamination: float = 0.06,
        eval_contamination: float | None = None,
        val_fraction: float = 0.1,
        batch_size: int = 128,
        eval_batch_size: int = 1024,
        num_workers: int = 0,
        seed: int = 0,
        download: bool = True,
    ) -> None:
        super().__init__()
        if dataset not in SOURCES:
            raise ConfigError("data.dataset", dataset, f"one of {sorted(SOURCES)}")
        self.dataset = dataset
        self.data_dir = Path(data_dir)
        self.image_shape = tuple(int(n) for n in image_shape)
        self.inlier_classes = self._class_list("data.inlier_classes", inlier_classes)
        if not self.inlier_classes:
            raise ConfigError("data.inlier_classes", inlier_classes, "a non-empty list of class ids")
        self.outlier_classes = (
            None if outlier_classes is None else self._class_list("data.outlier_classes", outlier_classes)
        )
        self.contamination = check_contamination("data.contamination", contamination)
        eval_value = contamination if eval_contamination is None else eval_contamination
        self.eval_contamination = check_contamination("data.eval_contamination", eval_value)
        if self.eval_contamination == 0.0:
            raise ConfigError(
                "data.eval_contamination",
                eval_value,
                "a fraction > 0 (validation and test need outliers to be scored); "
                "with data.contamination=0 set data.eval_contamination explicitly",
            )
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError("data.val_fraction", val_fraction, "a fraction with 0 < value < 1")
        for key, value in (("data.batch_size", batch_size), ("data.eval_batch_size", eval_batch_size)):
            if int(value) < 1:
                raise ConfigError(key, value, "a positive integer")
        if int(num_workers) < 0:
            raise ConfigError("data.num_workers", num_workers, "an integer >= 0")
        self.val_fraction = val_fraction
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.num_workers, self.seed, self.download = int(num_workers), int(seed), download
        self.splits: dict[str, IndexedImages] = {}
        self.split_sizes: dict[str, dict[str, int]] = {}

    @staticmethod
    def _class_list(key: str, classes: Any) -> list[int]:
        if isinstance(classes, int | str):
            classes = [classes]
        try:
            return [int(c) for c in classes]
        except (TypeError, ValueError):
            raise ConfigError(key, classes, "a list of integer class ids") from None

    def _load(self) -> ImageSet:
        return SOURCES[self.dataset](data_dir=self.data_dir, download=self.download)

    def _resolve_classes(self, n_classes: int) -> list[int]:
        allowed = f"class ids 0..{n_classes - 1}"
        for key, classes in (("data.inlier_classes", self.inlier_classes), ("data.outlier_classes", self.outlier_classes or [])):
            bad = [c for c in classes if not 0 <= c < n_classes]
            if bad:
                raise ConfigError(key, bad, f"{allowed} for dataset {self.dataset}")
        outliers = (
            [c for c in range(n_classes) if c not in self.inlier_classes]
            if self.outlier_classes is None
            else self.outlier_classes
        )
        overlap = sorted(set(outliers) & set(self.inlier_classes))
        if overlap:
            raise ConfigError("data.outlier_classes", self.outlier_classes, f"classes disjoint from data.inlier_classes (both hold {overlap})")
        if not outliers:
            raise ConfigError("data.outlier_classes", self.outlier_classes, "a non-empty pool of outlier classes")
        return outliers

    def setup(self, stage: str | None = None) -> None:
        """Load once and sample every split; later calls (Lightning calls it per stage) reuse it."""
        if self.splits:
            return
        images = self._load()
        if images.image_shape != self.image_shape:
            raise ConfigError("data.image_shape", list(self.image_shape), f"{list(images.image_shape)} for dataset {self.dataset}")
        outlier_classes = self._resolve_classes(len(images.class_names))
        splits = inductive_splits(
            images.train_labels,
            images.test_labels,
            self.inlier_classes,
            outlier_classes,
            self.contamination,
            self.eval_contamination,
            self.val_fraction,
            self.seed,
        )
        sources = {"train": (images.train_images, images.train_labels), "test": (images.test_images, images.test_labels)}
        for name, split in splits.items():
            self.splits[name] = self._materialise(split, *sources[split.source])
            self.split_sizes[name] = {"n": len(split), "outliers": split.n_outliers}
        log.info("%s splits (inliers %s): %s", self.dataset, self.inlier_classes, self.split_sizes)

    @staticmethod
    def _materialise(split: Split, images: torch.Tensor, labels: torch.Tensor) -> IndexedImages:
        return IndexedImages(images[split.indices], split.is_outlier.long(), labels[split.indices])

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        data = self.splits[name]
        sampler = RandomSampler(data) if shuffle else SequentialSampler(data)
        batch_size = self.batch_size if shuffle else self.eval_batch_size
        return DataLoader(
            data,
            sampler=BatchSampler(sampler, batch_size, drop_last=False),
            batch_size=None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def on_after_batch_transfer(self, batch: dict[str, torch.Tensor], dataloader_idx: int) -> dict[str, torch.Tensor]:
        """Convert uint8 to float in [0, 1] after the transfer: 4x less to copy, one tensor op."""
        images = batch["image"]
        batch["image"] = images.unsqueeze(1).float().div_(255.0)
        return batch
