"""LightningDataModule for outlier-contaminated image sets, batched by tensor indexing.

Each split is one uint8 tensor; a batch is gathered with one index tensor (one randperm per
epoch, no per-sample Python) and turned into float in [0, 1] after the transfer. When training
on an accelerator the split tensors are moved there once, so batches never cross the bus.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Sampler

from robustad.data.classes import complete_selection, resolve_classes
from robustad.data.contamination import (
    PROTOCOLS,
    Amount,
    Split,
    check_contamination,
    check_ratio,
    held_out_splits,
    transductive_split,
)
from robustad.data.corruptions import check_corruptions, check_severity, corrupt
from robustad.data.sources import EMNIST_SPLITS, SOURCES, ImageSet
from robustad.errors import ConfigError
from robustad.validation import int_at_least, is_int, is_number, require

log = logging.getLogger(__name__)

OUTLIER_SOURCES = ("classes", "corruption")
# Keep a split on the GPU only while it takes at most this share of the free memory.
_DEVICE_MEMORY_SHARE = 0.5


class IndexedImages:
    """A split held as one uint8 tensor; indexing with an index tensor returns a whole batch."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.targets, self.labels = images, targets, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: torch.Tensor | list[int]) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(index, device=self.images.device)
        # index_select is a plain row copy, far cheaper per batch than advanced indexing.
        return {
            "image": self.images.index_select(0, index),
            "target": self.targets.index_select(0, index),
            "label": self.labels.index_select(0, index),
        }

    @property
    def nbytes(self) -> int:
        return sum(
            t.element_size() * t.nelement() for t in (self.images, self.targets, self.labels)
        )

    def to(self, device: torch.device) -> IndexedImages:
        return IndexedImages(
            self.images.to(device), self.targets.to(device), self.labels.to(device)
        )


