"""Command-line entry points: thin Hydra wrappers around `robustad.train.train` and
`robustad.evaluate.evaluate`, with the configs shipped inside the package.

The configs are found through Hydra's `pkg://robustad.configs` search path, so a wheel install
runs from any folder; `--config-dir <folder>` (Hydra's own flag) puts a user's folder first,
e.g. to add `model/my_model.yaml` or to replace a shipped file.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from robustad.errors import RobustADError, RunFolderOccupied
from robustad.sweeps import is_multirun, record_failure, record_occupied

# User-facing lines (summary, errors) come from this logger: Hydra's job logging sends them to
# the console and to the run's log file.
log = logging.getLogger("robustad")

CONFIG_PATH = "pkg://robustad.configs"
# Below this the scores rank outliers under inliers: the score favours them (e.g. corruptions
# that make images easier to reconstruct), which is worth a line of its own.
CHANCE_AUROC = 0.5


def summary_line(metrics: dict[str, Any]) -> str:
    keys = ("test/auroc", "test/ap", "test/f1", "val/auroc", "val/ap")
    values = "  ".join(f"{k}={metrics[k]:.4f}" for k in keys if k in metrics)
    if not values:  # unlabelled data: trained and calibrated, nothing to score against
        values = f"val/loss={metrics['val/loss']:.4f} (no labels)" if "val/loss" in metrics else ""
    where = f"{metrics['output_dir']}/metrics.json"
    return f"{metrics['model']} on {metrics['dataset']}: {values}  -> {where}"


def report_metrics(metrics: dict[str, Any]) -> None:
    """The run's summary line, and a warning when the test AUROC is below chance."""
    log.info(summary_line(metrics))
    auroc = metrics.get("test/auroc")
    if auroc is not None and auroc < CHANCE_AUROC:
        log.warning(
            "warning: test AUROC %.3f is below 0.5: this score ranks these outliers as more "
            "normal than the inliers (expected for corruptions such as fog or contrast; see the "
            "README's Data section)",
            auroc,
        )


def run_job(job: Callable[[DictConfig], dict[str, Any]], cfg: DictConfig) -> dict[str, Any] | None:
    """Run one job; a user error is one logged line (no traceback) and exit status 1.

    Inside a multirun a failed job is recorded instead (its metrics.json says why) and the sweep
    goes on; `robustad.sweeps.SweepStatusCallback` sets the exit status at the end.
    """
    try:
        metrics = job(cfg)
    except KeyboardInterrupt:
        log.error("error: interrupted; files written so far are kept")
        sys.exit(130)
    except Exception as exc:
        if is_multirun():
            output_dir = HydraConfig.get().runtime.output_dir
            if isinstance(exc, RunFolderOccupied):
                record_occupied(output_dir)
            else:
                record_failure(output_dir, exc)
            return None
        if not isinstance(exc, RobustADError):
            raise
        log.error("error: %s", exc)
        sys.exit(1)
    if metrics.get("skipped"):
        log.info("skipped: %s already holds a finished run", metrics["output_dir"])
    else:
        report_metrics(metrics)
    return metrics


def run_training(cfg: DictConfig) -> float | None:
    """Hydra task of `train.py` / `robustad-train`: returns the sweeper's objective."""
    from robustad.train import train

    metrics = run_job(train, cfg)
    objective = cfg.get("optimized_metric")
    return metrics.get(objective) if metrics and objective else None


def run_evaluation(cfg: DictConfig) -> None:
    """Hydra task of `eval.py` / `robustad-eval`."""
    from robustad.evaluate import evaluate

    run_job(evaluate, cfg)


def train_main() -> None:
    """`robustad-train` and `python train.py`: train one configuration (or a sweep with -m)."""
    hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")(run_training)()


def eval_main() -> None:
    """`robustad-eval` and `python eval.py`: test a trained checkpoint."""
    hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="eval")(run_evaluation)()
