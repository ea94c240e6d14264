"""Datasets: where files are found (in order), EMNIST upright, class names, integrity errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_idx_dataset
from hydra.utils import instantiate

from robustad.data import ContaminatedDataModule, sources
from robustad.data.sources import MNIST_FILES, emnist_files, load_emnist, load_fashion_mnist
from robustad.errors import ConfigError, CorruptDataError, DataNotFoundError


def test_fashion_mnist_loads_with_its_class_names(fashion_dir: Path) -> None:
    images = load_fashion_mnist(fashion_dir, download=False)
    assert images.train_images.shape == (300, 28, 28) and images.train_images.dtype == torch.uint8
    assert images.class_names[0] == "T-shirt/top" and images.class_names[9] == "Ankle boot"
    assert images.test_labels.bincount().tolist() == [12] * 10


def test_emnist_images_come_out_upright(tmp_path: Path) -> None:
    written = write_idx_dataset(
        tmp_path / "emnist", emnist_files("digits"), list(range(10)), 3, 2, transpose=True
    )
    images = load_emnist(tmp_path, download=False, split="digits")
    assert np.array_equal(images.train_images.numpy(), written["train_images"])
    assert np.array_equal(images.test_images.numpy(), written["test_images"])
    # The synthetic images have horizontal bars (columns 2..25): upright means rows of 255.
    bright = images.train_images[0, :, 2:-2] == 255
    assert bright.all(dim=1).sum() == 2 and not bright.all(dim=0).any()


def test_emnist_class_names_are_case_sensitive_where_the_split_is(emnist_dir: Path) -> None:
    common = dict(
        dataset="emnist",
        data_dir=str(emnist_dir),
        download=False,
        contamination=0.0,
        eval_contamination=0.5,
        val_fraction=0.25,  # 4 training images per class: one of them validates
    )
    byclass = ContaminatedDataModule(**common, inlier_classes=["A", "a"])
    assert byclass.inlier_classes == [10, 36]
    byclass.setup("fit")
    assert set(byclass.splits["train"].labels[byclass.splits["train"].targets == 0].tolist()) == {
        10,
        36,
    }
    letters = ContaminatedDataModule(**common, emnist_split="letters", inlier_classes=["A"])
    assert letters.inlier_classes == [1]  # letters keeps the files' ids 1..26, 'A' folds to 'a'
    letters.setup("fit")
    assert letters.split_sizes["test"]["n"] == 2 + 2  # 2 test images of 'a' plus as many outliers


def test_emnist_class_without_images_is_a_config_error(emnist_dir: Path) -> None:
    dm = ContaminatedDataModule(
        dataset="emnist",
        emnist_split="letters",
        data_dir=str(emnist_dir),
        download=False,
        inlier_classes=["N/A"],
    )
    with pytest.raises(ConfigError, match=r"data\.inlier_classes.*no images"):
        dm.setup("fit")


def test_unknown_emnist_split_names_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match=r"data\.emnist_split.*'bycase'.*byclass.*letters"):
        ContaminatedDataModule(dataset="emnist", emnist_split="bycase")


def test_class_names_work_from_the_command_line(make_cfg, fashion_dir: Path) -> None:
    base = ["data=fashion_mnist", f"data.data_dir={fashion_dir}", "data.download=false"]
    assert instantiate(make_cfg(base).data).inlier_classes == [0]  # the default: T-shirt/top
    assert instantiate(
        make_cfg([*base, "data.inlier_classes=[Sneaker,bag]"]).data
    ).inlier_classes == [7, 8]
    dm = instantiate(
        make_cfg(
            [*base, "data.inlier_classes=[7]", "data.outlier_classes=[Sandal,Ankle boot]"]
        ).data
    )
    assert (dm.inlier_classes, dm.outlier_classes) == ([7], [5, 9])


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("data.batch_size=abc", r"data\.batch_size.*'abc'.*integer >= 1"),
        ("data.batch_size=1.5", r"data\.batch_size.*1\.5"),
        ("data.inlier_classes=abc", r"data\.inlier_classes.*'abc'.*class ids 0\.\.9"),
        ("data.severity=2.5", r"data\.severity.*2\.5"),
        ("data.download=maybe", r"data\.download.*'maybe'"),
    ],
)
def test_command_line_type_errors_name_the_key(make_cfg, override: str, pattern: str) -> None:
    from robustad.assembly import build

    with pytest.raises(ConfigError, match=pattern):
        build(make_cfg(["data=digits", override]).data)


def test_unknown_class_name_lists_the_names() -> None:
    with pytest.raises(
        ConfigError, match=r"data\.inlier_classes.*'Sneakers'.*class ids 0\.\.9.*'T-shirt/top'"
    ):
        ContaminatedDataModule(dataset="fashion_mnist", inlier_classes=["Sneakers"])


# --- where the files are looked for -----------------------------------------------------------
def _fashion_at(folder: Path, classes: list[int]) -> None:
    write_idx_dataset(folder, MNIST_FILES, classes, 2, 1)


def test_data_dir_comes_before_the_system_folder(tmp_path: Path, system_datasets: Path) -> None:
    _fashion_at(tmp_path / "fashion-mnist", [0, 1])
    _fashion_at(system_datasets / "fashion-mnist", [0, 1, 2])
    assert len(load_fashion_mnist(tmp_path, download=False).train_labels) == 4


def test_system_folder_is_used_when_data_dir_has_nothing(
    tmp_path: Path, system_datasets: Path
) -> None:
    _fashion_at(system_datasets / "fashion-mnist", [0, 1, 2])
    assert len(load_fashion_mnist(tmp_path / "empty", download=False).train_labels) == 6


def test_download_is_the_last_resort(
    tmp_path: Path, system_datasets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, Path]] = []

    def fake_download(name: str, root: Path, **kwargs: str) -> None:
        calls.append((name, root))
        _fashion_at(root / "FashionMNIST" / "raw", [3])

    monkeypatch.setattr(sources, "_torchvision_download", fake_download)
    _fashion_at(system_datasets / "fashion-mnist", [0, 1, 2])
    assert (
        len(load_fashion_mnist(tmp_path, download=True).train_labels) == 6
    )  # system folder, no download
    assert calls == []
    _fashion_at(tmp_path / "elsewhere", [0])
    monkeypatch.setattr(sources, "SYSTEM_DATASET_DIR", tmp_path / "no-system")
    assert load_fashion_mnist(tmp_path, download=True).train_labels.tolist() == [3, 3]
    assert calls == [("FashionMNIST", tmp_path)]


def test_nothing_found_lists_every_place_and_the_fix(tmp_path: Path, system_datasets: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        load_fashion_mnist(tmp_path, download=False)
    message = str(info.value)
    for place in (
        tmp_path / "FashionMNIST" / "raw",
        tmp_path / "fashion-mnist",
        system_datasets / "fashion-mnist",
    ):
        assert f"- {place}\n" in message
    assert "download disabled" in message and "apt-get install dataset-fashion-mnist" in message


def test_failed_download_reports_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        sources, "_torchvision_download", lambda name, root, **kw: "URLError: no network"
    )
    with pytest.raises(
        DataNotFoundError, match=r"(?s)EMNIST \(letters\).*emnist-letters-train-images.*no network"
    ):
        load_emnist(tmp_path, download=True, split="letters")


# --- integrity --------------------------------------------------------------------------------
def test_wrong_magic_number_names_the_file(fashion_dir: Path) -> None:
    target = fashion_dir / "FashionMNIST" / "raw" / (MNIST_FILES["train_labels"] + ".gz")
    with gzip.open(target, "wb") as handle:
        handle.write(b"\x12\x34\x08\x01" + bytes(8))
    with pytest.raises(CorruptDataError, match=rf"{target}.*bad magic number 12340801"):
        load_fashion_mnist(fashion_dir, download=False)


def test_truncated_file_names_the_file_and_lengths(fashion_dir: Path) -> None:
    target = fashion_dir / "FashionMNIST" / "raw" / (MNIST_FILES["test_images"] + ".gz")
    with gzip.open(target, "rb") as handle:
        payload = handle.read()
    with gzip.open(target, "wb") as handle:
        handle.write(payload[:-100])
    with pytest.raises(CorruptDataError, match=rf"{target}.*length mismatch.*truncated"):
        load_fashion_mnist(fashion_dir, download=False)


def test_cut_gzip_stream_is_reported_as_corrupt(fashion_dir: Path) -> None:
    target = fashion_dir / "FashionMNIST" / "raw" / (MNIST_FILES["train_images"] + ".gz")
    target.write_bytes(target.read_bytes()[:200])
    with pytest.raises(CorruptDataError, match=rf"{target}"):
        load_fashion_mnist(fashion_dir, download=False)


def test_labels_and_images_of_different_length_name_the_files(tmp_path: Path) -> None:
    folder = tmp_path / "fashion-mnist"
    _fashion_at(folder, [0, 1])
    from robustad.data.idx import write_idx

    write_idx(folder / (MNIST_FILES["train_labels"] + ".gz"), np.zeros(3, dtype=np.uint8))
    with pytest.raises(CorruptDataError, match=r"3 labels for 4 images"):
        load_fashion_mnist(tmp_path, download=False)


def test_flipped_bytes_in_a_gzip_file_are_reported_as_corrupt(tmp_path: Path) -> None:
    """A damaged deflate block (zlib.error, or a CRC / length error) names the file, once."""
    from robustad.data.idx import read_idx, write_idx

    target = write_idx(
        tmp_path / "images.gz",
        np.random.default_rng(0).integers(0, 255, (50, 28, 28), dtype=np.uint8),
    )
    blob = bytearray(target.read_bytes())
    middle = len(blob) // 2
    blob[middle : middle + 32] = bytes(b ^ 0xFF for b in blob[middle : middle + 32])
    target.write_bytes(bytes(blob))
    with pytest.raises(CorruptDataError, match=rf"{target}"):
        read_idx(target)


def test_two_dimensional_labels_say_labels_must_be_1d(tmp_path: Path) -> None:
    folder = tmp_path / "fashion-mnist"
    _fashion_at(folder, [0, 1])
    from robustad.data.idx import write_idx

    target = write_idx(
        folder / (MNIST_FILES["train_labels"] + ".gz"), np.zeros((4, 1), dtype=np.uint8)
    )
    with pytest.raises(CorruptDataError, match=rf"{target}: labels must be .*1-D.*shape \(4, 1\)"):
        load_fashion_mnist(tmp_path, download=False)


def test_data_dir_that_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "mnist.tar"
    path.write_text("x")
    with pytest.raises(ConfigError, match=rf"data\.data_dir.*{path}.*this is a file"):
        ContaminatedDataModule(data_dir=str(path))


def test_empty_data_dir_lists_where_it_looked(tmp_path: Path, system_datasets: Path) -> None:
    dm = ContaminatedDataModule(data_dir=str(tmp_path), download=False)
    with pytest.raises(DataNotFoundError, match=rf"(?s)MNIST not found.*- {tmp_path}/MNIST/raw\n"):
        dm.setup("fit")


@pytest.mark.parametrize(
    ("load", "expected"),
    [
        (sources.load_mnist, ["data.data_dir=<the folder holding MNIST/raw>", "data=digits"]),
        (
            load_fashion_mnist,
            [
                "apt-get install dataset-fashion-mnist",
                "data.data_dir=<the folder holding FashionMNIST/raw>",
            ],
        ),
        (
            load_emnist,
            ["emnist-byclass-", "data.data_dir=<the folder holding emnist>", "data=digits"],
        ),
    ],
)
def test_the_fix_never_suggests_a_place_that_was_searched(
    tmp_path: Path, system_datasets: Path, load, expected: list[str]
) -> None:
    with pytest.raises(DataNotFoundError) as info:
        load(tmp_path, download=False)
    listing, fix = str(info.value).split("Fix:")
    assert all(part in fix for part in expected)
    searched = [
        line.removeprefix("  - ") for line in listing.splitlines() if line.startswith("  - /")
    ]
    assert searched and not any(place in fix for place in searched)
    assert "data.download=true" in fix


def test_failed_download_leaves_no_empty_folders(tmp_path: Path, monkeypatch) -> None:
    """torchvision makes <root>/MNIST/raw before it fails offline: those folders are removed."""
    import torchvision

    def offline(root: str, train: bool, download: bool) -> None:
        (Path(root) / "MNIST" / "raw").mkdir(parents=True, exist_ok=True)
        raise OSError("no network")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    data_dir = tmp_path / "data"
    with pytest.raises(DataNotFoundError, match="no network") as info:
        sources.load_mnist(data_dir, download=True)
    assert not data_dir.exists()
    fix = str(info.value).split("Fix:")[1]
    assert "data.data_dir" in fix and "data=digits" in fix


def test_failed_download_removes_only_the_folders_it_made(tmp_path: Path, monkeypatch) -> None:
    """EMNIST into a data_dir that exists (kept, with its own empty EMNIST/ folder): only the
    raw/ folder the attempt made goes; the Fix then offers no download as if it could work."""
    import torchvision

    def offline(root: str, train: bool, download: bool, split: str) -> None:
        (Path(root) / "EMNIST" / "raw").mkdir(parents=True, exist_ok=True)
        raise OSError("no network")

    monkeypatch.setattr(torchvision.datasets, "EMNIST", offline)
    (tmp_path / "EMNIST").mkdir()
    with pytest.raises(DataNotFoundError, match="no network") as info:
        load_emnist(tmp_path, download=True, split="letters")
    assert [p.name for p in tmp_path.rglob("*")] == ["EMNIST"]
    assert "where the download works" in str(info.value).split("Fix:")[1]
    nested = tmp_path / "new" / "deeper"
    with pytest.raises(DataNotFoundError):
        load_emnist(nested, download=True, split="letters")
    assert not (tmp_path / "new").exists()