class IndexBatches(Sampler[torch.Tensor]):
    """Yields the index tensor of each batch: one permutation per epoch, made where the data is.

    The permutation draws from torch's global generator, so the batch order follows the
    training seed while the split contents follow `data.seed`.
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool, device: torch.device) -> None:
        self.n, self.batch_size, self.shuffle, self.device = n, batch_size, shuffle, device

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self.shuffle:
            order = torch.randperm(self.n, device=self.device)
        else:
            order = torch.arange(self.n, device=self.device)
        return iter(order.split(self.batch_size))

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)


def check_settings(
    dataset: Any,
    emnist_split: Any,
    protocol: Any,
    outlier_source: Any,
    data_dir: Any,
    download: Any,
    image_shape: Any,
    val_fraction: Any,
    batch_size: Any,
    eval_batch_size: Any,
    num_workers: Any,
    seed: Any,
    severity: Any,
) -> None:
    """Every plain data setting, typed and ranged before anything is read or trained.

    Nothing is coerced: a batch size of 1.5 silently run as 1 would leave the saved config
    saying one thing and the run doing another. Classes, outlier amounts and corruption names
    are checked against each other by the data module; sizes that depend on the data
    (enough images for validation and outliers) at setup, still before training.
    """

    def one_of(key: str, value: Any, choices: Sequence[str]) -> None:
        require(key, value, isinstance(value, str) and value in choices, f"one of {list(choices)}")

    one_of("data.dataset", dataset, sorted(SOURCES))
    one_of("data.emnist_split", emnist_split, EMNIST_SPLITS)
    one_of("data.protocol", protocol, PROTOCOLS)
    one_of("data.outlier_source", outlier_source, OUTLIER_SOURCES)
    require("data.download", download, isinstance(download, bool), "true or false")
    require(
        "data.data_dir",
        data_dir,
        isinstance(data_dir, str | Path) and bool(str(data_dir)),
        "a folder path",
    )
    if Path(data_dir).exists() and not Path(data_dir).is_dir():
        raise ConfigError(
            "data.data_dir", str(data_dir), "a folder (holding e.g. MNIST/raw); this is a file"
        )
    shape_ok = (
        isinstance(image_shape, Sequence)
        and not isinstance(image_shape, str)
        and len(image_shape) == 3
        and all(is_int(n) and n >= 1 for n in image_shape)
    )
    require("data.image_shape", image_shape, shape_ok, "[channels, height, width], integers >= 1")
    for key, value, low in (
        ("data.batch_size", batch_size, 1),
        ("data.eval_batch_size", eval_batch_size, 1),
        ("data.num_workers", num_workers, 0),
        ("data.seed", seed, 0),
    ):
        int_at_least(key, value, low)
    require(
        "data.val_fraction",
        val_fraction,
        is_number(val_fraction) and 0.0 < val_fraction < 1.0,
        "a fraction with 0 < value < 1 (of the training split's images, held out for validation)",
    )
    check_severity(severity)


class ImageSplitsDataModule(pl.LightningDataModule):
    """Splits held as `IndexedImages` (`self.splits[name]`), batched by index tensors, moved to
    the accelerator once; subclasses fill `splits` and set `batch_size` / `eval_batch_size` /
    `num_workers`."""

    def __init__(self) -> None:
        super().__init__()
        self.splits: dict[str, IndexedImages] = {}
        self._on_device: dict[int, IndexedImages] = {}

    def _device(self) -> torch.device:
        trainer = self.trainer
        return torch.device("cpu") if trainer is None else trainer.strategy.root_device

    def _placed(self, data: IndexedImages, device: torch.device) -> IndexedImages:
        """The split on `device`, moved once and reused by every later loader (fit, test)."""
        if device.type == "cpu":
            return data
        key = id(data)
        if key not in self._on_device:
            fits = True
            if device.type == "cuda":
                free, _ = torch.cuda.mem_get_info(device)
                fits = data.nbytes <= _DEVICE_MEMORY_SHARE * free
            self._on_device[key] = data.to(device) if fits else data
            log.info(
                "split of %.1f MB %s on %s",
                data.nbytes / 2**20,
                "placed" if fits else "kept on CPU, not",
                device,
            )
        return self._on_device[key]

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        device = self._device()
        data = self._placed(self.splits[name], device)
        on_accelerator = data.images.device.type != "cpu"
        workers = 0 if on_accelerator else self.num_workers  # workers cannot index GPU tensors
        return DataLoader(
            data,
            sampler=IndexBatches(
                len(data),
                self.batch_size if shuffle else self.eval_batch_size,
                shuffle,
                data.images.device,
            ),
            batch_size=None,
            num_workers=workers,
            pin_memory=device.type == "cuda" and not on_accelerator,
            persistent_workers=workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def on_after_batch_transfer(
        self, batch: dict[str, torch.Tensor], dataloader_idx: int
    ) -> dict[str, torch.Tensor]:
        """Convert uint8 to float in [0, 1] where the batch now is: 4x less to move, one op
        (float images are taken as already in [0, 1]); grayscale splits gain their channel."""
        images = batch["image"]
        if images.ndim == 3:
            images = images.unsqueeze(1)
        batch["image"] = images / 255.0 if images.dtype == torch.uint8 else images.float()
        return batch

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", shuffle=False)

    def calibration_dataloader(self) -> DataLoader | None:
        """Held-out images distributed like the training split, for choosing a threshold; None
        when the validation split is such a split (its step outputs serve)."""
        if "calibration" not in self.splits:
            return None
        return self._loader("calibration", shuffle=False)


class ContaminatedDataModule(ImageSplitsDataModule):
    """Inlier classes plus sampled outliers, split by an evaluation protocol.

    Labels travel with each batch only so that validation and test can be scored:
    `target` is 1 for outliers / novel images (the positive class), `label` the original class.
    """

    def __init__(
        self,
        dataset: str = "mnist",
        data_dir: str = "data",
        image_shape: Sequence[int] = (1, 28, 28),
        inlier_classes: Sequence[int | str] | int | str | None = (4,),
        outlier_classes: Sequence[int | str] | int | str | None = None,
        contamination: float | None = 0.06,
        eval_contamination: float | None = None,
        val_fraction: float = 0.1,
        batch_size: int = 128,
        eval_batch_size: int = 1024,
        num_workers: int = 0,
        seed: int = 0,
        download: bool = True,
        protocol: str = "inductive",
        outlier_ratio: float | None = None,
        outlier_source: str = "classes",
        corruptions: Sequence[str] | str | None = None,
        severity: int = 3,
        emnist_split: str = "byclass",
    ) -> None:
        super().__init__()
        check_settings(
            dataset=dataset, emnist_split=emnist_split, protocol=protocol,
            outlier_source=outlier_source, data_dir=data_dir, download=download,
            image_shape=image_shape, val_fraction=val_fraction, batch_size=batch_size,
            eval_batch_size=eval_batch_size, num_workers=num_workers, seed=seed, severity=severity,
        )  # fmt: skip
        self.dataset, self.emnist_split, self.protocol = dataset, emnist_split, protocol
        self.outlier_source = outlier_source
        self.data_dir = Path(data_dir)
        self.image_shape = tuple(image_shape)
        self.class_names = SOURCES[dataset].class_names(emnist_split)
        self._select_classes(inlier_classes, outlier_classes)
        self.train_amount, self.eval_amount = self._amounts(
            contamination, outlier_ratio, eval_contamination
        )
        self.corruptions: list[str] = []
        self.severity = severity
        if outlier_source == "corruption":
            self.corruptions = check_corruptions(corruptions)
        elif corruptions is not None:
            raise ConfigError(
                "data.corruptions", corruptions, "null unless data.outlier_source=corruption"
            )
        self.val_fraction, self.seed, self.download = val_fraction, seed, download
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers = num_workers
        self.plan: dict[str, Split] = {}  # which source images each split holds, for inspection
        self.split_sizes: dict[str, dict[str, int]] = {}
        self.split_details: dict[str, dict[str, Any]] = {}

    # --- configuration checks (no data read) ----------------------------------------------
    def _select_classes(self, inlier_classes: Any, outlier_classes: Any) -> None:
        """Resolve both class lists, then check them against the outlier source and protocol."""
        names, dataset = self.class_names, self.dataset
        inliers = resolve_classes("data.inlier_classes", inlier_classes, names, dataset)
        outliers = resolve_classes("data.outlier_classes", outlier_classes, names, dataset)
        if self.outlier_source == "corruption":
            if self.protocol == "multimodal":
                raise ConfigError(
                    "data.outlier_source",
                    self.outlier_source,
                    "`classes` with data.protocol=multimodal (one class is novel)",
                )
            if outliers is not None:
                raise ConfigError(
                    "data.outlier_classes",
                    outlier_classes,
                    "null with data.outlier_source=corruption",
                )
            if inliers is None:
                raise ConfigError(
                    "data.inlier_classes",
                    None,
                    "a list of classes (the images to keep and corrupt)",
                )
            self.inlier_classes, self.outlier_classes = inliers, None
        elif self.protocol == "multimodal" and inliers is None and outliers is None:
            raise self._not_one_class("outlier", outlier_classes, None)
        else:
            self.inlier_classes, self.outlier_classes = complete_selection(
                inliers, outliers, len(names)
            )
        if self.protocol == "unimodal" and len(self.inlier_classes) != 1:
            raise self._not_one_class("inlier", inlier_classes, self.inlier_classes)
        if self.protocol == "multimodal" and len(self.outlier_classes or ()) != 1:
            raise self._not_one_class("outlier", outlier_classes, self.outlier_classes)

    def _not_one_class(self, side: str, given: Any, selected: list[int] | None) -> ConfigError:
        """RaPP's protocols fix one side to a single class: unimodal one normal class (every
        other class novel), multimodal one novel class (every other class normal). A default
        left on the other side (inlier_classes: [4]) would otherwise give a meaningless split."""
        if side == "inlier":
            other, protocol, role, rest = "outlier", "unimodal", "normal", "novel"
        else:
            other, protocol, role, rest = "inlier", "multimodal", "novel", "normal"
        if selected is None:
            got = "both are null"
        else:
            shown = ", ".join(self.class_names[c] for c in selected[:12])
            got = f"this selection makes {len(selected)} classes {role} ({shown})"
        return ConfigError(
            f"data.{side}_classes",
            given,
            f"exactly one {role} class with data.protocol={protocol}: data.{side}_classes=[k] "
            f"data.{other}_classes=null (every other class is {rest}); {got}",
        )

    def _amounts(
        self,
        contamination: float | None,
        outlier_ratio: float | None,
        eval_contamination: float | None,
    ) -> tuple[Amount, Amount]:
        """Training and evaluation outlier amounts; protocols but inductive fix the latter."""
        if contamination is not None and outlier_ratio is not None:
            raise ConfigError(
                "data.outlier_ratio",
                outlier_ratio,
                "null when data.contamination is set (set data.contamination: null)",
            )
        if contamination is None and outlier_ratio is None:
            raise ConfigError(
                "data.contamination",
                None,
                "a fraction 0 <= value < 1, or null with data.outlier_ratio set",
            )
        if contamination is not None:
            train = Amount(
                "data.contamination",
                "fraction",
                check_contamination("data.contamination", contamination),
            )
            same = Amount(
                "data.eval_contamination",
                "fraction",
                train.value,
                setting=f"null, the same as data.contamination={train.value}",
            )
        else:
            train = Amount(
                "data.outlier_ratio", "ratio", check_ratio("data.outlier_ratio", outlier_ratio)
            )
            same = train
        if self.protocol != "inductive" and eval_contamination is not None:
            raise ConfigError(
                "data.eval_contamination",
                eval_contamination,
                f"null with data.protocol={self.protocol} (the protocol fixes it)",
            )
        if self.protocol == "transductive":
            if train.is_zero:
                raise ConfigError(
                    train.key,
                    train.value,
                    "a value > 0: the transductive set is scored, so it needs outliers",
                )
            return train, train
        if self.protocol == "unimodal":
            return train, Amount("data.protocol", "ratio", 1.0, setting=self.protocol)
        if self.protocol == "multimodal":
            return train, Amount("data.protocol", "all", setting=self.protocol)
        if eval_contamination is None:
            evaluation = same
        else:
            value = check_contamination("data.eval_contamination", eval_contamination)
            evaluation = Amount("data.eval_contamination", "fraction", value)
        if evaluation.is_zero:
            raise ConfigError(
                "data.eval_contamination",
                eval_contamination if eval_contamination is not None else train.value,
                "a fraction > 0 (validation and test need outliers to be scored); "
                "with data.contamination=0 set data.eval_contamination explicitly",
            )
        return train, evaluation

    @property
    def train_contamination(self) -> float:
        """The realised share of outliers in the training split (after setup), from either key."""
        sizes = self.split_sizes["train"]
        return sizes["outliers"] / sizes["n"]

    # --- sampling -----------------------------------------------------------------------
    def _load(self) -> ImageSet:
        return SOURCES[self.dataset].load(self.data_dir, self.download, self.emnist_split)

    def setup(self, stage: str | None = None) -> None:
        """Load once and sample every split; later calls (Lightning calls it per stage) reuse it."""
        if self.splits:
            return
        images = self._load()
        if images.image_shape != self.image_shape:
            raise ConfigError(
                "data.image_shape",
                list(self.image_shape),
                f"{list(images.image_shape)} for dataset {self.dataset}",
            )
        sources = {
            "train": (images.train_images, images.train_labels),
            "test": (images.test_images, images.test_labels),
        }
        if self.protocol == "transductive":
            split = transductive_split(
                images.test_labels,
                self.inlier_classes,
                self.outlier_classes,
                self.train_amount,
                self.seed,
            )
            shared = self._materialise("test", split, *sources["test"], stream=0)
            self.splits = {"train": shared, "val": shared, "test": shared}
            self.split_details = dict.fromkeys(self.splits, self.split_details["test"])
            self.plan = dict.fromkeys(self.splits, split)
        else:
            self.plan = held_out_splits(
                images.train_labels,
                images.test_labels,
                self.inlier_classes,
                self.outlier_classes,
                self.train_amount,
                self.eval_amount,
                self.val_fraction,
                self.seed,
            )
            for stream, (name, split) in enumerate(self.plan.items()):
                self.splits[name] = self._materialise(
                    name, split, *sources[split.source], stream=stream
                )
        self.split_sizes = {
            name: {"n": len(split), "outliers": split.n_outliers}
            for name, split in self.plan.items()
        }
        log.info(
            "%s, protocol %s, inliers %s, outliers %s: %s",
            self.dataset,
            self.protocol,
            [self.class_names[c] for c in self.inlier_classes],
            self.corruptions
            if self.outlier_source == "corruption"
            else [self.class_names[c] for c in self.outlier_classes or []],
            self.split_details,
        )

    def _materialise(
        self, name: str, split: Split, images: torch.Tensor, labels: torch.Tensor, stream: int
    ) -> IndexedImages:
        """Gather the split's images once; corrupt its outliers with a generator of its own."""
        x, y = images[split.indices], labels[split.indices]
        details: dict[str, Any] = {
            "source": split.source,
            "n": len(split),
            "inliers": len(split) - split.n_outliers,
            "outliers": split.n_outliers,
        }
        if self.outlier_source == "corruption" and split.n_outliers:
            rows = torch.nonzero(split.is_outlier, as_tuple=True)[0]
            generator = torch.Generator().manual_seed(self.seed * 4 + stream + 1)
            x[rows], which = corrupt(x[rows], self.corruptions, self.severity, generator)
            details["corruptions"] = {
                c: int((which == i).sum()) for i, c in enumerate(self.corruptions)
            }
        self.split_details[name] = details
        return IndexedImages(x, split.is_outlier.long(), y)
