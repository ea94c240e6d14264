"""Shared fixtures: small IDX datasets written on the fly and Hydra configs composed in-process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from robustad.data import ContaminatedDataModule
from robustad.data.idx import write_idx
from robustad.data.sources import MNIST_FILES

CONFIG_DIR = Path(__file__).resolve().parents[1] / "src" / "robustad" / "configs"


def synthetic_images(labels: np.ndarray, size: int = 28, seed: int = 0) -> np.ndarray:
    """Class-dependent uint8 images: a bright bar whose position encodes the class, plus noise."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, size=(len(labels), size, size), dtype=np.uint8)
    for i, label in enumerate(labels):
        row = 2 + (int(label) * (size - 4)) // 10
        images[i, row : row + 2, 2 : size - 2] = 255
    return images


def write_mnist_like(
    root: Path, n_train_per_class: int = 30, n_test_per_class: int = 12, gz: bool = True
) -> Path:
    """Write the four MNIST IDX files under root/MNIST/raw; returns root (the data_dir)."""
    raw = root / "MNIST" / "raw"
    suffix = ".gz" if gz else ""
    for split, per_class, seed in (("train", n_train_per_class, 0), ("test", n_test_per_class, 1)):
        labels = np.repeat(np.arange(10, dtype=np.uint8), per_class)
        labels = np.random.default_rng(seed).permutation(labels)
        write_idx(
            raw / (MNIST_FILES[f"{split}_images"] + suffix), synthetic_images(labels, seed=seed)
        )
        write_idx(raw / (MNIST_FILES[f"{split}_labels"] + suffix), labels)
    return root


def make_datamodule(data_dir: Path, **overrides: Any) -> ContaminatedDataModule:
    """A set-up DataModule over synthetic MNIST files: inlier class 4, no download."""
    kwargs: dict[str, Any] = {
        "dataset": "mnist",
        "data_dir": str(data_dir),
        "download": False,
        "inlier_classes": [4],
        "seed": 0,
        **overrides,
    }
    datamodule = ContaminatedDataModule(**kwargs)
    datamodule.setup("fit")
    return datamodule


@pytest.fixture
def mnist_dir(tmp_path: Path) -> Path:
    return write_mnist_like(tmp_path / "data")


def write_idx_dataset(
    folder: Path,
    files: dict[str, str],
    classes: list[int],
    n_train_per_class: int,
    n_test_per_class: int,
    transpose: bool = False,
    gz: bool = True,
) -> dict[str, np.ndarray]:
    """Write train/test IDX files for the given label ids; returns the upright arrays written.

    `transpose` stores each image transposed, as EMNIST's files do.
    """
    written: dict[str, np.ndarray] = {}
    suffix = ".gz" if gz else ""
    for split, per_class, seed in (("train", n_train_per_class, 0), ("test", n_test_per_class, 1)):
        labels = np.repeat(np.asarray(classes, dtype=np.uint8), per_class)
        labels = np.random.default_rng(seed).permutation(labels)
        images = synthetic_images(labels % 10, seed=seed)
        stored = images.transpose(0, 2, 1) if transpose else images
        write_idx(folder / (files[f"{split}_images"] + suffix), stored)
        write_idx(folder / (files[f"{split}_labels"] + suffix), labels)
        written[f"{split}_images"], written[f"{split}_labels"] = images, labels
    return written


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny nets: thread start-up costs more than it saves, and far more on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def system_datasets(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Point the system dataset folder (/usr/share/datasets) at an empty one: hermetic tests."""
    from robustad.data import sources

    folder = tmp_path_factory.mktemp("system-datasets")
    monkeypatch.setattr(sources, "SYSTEM_DATASET_DIR", folder)
    return folder


@pytest.fixture
def fashion_dir(tmp_path: Path) -> Path:
    """Synthetic Fashion-MNIST (30 train, 12 test images per class) in torchvision's layout."""
    root = tmp_path / "data"
    write_idx_dataset(root / "FashionMNIST" / "raw", MNIST_FILES, list(range(10)), 30, 12)
    return root


@pytest.fixture
def emnist_dir(tmp_path: Path) -> Path:
    """Synthetic EMNIST byclass (62 classes) and letters (ids 1..26), stored transposed."""
    from robustad.data.sources import emnist_files

    root = tmp_path / "data"
    for split, classes in (("byclass", range(62)), ("letters", range(1, 27))):
        write_idx_dataset(root / "emnist", emnist_files(split), list(classes), 4, 2, transpose=True)
    return root


ComposeFn = Callable[..., DictConfig]


@pytest.fixture
def make_cfg(tmp_path: Path) -> ComposeFn:
    """Compose `configs/train.yaml` with overrides, outputs under tmp_path, as Hydra would."""

    def _make(overrides: list[str] | None = None, output_dir: Path | None = None) -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("train", overrides=overrides or [], return_hydra_config=True)
        out = output_dir or tmp_path / "run"
        with open_dict(cfg):
            cfg.paths.output_dir = str(out)
            cfg.paths.log_dir = str(tmp_path / "logs")
            cfg.hydra.runtime.output_dir = str(out)
            cfg.hydra.job.num = 0
        HydraConfig.instance().set_config(cfg)
        return cfg

    yield _make
    GlobalHydra.instance().clear()
