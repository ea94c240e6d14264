"""Run-level, trainer, optimizer and scheduler values, checked in one place before training.

Each check raises `ConfigError(key, value, allowed)`: one line naming the key, the value and
what is allowed. Data values are checked by the data module (`robustad.data`), model structure
by the model constructors; both run before the first training step too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig

from robustad.errors import ConfigError

TEST_CHECKPOINTS = ("last", "best")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
CLIP_ALGORITHMS = ("norm", "value")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def require(key: str, value: Any, ok: bool, allowed: str) -> None:
    if not ok:
        raise ConfigError(key, value, allowed)


def int_at_least(key: str, value: Any, low: int, allow_null: bool = False) -> None:
    null = "null or " if allow_null else ""
    ok = (allow_null and value is None) or (is_int(value) and value >= low)
    require(key, value, ok, f"{null}an integer >= {low}")


def positive_number(key: str, value: Any) -> None:
    require(key, value, is_number(value) and value > 0, "a finite number > 0")


def batch_limit(key: str, value: Any) -> None:
    """Lightning's limit_*_batches: null (all), a batch count, or a fraction of the batches."""
    ok = value is None or (is_int(value) and value >= 1) or (is_number(value) and 0 < value <= 1)
    require(key, value, ok, "null (all), an integer >= 1 (batches) or a fraction in (0, 1]")


def check_resume(cfg: DictConfig) -> bool:
    """`resume` first: it decides what happens to a run folder that already holds a run."""
    resume = cfg.get("resume", False)
    require("resume", resume, isinstance(resume, bool), "true or false")
    return resume


def check_run(cfg: DictConfig) -> None:
    """Top-level keys of train.yaml."""
    check_resume(cfg)
    test_ckpt = cfg.get("test_ckpt", "last")
    require("test_ckpt", test_ckpt, test_ckpt in TEST_CHECKPOINTS, f"one of {TEST_CHECKPOINTS}")
    int_at_least("seed", cfg.get("seed"), 0, allow_null=True)
    int_at_least("cpu_threads", cfg.get("cpu_threads"), 1, allow_null=True)


def check_trainer(trainer: DictConfig) -> None:
    """The Trainer arguments a run changes most; Lightning's own errors are tracebacks."""
    accelerator = trainer.get("accelerator", "auto")
    require("trainer.accelerator", accelerator, accelerator in ACCELERATORS, str(ACCELERATORS))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            "trainer.accelerator", accelerator, "auto or cpu: this machine has no CUDA device"
        )
    int_at_least("trainer.max_epochs", trainer.get("max_epochs"), 1)
    int_at_least("trainer.min_epochs", trainer.get("min_epochs"), 0, allow_null=True)
    max_steps = trainer.get("max_steps", -1)
    require(
        "trainer.max_steps",
        max_steps,
        is_int(max_steps) and (max_steps == -1 or max_steps >= 1),
        "-1 (no limit) or an integer >= 1",
    )
    clip = trainer.get("gradient_clip_val")
    require(
        "trainer.gradient_clip_val",
        clip,
        clip is None or (is_number(clip) and clip >= 0),
        "null or 0 (no clipping) or a finite number > 0",
    )
    algorithm = trainer.get("gradient_clip_algorithm", "norm")
    require(
        "trainer.gradient_clip_algorithm",
        algorithm,
        algorithm is None or algorithm in CLIP_ALGORITHMS,
        str(CLIP_ALGORITHMS),
    )
    for key in ("log_every_n_steps", "check_val_every_n_epoch", "accumulate_grad_batches"):
        int_at_least(f"trainer.{key}", trainer.get(key, 1), 1, allow_null=True)
    int_at_least("trainer.num_sanity_val_steps", trainer.get("num_sanity_val_steps", 0), -1)
    for split in ("train", "val", "test", "predict"):
        batch_limit(f"trainer.limit_{split}_batches", trainer.get(f"limit_{split}_batches"))
    fast_dev_run = trainer.get("fast_dev_run", False)
    require(
        "trainer.fast_dev_run",
        fast_dev_run,
        isinstance(fast_dev_run, bool) or (is_int(fast_dev_run) and fast_dev_run >= 0),
        "true, false or a number of batches >= 0",
    )
    for key in ("enable_progress_bar", "enable_model_summary", "deterministic"):
        value = trainer.get(key)
        require(f"trainer.{key}", value, value is None or isinstance(value, bool), "true or false")


def check_optimizer(node: DictConfig | None, key: str = "model.optimizer") -> None:
    if not node:
        return
    positive_number(f"{key}.lr", node.get("lr"))
    decay = node.get("weight_decay", 0.0)
    require(f"{key}.weight_decay", decay, is_number(decay) and decay >= 0, "a finite number >= 0")
    betas = node.get("betas")
    if betas is not None:
        ok = len(betas) == 2 and all(is_number(b) and 0 <= b < 1 for b in betas)
        require(f"{key}.betas", list(betas), ok, "two numbers in [0, 1)")
    if node.get("eps") is not None:
        positive_number(f"{key}.eps", node.get("eps"))


def check_scheduler(node: DictConfig | None, key: str = "model.scheduler") -> None:
    if not node:
        return
    checks: dict[str, Callable[[str, Any], None]] = {
        "max_lr": positive_number,
        "div_factor": positive_number,
        "final_div_factor": positive_number,
    }
    for name, check in checks.items():
        if node.get(name) is not None:
            check(f"{key}.{name}", node.get(name))
    if "pct_start" in node:
        pct = node.get("pct_start")
        require(f"{key}.pct_start", pct, is_number(pct) and 0 < pct < 1, "a number in (0, 1)")


def check_config(cfg: DictConfig) -> None:
    """Everything a training run reads outside the data and model constructors."""
    check_run(cfg)
    check_trainer(cfg.trainer)
    model = cfg.get("model")
    if model is not None:
        check_optimizer(model.get("optimizer"))
        check_scheduler(model.get("scheduler"))
        for name in ("lr_projection", "lr_orthogonality"):
            if model.get(name) is not None:
                positive_number(f"model.{name}", model.get(name))
