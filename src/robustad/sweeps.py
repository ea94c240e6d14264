"""Multirun support: failed jobs that do not stop a sweep, and resume.

A job that fails inside a sweep is recorded (its own `metrics.json` already says why) and the
sweep goes on; `SweepStatusCallback` then makes the sweep's exit status non-zero. Failures are
found two ways, so that every launcher is covered: jobs run in this process (Hydra's basic
launcher) are remembered in memory, and jobs run elsewhere (joblib workers, SLURM) are found by
reading the job folders of this sweep afterwards.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from robustad.errors import RobustADError

log = logging.getLogger(__name__)

# Jobs of this sweep are those whose .hydra files are newer than the sweep's start, less this
# margin for coarse file timestamps.
MTIME_MARGIN_S = 2.0

_failed_jobs: dict[str, str] = {}
# Jobs whose folder already held a run (a sweep re-run without resume=true): left untouched.
_occupied_jobs: set[str] = set()


def is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def record_occupied(output_dir: str | Path) -> None:
    """Remember a job refused because its folder holds a run: not a failure, nothing ran."""
    _occupied_jobs.add(str(Path(output_dir).resolve()))
    log.info("left as it is: %s already holds a run", output_dir)


def record_failure(output_dir: str | Path, exc: BaseException) -> None:
    """Remember a failed job and say so in one line; the full traceback goes to the job's log."""
    reason = f"{type(exc).__name__}: {exc}"
    _failed_jobs[str(Path(output_dir).resolve())] = reason
    if not isinstance(exc, RobustADError):
        log.error("job failed", exc_info=exc)
    print(f"[robustad] job failed, the sweep goes on: {reason}  ({output_dir})", file=sys.stderr)


def read_metrics(path: Path) -> dict[str, Any] | None:
    """A metrics.json's content, or None when it cannot be read (a crashed writer, a bad copy)."""
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None


def archive_previous_attempt(output_dir: Path, status: str) -> Path:
    """Rename an unfinished run's metrics.json, config and CSV logs so that a retry keeps them.

    `metrics.json` -> `metrics.<status>-<n>.json` (and `config_resolved.<status>-<n>.yaml`,
    `csv.<status>-<n>/`: Lightning's CSV logger would empty `csv/`) with the first free n; the
    report only reads files named exactly metrics.json. TensorBoard appends, so it stays.
    """
    tag = "".join(ch for ch in status if ch.isalnum()) or "unreadable"
    n = 1
    while list(output_dir.glob(f"*.{tag}-{n}.*")):
        n += 1
    archived = output_dir / f"metrics.{tag}-{n}.json"
    (output_dir / "metrics.json").rename(archived)
    config = output_dir / "config_resolved.yaml"
    if config.exists():
        config.rename(output_dir / f"config_resolved.{tag}-{n}.yaml")
    csv_logs = output_dir / "csv"
    if csv_logs.is_dir():
        csv_logs.rename(output_dir / f"csv.{tag}-{n}")
    return archived


def failed_jobs_in(sweep_dir: Path, since: float) -> dict[str, str]:
    """Job folders of a sweep started after `since` whose metrics.json is missing or not done."""
    failures: dict[str, str] = {}
    for marker in sweep_dir.rglob(".hydra/overrides.yaml"):
        if marker.stat().st_mtime < since - MTIME_MARGIN_S:
            continue
        job_dir = marker.parent.parent
        metrics_path = job_dir / "metrics.json"
        if not metrics_path.exists():
            failures[str(job_dir.resolve())] = "no metrics.json (the job stopped before writing it)"
            continue
        metrics = read_metrics(metrics_path)
        if metrics is None:
            failures[str(job_dir.resolve())] = "metrics.json cannot be read"
        elif metrics.get("status") != "done":
            failures[str(job_dir.resolve())] = str(metrics.get("error", metrics.get("status")))
    return failures


class SweepStatusCallback(Callback):
    """Ends a multirun with exit status 1, and a list of the failed jobs, if any job failed."""

    def __init__(self) -> None:
        self.started = time.time()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time()
        _failed_jobs.clear()
        _occupied_jobs.clear()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        failures = dict(_failed_jobs)
        failures.update(failed_jobs_in(Path(config.hydra.sweep.dir), self.started))
        for job_dir in _occupied_jobs:
            failures.pop(job_dir, None)
        if _occupied_jobs:
            print(
                f"[robustad] {len(_occupied_jobs)} job folder(s) of this sweep already hold runs "
                "and were left as they are. To skip finished runs and continue unfinished ones, "
                "run the same command with resume=true (and hydra.sweep.dir=<this sweep>).",
                file=sys.stderr,
            )
        if not failures:
            if _occupied_jobs:
                sys.exit(1)
            return
        print(f"[robustad] {len(failures)} job(s) of this sweep failed:", file=sys.stderr)
        for job_dir, reason in sorted(failures.items()):
            print(f"[robustad]   {job_dir}: {reason}", file=sys.stderr)
        print(
            "[robustad] re-run the same command with resume=true and hydra.sweep.dir=<this sweep> "
            "to retry only these.",
            file=sys.stderr,
        )
        sys.exit(1)
