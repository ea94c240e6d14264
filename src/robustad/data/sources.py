"""Raw image sources: each returns the whole dataset as uint8 tensors (N, H, W) with int labels.

IDX datasets (MNIST, Fashion-MNIST, EMNIST) are looked for, in order, under `data_dir`, in the
system dataset folder (`/usr/share/datasets/<name>/`, where Debian's `dataset-fashion-mnist`
installs), then fetched with torchvision's downloader when `download` is true.
"""

from __future__ import annotations

import logging
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from robustad.data.idx import read_idx
from robustad.errors import CorruptDataError, DataNotFoundError

log = logging.getLogger(__name__)

# Debian's dataset packages install here; tests point it at an empty folder.
SYSTEM_DATASET_DIR = Path("/usr/share/datasets")


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

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

_DIGITS = tuple(string.digits)
# Label order of the EMNIST files (as torchvision lists them); letters keeps the files' ids 1..26.
EMNIST_CLASSES: dict[str, tuple[str, ...]] = {
    "byclass": _DIGITS + tuple(string.ascii_uppercase) + tuple(string.ascii_lowercase),
    "bymerge": _DIGITS + tuple(string.ascii_uppercase) + tuple("abdefghnqrt"),
    "balanced": _DIGITS + tuple(string.ascii_uppercase) + tuple("abdefghnqrt"),
    "letters": ("N/A", *string.ascii_lowercase),
    "digits": _DIGITS,
    "mnist": _DIGITS,
}
EMNIST_SPLITS = tuple(EMNIST_CLASSES)


def emnist_files(split: str) -> dict[str, str]:
    return {
        f"{part}_{kind}": f"emnist-{split}-{part}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
        for part in ("train", "test")
        for kind in ("images", "labels")
    }


@dataclass(frozen=True)
class IdxLayout:
    """Where one IDX dataset's files may live and how torchvision fetches them."""

    title: str
    files: dict[str, str]
    subfolders: tuple[str, ...]  # under data_dir; "." is data_dir itself
    system_name: str  # SYSTEM_DATASET_DIR / system_name
    torchvision_name: str
    torchvision_kwargs: dict[str, str]
    how_to_supply: str  # the first fix offered when no files are found


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


def _read_split(files: dict[str, Path]) -> tuple[torch.Tensor, ...]:
    """Read train/test images and labels; shapes are checked so a mismatch names the file."""
    out: list[torch.Tensor] = []
    for part in ("train", "test"):
        images, labels = read_idx(files[f"{part}_images"]), read_idx(files[f"{part}_labels"])
        if images.ndim != 3 or images.dtype != np.uint8:
            raise CorruptDataError(
                f"{files[f'{part}_images']}: expected uint8 images (N, H, W), "
                f"got {images.dtype} {images.shape}"
            )
        if labels.ndim != 1:
            raise CorruptDataError(
                f"{files[f'{part}_labels']}: labels must be one number per image (1-D); "
                f"found an array of shape {labels.shape}"
            )
        if len(images) != len(labels):
            raise CorruptDataError(
                f"{files[f'{part}_labels']}: {labels.shape[0]} labels for {len(images)} images "
                f"in {files[f'{part}_images']}"
            )
        out += [
            torch.from_numpy(np.ascontiguousarray(images)),
            torch.from_numpy(labels.astype(np.int64)),
        ]
    return tuple(out)


def _torchvision_download(name: str, root: Path, **kwargs: str) -> str | None:
    """Try torchvision's downloader; return None on success, else the reason it failed."""
    import torchvision

    dataset_cls = getattr(torchvision.datasets, name)
    new_folders = _missing_folders(root / name / "raw")
    try:
        dataset_cls(root=str(root), train=True, download=True, **kwargs)
        dataset_cls(root=str(root), train=False, download=True, **kwargs)
    except Exception as exc:  # network errors come in many types; the message is what matters
        # torchvision makes <root>/<name>/raw before it fails: remove what this attempt made,
        # deepest first, when it is still empty (a partial download is kept for inspection).
        for folder in new_folders:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        return f"{type(exc).__name__}: {exc}"
    return None


def _missing_folders(path: Path) -> list[Path]:
    """`path` and those of its ancestors that do not exist yet, deepest first."""
    missing: list[Path] = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def locate_idx(layout: IdxLayout, data_dir: Path, download: bool) -> dict[str, Path]:
    """Search data_dir, then the system folder, then download; one error lists every place tried."""
    places = [data_dir / sub if sub != "." else data_dir for sub in layout.subfolders]
    places.append(SYSTEM_DATASET_DIR / layout.system_name)
    files, tried = find_idx_files(layout.files, places)
    download_note = "download disabled (data.download=false)"
    network = "set data.download=true on a machine with network access"
    if files is None and download:
        reason = _torchvision_download(
            layout.torchvision_name, data_dir, **layout.torchvision_kwargs
        )
        download_note = f"torchvision download into {data_dir} failed: {reason}"
        network = "run once where the download works (it fetches into data.data_dir)"
        if reason is None:
            files, _ = find_idx_files(layout.files, places)
            download_note = f"torchvision download into {data_dir} left no readable files"
    if files is None:
        listing = "\n".join(f"  - {p}" for p in tried)
        # Every place above was searched: the fix names what to put where, not those paths.
        raise DataNotFoundError(
            f"{layout.title} not found. Looked for the four IDX files "
            f"({', '.join(layout.files.values())}, raw or .gz) in:\n{listing}\n"
            f"  - {download_note}\n"
            f"Fix: {layout.how_to_supply}; or {network}; or try a run offline with data=digits "
            "(scikit-learn's bundled 8x8 digits)."
        )
    log.info("%s: reading %s", layout.title, files["train_images"].parent)
    return files


