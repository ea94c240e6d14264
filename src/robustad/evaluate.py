"""`evaluate(cfg) -> metrics`: re-score a trained checkpoint on any dataset / protocol.

The model comes from the checkpoint alone (its stored run config and weights); `data=...`
picks what to evaluate on, by default the protocol the checkpoint was trained with.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import yaml
from omegaconf import DictConfig, OmegaConf

from robustad.assembly import build, build_trainer, instantiate_all, quiet_lightning
from robustad.checkpoint import (
    CHOICES_KEY,
    CONFIG_KEY,
    build_datamodule,
    build_model,
    load_checkpoint,
    trained_image_shape,
)
from robustad.errors import ConfigError, RobustADError
from robustad.models.calibration import override_threshold
from robustad.runs import recorded, test_metrics

log = logging.getLogger(__name__)


def data_config(cfg: DictConfig, run_config: dict[str, Any]) -> dict[str, Any]:
    """The data to evaluate on, as plain values: `data=<name>` composes a new one from the
    shipped configs; otherwise the checkpoint's own, with any `data.<key>=...` given on the
    command line (e.g. `data.data_dir` for a checkpoint moved to another machine) applied."""
    given = OmegaConf.to_container(cfg.get("data") or {}, resolve=True)
    if "_target_" in given:
        return given
    changes = {k: v for k, v in given.items() if v is not None}
    return {**run_config["data"], **changes}


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test a checkpoint; write and return `metrics.json` in the eval run's own directory."""
    output_dir = Path(cfg.paths.output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = output_dir / "metrics.json"
    if metrics_path.exists():
        raise RobustADError(f"{output_dir} already holds a metrics.json; refusing to overwrite it")
    metrics: dict[str, Any] = {
        "status": "running",
        "task_name": cfg.get("task_name"),
        "ckpt_path": cfg.get("ckpt_path"),
        "output_dir": str(output_dir),
    }
    with recorded(metrics_path, metrics), quiet_lightning():
        checkpoint = load_checkpoint(cfg.get("ckpt_path"))
        run_config = checkpoint[CONFIG_KEY]
        data_cfg = data_config(cfg, run_config)
        trained = list(trained_image_shape(checkpoint))
        if [int(n) for n in data_cfg.get("image_shape", [])] != trained:
            raise ConfigError(
                "data.image_shape",
                data_cfg.get("image_shape"),
                f"{trained}, the shape the checkpoint was trained on",
            )
        metrics.update(
            # The model's config name (cae, rsrae_conv) where the checkpoint stores it.
            model=run_config.get(CHOICES_KEY, {}).get("model")
            or run_config["model"]["_target_"].rsplit(".", 1)[-1],
            dataset=data_cfg.get("dataset"),
            trained_on=run_config["data"].get("dataset"),
            seed=cfg.get("seed"),
        )
        if cfg.get("seed") is not None:
            pl.seed_everything(cfg.seed, workers=True)
        # The effective config (the trained model, the evaluated data) beside metrics.json, so
        # robustad-report groups eval runs like training runs.
        # Plain YAML, not OmegaConf: the checkpoint's strings are data, never interpolated.
        effective = {**run_config, "task_name": cfg.get("task_name"), "data": data_cfg}
        metrics["config_path"] = str(output_dir / "config_resolved.yaml")
        Path(metrics["config_path"]).write_text(yaml.safe_dump(effective, sort_keys=False))
        model = build_model(checkpoint)
        if cfg.get("threshold") is not None:  # replaces the threshold stored at training time
            override_threshold(model.calibration, cfg.threshold, "threshold")
        elif not model.calibration.has_threshold:
            log.warning(
                "the checkpoint stores no threshold and none was given (threshold=...): "
                "no precision/recall"
            )
        # A data config composed from config files (data=<name>) is the user's own; the stored
        # one is the checkpoint's data and is rebuilt from plain values only.
        composed = "_target_" in (cfg.get("data") or {})
        datamodule = build(OmegaConf.create(data_cfg)) if composed else build_datamodule(data_cfg)
        datamodule.setup("test")
        metrics["split_sizes"] = datamodule.split_sizes
        trainer = build_trainer(
            cfg.trainer, instantiate_all(cfg.get("callbacks")), cfg.get("logger")
        )
        results = trainer.test(model, datamodule=datamodule, verbose=False)
        metrics.update(test_metrics(results[0], model.calibration))
    return metrics
