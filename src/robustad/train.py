"""`train(cfg) -> metrics`: the whole run, callable from tests, Hydra or the console script.

A run folder holds one run. Its `metrics.json` says `running` from the first moment, so a
killed run is recognisable; re-running into the folder is refused unless `resume=true`, which
skips a finished run and continues an unfinished one from `checkpoints/last.ckpt` (weights,
optimizer, scheduler, callbacks, RNG): the resumed run ends as an uninterrupted one would.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from robustad.assembly import (
    build,
    build_model_and_trainer,
    cpu_threads,
    instantiate_all,
    quiet_lightning,
)
from robustad.errors import RobustADError
from robustad.runs import (
    InterruptWatch,
    interruptible,
    recorded,
    refuse_occupied,
    run_folder_status,
    test_metrics,
)
from robustad.sweeps import archive_previous_attempt, is_multirun
from robustad.validation import check_config, check_resume

log = logging.getLogger(__name__)

LAST_CKPT = "last.ckpt"
RNG_KEY = "robustad_rng"
HISTORY_KEY = "robustad_history"
# Keys that may differ between an interrupted run and its resumption: where and how fast it
# runs, not what it computes.
RESUME_FREE_KEYS = ("resume", "cpu_threads", "paths", "hydra", "tags")
RESUME_FREE_TRAINER_KEYS = ("accelerator", "devices", "enable_progress_bar", "default_root_dir")


class RunHistory(pl.Callback):
    """Every epoch's validation metrics (AUROC often peaks early under contamination); kept in
    checkpoints so a resumed run's history is whole."""

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

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[HISTORY_KEY] = [dict(row) for row in self.epochs]

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Resuming continues the history; testing a saved checkpoint (best) keeps it whole."""
        if trainer.state.fn == "fit":
            self.epochs = [dict(row) for row in checkpoint.get(HISTORY_KEY, [])]


class RNGState(pl.Callback):
    """Torch's generators in every checkpoint, restored with it, so a resumed run's batch order
    and sampling continue exactly where the interrupted run stopped (Lightning runs its sanity
    check in an isolated RNG, so nothing draws between the restore and the next epoch)."""

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        state = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint[RNG_KEY] = state

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        state = checkpoint.get(RNG_KEY)
        if state is None or trainer.state.fn != "fit":
            return
        torch.set_rng_state(state["cpu"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


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


def model_name(cfg: DictConfig) -> str:
    """The model's config name (rsrae_conv), else its class name."""
    return config_choices().get("model") or cfg.model._target_.rsplit(".", 1)[-1]


def build_run(
    cfg: DictConfig, callbacks: Sequence[pl.Callback] = ()
) -> tuple[pl.LightningDataModule, pl.LightningModule, pl.Trainer]:
    """Data module (splits sampled), model and trainer as `train()` runs them.

    `callbacks` come after the configured ones (run history, benchmarks' clocks).
    """
    datamodule = build(cfg.data)
    datamodule.setup("fit")  # sample the splits now: bad classes or ratios fail before training
    model, trainer = build_model_and_trainer(
        cfg, datamodule, [*instantiate_all(cfg.get("callbacks")), *callbacks], config_choices()
    )
    return datamodule, model, trainer


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain configs."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [d for k in keys for d in _differences(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [prefix.rstrip(".")]


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """A resolved config without the keys a resumption may change."""
    kept = {k: v for k, v in config.items() if k not in RESUME_FREE_KEYS}
    trainer = kept.get("trainer")
    if isinstance(trainer, dict):
        kept["trainer"] = {k: v for k, v in trainer.items() if k not in RESUME_FREE_TRAINER_KEYS}
    data = kept.get("data")
    if isinstance(data, dict):
        kept["data"] = {k: v for k, v in data.items() if k != "data_dir"}
    return kept


def _check_same_config(config_path: Path, cfg: DictConfig) -> None:
    """A run is continued only with the configuration it started with."""
    if not config_path.is_file():
        return
    try:
        old = OmegaConf.to_container(OmegaConf.load(config_path))
    except Exception:  # an unreadable file is no evidence either way: the checkpoint decides
        return
    new = OmegaConf.to_container(cfg, resolve=True)
    changed = _differences(_comparable(old), _comparable(new))
    if changed:
        raise RobustADError(
            f"resume=true, but {config_path.parent} was started with another configuration "
            f"(differs in: {', '.join(changed[:5])}); resume with the same values, or choose "
            "another output folder"
        )


def _how_to_continue(output_dir: Path) -> str:
    if is_multirun():
        return "run the same sweep command with resume=true hydra.sweep.dir=<this sweep's folder>"
    return f"add resume=true (with hydra.run.dir={output_dir}), or choose another folder"


