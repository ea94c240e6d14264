"""RSRAE: autoencoder with a robust subspace recovery layer, trained on the paper's loss."""

from __future__ import annotations

import torch

from robustad.errors import ConfigError
from robustad.models import losses
from robustad.models.base import AnomalyModule, OptimizerFactory, SchedulerFactory
from robustad.models.networks import RSRAutoencoder


def rsrae_loss_terms(
    x: torch.Tensor, x_hat: torch.Tensor, z: torch.Tensor, A: torch.Tensor, lambda1: float, lambda2: float
) -> dict[str, torch.Tensor]:
    """Batch means of the paper's per-sample terms (L2,1 reconstruction and projection) plus orthogonality."""
    reconstruction = losses.l2_error(x, x_hat).mean()
    projection = losses.rsr_projection_error(z, A).mean()
    orthogonality = losses.rsr_orthogonality_error(A)
    return {
        "loss": reconstruction + lambda1 * projection + lambda2 * orthogonality,
        "reconstruction": reconstruction,
        "projection": projection,
        "orthogonality": orthogonality,
    }


class RSRAEModule(AnomalyModule):
    """RSRAE+ (all terms in one loss); score = reconstruction error per sample."""

    def __init__(
        self,
        net: RSRAutoencoder,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        lambda1: float = 0.1,
        lambda2: float = 0.1,
        score: str = "l2",
    ) -> None:
        super().__init__(net, optimizer, scheduler, score)
        for key, value in (("model.lambda1", lambda1), ("model.lambda2", lambda2)):
            if value < 0:
                raise ConfigError(key, value, "a weight >= 0")
        self.lambda1, self.lambda2 = lambda1, lambda2
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).x_hat

    def training_losses(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.net(x)
        return rsrae_loss_terms(x, out.x_hat, out.z, self.net.rsr.A, self.lambda1, self.lambda2)
