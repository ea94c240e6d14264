"""Deterministic autoencoders (MLP `ae`, convolutional `cae`, residual `rae`): squared
reconstruction loss, reconstruction-error or RaPP score."""

from __future__ import annotations

import torch
from torch import nn

from robustad.models import losses
from robustad.models.base import AnomalyModule, OptimizerFactory, SchedulerFactory
from robustad.models.robust import TrimmedLoss
from robustad.models.scoring import Scorer


class AEModule(AnomalyModule):
    """Thin Lightning wrapper over any torch autoencoder whose forward returns x~."""

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        score: Scorer | str = "l2",
        robust: TrimmedLoss | None = None,
    ) -> None:
        super().__init__(net, optimizer, scheduler, score, robust)
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler", "score", "robust"])

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def sample_losses(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": losses.squared_error(x, self.net(x))}
