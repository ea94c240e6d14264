"""The record of a run (train, eval): its folder's state, its `metrics.json`, interruptions.

A run's record is its `metrics.json`: written as `running` before any work, then `done`,
`failed` (with the error) or `interrupted`; always atomically, never leaving partial files.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from robustad.errors import RobustADError, RunFolderOccupied
from robustad.sweeps import read_metrics

log = logging.getLogger(__name__)


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write via a temporary file so a crash or a full disk never leaves a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class RunInterrupted(RobustADError):
    """Ctrl-C: Lightning turns it into SystemExit(1) after its graceful shutdown."""


@contextmanager
def recorded(metrics_path: Path, metrics: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """`metrics_path` says `running` from the start and, whatever happens inside, how it ended:
    `done`, `interrupted`, or `failed` with the reason (the exception still propagates).

    If the record itself cannot be written (disk full), the first error is the one raised.
    """
    started = time.perf_counter()
    metrics["status"] = "running"
    try:
        write_json_atomic(metrics_path, metrics)
    except OSError as exc:
        raise RobustADError(f"cannot write the run's record {metrics_path}: {exc}") from exc
    failure: BaseException | None = None
    try:
        yield metrics
        metrics["status"] = "done"
    except BaseException as exc:
        failure = exc
        interrupted = isinstance(exc, KeyboardInterrupt | RunInterrupted)
        metrics["status"] = "interrupted" if interrupted else "failed"
        metrics["error"] = "interrupted (Ctrl-C)" if interrupted else f"{type(exc).__name__}: {exc}"
        raise
    finally:
        metrics["duration_s"] = round(time.perf_counter() - started, 3)
        try:
            write_json_atomic(metrics_path, metrics)
        except OSError as write_error:
            if failure is None:
                raise RobustADError(f"cannot write {metrics_path}: {write_error}") from write_error
            log.error("cannot record the failure in %s: %s", metrics_path, write_error)


def run_folder_status(output_dir: Path) -> tuple[str | None, dict[str, Any] | None]:
    """(status, record) of the run a folder holds, or (None, None) when it holds none.

    A folder with checkpoints but no readable record (a run killed before this version wrote
    records at the start) holds an `unrecorded` run.
    """
    if output_dir.exists() and not output_dir.is_dir():
        raise RobustADError(f"the run folder {output_dir} is a file; choose another folder")
    metrics_path = output_dir / "metrics.json"
    ckpt_dir = output_dir / "checkpoints"
    has_checkpoints = ckpt_dir.is_dir() and any(ckpt_dir.iterdir())
    if not metrics_path.exists() and not has_checkpoints:
        return None, None
    previous = read_metrics(metrics_path) if metrics_path.exists() else None
    return (previous.get("status", "unknown") if previous else "unrecorded"), previous


def refuse_occupied(output_dir: Path, status: str, resume: bool | None, how: str) -> None:
    """A folder holding a run is used only to resume it (`resume=true`); `how` says how.

    `resume=None`: the task cannot resume (eval), so any run there is refused.
    """
    if resume:
        return
    if status == "done":
        advice = f" To skip finished runs and continue unfinished ones, {how}" if how else ""
        raise RunFolderOccupied(
            f"{output_dir} holds a finished run; refusing to overwrite it.{advice}"
        )
    advice = f" To continue it from its last checkpoint, {how}" if how else ""
    raise RunFolderOccupied(
        f"{output_dir} holds an unfinished run (status: {status}); refusing to overwrite it."
        f"{advice}"
    )


class RunFolderGuard(Callback):
    """Refuses a single run into a folder that holds a run before Hydra writes anything there
    (Hydra rewrites `.hydra/*.yaml` as the job starts, before the task could refuse)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_dir = Path(str(config.hydra.run.dir)).resolve()
        resume = config.get("resume") if "resume" in config else None
        how = (
            f"add resume=true (with hydra.run.dir={run_dir}), or choose another folder"
            if resume is not None
            else "choose another folder (hydra.run.dir=...)"
        )
        try:
            status, _ = run_folder_status(run_dir)
            if status is not None:
                refuse_occupied(run_dir, status, resume, how)
            try:
                run_dir.mkdir(parents=True, exist_ok=True)  # Hydra's own attempt would traceback
            except OSError as exc:
                raise RobustADError(f"cannot create the run folder {run_dir}: {exc}") from exc
        except RobustADError as exc:
            print(f"[robustad] error: {exc}", file=sys.stderr)
            sys.exit(1)


class InterruptWatch(pl.Callback):
    """Tells Ctrl-C apart from other exits: Lightning reports it here, then exits with 1."""

    def __init__(self) -> None:
        self.interrupted = False

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self.interrupted = isinstance(exception, KeyboardInterrupt)


@contextmanager
def interruptible(watch: InterruptWatch) -> Iterator[None]:
    """Turn Lightning's SystemExit after a Ctrl-C back into an interruption the record names."""
    try:
        yield
    except SystemExit as exc:
        if watch.interrupted:
            raise RunInterrupted("interrupted (Ctrl-C); files written so far are kept") from exc
        raise


def test_metrics(results: dict[str, Any], calibration: Any) -> dict[str, Any]:
    """What `trainer.test` logged, plus how the tested threshold was chosen (the detector's
    `calibration`) and the confusion matrix [[tn, fp], [fn, tp]]; shared by train and eval."""
    metrics: dict[str, Any] = {k: float(v) for k, v in results.items()}
    threshold = calibration.threshold_info()
    if threshold is not None:
        metrics["test/threshold_method"] = threshold["method"]
    if "test/tp" in metrics:
        metrics["test/confusion_matrix"] = [
            [int(metrics[f"test/{k}"]) for k in row] for row in (("tn", "fp"), ("fn", "tp"))
        ]
    return metrics
