"""Users' own images: a folder DataModule trains, tests and scores like the benchmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_scoring import compose_cfg

from robustad.data.sources import load_digits
from robustad.errors import ConfigError
from robustad.score import main as score_main
from robustad.train import train


def write_pngs(folder: Path, images: np.ndarray) -> None:
    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:04d}.png")


@pytest.fixture(scope="module")
def image_folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/: zeros with 10 % other digits (no labels); test/inliers, test/outliers."""
    root = tmp_path_factory.mktemp("folders")
    digits = load_digits()
    x, y = digits.train_images.numpy(), digits.train_labels.numpy()
    zeros, others = x[y == 0], x[y != 0]
    write_pngs(root / "train", np.concatenate([zeros, others[: len(zeros) // 9]]))
    tx, ty = digits.test_images.numpy(), digits.test_labels.numpy()
    write_pngs(root / "test" / "inliers", tx[ty == 0])
    write_pngs(root / "test" / "outliers", tx[ty != 0][:20])
    return root


def folder_overrides(root: Path, *extra: str) -> list[str]:
    return [
        "data=folder",
        f"data.train_dir={root / 'train'}",
        f"data.test_dir={root / 'test'}",
        "data.image_shape=[1,8,8]",
        "model=pca",
        "model.net.rank=8",
        "trainer=cpu",
        "logger=csv",
        *extra,
    ]


def test_train_test_and_score_a_folder(image_folders: Path, tmp_path: Path) -> None:
    metrics = train(compose_cfg("train", folder_overrides(image_folders), tmp_path / "run"))
    assert metrics["status"] == "done"
    assert metrics["split_sizes"]["test"] == {"n": 48 + 20, "outliers": 20}  # 48 test zeros
    assert metrics["test/auroc"] > 0.8
    assert metrics["test/threshold_method"] == "contamination"
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    out = tmp_path / "scores.csv"
    args = ["--ckpt", str(ckpt), "--input", str(image_folders / "test" / "outliers")]
    assert score_main([*args, "--output", str(out), "--device", "cpu"]) == 0
    assert len(out.read_text().splitlines()) == 1 + 20


@pytest.mark.parametrize("model", ["pca", "ae"])
def test_a_folder_without_test_images_trains(
    image_folders: Path, tmp_path: Path, model: str
) -> None:
    """Unlabelled validation: no val/auroc, so no best checkpoint by it; last.ckpt is kept."""
    overrides = [o for o in folder_overrides(image_folders) if "test_dir" not in o]
    if model == "ae":
        overrides = [o for o in overrides if not o.startswith("model")]
        overrides += ["model=ae", "model.net.hidden_dims=[16]", "trainer.max_epochs=2"]
    metrics = train(compose_cfg("train", overrides, tmp_path / "run"))
    assert metrics["status"] == "done" and "test/auroc" not in metrics
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize(
    ("override", "key", "message"),
    [
        ("data.image_shape=[1,28,28]", "data.image_shape", r"\[1, 8, 8\]"),
        ("data.train_dir=null", "data.train_dir", "folder"),
        ("data.contamination=0.7", "data.contamination", "0.5"),
    ],
)
def test_bad_folder_settings_name_the_key(
    image_folders: Path, tmp_path: Path, override: str, key: str, message: str
) -> None:
    cfg = compose_cfg("train", folder_overrides(image_folders, override), tmp_path / "run")
    with pytest.raises(ConfigError, match=rf"`{key}`.*{message}"):
        train(cfg)
