"""The decision threshold, chosen on held-out scores and stored in the detector's buffers."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn

from robustad.models.base import EpochScores
from robustad.thresholds import check_method, choose_threshold


class AnomalyThreshold(pl.Callback):
    """Sets the detector's threshold (`score > threshold` = outlier) after every validation.

    The rule sees the validation split's scores as the validation steps return them: images
    from the contaminated training pool that the weights never fitted, so the threshold holds
    for new data (training scores are lower, and a threshold from them flags too much). Where
    validation is built like the test split (RaPP's protocols), the datamodule's calibration
    split (the same held-out inliers, outliers at the training amount) is scored instead.
    `contamination`: the (1 - c) quantile (PyOD's rule; c null = the training split's share),
    `mad` / `iqr`: fences from the score distribution's shape (no c, no labels), `f1`: the
    F1-optimal threshold (reads the validation labels), `fixed`: `value`. The threshold is
    written into `pl_module.calibration` before Lightning saves the epoch's checkpoints, so
    every checkpoint holds the threshold of its own weights.
    """

    def __init__(
        self,
        method: str = "contamination",
        value: float | None = None,
        contamination: float | None = None,
    ) -> None:
        check_method(method, value, contamination)
        self.method, self.value, self.contamination = method, value, contamination
        self._scores = EpochScores()
        self._warned = False

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._scores = EpochScores()

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: dict[str, Any],
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not trainer.sanity_checking:
            self._scores.add(outputs["score"], outputs["target"])

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not len(self._scores):
            return
        scores, targets = self._calibration_scores(trainer, pl_module)
        contamination = self.contamination
        if contamination is None and self.method == "contamination":
            # e.g. an outlier_ratio protocol: the training split's outlier share
            contamination = trainer.datamodule.train_contamination
        if self.method == "contamination" and contamination == 0 and not self._warned:
            self._warned = True
            rank_zero_warn(
                "callbacks.threshold: contamination 0 puts the threshold at the highest held-out "
                "score, so new data is almost never flagged; for clean training data use "
                "callbacks.threshold.method=iqr (or mad)"
            )
        value = choose_threshold(self.method, scores, targets, contamination, self.value)
        pl_module.calibration.set_threshold(value, self.method)
        self._scores = EpochScores()

    @torch.no_grad()
    def _calibration_scores(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The validation outputs, unless the datamodule holds a separate calibration split
        (validation built like the test split): then one pass over that, in eval mode."""
        loader = getattr(trainer.datamodule, "calibration_dataloader", lambda: None)()
        if loader is None:
            return self._scores.arrays()
        scores = EpochScores()
        with pl_module.evaluating():
            for batch in pl_module.batches(loader):
                scores.add(pl_module.anomaly_score(batch["image"]), batch["target"])
        return scores.arrays()
