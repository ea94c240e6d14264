"""`Detector`: the framework as a PyOD-style object, for notebooks and scripts.

    from robustad import Detector
    det = Detector(model="rsrae", contamination=0.05, max_epochs=5)
    det.fit(X)                   # uint8 or float images, (N, H, W) or (N, C, H, W)
    det.decision_function(X_new) # one score per image, higher = more anomalous
    det.predict(X_new)           # 1 = outlier: score > det.threshold_
    det.save("det.ckpt"); Detector.load("det.ckpt")

It composes the same shipped configs as `train.py` (`model=<name>` plus any `key=value`
overrides), builds the same modules and Trainer, and writes the same checkpoint format, so a
saved detector scores with `robustad-score` and `Detector.load` reads any training checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from robustad.assembly import build_model_and_trainer, cpu_threads, quiet_lightning
from robustad.callbacks import AnomalyThreshold
from robustad.checkpoint import CHOICES_KEY, CONFIG_KEY, build_model, load_checkpoint
from robustad.data.arrays import ArrayDataModule, as_images
from robustad.errors import ConfigError, RobustADError
from robustad.models.base import AnomalyModule
from robustad.prediction import predict
from robustad.score import resolve_device
from robustad.thresholds import METHODS
from robustad.validation import check_config, is_number

# The parts of train.yaml a Detector does not use: it writes no run folder, logs and
# checkpoints only when asked (`save`), and takes its data as arrays.
UNUSED_GROUPS = ("paths", "logger", "callbacks", "hydra", "hparams_search", "debug", "experiment")


def compose_config(model: str, overrides: Sequence[str]) -> DictConfig:
    """train.yaml composed with `model=<model>` and the overrides, as `train.py` would."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module("robustad.configs", version_base="1.3"):
            cfg = compose("train", overrides=[f"model={model}", *overrides])
    except Exception as exc:  # Hydra's own errors name the override that failed
        raise RobustADError(f"cannot compose the detector's config: {exc}") from exc
    finally:
        GlobalHydra.instance().clear()
    return cfg


class Detector:
    """An anomaly detector with PyOD's semantics: `contamination` is the expected fraction of
    outliers in the training images; after `fit`, `threshold_` is chosen on held-out training
    images and `decision_scores_` / `labels_` describe the training images."""

    def __init__(
        self,
        model: str = "rsrae",
        contamination: float = 0.1,
        max_epochs: int | None = None,
        threshold: str = "contamination",
        seed: int = 0,
        overrides: Sequence[str] = (),
        device: str = "auto",
        cpu_threads: int | None = None,
    ) -> None:
        if not is_number(contamination) or not 0.0 <= contamination < 0.5:
            raise ConfigError("contamination", contamination, "a fraction 0 <= c < 0.5")
        allowed = [m for m in METHODS if m not in ("fixed", "f1")]
        if threshold not in allowed:
            raise ConfigError("threshold", threshold, f"one of {allowed} (no labels needed)")
        self.model, self.contamination, self.max_epochs = model, contamination, max_epochs
        # auto: the GPU when there is one
        self.threshold, self.seed, self.device = threshold, seed, resolve_device(device, "device")
        self.overrides, self.cpu_threads = list(overrides), cpu_threads
        self.detector_: AnomalyModule | None = None
        self.run_config_: dict[str, Any] | None = None
        self.decision_scores_: np.ndarray | None = None
        self.labels_: np.ndarray | None = None

    # --- configuration ------------------------------------------------------------------------
    def _config(self, image_shape: Sequence[int]) -> DictConfig:
        overrides = [
            f"data.contamination={self.contamination}",
            f"data.image_shape=[{','.join(str(int(n)) for n in image_shape)}]",
            f"seed={self.seed}",
            *self.overrides,
        ]
        if self.max_epochs is not None:
            overrides.append(f"trainer.max_epochs={self.max_epochs}")
        cfg = compose_config(self.model, overrides)
        with open_dict(cfg):
            for group in UNUSED_GROUPS:
                cfg.pop(group, None)
            cfg.trainer.default_root_dir = None
            cfg.trainer.enable_progress_bar = False
            cfg.trainer.accelerator = "gpu" if self.device.startswith("cuda") else "cpu"
            cfg.data.data_dir = None
            cfg.data.dataset = "arrays"
            cfg.data.pop("_target_", None)
        return cfg

    # --- PyOD API -----------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> Detector:
        """Train on X (unlabelled, contaminated; `y` is ignored, as in PyOD), hold out a part of
        it to choose the threshold, and score X. Returns self."""
        images = as_images(X, "X")
        cfg = self._config(images.shape[1:])
        check_config(cfg)
        data = ArrayDataModule(
            images,
            contamination=self.contamination,
            val_fraction=cfg.data.val_fraction,
            batch_size=cfg.data.batch_size,
            eval_batch_size=cfg.data.eval_batch_size,
            seed=cfg.data.seed,
        )
        with quiet_lightning(), cpu_threads(self.cpu_threads):
            pl.seed_everything(self.seed, workers=True, verbose=False)
            model, trainer = build_model_and_trainer(
                cfg,
                data,
                [AnomalyThreshold(method=self.threshold, contamination=self.contamination)],
                {"model": self.model, "data": "arrays"},
                enable_checkpointing=False,
            )
            trainer.fit(model, datamodule=data)
        self._adopt(model.eval())
        self.decision_scores_ = self.decision_function(images)
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(np.int64)
        return self

    def _adopt(self, model: AnomalyModule) -> None:
        self.detector_ = model
        self.run_config_ = model.run_config

    def _fitted(self) -> AnomalyModule:
        if self.detector_ is None:
            raise RobustADError("this Detector is not fitted yet: call fit(X) or Detector.load")
        return self.detector_

    @property
    def threshold_(self) -> float | None:
        """`score > threshold_` is an outlier (None if the detector has no threshold)."""
        info = self._fitted().calibration.threshold_info()
        return None if info is None else info["value"]

    def decision_function(self, X: Any) -> np.ndarray:
        """One anomaly score per image, higher = more anomalous."""
        model = self._fitted()
        with cpu_threads(self.cpu_threads):
            scores, _ = predict(model, X, device=self.device)
        return scores

    def predict(self, X: Any) -> np.ndarray:
        """1 for an outlier (score > threshold_), 0 for an inlier."""
        if self.threshold_ is None:
            raise RobustADError("this detector has no threshold; fit it or set one")
        return (self.decision_function(X) > self.threshold_).astype(np.int64)

    # --- persistence --------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write a checkpoint in the format `robustad-train` writes (weights, calibration buffers
        and the plain run config), via a temporary file."""
        model = self._fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        checkpoint = {
            "state_dict": model.state_dict(),
            "hyper_parameters": dict(model.hparams),
            "pytorch-lightning_version": pl.__version__,
            CONFIG_KEY: self.run_config_,
        }
        tmp = path.with_name(path.name + ".tmp")
        try:
            torch.save(checkpoint, tmp)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise RobustADError(f"cannot write {path}: {exc}") from exc
        return path

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> Detector:
        """A detector from any robustad checkpoint (`save`, `robustad-train`'s last/best)."""
        checkpoint = load_checkpoint(path, key="path")
        model = build_model(checkpoint)
        config = checkpoint[CONFIG_KEY]
        choices = config.get(CHOICES_KEY) or {}
        det = cls(
            model=choices.get("model", type(model).__name__),
            contamination=float(config.get("data", {}).get("contamination") or 0.0),
            device=device,
        )
        det._adopt(model)
        return det
