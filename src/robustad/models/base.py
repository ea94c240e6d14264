"""Shared LightningModule: optimisation, per-sample scoring and whole-epoch AUROC/AP.

Models only say how to compute their loss and reconstruction; everything a results table
depends on (score convention, metrics, schedule) lives here once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAUROC, BinaryAveragePrecision

from robustad.errors import ConfigError
from robustad.models import losses

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Per-sample anomaly scores from input and reconstruction: higher = more anomalous.
SCORES: dict[str, ScoreFn] = {
    "l2": losses.l2_error,
    "squared": losses.squared_error,
}

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


class AnomalyModule(pl.LightningModule):
    """Base for every detector: outliers are the positive class, one score per sample."""

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        score: str = "l2",
    ) -> None:
        super().__init__()
        if score not in SCORES:
            raise ConfigError("model.score", score, f"one of {sorted(SCORES)}")
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.score_name = score
        metrics = MetricCollection({"auroc": BinaryAUROC(), "ap": BinaryAveragePrecision()})
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.run_config: dict[str, Any] | None = None

    # --- what each model provides -------------------------------------------------------
    def training_losses(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms for a batch; key `loss` is the one minimised."""
        raise NotImplementedError

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # --- shared behaviour ---------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reconstruct(x)

    @torch.no_grad()
    def anomaly_score(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) decision scores, higher = more anomalous."""
        return SCORES[self.score_name](x, self.reconstruct(x))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        terms = self.training_losses(batch["image"])
        parts = {f"train/{k}": v for k, v in terms.items() if k != "loss"}
        self.log_dict(parts, on_step=True, on_epoch=True)
        self.log("train/loss", terms["loss"], on_step=True, on_epoch=True, prog_bar=True)
        return terms["loss"]

    def _evaluate(self, batch: dict[str, torch.Tensor], stage: str, metrics: MetricCollection) -> None:
        x = batch["image"]
        scores = self.anomaly_score(x)
        metrics.update(scores, batch["target"])
        self.log(f"{stage}/loss", self.training_losses(x)["loss"], on_epoch=True, batch_size=len(x))
        # Logging the collection makes Lightning compute it once over the whole epoch.
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage == "val")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_metrics)

    def configure_optimizers(self) -> Any:
        """AdamW (or the configured optimiser) with OneCycleLR stepped every optimiser step."""
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = self.scheduler_factory(optimizer=optimizer, total_steps=total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the resolved run config (plain types) so a checkpoint rebuilds its model alone."""
        if self.run_config is not None:
            checkpoint["robustad_config"] = self.run_config
