"""scripts/results/snapshot_rules.py: label-free rules over per-epoch checkpoints of real runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from robustad.train import train

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "results" / "snapshot_rules.py"


@pytest.fixture(scope="module")
def snapshot_rules():
    spec = importlib.util.spec_from_file_location("snapshot_rules", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tail_gap_grows_with_the_separation_of_the_top_share(snapshot_rules) -> None:
    bulk = np.random.default_rng(0).normal(size=950)
    near = np.concatenate([bulk, np.full(50, 3.0)])
    far = np.concatenate([bulk, np.full(50, 30.0)])
    assert snapshot_rules.tail_gap(far, 0.05) > 5 * snapshot_rules.tail_gap(near, 0.05)


def test_last_epoch_rule_gives_back_the_runs_own_validation_auroc(
    snapshot_rules, make_cfg, tmp_path: Path, capsys
) -> None:
    cfg = make_cfg(
        [
            "data=digits",
            "trainer=cpu",
            "trainer.max_epochs=3",
            "callbacks.model_checkpoint.save_top_k=-1",
        ],
        tmp_path / "sweep" / "0",
    )
    metrics = train(cfg)
    assert snapshot_rules.main([str(tmp_path / "sweep")]) == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines()[2:]]
    by_rule = {row[2]: row for row in rows}
    assert set(by_rule) == {
        "last",
        "mean of last 3",
        "mean of last 5",
        "mean of last 10",
        "mean of all",
        "stop at widest gap",
    }
    assert by_rule["last"][0] == "| digits" and by_rule["last"][3] == "1"
    assert float(by_rule["last"][4]) == pytest.approx(metrics["val/auroc"], abs=5e-4)
