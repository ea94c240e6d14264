"""`robustad-report`: grouping, mean and std over seeds, failed runs, moved folders, the plot."""

from __future__ import annotations

import csv
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from robustad.errors import RobustADError
from robustad.report import main, report

REPO = Path(__file__).resolve().parents[1]


def write_job(
    root: Path,
    name: str,
    *,
    model: str = "rsrae",
    seed: int = 0,
    contamination: float | None = 0.1,
    outlier_ratio: float | None = None,
    inlier: list[int] | None = None,
    auroc: float = 0.9,
    ap: float = 0.5,
    status: str = "done",
    lambda1: float = 0.1,
    score: str = "l2",
) -> Path:
    """A job folder as train() and Hydra leave it: metrics.json, config_resolved.yaml, .hydra/."""
    job = root / name
    (job / ".hydra").mkdir(parents=True)
    config: dict[str, Any] = {
        "seed": seed,
        "paths": {"output_dir": str(job)},
        "trainer": {"default_root_dir": str(job)},
        "data": {
            "dataset": "digits",
            "protocol": "inductive",
            "inlier_classes": inlier or [0],
            "outlier_classes": None,
            "contamination": contamination,
            "outlier_ratio": outlier_ratio,
        },
        "model": {"_target_": "robustad.models.RSRAEModule", "score": score, "lambda1": lambda1},
    }
    (job / "config_resolved.yaml").write_text(yaml.safe_dump(config))
    # Hydra's copy says something else: a later command may rewrite it; the report ignores it.
    (job / ".hydra" / "hydra.yaml").write_text(
        yaml.safe_dump({"hydra": {"runtime": {"choices": {"model": "vae", "data": "digits"}}}})
    )
    metrics: dict[str, Any] = {"status": status, "model": model, "seed": seed}
    metrics["output_dir"] = "/somewhere/else/entirely"  # absolute paths in the file are not used
    if status == "done":
        metrics.update(
            {"test/auroc": auroc, "test/ap": ap, "val/auroc": auroc - 0.1, "history": []}
        )
    else:
        metrics["error"] = "ConfigError: invalid value for `data.inlier_classes`: [42]"
    (job / "metrics.json").write_text(json.dumps(metrics))
    return job


