"""Gaussian VAE and residual VAE (`vae`, `rvae`): negative ELBO with a weighted, warmed-up KL."""

from __future__ import annotations

import torch

from robustad.errors import ConfigError
from robustad.models import losses
from robustad.models.base import AnomalyModule, OptimizerFactory, SchedulerFactory
from robustad.models.networks import GaussianVAE
from robustad.models.robust import TrimmedLoss
from robustad.models.scoring import Scorer


class VAEModule(AnomalyModule):
    """Loss = squared error of a sampled reconstruction + kl_weight(step) * KL(q(z|x) || N(0, I)).

    The KL weight ramps linearly from 0 over `kl_warmup_steps` optimiser steps (0 = no warm-up),
    so the decoder learns to use the code before the prior pulls it in. Scores: any scorer on
    the reconstruction of the posterior mean, or `neg_elbo` (`NegativeELBO`), a Monte Carlo
    estimate (`mc_samples` codes) of the negative ELBO with KL weight 1.
    """

    def __init__(
        self,
        net: GaussianVAE,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        kl_weight: float = 1.0,
        kl_warmup_steps: int = 0,
        mc_samples: int = 10,
        score: Scorer | str = "l2",
        robust: TrimmedLoss | None = None,
    ) -> None:
        super().__init__(net, optimizer, scheduler, score, robust)
        if kl_weight < 0:
            raise ConfigError("model.kl_weight", kl_weight, "a weight >= 0")
        if (
            isinstance(kl_warmup_steps, bool)
            or int(kl_warmup_steps) != kl_warmup_steps
            or kl_warmup_steps < 0
        ):
            raise ConfigError("model.kl_warmup_steps", kl_warmup_steps, "an integer >= 0")
        if isinstance(mc_samples, bool) or int(mc_samples) != mc_samples or mc_samples < 1:
            raise ConfigError("model.mc_samples", mc_samples, "an integer >= 1")
        self.kl_weight, self.kl_warmup_steps, self.mc_samples = (
            kl_weight,
            int(kl_warmup_steps),
            int(mc_samples),
        )
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler", "score", "robust"])

    def current_kl_weight(self) -> float:
        if self.kl_warmup_steps == 0:
            return self.kl_weight
        return self.kl_weight * min(1.0, self.global_step / self.kl_warmup_steps)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.encode(x)[0]

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder output for the posterior mean: deterministic, so scores are repeatable."""
        return self.net.decode(self.net.encode(x)[0])

    def sample_losses(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.net(x)
        reconstruction = losses.squared_error(x, out.x_hat)
        kl = losses.gaussian_kl(out.mu, out.logvar)
        return {
            "loss": reconstruction + self.current_kl_weight() * kl,
            "reconstruction": reconstruction,
            "kl": kl,
        }

    @torch.no_grad()
    def negative_elbo(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) -ELBO (up to constants): mean reconstruction error over sampled codes + KL."""
        mu, logvar = self.net.encode(x)
        errors = [
            losses.squared_error(x, self.net.decode(self.net.sample(mu, logvar)))
            for _ in range(self.mc_samples)
        ]
        return torch.stack(errors).mean(dim=0) + losses.gaussian_kl(mu, logvar)
