"""Scoring images with a trained detector through `trainer.predict` (scorer and Python API)."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.callbacks import BasePredictionWriter

from robustad.assembly import quiet_lightning
from robustad.data.arrays import ArrayDataModule
from robustad.errors import RobustADError
from robustad.models.base import AnomalyModule


class CSVScoreWriter(BasePredictionWriter):
    """One CSV row (input, score, label) per image as the batches come, into a temporary file
    that replaces `path` only once every input is scored, and never outlives a failure."""

    def __init__(self, path: Path, names: Sequence[str]) -> None:
        super().__init__(write_interval="batch")
        self.path, self.names = Path(path), list(names)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.handle: Any = None
        self.rows: Any = None
        self.written = 0

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.handle = self.tmp.open("w", newline="")
        except OSError as exc:
            raise RobustADError(f"cannot write {self.path}: {exc}") from exc
        self.rows = csv.writer(self.handle)
        self.rows.writerow(["input", "score", "label"])

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: dict[str, Any],
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        scores = prediction["score"].float().cpu().tolist()
        labels = prediction["outlier"].cpu().tolist()
        names = self.names[self.written : self.written + len(scores)]
        self.rows.writerows(
            (name, repr(float(s)), int(o)) for name, s, o in zip(names, scores, labels, strict=True)
        )
        self.written += len(scores)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.handle.close()
        try:
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self.tmp.unlink(missing_ok=True)
            raise RobustADError(f"cannot write {self.path}: {exc}") from exc

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if self.handle is not None:
            self.handle.close()
        self.tmp.unlink(missing_ok=True)


def predict(
    model: AnomalyModule,
    images: Any,
    batch_size: int = 1024,
    device: str = "cpu",
    callbacks: Sequence[pl.Callback] = (),
) -> tuple[np.ndarray, np.ndarray | None]:
    """(N,) scores and 0/1 labels (None without a threshold) of images (uint8 0-255 or float
    0-1; (N, H, W) or (N, C, H, W)), batched and converted exactly as in training."""
    data = ArrayDataModule(predict_images=images, eval_batch_size=batch_size)
    kind, _, index = device.partition(":")
    with quiet_lightning():
        trainer = pl.Trainer(
            accelerator="gpu" if kind == "cuda" else "cpu",
            devices=[int(index)] if index else 1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=list(callbacks),
        )
        batches = trainer.predict(model, datamodule=data)
    scores = np.concatenate([b["score"].float().cpu().numpy() for b in batches])
    if batches[0]["outlier"] is None:
        return scores, None
    return scores, np.concatenate([b["outlier"].cpu().numpy() for b in batches]).astype(np.int64)
