"""Assembling a run from its config: configured objects, and a Trainer that prints only what a
person reads. Shared by train, eval, the scorer and the Python API."""

from __future__ import annotations

import logging
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ProgressBar

from robustad.errors import ArgumentError, ConfigError, RobustADError
from robustad.sweeps import is_multirun

log = logging.getLogger(__name__)

# Lightning's rank-zero info loggers (device summary, tips), as configs/hydra/default.yaml.
LIGHTNING_INFO_LOGGERS = (
    "pytorch_lightning.utilities.rank_zero",
    "lightning.pytorch.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
)
# Validation metrics that need labels (unlabelled data, e.g. data=folder, never logs them).
LABELLED_METRICS = ("val/auroc", "val/ap")
# Where Hydra says a failed `_target_` node sits in the config ("full_key: model.net").
FULL_KEY = re.compile(r"full_key: (\S+)")
# Known, harmless Lightning warnings: Lightning (2.6) calls a torch pytree API that torch
# deprecated, it remarks that closed-form models (PCA) have no optimiser, and that a prediction
# writer gets no batch indices from our index-tensor sampler (the writer counts rows itself).
LIGHTNING_NOISE = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r".*configure_optimizers` returned `None`, this fit will run with no optimizer.*",
    r".*Couldn't infer the batch indices fetched from your dataloader.*",
)


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


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Known, harmless Lightning warnings and its start-up lines ("GPU available: ...", tips)
    stay out of the output, also where no Hydra logging config quiets them (the Python API)."""
    loggers = [logging.getLogger(name) for name in LIGHTNING_INFO_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        for message in LIGHTNING_NOISE:
            warnings.filterwarnings("ignore", message=message)
        for logger in loggers:
            logger.setLevel(max(logger.level, logging.WARNING))
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


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
        if isinstance(cause, ArgumentError):  # a network's argument: name it by its config key
            where = FULL_KEY.findall(str(exc))
            key = f"{where[-1]}.{cause.argument}" if where else cause.argument
            raise ConfigError(key, cause.value, cause.allowed) from None
        raise


def instantiate_all(group: DictConfig | None) -> list[Any]:
    """Instantiate every `_target_` node of a group (callbacks, loggers); skip empty slots."""
    if not group:
        return []
    return [
        build(node)
        for node in group.values()
        if isinstance(node, DictConfig) and "_target_" in node
    ]


def show_progress_bar(setting: bool | None) -> bool:
    """`trainer.enable_progress_bar: null` = on a terminal only: a sweep's job logs and redirected
    output would otherwise fill with redraw escape codes."""
    if setting is not None:
        return bool(setting)
    return sys.stdout.isatty() and not is_multirun()


def build_trainer(
    trainer_cfg: DictConfig,
    callbacks: Sequence[pl.Callback],
    logger: DictConfig | None,
    train_batches: int | None = None,
    **overrides: Any,
) -> pl.Trainer:
    """The configured Trainer, with the progress bar where a person watches it and the logging
    interval no longer than an epoch (Lightning warns otherwise)."""
    progress = show_progress_bar(trainer_cfg.get("enable_progress_bar"))
    if not progress:
        callbacks = [cb for cb in callbacks if not isinstance(cb, ProgressBar)]
    if train_batches:
        every = trainer_cfg.get("log_every_n_steps") or 50
        overrides.setdefault("log_every_n_steps", max(1, min(int(every), train_batches)))
    return build(
        trainer_cfg,
        callbacks=list(callbacks),
        logger=instantiate_all(logger) or False,
        enable_progress_bar=progress,
        **overrides,
    )


def without_label_monitors(callbacks: Sequence[pl.Callback]) -> list[pl.Callback]:
    """The callbacks without those that monitor a metric only labels give (best checkpoint by
    val/auroc, early stopping on it): unlabelled validation data never logs it."""
    kept = []
    for callback in callbacks:
        monitor = getattr(callback, "monitor", None)
        if isinstance(monitor, str) and monitor.startswith(LABELLED_METRICS):
            log.info(
                "no validation labels: %s(monitor=%s) left out", type(callback).__name__, monitor
            )
            continue
        kept.append(callback)
    return kept


def build_model_and_trainer(
    cfg: DictConfig,
    datamodule: pl.LightningDataModule,
    callbacks: Sequence[pl.Callback],
    choices: dict[str, str],
    **overrides: Any,
) -> tuple[pl.LightningModule, pl.Trainer]:
    """The model (carrying its resolved run config and config-group `choices`, stored in every
    checkpoint) and the Trainer that fits it on `datamodule`: shared by `train()` and the
    Python API."""
    from robustad.checkpoint import CHOICES_KEY
    from robustad.models.health import hand_over_gradient_clipping

    if not getattr(datamodule, "validation_labelled", True):
        callbacks = without_label_monitors(callbacks)
    model = build(cfg.model)
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    model.run_config[CHOICES_KEY] = choices
    overrides.update(hand_over_gradient_clipping(model, cfg.trainer))  # manual optimisation
    if getattr(model, "closed_form", False):
        overrides["num_sanity_val_steps"] = 0  # nothing fitted yet: nothing to check
    trainer = build_trainer(
        cfg.trainer,
        callbacks,
        cfg.get("logger"),
        train_batches=len(datamodule.train_dataloader()),
        **overrides,
    )
    return model, trainer