MNIST_LAYOUT = IdxLayout(
    title="MNIST",
    files=MNIST_FILES,
    subfolders=("MNIST/raw", "mnist", "."),
    system_name="mnist",
    torchvision_name="MNIST",
    torchvision_kwargs={},
    how_to_supply="put the four files in a folder named MNIST/raw and set "
    "data.data_dir=<the folder holding MNIST/raw>",
)
# No flat data_dir: Fashion-MNIST's file names are MNIST's, so a bare folder would be ambiguous.
FASHION_MNIST_LAYOUT = IdxLayout(
    title="Fashion-MNIST",
    files=MNIST_FILES,
    subfolders=("FashionMNIST/raw", "fashion-mnist", "fashion_mnist"),
    system_name="fashion-mnist",
    torchvision_name="FashionMNIST",
    torchvision_kwargs={},
    how_to_supply="`apt-get install dataset-fashion-mnist` (Debian; found without configuration), "
    "or put the four files in a folder named FashionMNIST/raw and set "
    "data.data_dir=<the folder holding FashionMNIST/raw>",
)


def emnist_layout(split: str) -> IdxLayout:
    return IdxLayout(
        title=f"EMNIST ({split})",
        files=emnist_files(split),
        subfolders=("EMNIST/raw", "emnist", "."),
        system_name="emnist",
        torchvision_name="EMNIST",
        torchvision_kwargs={"split": split},
        how_to_supply=f"unpack EMNIST's gzip.zip (about 560 MB; emnist-{split}-...-ubyte.gz) "
        "into a folder named emnist and set data.data_dir=<the folder holding emnist>",
    )


def _load_layout(name: str, layout: IdxLayout, data_dir: str | Path, download: bool) -> ImageSet:
    tr_x, tr_y, te_x, te_y = _read_split(locate_idx(layout, Path(data_dir), download))
    return ImageSet(name, tr_x, tr_y, te_x, te_y, ())


def load_mnist(data_dir: str | Path, download: bool = True) -> ImageSet:
    """MNIST from IDX files (torchvision's `MNIST/raw` layout, `mnist/` or flat in data_dir)."""
    raw = _load_layout("mnist", MNIST_LAYOUT, data_dir, download)
    return _with_classes(raw, _DIGITS)


def load_fashion_mnist(data_dir: str | Path, download: bool = True) -> ImageSet:
    raw = _load_layout("fashion_mnist", FASHION_MNIST_LAYOUT, data_dir, download)
    return _with_classes(raw, FASHION_MNIST_CLASSES)


def load_emnist(data_dir: str | Path, download: bool = True, split: str = "byclass") -> ImageSet:
    """EMNIST's files store each image transposed; they are turned upright here, once."""
    raw = _load_layout("emnist", emnist_layout(split), data_dir, download)
    return ImageSet(
        "emnist",
        raw.train_images.transpose(1, 2).contiguous(),
        raw.train_labels,
        raw.test_images.transpose(1, 2).contiguous(),
        raw.test_labels,
        EMNIST_CLASSES[split],
    )


def _with_classes(raw: ImageSet, class_names: tuple[str, ...]) -> ImageSet:
    return ImageSet(
        raw.name, raw.train_images, raw.train_labels, raw.test_images, raw.test_labels, class_names
    )


def load_digits(
    data_dir: str | Path | None = None,
    download: bool = False,
    test_fraction: float = 0.3,
    split_seed: int = 0,
) -> ImageSet:
    """scikit-learn's bundled 8x8 digits (offline), rescaled to uint8 and split once, fixed.

    `data_dir` and `download` are accepted for a uniform signature; the data ships with sklearn.
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
        _DIGITS,
    )


@dataclass(frozen=True)
class Source:
    """A dataset the DataModule can load: its class names are known before any file is read."""

    load: Callable[[Path, bool, str], ImageSet]  # (data_dir, download, emnist_split)
    class_names: Callable[[str], tuple[str, ...]]  # (emnist_split) -> names by class id


SOURCES: dict[str, Source] = {
    "mnist": Source(lambda d, dl, _: load_mnist(d, dl), lambda _: _DIGITS),
    "fashion_mnist": Source(
        lambda d, dl, _: load_fashion_mnist(d, dl), lambda _: FASHION_MNIST_CLASSES
    ),
    "emnist": Source(load_emnist, EMNIST_CLASSES.__getitem__),
    "digits": Source(lambda d, dl, _: load_digits(d, dl), lambda _: _DIGITS),
}
