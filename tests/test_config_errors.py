"""Bad config values fail before training, naming the key, the value and what is allowed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.utils import instantiate

from robustad.errors import ConfigError, DataNotFoundError
from robustad.train import train

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        (["model=rsrae", "model.net.d=128", "model.net.D=128"], r"model\.net\.d.*128.*0 < d < D"),
        (["data.contamination=1.0"], r"data\.contamination.*1\.0.*0 <= value < 1"),
        (["data.contamination=-0.1"], r"data\.contamination.*-0\.1"),
        (["data.inlier_classes=[12]"], r"data\.inlier_classes.*12.*class ids 0\.\.9"),
        (["data.outlier_classes=[4]"], r"data\.outlier_classes.*disjoint"),
        (
            ["model/score=l2_cosine_smooth1", "model.score.smoothing=-1"],
            r"model\.score\.smoothing.*-1.*sigma in pixels",
        ),
        (
            ["data.contamination=0.9"],
            r"data\.contamination.*training outliers requested.*at most \d+",
        ),
    ],
)
def test_bad_values_fail_before_training(make_cfg, overrides: list[str], pattern: str) -> None:
    cfg = make_cfg(["data=digits", "trainer=cpu", "debug=fdr", *overrides])
    with pytest.raises(ConfigError, match=pattern):
        train(cfg)
    out = Path(cfg.paths.output_dir)
    written = json.loads((out / "metrics.json").read_text())
    assert written["status"] == "failed" and "ConfigError" in written["error"]
    assert not (out / "checkpoints").exists()


def test_missing_mnist_lists_places_and_fix(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(["data=mnist", f"data.data_dir={tmp_path / 'nowhere'}", "data.download=false"])
    dm = instantiate(cfg.data)
    with pytest.raises(DataNotFoundError) as info:
        dm.setup("fit")
    message = str(info.value)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message and "data=digits" in message


def test_cli_prints_one_clear_line_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "train.py",
            "data=digits",
            "data.contamination=2",
            f"hydra.run.dir={tmp_path}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "error: invalid value for `data.contamination`: 2" in result.stderr
    assert "Traceback" not in result.stderr
