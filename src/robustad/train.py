"""`train(cfg) -> metrics`: the whole run, callable from tests, Hydra or the console script."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from robustad.callbacks import AnomalyThreshold
from robustad.checkpoint import CHOICES_KEY
from robustad.errors import ConfigError, RobustADError
from robustad.models.health import hand_over_gradient_clipping
from robustad.sweeps import archive_previous_attempt, read_metrics

log = logging.getLogger(__name__)

TEST_CHECKPOINTS = ("last", "best")


class ValidationHistory(pl.Callback):
    """Keeps every epoch's validation metrics: AUROC often peaks early under contamination."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        row: dict[str, float] = {"epoch": trainer.current_epoch}
        row.update(
            {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        )
        self.epochs.append(row)


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write via a temporary file so a crash never leaves a half-written metrics file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


@contextmanager
def recorded(metrics_path: Path, metrics: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Whatever happens inside, `metrics_path` ends up saying so: status done, or failed with
    the reason (and the exception still propagates); the duration is recorded either way."""
    started = time.perf_counter()
    try:
        yield metrics
        metrics["status"] = "done"
    except BaseException as exc:
        metrics["status"] = "failed"
        metrics["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        metrics["duration_s"] = round(time.perf_counter() - started, 3)
        write_json_atomic(metrics_path, metrics)


@contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """Torch's intra-op thread count for one run (None: leave it), restored afterwards."""
    default = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(default)


def build(node: DictConfig, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, but our own errors come out unwrapped, with their message."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__
        while isinstance(cause, InstantiationException):
            cause = cause.__cause__
        if isinstance(cause, RobustADError):
            raise cause from None
        raise


def _instantiate_all(group: DictConfig | None) -> list[Any]:
    """Instantiate every `_target_` node of a group (callbacks, loggers); skip empty slots."""
    if not group:
        return []
    return [
        build(node)
        for node in group.values()
        if isinstance(node, DictConfig) and "_target_" in node
    ]


def _check_run_config(cfg: DictConfig) -> str:
    test_ckpt = cfg.get("test_ckpt", "last")
    if test_ckpt not in TEST_CHECKPOINTS:
        raise ConfigError("test_ckpt", test_ckpt, f"one of {list(TEST_CHECKPOINTS)}")
    seed = cfg.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError("seed", seed, "an integer or null")
    return test_ckpt


def _cpu_threads(cfg: DictConfig) -> int | None:
    threads = cfg.get("cpu_threads")
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise ConfigError("cpu_threads", threads, "null (torch's default) or an integer >= 1")
    return threads


def _resume_flag(cfg: DictConfig) -> bool:
    resume = cfg.get("resume", False)
    if not isinstance(resume, bool):
        raise ConfigError("resume", resume, "true or false")
    return resume


def _previous_run(resume: bool, output_dir: Path) -> dict[str, Any] | None:
    """With `resume=true`, a finished run's metrics (the job is skipped), else None after keeping
    the unfinished run's files under another name. Without it, refuse: nothing is overwritten."""
    if not resume:
        raise RobustADError(
            f"{output_dir} already holds a run's metrics.json; refusing to overwrite it. "
            "Choose another output directory (hydra.run.dir=...), or pass resume=true to skip "
            "finished runs and retry failed ones."
        )
    previous = read_metrics(output_dir / "metrics.json")
    status = previous.get("status", "unknown") if previous else "unreadable"
    if previous is not None and status == "done":
        log.info("resume: %s already finished; skipping it", output_dir)
        return {**previous, "output_dir": str(output_dir), "skipped": True}
    archived = archive_previous_attempt(output_dir, status)
    log.info("resume: retrying %s; the %s attempt is kept as %s", output_dir, status, archived.name)
    return None


def config_choices() -> dict[str, str]:
    """The config-group options the run was composed from (model: rsrae_conv, data: mnist, ...),
    when Hydra composed it: stored in checkpoints, so an eval run can name its model by them."""
    if not HydraConfig.initialized():
        return {}
    choices = HydraConfig.get().runtime.choices
    return {
        group: str(option)
        for group, option in choices.items()
        if option is not None and not group.startswith("hydra")
    }


def build_run(
    cfg: DictConfig, callbacks: Sequence[pl.Callback] = ()
) -> tuple[pl.LightningDataModule, pl.LightningModule, pl.Trainer]:
    """Data module (splits sampled), model and trainer as `train()` runs them.

    `callbacks` come after the configured ones (run history, benchmarks' clocks).
    """
    datamodule = build(cfg.data)
    model = build(cfg.model)
    datamodule.setup("fit")  # sample the splits now: bad classes or ratios fail before training
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    model.run_config[CHOICES_KEY] = config_choices()
    trainer: pl.Trainer = build(
        cfg.trainer,
        callbacks=[*_instantiate_all(cfg.get("callbacks")), *callbacks],
        logger=_instantiate_all(cfg.get("logger")) or False,
        **hand_over_gradient_clipping(model, cfg.trainer),  # manual optimisation clips itself
    )
    return datamodule, model, trainer


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, validate and test one configuration; write and return `metrics.json`'s content."""
    output_dir = Path(cfg.paths.output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = output_dir / "metrics.json"
    config_path = output_dir / "config_resolved.yaml"
    resume = _resume_flag(cfg)
    if metrics_path.exists():
        previous = _previous_run(resume, output_dir)
        if previous is not None:
            return previous
    metrics: dict[str, Any] = {
        "status": "running",
        "task_name": cfg.get("task_name"),
        "model": cfg.model._target_.rsplit(".", 1)[-1],
        "dataset": cfg.data.get("dataset"),
        "seed": cfg.get("seed"),
        "output_dir": str(output_dir),
        "config_path": str(config_path),
    }
    with recorded(metrics_path, metrics):
        test_ckpt = _check_run_config(cfg)
        with cpu_threads(_cpu_threads(cfg)):
            OmegaConf.save(cfg, config_path, resolve=True)
            if cfg.get("seed") is not None:
                pl.seed_everything(cfg.seed, workers=True)
            history = ValidationHistory()
            datamodule, model, trainer = build_run(cfg, [history])
            metrics["split_sizes"] = datamodule.split_sizes
            metrics["split_details"] = datamodule.split_details
            trainer.fit(model, datamodule=datamodule)
            metrics.update(
                {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
            )
            best = (
                trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            )
            ckpt_path = best if test_ckpt == "best" and best else None
            if test_ckpt == "best" and not best:
                log.warning(
                    "test_ckpt=best but no best checkpoint was saved; testing the last weights"
                )
            test_results = trainer.test(
                model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False
            )
            metrics.update({k: float(v) for k, v in test_results[0].items()})
            threshold = next(
                (c for c in trainer.callbacks if isinstance(c, AnomalyThreshold)), None
            )
            if threshold is not None and threshold.report:
                metrics.update(threshold.report)  # adds the confusion matrix and threshold method
            metrics["tested_checkpoint"] = ckpt_path or "last weights"
            metrics["history"] = history.epochs
    return metrics
