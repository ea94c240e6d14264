"""Closed-form PCA baseline (`pca`): the same data, scores, metrics and outputs as the networks."""

from __future__ import annotations

from typing import Any

import torch

from robustad.models import losses
from robustad.models.base import AnomalyModule
from robustad.models.networks import PCAReconstructor
from robustad.models.scoring import Scorer


class PCAModule(AnomalyModule):
    """Rank-k PCA fitted in one pass over the (contaminated) training split; no optimiser.

    Each training epoch accumulates the data's first and second moments, fits at the epoch's end
    and stops the run (another epoch would give the same fit). Scores as for any autoencoder.
    """

    # Fitted in one pass: no optimiser, no sanity check of unfitted weights.
    closed_form = True

    def __init__(
        self,
        net: PCAReconstructor,
        score: Scorer | str = "l2",
    ) -> None:
        super().__init__(
            net,
            optimizer=None,
            scheduler=None,
            score=score,
        )
        self.automatic_optimization = False
        self.train_mse = torch.tensor(float("nan"))
        self.save_hyperparameters(ignore=["net", "score"])

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def sample_losses(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": losses.squared_error(x, self.net(x))}

    def configure_optimizers(self) -> Any:
        return None

    def on_train_epoch_start(self) -> None:
        self.net.reset_statistics()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.net.accumulate(batch["image"])

    def _fit_pending(self) -> None:
        if self.net.has_statistics:
            self.train_mse = self.net.fit()
            self.net.reset_statistics()

    def on_validation_start(self) -> None:
        """Lightning validates before `on_train_epoch_end`: fit here so validation sees the fit."""
        self._fit_pending()
        super().on_validation_start()

    def on_train_epoch_end(self) -> None:
        """Log the fit's training mean squared error (no second pass) and stop: the fit is final."""
        self._fit_pending()
        self.log("train/loss", self.train_mse, on_epoch=True, prog_bar=True)
        self.trainer.should_stop = True
