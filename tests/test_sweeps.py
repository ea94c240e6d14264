"""Sweeps: job folder names, a failed job that does not stop the sweep, resume, experiment grids.

The multirun tests run `python train.py -m ...` in a subprocess on digits with a fast dev run,
exactly as a user would; the rest call the pieces in-process.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from robustad.cli import run_training
from robustad.errors import ConfigError
from robustad.report import report
from robustad.resolvers import MAX_DIRNAME, job_dirname
from robustad.sweeps import SweepStatusCallback, failed_jobs_in
from robustad.train import train

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "src" / "robustad" / "configs"
EXPERIMENTS = sorted(path.stem for path in (CONFIG_DIR / "experiment").glob("*.yaml"))
FAST = ["data=digits", "debug=fdr", "trainer=cpu"]
# Subprocess sweeps test the sweep machinery: callbacks (checkpoints, images) only cost time.
SWEEP = [*FAST, "callbacks=none"]


def multirun(tmp_path: Path, sweep_dir: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ROBUSTAD_ROOT": str(tmp_path)}
    command = [sys.executable, "train.py", "-m", *SWEEP, f"hydra.sweep.dir={sweep_dir}", *overrides]
    return subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def job_dirs(sweep_dir: Path) -> dict[str, Path]:
    return {path.name: path for path in sweep_dir.iterdir() if (path / ".hydra").is_dir()}


def status_of(job_dir: Path) -> str:
    return json.loads((job_dir / "metrics.json").read_text())["status"]


# --- job folder names --------------------------------------------------------------------------


def test_job_dirname_keeps_values_readable() -> None:
    name = job_dirname(3, "data.contamination=0.1,data.inlier_classes=[0,1],seed=2")
    assert name == "3_data.contamination=0.1,data.inlier_classes=[0,1],seed=2"
    assert job_dirname(0, "") == "0"


def test_job_dirname_escapes_paths_and_bounds_length() -> None:
    assert "/" not in job_dirname(0, "data.inlier_classes=[T-shirt/top],ckpt=/a/b.ckpt")
    long_a = job_dirname(7, "model.lambda1=" + "1" * 300)
    long_b = job_dirname(7, "model.lambda1=" + "1" * 299 + "2")
    assert len(long_a) <= MAX_DIRNAME and len(long_b) <= MAX_DIRNAME
    assert long_a != long_b and long_a.startswith("7_model.lambda1=111")


# --- real multiruns in a subprocess ------------------------------------------------------------


def test_multirun_names_jobs_by_values_and_reports_from_any_place(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    result = multirun(tmp_path, sweep_dir, "data.inlier_classes=[0],[1]", "data.contamination=0.1")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = job_dirs(sweep_dir)
    assert sorted(jobs) == [
        "0_data.contamination=0.1,data.inlier_classes=[0],data=digits",
        "1_data.contamination=0.1,data.inlier_classes=[1],data=digits",
    ]
    assert all(status_of(job) == "done" for job in jobs.values())

    written = report(sweep_dir, out=tmp_path / "report")
    with written["summary_csv"].open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["model"], r["dataset"], r["inlier_classes"], r["n"]) for r in rows] == [
        ("rsrae", "digits", "0", "1"),
        ("rsrae", "digits", "1", "1"),
    ]
    assert all(0.0 <= float(r["test/auroc_mean"]) <= 1.0 for r in rows)

    # A moved sweep folder reports the same.
    moved = tmp_path / "archive" / "sweep"
    shutil.move(str(sweep_dir), moved)
    assert report(moved, out=tmp_path / "report2")["summary_csv"].read_text() == (
        written["summary_csv"].read_text()
    )


def test_failed_job_does_not_stop_the_sweep_and_resume_keeps_its_record(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    overrides = ("data.inlier_classes=[42],[0]",)  # class 42 does not exist in digits
    result = multirun(tmp_path, sweep_dir, *overrides)
    assert result.returncode != 0
    jobs = job_dirs(sweep_dir)
    bad = jobs["0_data.inlier_classes=[42],data=digits"]
    good = jobs["1_data.inlier_classes=[0],data=digits"]  # ran after the failure
    assert status_of(good) == "done"
    failed = json.loads((bad / "metrics.json").read_text())
    assert failed["status"] == "failed" and "data.inlier_classes" in failed["error"]
    assert "1 job(s) of this sweep failed" in result.stderr and bad.name in result.stderr

    good_before = (good / "metrics.json").read_bytes()
    again = multirun(tmp_path, sweep_dir, *overrides, "resume=true")
    assert again.returncode != 0  # the bad job was retried and failed again
    assert sorted(job_dirs(sweep_dir)) == sorted(jobs)  # resume=true names no new folders
    # The finished job was skipped, not re-run: its metrics.json is byte for byte the same.
    assert (good / "metrics.json").read_bytes() == good_before
    assert "already finished; skipping it" in again.stdout + again.stderr
    archived = json.loads((bad / "metrics.failed-1.json").read_text())
    assert archived == failed
    assert (bad / "config_resolved.failed-1.yaml").is_file()
    assert status_of(bad) == "failed"


# --- resume and failure handling in-process ----------------------------------------------------


def test_resume_skips_a_finished_run(make_cfg) -> None:
    first = train(make_cfg(FAST))
    cfg = make_cfg([*FAST, "resume=true"])
    metrics_file = Path(cfg.paths.output_dir) / "metrics.json"
    before = metrics_file.read_bytes()
    again = train(cfg)
    assert again["skipped"] is True and again["test/auroc"] == first["test/auroc"]
    assert metrics_file.read_bytes() == before


def test_resume_retries_a_failed_run_and_keeps_the_old_record(make_cfg) -> None:
    cfg = make_cfg([*FAST, "resume=true"])
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True)
    old = {"status": "failed", "error": "RuntimeError: out of memory"}
    (out / "metrics.json").write_text(json.dumps(old))
    metrics = train(cfg)
    assert metrics["status"] == "done" and "skipped" not in metrics
    assert json.loads((out / "metrics.failed-1.json").read_text()) == old
    assert status_of(out) == "done"


def test_resume_must_be_a_boolean(make_cfg) -> None:
    with pytest.raises(ConfigError, match="resume"):
        train(make_cfg([*FAST, "resume=maybe"]))


def test_single_run_failure_exits_1_with_one_line(make_cfg, caplog) -> None:
    cfg = make_cfg([*FAST, "data.inlier_classes=[42]"])
    with pytest.raises(SystemExit) as exit_info:
        run_training(cfg)
    assert exit_info.value.code == 1
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].name == "robustad" and errors[0].exc_info is None
    message = errors[0].getMessage()
    assert message.startswith("error:") and "42" in message and "\n" not in message


def test_multirun_job_failure_returns_and_is_recorded(make_cfg, tmp_path: Path, capsys) -> None:
    cfg = make_cfg(
        [*FAST, "data.inlier_classes=[42]", "hydra.mode=MULTIRUN", f"hydra.sweep.dir={tmp_path}"]
    )
    callback = SweepStatusCallback()
    callback.on_multirun_start(cfg)
    assert run_training(cfg) is None
    assert "the sweep goes on" in capsys.readouterr().err
    assert status_of(Path(cfg.paths.output_dir)) == "failed"
    with pytest.raises(SystemExit) as exit_info:
        callback.on_multirun_end(cfg)
    assert exit_info.value.code == 1
    assert cfg.paths.output_dir in capsys.readouterr().err


def _fake_job(sweep_dir: Path, name: str, metrics: dict[str, Any] | None, age_s: float = 0) -> Path:
    job = sweep_dir / name
    (job / ".hydra").mkdir(parents=True)
    marker = job / ".hydra" / "overrides.yaml"
    marker.write_text("[]\n")
    if age_s:
        stamp = time.time() - age_s
        os.utime(marker, (stamp, stamp))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))
    return job


def test_failures_of_jobs_run_elsewhere_are_found_in_their_folders(tmp_path: Path) -> None:
    """Joblib or SLURM jobs run in other processes: their failures are read from the folders."""
    sweep_dir = tmp_path / "sweep"
    started = time.time()
    _fake_job(sweep_dir, "0_ok", {"status": "done"})
    failed = _fake_job(sweep_dir, "1_bad", {"status": "failed", "error": "ValueError: nope"})
    died = _fake_job(sweep_dir, "2_died", None)
    _fake_job(sweep_dir, "3_old", {"status": "failed"}, age_s=3600)  # an earlier sweep's job
    found = failed_jobs_in(sweep_dir, started)
    assert found == {
        str(failed.resolve()): "ValueError: nope",
        str(died.resolve()): "no metrics.json (the job stopped before writing it)",
    }


def test_a_sweep_without_failures_ends_normally(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    callback = SweepStatusCallback()
    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep_dir)}}})
    callback.on_multirun_start(cfg)
    _fake_job(sweep_dir, "0_ok", {"status": "done"})
    callback.on_multirun_end(cfg)  # no SystemExit


# --- experiment files ---------------------------------------------------------------------------


def _experiment_yaml(name: str) -> dict[str, Any]:
    return yaml.safe_load((CONFIG_DIR / "experiment" / f"{name}.yaml").read_text())


def _sweep_grid(params: dict[str, Any]) -> dict[str, list[str]]:
    overrides = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    return {o.key_or_group: list(o.sweep_string_iterator()) for o in overrides}


def _group_options(name: str) -> list[tuple[str, str]]:
    """(group, option) pairs an experiment uses: its defaults overrides and swept groups."""
    spec = _experiment_yaml(name)
    pairs = []
    for entry in spec.get("defaults", []):
        if isinstance(entry, dict):
            for key, option in entry.items():
                pairs.append((key.removeprefix("override ").strip("/"), option))
    for key, values in _sweep_grid(spec["hydra"]["sweeper"]["params"]).items():
        if (CONFIG_DIR / key).is_dir():
            pairs += [(key, option) for option in values]
    return pairs


def _skip_if_missing(name: str) -> None:
    options = _group_options(name)
    missing = [f"{g}={o}" for g, o in options if not (CONFIG_DIR / g / f"{o}.yaml").is_file()]
    if missing:
        pytest.skip(f"experiment {name} needs configs not written yet: {', '.join(missing)}")


EXPECTED_GRIDS = {
    "rsrae_fashion_grid": {
        "model": ["rsrae_conv", "rsrae", "ae", "cae", "pca"],
        "data.inlier_classes": [f"[{k}]" for k in range(10)],
        "data.outlier_ratio": ["0.1", "0.3", "0.5", "0.7", "0.9"],
    },
    **{
        f"rapp_{ds}_unimodal": {
            "model": ["ae", "vae"],
            "model/score": ["l2", "rapp_nap"],
            "data.inlier_classes": [f"[{k}]" for k in range(10)],
        }
        for ds in ("mnist", "fashion")
    },
    **{
        f"rapp_{ds}_multimodal": {
            "model": models,
            "model/score": ["l2", "rapp_nap"],
            "data.outlier_classes": [f"[{k}]" for k in range(10)],
        }
        for ds, models in (("mnist", ["rapp_ae", "rapp_vae"]), ("fashion", ["ae", "vae"]))
    },
}


def test_every_published_protocol_has_an_experiment_file() -> None:
    assert set(EXPECTED_GRIDS) <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_sweeps_the_published_grid(name: str) -> None:
    text = (CONFIG_DIR / "experiment" / f"{name}.yaml").read_text()
    assert text.startswith("# @package _global_")
    grid = _sweep_grid(_experiment_yaml(name)["hydra"]["sweeper"]["params"])
    assert grid.get("seed") == ["0", "1", "2"]
    for key, values in EXPECTED_GRIDS.get(name, {}).items():
        assert grid[key] == values, key


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_for_every_swept_group_option(name: str, tmp_path: Path) -> None:
    """One job per swept model: it composes, and its data module and model can be built."""
    _skip_if_missing(name)
    grid = _sweep_grid(_experiment_yaml(name)["hydra"]["sweeper"]["params"])
    group_keys = [key for key in grid if (CONFIG_DIR / key).is_dir()]
    values = [f"{k}={v[-1]}" for k, v in grid.items() if k not in group_keys]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            for key in group_keys:
                for option in grid[key]:
                    overrides = [f"experiment={name}", f"{key}={option}", *values]
                    cfg = compose("train", overrides=overrides, return_hydra_config=True)
                    with open_dict(cfg):
                        cfg.hydra.runtime.output_dir = str(tmp_path)
                    HydraConfig.instance().set_config(cfg)
                    # The constructor checks protocol, classes and amounts; it reads no files.
                    data = instantiate(cfg.data)
                    assert data.protocol == cfg.data.protocol
                    instantiate(cfg.model)
    finally:
        GlobalHydra.instance().clear()


# --- optional plugins: Optuna sweeper, joblib and SLURM launchers --------------------------------


def _compose_hydra(overrides: list[str]) -> Any:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose("train", overrides=overrides, return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


def test_optuna_search_composes() -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="extra `optuna` not installed")
    cfg = _compose_hydra(["hparams_search=rsrae_optuna"])
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert cfg.hydra.sweeper.direction == "maximize" and cfg.optimized_metric == "val/auroc"
    assert set(cfg.hydra.sweeper.params) >= {"model.lambda1", "model.lambda2"}


@pytest.mark.parametrize(
    ("launcher", "plugin", "target"),
    [
        ("local_parallel", "hydra_plugins.hydra_joblib_launcher", "JoblibLauncher"),
        ("slurm", "hydra_plugins.hydra_submitit_launcher", "SlurmLauncher"),
    ],
)
def test_launcher_configs_compose(launcher: str, plugin: str, target: str) -> None:
    pytest.importorskip(
        plugin, reason=f"the launcher plugin for hydra/launcher={launcher} is not installed"
    )
    cfg = _compose_hydra([f"hydra/launcher={launcher}"])
    assert cfg.hydra.launcher._target_.endswith(target)


@pytest.mark.slow
def test_optuna_study_in_sqlite_storage_is_continued(tmp_path: Path) -> None:
    """`storage: sqlite:///...` keeps the study; the same command again adds trials to it."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="extra `optuna` not installed")
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    command = [
        sys.executable,
        str(REPO / "train.py"),
        "-m",
        "hparams_search=rsrae_optuna",
        *FAST,
        "callbacks=none",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweeper.storage={storage}",
    ]
    for _ in range(2):
        result = subprocess.run(
            command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
        )
        assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="rsrae_optuna", storage=storage)
    assert len(study.trials) == 4


def test_sweep_rerun_without_resume_leaves_finished_jobs_and_says_how(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    assert multirun(tmp_path, sweep_dir, "seed=0,1").returncode == 0
    records = {p: p.read_bytes() for p in sweep_dir.rglob("metrics.json")}
    again = multirun(tmp_path, sweep_dir, "seed=0,1")
    assert again.returncode == 1
    assert "2 job folder(s) of this sweep already hold runs" in again.stderr
    assert "resume=true" in again.stderr and "failed" not in again.stderr
    assert {p: p.read_bytes() for p in sweep_dir.rglob("metrics.json")} == records
