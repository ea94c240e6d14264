"""RSRAE: autoencoder with a robust subspace recovery layer, trained on the paper's loss."""

from __future__ import annotations

from typing import Any

import torch

from robustad.errors import ConfigError
from robustad.models import health, losses
from robustad.models.base import AnomalyModule, OptimizerFactory, SchedulerFactory
from robustad.models.networks import RSRNetwork
from robustad.models.robust import TrimmedLoss, reduce_terms
from robustad.models.scoring import Scorer


def rsrae_loss_terms(
    x: torch.Tensor,
    x_hat: torch.Tensor,
    z: torch.Tensor,
    A: torch.Tensor,
    lambda1: float,
    lambda2: float,
) -> dict[str, torch.Tensor]:
    """Per-sample terms (L2,1 reconstruction, projection) and the orthogonality of A."""
    reconstruction = losses.l2_error(x, x_hat)
    projection = losses.rsr_projection_error(z, A)
    orthogonality = losses.rsr_orthogonality_error(A)
    return {
        "loss": reconstruction + lambda1 * projection + lambda2 * orthogonality,
        "reconstruction": reconstruction,
        "projection": projection,
        "orthogonality": orthogonality,
    }


MODES = ("joint", "alternating")
# The official code steps the projection and orthogonality terms at 10x the reconstruction rate.
AUXILIARY_LR_FACTOR = 10.0


class RSRAEModule(AnomalyModule):
    """RSRAE with two optimisation modes; score = reconstruction error per sample (or RaPP).

    `joint` ("RSRAE+"): one loss, reconstruction + lambda1 * projection + lambda2 * orthogonality.
    `alternating` (the paper's RSRAE): per batch three optimiser steps in turn, reconstruction on
    all weights, projection on encoder and A, orthogonality on A, each with its own learning rate
    and OneCycleLR schedule (Lightning manual optimisation; the module clips gradients itself).
    """

    def __init__(
        self,
        net: RSRNetwork,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        lambda1: float = 0.1,
        lambda2: float = 0.1,
        mode: str = "joint",
        lr_projection: float | None = None,
        lr_orthogonality: float | None = None,
        score: Scorer | str = "l2",
        robust: TrimmedLoss | None = None,
    ) -> None:
        super().__init__(net, optimizer, scheduler, score, robust)
        for key, value in (("model.lambda1", lambda1), ("model.lambda2", lambda2)):
            if value < 0:
                raise ConfigError(key, value, "a weight >= 0")
        if mode not in MODES:
            raise ConfigError("model.mode", mode, f"one of {list(MODES)}")
        for key, value in (
            ("model.lr_projection", lr_projection),
            ("model.lr_orthogonality", lr_orthogonality),
        ):
            if value is not None and not value > 0:
                raise ConfigError(
                    key, value, "null (10 x model.optimizer.lr) or a learning rate > 0"
                )
        self.lambda1, self.lambda2, self.mode = lambda1, lambda2, mode
        self.lr_projection, self.lr_orthogonality = lr_projection, lr_orthogonality
        self.automatic_optimization = mode == "joint"
        # (value, algorithm) handed over by train(): Lightning clips only automatic optimisation.
        self.gradient_clip: tuple[float, str] | None = None
        self._current_term = "loss"
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler", "score", "robust"])

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).x_hat

    def sample_losses(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.net(x)
        return rsrae_loss_terms(x, out.x_hat, out.z, self.net.rsr.A, self.lambda1, self.lambda2)

    # --- alternating mode -------------------------------------------------------------------
    def _learning_rates(self) -> list[float]:
        base = float(getattr(self.optimizer_factory, "keywords", {}).get("lr", 1e-3))
        auxiliary = AUXILIARY_LR_FACTOR * base
        return [base, self.lr_projection or auxiliary, self.lr_orthogonality or auxiliary]

    def configure_optimizers(self) -> Any:
        if self.automatic_optimization:
            return super().configure_optimizers()
        A = self.net.rsr.A
        param_sets = [list(self.parameters()), [*self.net.encoder.parameters(), A], [A]]
        configs = []
        for params, lr in zip(param_sets, self._learning_rates(), strict=True):
            optimizer = self.optimizer_factory(params=params, lr=lr)
            config: dict[str, Any] = {"optimizer": optimizer}
            if self.scheduler_factory is not None:
                total_steps = max(1, int(self.trainer.estimated_stepping_batches))
                scheduler = self.scheduler_factory(
                    optimizer=optimizer, total_steps=total_steps, max_lr=lr
                )
                config["lr_scheduler"] = {"scheduler": scheduler, "interval": "step"}
            configs.append(config)
        return configs

    def _step(self, optimizer: Any, term: str, loss: torch.Tensor) -> None:
        health.check_finite({term: loss}, self.global_step, self.current_epoch)
        self._current_term = term
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()  # runs on_before_optimizer_step: grad-norm logging and clipping

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        if self.automatic_optimization:
            return super().training_step(batch, batch_idx)
        x = batch["image"]
        reconstruction_opt, projection_opt, orthogonality_opt = self.optimizers()
        per_sample = self.sample_losses(x)
        weights = self.sample_weights(per_sample["loss"])  # the same samples for every step
        terms = self.reduce_robustly(per_sample, weights)
        health.check_finite(terms, self.global_step, self.current_epoch)
        self.log_training_values({f"train/{k}": v for k, v in terms.items()}, len(x))
        self._step(reconstruction_opt, "reconstruction", terms["reconstruction"])
        projection = losses.rsr_projection_error(self.net.encode(x), self.net.rsr.A)
        self._step(projection_opt, "projection", reduce_terms({"p": projection}, weights)["p"])
        self._step(
            orthogonality_opt, "orthogonality", losses.rsr_orthogonality_error(self.net.rsr.A)
        )
        schedulers = self.lr_schedulers()
        for scheduler in (
            schedulers if isinstance(schedulers, list) else [schedulers] if schedulers else []
        ):
            scheduler.step()
        return None

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Manual optimisation: Lightning does not clip, so each of the three steps clips here
        (with the Trainer's configured value) and logs its own gradient norm."""
        if not self.automatic_optimization:
            value, algorithm = self.gradient_clip or (None, None)
            self.clip_and_log_gradients(
                optimizer, value, algorithm, f"grad_norm_{self._current_term}"
            )
