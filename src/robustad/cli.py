"""Command-line entry points: thin Hydra wrappers around `robustad.train.train`."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from robustad.errors import RobustADError
from robustad.sweeps import is_multirun, record_failure

log = logging.getLogger("robustad")


def find_config_dir() -> Path:
    """`$ROBUSTAD_CONFIG_DIR`, else `./configs`, else the repository's (editable install)."""
    candidates = [
        os.environ.get("ROBUSTAD_CONFIG_DIR"),
        Path.cwd() / "configs",
        Path(__file__).resolve().parents[2] / "configs",
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "train.yaml").is_file():
            return Path(candidate).resolve()
    raise RobustADError(
        "no configs/train.yaml found; run from the repository root or set ROBUSTAD_CONFIG_DIR"
    )


def summary_line(metrics: dict) -> str:
    keys = ("test/auroc", "test/ap", "val/auroc", "val/ap")
    values = "  ".join(f"{k}={metrics[k]:.4f}" for k in keys if k in metrics)
    where = f"{metrics['output_dir']}/metrics.json"
    return f"[robustad] {metrics['model']} on {metrics['dataset']}: {values}  -> {where}"


def run_training(cfg: DictConfig) -> float | None:
    """Run one job; user errors print one clear line (no traceback) and exit non-zero.

    Inside a multirun a failed job is recorded instead (its metrics.json says why) and the sweep
    goes on; `robustad.sweeps.SweepStatusCallback` sets the exit status at the end.
    """
    from robustad.train import train

    try:
        metrics = train(cfg)
    except Exception as exc:
        if is_multirun():
            record_failure(HydraConfig.get().runtime.output_dir, exc)
            return None
        if not isinstance(exc, RobustADError):
            raise
        print(f"[robustad] error: {exc}", file=sys.stderr)
        sys.exit(1)
    print(summary_line(metrics))
    objective = cfg.get("optimized_metric")
    return metrics.get(objective) if objective else None


def train_main() -> None:
    """Console script `robustad-train`: the same as `python train.py` from the repository root."""
    hydra.main(version_base="1.3", config_path=str(find_config_dir()), config_name="train")(
        run_training
    )()