def prepare_output_dir(
    output_dir: Path, cfg: DictConfig
) -> tuple[dict[str, Any] | None, Path | None]:
    """(finished run's metrics to return as is, or None; checkpoint to continue from, or none).

    Nothing a previous attempt wrote is overwritten: a finished run is skipped or refused, an
    unfinished one is refused or (resume=true) continued, its records kept under other names.
    """
    status, previous = run_folder_status(output_dir)
    if status is None:
        return None, None
    resume = check_resume(cfg)
    refuse_occupied(output_dir, status, resume, _how_to_continue(output_dir))
    if status == "done":
        log.info("resume: %s already finished; skipping it", output_dir)
        return {**(previous or {}), "output_dir": str(output_dir), "skipped": True}, None
    _check_same_config(output_dir / "config_resolved.yaml", cfg)
    ckpt_dir = output_dir / "checkpoints"
    last = ckpt_dir / LAST_CKPT
    if (output_dir / "metrics.json").exists():
        archived = archive_previous_attempt(output_dir, status)
        log.info("resume: the %s attempt's record is kept as %s", status, archived.name)
    if last.is_file():
        log.info("resume: continuing %s from %s", output_dir, last)
        return None, last
    if ckpt_dir.is_dir() and any(ckpt_dir.iterdir()):  # no last.ckpt: start over, keep the rest
        kept = ckpt_dir / f"attempt-{status}"
        n = 1
        while kept.with_name(f"{kept.name}-{n}").exists():
            n += 1
        kept = kept.with_name(f"{kept.name}-{n}")
        kept.mkdir()
        for path in ckpt_dir.glob("*.ckpt"):
            path.rename(kept / path.name)
        log.info(
            "resume: no %s to continue from; the attempt's checkpoints are in %s", LAST_CKPT, kept
        )
    return None, None


def save_closed_form_checkpoints(trainer: pl.Trainer) -> None:
    """Closed-form models (PCA) never take an optimiser step, so ModelCheckpoint never fires:
    write their one fit as last.ckpt and as the best checkpoint, like any trained model."""
    if trainer.global_step > 0:
        return
    for callback in trainer.checkpoint_callbacks:
        if not isinstance(callback, ModelCheckpoint) or callback.dirpath is None:
            continue
        if callback.monitor is None:
            name = f"{callback.filename or 'last'}{callback.FILE_EXTENSION}"
        else:
            name = Path(callback.format_checkpoint_name(dict(trainer.callback_metrics))).name
        trainer.save_checkpoint(Path(callback.dirpath) / name, weights_only=False)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, validate and test one configuration; write and return `metrics.json`'s content."""
    output_dir = Path(cfg.paths.output_dir).resolve()
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RobustADError(f"cannot create the run folder {output_dir}: {exc}") from exc
    metrics_path = output_dir / "metrics.json"
    config_path = output_dir / "config_resolved.yaml"
    check_resume(cfg)
    finished, resume_from = prepare_output_dir(output_dir, cfg)
    if finished is not None:
        return finished
    metrics: dict[str, Any] = {
        "task_name": cfg.get("task_name"),
        "model": model_name(cfg),
        "dataset": cfg.data.get("dataset"),
        "seed": cfg.get("seed"),
        "output_dir": str(output_dir),
        "config_path": str(config_path),
    }
    with recorded(metrics_path, metrics), quiet_lightning():
        check_config(cfg)
        with cpu_threads(cfg.get("cpu_threads")):
            fit_and_test(cfg, metrics, resume_from)
    return metrics


def fit_and_test(cfg: DictConfig, metrics: dict[str, Any], resume_from: Path | None) -> None:
    """Train (or continue from `resume_from`), test, and add the results to `metrics`."""
    OmegaConf.save(cfg, metrics["config_path"], resolve=True)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
    history, watch = RunHistory(), InterruptWatch()
    datamodule, model, trainer = build_run(cfg, [history, RNGState(), watch])
    metrics["split_sizes"] = datamodule.split_sizes
    metrics["split_details"] = datamodule.split_details
    n_params = sum(p.numel() for p in model.parameters())
    log.info("%s: %s parameters -> %s", metrics["model"], f"{n_params:,}", metrics["output_dir"])
    with interruptible(watch):
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    save_closed_form_checkpoints(trainer)
    metrics.update(
        {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    )
    if getattr(datamodule, "has_split", lambda name: True)("test"):
        run_test(cfg, metrics, trainer, model, datamodule, watch)
    else:
        log.info("no labelled test images (e.g. data.test_dir): trained, nothing to test")
    metrics["history"] = history.epochs
    if resume_from is not None:
        metrics["resumed_from"] = str(resume_from)


def run_test(
    cfg: DictConfig,
    metrics: dict[str, Any],
    trainer: pl.Trainer,
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    watch: InterruptWatch,
) -> None:
    """Test the weights `test_ckpt` names and add the results to `metrics`."""
    test_ckpt = cfg.get("test_ckpt", "last")
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    ckpt_path = best if test_ckpt == "best" and best else None
    if test_ckpt == "best" and not best and trainer.global_step > 0:
        log.warning("test_ckpt=best but no best checkpoint was saved; testing the last weights")
    with interruptible(watch):
        test_results = trainer.test(
            model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False, weights_only=True
        )
    metrics.update(test_metrics(test_results[0], model.calibration))
    metrics["tested_checkpoint"] = ckpt_path or "last weights"
