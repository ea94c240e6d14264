"""Plain autoencoder: squared reconstruction loss, reconstruction-error score."""

from __future__ import annotations

import torch

from robustad.models import losses
from robustad.models.base import AnomalyModule, OptimizerFactory, SchedulerFactory
from robustad.models.networks import MLPAutoencoder


class AEModule(AnomalyModule):
    """Thin Lightning wrapper over a plain torch autoencoder."""

    def __init__(
        self,
        net: MLPAutoencoder,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        score: str = "l2",
    ) -> None:
        super().__init__(net, optimizer, scheduler, score)
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_losses(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": losses.squared_error(x, self.net(x)).mean()}
