"""Raw image sources: each returns the whole dataset as uint8 tensors (N, H, W) with int labels."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from robustad.data.idx import read_idx
from robustad.errors import DataNotFoundError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageSet:
    """A labelled image dataset with its official train/test split, held as uint8 in memory."""

    name: str
    train_images: torch.Tensor  # (N, H, W) uint8
    train_labels: torch.Tensor  # (N,) int64
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: tuple[str, ...]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (1, *self.train_images.shape[1:])


MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def find_idx_files(
    names: dict[str, str], directories: Sequence[Path]
) -> tuple[dict[str, Path] | None, list[Path]]:
    """Return the first directory holding every file (raw or .gz) and the list of places tried."""
    tried: list[Path] = []
    for directory in directories:
        tried.append(directory)
        found: dict[str, Path] = {}
        for key, stem in names.items():
            for candidate in (directory / stem, directory / f"{stem}.gz"):
                if candidate.is_file():
                    found[key] = candidate
                    break
        if len(found) == len(names):
            return found, tried
    return None, tried


def _load_idx_split(files: dict[str, Path]) -> tuple[torch.Tensor, ...]:
    arrays = [read_idx(files[key]) for key in MNIST_FILES]
    images_train, labels_train, images_test, labels_test = arrays
    for images, labels, split in ((images_train, labels_train, "train"), (images_test, labels_test, "test")):
        if len(images) != len(labels):
            raise DataNotFoundError(
                f"{split} images ({len(images)}) and labels ({len(labels)}) differ in length "
                f"in {files[f'{split}_images'].parent}"
            )
    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)


def _torchvision_download(name: str, root: Path) -> str | None:
    """Try torchvision's downloader; return None on success, else the reason it failed."""
    import torchvision

    dataset_cls = getattr(torchvision.datasets, name)
    try:
        dataset_cls(root=str(root), train=True, download=True)
        dataset_cls(root=str(root), train=False, download=True)
    except Exception as exc:  # network errors come in many types; the message is what matters
        return f"{type(exc).__name__}: {exc}"
    return None


def load_mnist(data_dir: str | Path, download: bool = True) -> ImageSet:
    """MNIST from IDX files under `data_dir` (torchvision's `MNIST/raw` layout or flat)."""
    data_dir = Path(data_dir)
    places = [data_dir / "MNIST" / "raw", data_dir]
    files, tried = find_idx_files(MNIST_FILES, places)
    download_note = "download disabled (data.download=false)"
    if files is None and download:
        reason = _torchvision_download("MNIST", data_dir)
        download_note = f"torchvision download into {data_dir} failed: {reason}" if reason else ""
        files, tried = find_idx_files(MNIST_FILES, places)
    if files is None:
        listing = "\n".join(f"  - {p}" for p in tried)
        raise DataNotFoundError(
            "MNIST not found. Looked for the four IDX files "
            f"({', '.join(MNIST_FILES.values())}, raw or .gz) in:\n{listing}\n"
            f"  - {download_note}\n"
            "Fix: put the files in one of those folders (e.g. data.data_dir=../shared/datasets), "
            "or run offline with data=digits."
        )
    log.info("MNIST: reading %s", files["train_images"].parent)
    tr_x, tr_y, te_x, te_y = _load_idx_split(files)
    return ImageSet("mnist", tr_x, tr_y.long(), te_x, te_y.long(), tuple(str(i) for i in range(10)))


def load_digits(
    data_dir: str | Path | None = None, download: bool = False, test_fraction: float = 0.3, split_seed: int = 0
) -> ImageSet:
    """scikit-learn's bundled 8x8 digits (offline), rescaled to uint8 and split once, fixed.

    `data_dir` and `download` are accepted for a uniform loader signature; the data ships with sklearn.
    """
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(split_seed).permutation(len(labels))
    n_test = round(len(labels) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    as_tensor = torch.from_numpy
    return ImageSet(
        "digits",
        as_tensor(images[train]),
        as_tensor(labels[train]),
        as_tensor(images[test]),
        as_tensor(labels[test]),
        tuple(str(i) for i in range(10)),
    )


SOURCES: dict[str, Callable[..., ImageSet]] = {"mnist": load_mnist, "digits": load_digits}