def read_summary(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    for i, (seed, auroc) in enumerate([(0, 0.80), (1, 0.90), (2, 0.85)]):
        write_job(root, f"{i}_c0.1_s{seed}", seed=seed, auroc=auroc)
    write_job(root, "3_c0.3_s0", contamination=0.3, auroc=0.7)
    write_job(root, "4_ae_c0.1", model="ae", auroc=0.6)
    write_job(root, "5_bad", inlier=[42], status="failed")
    return root


def test_groups_mean_and_std_over_seeds(sweep: Path, tmp_path: Path) -> None:
    written = report(sweep, out=tmp_path / "out")
    rows = read_summary(written["summary_csv"])
    by_key = {(r["model"], r["contamination"]): r for r in rows}
    assert set(by_key) == {("rsrae", "0.1"), ("rsrae", "0.3"), ("ae", "0.1")}
    pooled = by_key[("rsrae", "0.1")]
    assert pooled["n"] == "3" and pooled["seeds"] == "0 1 2"
    assert float(pooled["test/auroc_mean"]) == pytest.approx(0.85)
    assert float(pooled["test/auroc_std"]) == pytest.approx(statistics.stdev([0.8, 0.9, 0.85]))
    assert float(pooled["val/auroc_mean"]) == pytest.approx(0.75)
    single = by_key[("ae", "0.1")]
    assert single["n"] == "1" and single["test/auroc_std"] == ""
    # Failed runs never enter a mean; they are listed apart with their error.
    runs = read_summary(written["runs_csv"])
    assert [r["status"] for r in runs].count("failed") == 1
    text = written["markdown"].read_text()
    assert "## Failed runs (1)" in text and "5_bad" in text and "[42]" in text
    assert "0.850 ± 0.050" in text


def test_report_of_a_moved_folder_is_identical(sweep: Path, tmp_path: Path) -> None:
    first = report(sweep, out=tmp_path / "out1")
    moved = tmp_path / "elsewhere" / "copied_sweep"
    shutil.copytree(sweep, moved)
    shutil.rmtree(sweep)
    second = report(moved, out=tmp_path / "out2")
    for key in ("summary_csv", "runs_csv"):
        assert first[key].read_text() == second[key].read_text()


def test_archived_attempts_are_not_counted(sweep: Path, tmp_path: Path) -> None:
    job = sweep / "5_bad"
    (job / "metrics.json").rename(job / "metrics.failed-1.json")
    write_job(sweep, "6_retry", inlier=[1], auroc=0.95)
    text = report(sweep, out=tmp_path / "out")["markdown"].read_text()
    assert "Failed runs" not in text and "0.950" in text


def test_pooled_runs_that_differ_are_flagged_and_group_by_separates_them(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    write_job(root, "a", lambda1=0.1, auroc=0.9)
    write_job(root, "b", lambda1=1.0, auroc=0.5)
    text = report(root, out=tmp_path / "out1")["markdown"].read_text()
    assert "model.lambda1" in text and "--group-by" in text
    written = report(root, out=tmp_path / "out2", extra_keys=["model.lambda1"])
    rows = read_summary(written["summary_csv"])
    assert sorted(r["model.lambda1"] for r in rows) == ["0.1", "1.0"]
    assert "differ in" not in written["markdown"].read_text()


def test_outlier_ratio_runs_are_grouped_by_ratio(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    for ratio in (0.1, 0.5):
        write_job(root, f"r{ratio}", contamination=None, outlier_ratio=ratio)
    rows = read_summary(report(root, out=tmp_path / "out")["summary_csv"])
    assert sorted(r["outlier_ratio"] for r in rows) == ["0.1", "0.5"]
    assert {r["contamination"] for r in rows} == {""}


def test_plot_writes_a_png(sweep: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    written = report(sweep, out=tmp_path / "out", make_plot=True)
    assert written["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_still_writes_the_tables(
    sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert main([str(sweep), "--out", str(tmp_path / "out"), "--plot"]) == 0
    assert (tmp_path / "out" / "summary.md").is_file()
    assert not (tmp_path / "out" / "auroc_ap.png").exists()
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "matplotlib" in warning


def test_class_means_and_published_numbers(sweep: Path, tmp_path: Path) -> None:
    published = tmp_path / "published.yaml"
    published.write_text(
        yaml.safe_dump([{"where": {"model": "ae"}, "value": 0.9, "source": "paper"}])
    )
    written = report(
        sweep, out=tmp_path / "out", average_over=["inlier_classes"], published=published
    )
    text = written["markdown"].read_text()
    assert "Means over inlier_classes" in text and "| published |" in text
    assert "0.9 (paper)" in text
    with pytest.raises(RobustADError, match="not a grouping key"):
        report(sweep, out=tmp_path / "o2", average_over=["colour"])


def test_cli_prints_the_table_and_rejects_an_empty_folder(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(sweep), "--metrics", "test/auroc"]) == 0
    out = capsys.readouterr().out
    assert "| test/auroc |" in out and (sweep / "report" / "summary.csv").is_file()
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 1
    assert "no metrics.json" in capsys.readouterr().err


def test_module_entry_point(sweep: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "robustad",
            "report",
            str(sweep),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "o" / "summary.md").is_file()


def test_versus_counts_the_splits_won_against_a_reference_model(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    # Class 0: rsrae 0.90 vs pca 0.80 (won); class 1: 0.70 vs 0.75 (lost); class 2: a tie.
    for cls, ours, theirs in [(0, 0.90, 0.80), (1, 0.70, 0.75), (2, 0.85, 0.85)]:
        write_job(root, f"rsrae_{cls}", inlier=[cls], auroc=ours)
        write_job(root, f"pca_{cls}", model="pca", inlier=[cls], auroc=theirs)
    # Another contamination is another split: never compared with the pca runs above.
    write_job(root, "rsrae_c0.3", contamination=0.3, auroc=0.99)
    written = report(root, out=tmp_path / "out", average_over=["inlier_classes"], versus="pca")
    text = written["markdown"].read_text()
    assert "| test/auroc > pca (splits, mean diff) |" in text
    lines = text.splitlines()
    ours = next(line for line in lines if line.startswith("| rsrae") and "| 0.1 |" in line)
    assert ours.endswith("| 1 / 3 (+0.017) |")
    other_split = next(line for line in lines if "| 0.3 |" in line)
    assert other_split.endswith("|  |")  # no pca run on that split: nothing to compare
    assert next(line for line in lines if line.startswith("| pca")).endswith("|  |")
    with pytest.raises(RobustADError, match="--versus iforest: no finished iforest run"):
        report(root, out=tmp_path / "o2", versus="iforest")


def test_versus_refuses_two_reference_settings_on_one_split(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    write_job(root, "rsrae", auroc=0.9)
    write_job(root, "pca_l2", model="pca", auroc=0.8)
    write_job(root, "pca_cosine", model="pca", score="cosine", auroc=0.85)
    with pytest.raises(RobustADError, match=r"--versus pca: 2 different pca settings.*=cosine"):
        report(root, out=tmp_path / "out", versus="pca")
