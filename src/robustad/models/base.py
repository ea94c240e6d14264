"""Shared LightningModule: optimisation, per-sample scoring and whole-epoch AUROC/AP.

Models only say how to compute their loss and reconstruction; everything a results table
depends on (score convention, metrics, schedule) lives here once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAUROC, BinaryAveragePrecision

from robustad.errors import ConfigError
from robustad.models import health, losses, rapp
from robustad.models.robust import TrimmedLoss, reduce_terms

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Per-sample anomaly scores from input and reconstruction: higher = more anomalous.
SCORES: dict[str, ScoreFn] = {
    "l2": losses.l2_error,
    "squared": losses.squared_error,
    "l21": losses.l21_error,
    "l1": losses.l1_error,
    "cosine": losses.cosine_error,
}

# Scores from hidden activations (RaPP), for every network with `hidden_activations(x)`.
FEATURE_SCORES = ("rapp_sap", "rapp_nap")

# Sums of reconstruction scores, each standardised by its mean and std over the training split
# (label-free statistics kept as buffers): l2 sees how much of an image is wrong, cosine which
# way, regardless of brightness; together they rank better than either on the development
# benchmark (docs/results.md).
COMBINED_SCORES: dict[str, tuple[str, ...]] = {"l2_cosine": ("l2", "cosine")}
# A mean and a std need no more than a random few thousand training images: capping the pass
# keeps a combined score's refit before each validation to a fraction of an epoch.
SCALER_IMAGES = 2048


class ScoreStandardizer(nn.Module):
    """Mean and std of each component score over the training split, saved with the weights."""

    def __init__(self, n_components: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_components))
        self.register_buffer("std", torch.ones(n_components))
        self.register_buffer("fitted", torch.tensor(False))

    def fit(self, components: torch.Tensor) -> None:
        """components: (N, k) training-split scores."""
        self.mean.copy_(components.mean(dim=0))
        self.std.copy_(components.std(dim=0).clamp_min(1e-12))
        self.fitted.fill_(True)

    def __call__(self, components: torch.Tensor) -> torch.Tensor:
        if not bool(self.fitted):
            raise RuntimeError("combined scores need training statistics: call calibrate() first")
        return ((components - self.mean) / self.std).sum(dim=1)


def metric_input(scores: torch.Tensor) -> torch.Tensor:
    """Scores mapped into [0, 1] by a strictly increasing map, in float64 (AUROC/AP unchanged).

    torchmetrics treats predictions outside [0, 1] as logits and applies a float32 sigmoid, which
    saturates: every score above ~17 became 1.0 and tied, so large scores (RaPP, summed errors)
    collapsed to AUROC 0.5.
    """
    s = scores.double()
    return 0.5 + 0.5 * s / (1.0 + s.abs())


class EpochMeans:
    """Batch-weighted means of scalar terms over an epoch, summed on their device.

    Replaces `self.log(..., on_step=True, on_epoch=True)` per term and step, whose Python
    bookkeeping cost more than the whole RSRAE forward pass at batch 64 on a CPU. The terms
    logged together are stacked and summed as one tensor (three tensor ops per step).
    """

    def __init__(self) -> None:
        self.sums: dict[tuple[str, ...], torch.Tensor] = {}
        self.counts: dict[tuple[str, ...], int] = {}

    def add(self, values: dict[str, torch.Tensor], weight: int) -> None:
        names = tuple(values)
        stacked = torch.stack([value.detach().float() for value in values.values()]) * weight
        self.sums[names] = self.sums[names] + stacked if names in self.sums else stacked
        self.counts[names] = self.counts.get(names, 0) + weight

    def pop(self) -> dict[str, torch.Tensor]:
        """The means so far, then start over."""
        means = {}
        for names, total in self.sums.items():
            means.update(zip(names, total / self.counts[names], strict=True))
        self.sums, self.counts = {}, {}
        return means


OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


class AnomalyModule(pl.LightningModule):
    """Base for every detector: outliers are the positive class, one score per sample."""

    # Model-specific score names, handled by the subclass's `anomaly_score` (e.g. VAE's neg_elbo).
    EXTRA_SCORES: tuple[str, ...] = ()

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        score: str = "l2",
        rapp_components: int | None = None,
        rapp_from_input: bool = False,
        robust: TrimmedLoss | None = None,
    ) -> None:
        super().__init__()
        allowed = sorted([*SCORES, *FEATURE_SCORES, *COMBINED_SCORES, *self.EXTRA_SCORES])
        if score not in allowed:
            raise ConfigError("model.score", score, f"one of {allowed}")
        k = rapp_components
        if k is not None and (isinstance(k, bool) or int(k) < 1):
            raise ConfigError("model.rapp_components", k, "null (all) or an integer >= 1")
        self.net = net
        # RaPP NAP: training-set statistics of the activation differences (buffers: checkpointed).
        self.nap = rapp.NAPStatistics(rapp_components) if score == "rapp_nap" else None
        parts = COMBINED_SCORES.get(score)
        self.score_scaler = ScoreStandardizer(len(parts)) if parts else None
        self.rapp_from_input = bool(rapp_from_input)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.score_name = score
        # Contamination-robust training (robustad.models.robust): which samples a batch learns from.
        self.robust = robust
        metrics = MetricCollection({"auroc": BinaryAUROC(), "ap": BinaryAveragePrecision()})
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.run_config: dict[str, Any] | None = None
        # Scores of the latest val/test batch, read by callbacks (thresholds, TensorBoard) so they
        # need no second pass over the data.
        self.last_scores: torch.Tensor | None = None
        self._calibrated_at_step: int | None = None  # the weights' step training stats are from
        self.train_means = EpochMeans()  # training terms and grad norm, logged at epoch end

    # --- what each model provides -------------------------------------------------------
    def sample_losses(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms for a batch: (B,) per sample, or scalars for terms of the weights alone;
        key `loss` is the one minimised, per sample."""
        raise NotImplementedError

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, k) latent codes (TensorBoard's embedding projector); default: the net's `encode`."""
        encode = getattr(self.net, "encode", None)
        if encode is None:
            raise NotImplementedError(
                f"{type(self.net).__name__} has no encode(x); override encode()"
            )
        return encode(x).flatten(1)

    # --- shared behaviour ---------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reconstruct(x)

    def sample_weights(self, per_sample_loss: torch.Tensor) -> torch.Tensor | None:
        """The robust rule's weights while training (None: every sample counts)."""
        if self.robust is None or not self.training:
            return None
        return self.robust.weights(per_sample_loss.detach(), self.current_epoch)

    def training_losses(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Batch means of the loss terms, robustly weighted while training; `loss` is minimised."""
        terms = self.sample_losses(x)
        return reduce_terms(terms, self.sample_weights(terms["loss"]))

    @torch.no_grad()
    def anomaly_score(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) decision scores, higher = more anomalous."""
        if self.score_name == "rapp_sap":
            return rapp.sap_score(self.rapp_differences(x))
        if self.score_name == "rapp_nap":
            if self.nap is None or not self.nap.fitted:
                raise RuntimeError("rapp_nap needs training statistics: call fit_nap() first")
            return self.nap.score(self.rapp_differences(x))
        if self.score_scaler is not None:
            return self.score_scaler(self.score_components(x))
        return SCORES[self.score_name](x, self.reconstruct(x))

    def score_components(self, x: torch.Tensor) -> torch.Tensor:
        """(B, k) the component scores a combined score standardises and sums."""
        x_hat = self.reconstruct(x)
        return torch.stack([SCORES[name](x, x_hat) for name in COMBINED_SCORES[self.score_name]], 1)

    @torch.no_grad()
    def fit_score_scaler(self, batches: Iterable[torch.Tensor]) -> None:
        """Fit a combined score's statistics on training images (eval mode)."""
        if self.score_scaler is not None:
            with self.evaluating():
                self.score_scaler.fit(torch.cat([self.score_components(x) for x in batches]))

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        """Eval mode (batch norm on running statistics) for a pass, then the mode as it was."""
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    # --- RaPP -------------------------------------------------------------------------------
    def hidden_activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """RaPP's pathway: the net's `hidden_activations` (encoder layers, then the code),
        preceded by the input itself (h_0 = x, whose difference is the reconstruction error)
        when `rapp_from_input`."""
        hidden = self.net.hidden_activations(x)
        return [x, *hidden] if self.rapp_from_input else hidden

    def rapp_differences(self, x: torch.Tensor) -> torch.Tensor:
        x_hat = self.reconstruct(x)
        return rapp.path_differences(self.hidden_activations(x), self.hidden_activations(x_hat))

    @torch.no_grad()
    def fit_nap(self, batches: Iterable[torch.Tensor]) -> None:
        """Fit NAP's statistics on training images (eval mode: batch norm uses running stats)."""
        if self.nap is not None:
            with self.evaluating():
                self.nap.fit_batches(self.rapp_differences(x) for x in batches)

    def _training_images(self, limit: int | None = None) -> Iterable[torch.Tensor]:
        """The datamodule's training images (shuffled batches, at most about `limit` images),
        transferred and converted as in a training step."""
        datamodule = self.trainer.datamodule
        seen = 0
        for batch in datamodule.train_dataloader():
            if limit is not None and seen >= limit:
                return
            batch = datamodule.transfer_batch_to_device(batch, self.device, 0)
            images = datamodule.on_after_batch_transfer(batch, 0)["image"]
            seen += len(images)
            yield images

    def on_validation_start(self) -> None:
        """Training-split statistics (NAP, combined scores) must match the current weights:
        refit before an evaluation, unless fitted at this very step (testing right after the
        last validation). The pass over the training split leaves the training RNG untouched."""
        needs = self.nap is not None or self.score_scaler is not None
        if not needs or self.trainer.datamodule is None:
            return
        step = self.trainer.global_step
        if self._calibrated_at_step != step:
            devices = [self.device.index or 0] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                self.fit_nap(self._training_images())
                self.fit_score_scaler(self._training_images(limit=SCALER_IMAGES))
            self._calibrated_at_step = step

    def on_test_start(self) -> None:
        self.on_validation_start()

    # --- training health --------------------------------------------------------------------
    def _logging_step(self) -> bool:
        """Whether this step's values go to the loggers: every `log_every_n_steps` optimiser
        steps, judged from the Trainer's public counters."""
        every = max(1, int(self.trainer.log_every_n_steps))
        return (self.trainer.global_step + 1) % every == 0

    def log_training_values(self, values: dict[str, torch.Tensor], batch_size: int) -> None:
        """`<name>_step` on logging steps only; `<name>_epoch` (whole-epoch mean) at epoch end."""
        self.train_means.add(values, batch_size)
        if self._logging_step():
            for name, value in values.items():
                self.log(
                    f"{name}_step",
                    value.detach(),
                    on_step=True,
                    on_epoch=False,
                    prog_bar=name == "train/loss",
                    batch_size=batch_size,
                )

    def on_train_epoch_start(self) -> None:
        self.train_means.pop()

    def on_train_epoch_end(self) -> None:
        """The keys Lightning's on_step + on_epoch logging produced: `<name>_epoch` for the
        loggers, and `<name>` (the epoch mean) in callback_metrics."""
        for name, value in self.train_means.pop().items():
            self.log(f"{name}_epoch", value, on_step=False, on_epoch=True)
            self.log(name, value, on_step=False, on_epoch=True, logger=False)

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip as the Trainer is configured and log the gradient norm before clipping (it rises
        before a loss goes non-finite); one pass over the gradients serves both."""
        self.clip_and_log_gradients(
            optimizer, gradient_clip_val, gradient_clip_algorithm, "grad_norm"
        )

    def clip_and_log_gradients(
        self,
        optimizer: torch.optim.Optimizer,
        value: float | None,
        algorithm: str | None,
        name: str,
    ) -> None:
        """Clip by `value` (none when it is None) and log the norm before clipping as `name`."""
        params = [p for group in optimizer.param_groups for p in group["params"]]
        norm = health.clip_gradients(params, value, algorithm)
        self.log_training_values({f"train/{name}": norm}, 1)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x = batch["image"]
        terms = self.training_losses(x)
        # One check (one host sync) per step; the per-term check then names the culprit.
        if not bool(
            torch.isfinite(torch.cat([v.detach().reshape(-1) for v in terms.values()])).all()
        ):
            health.check_finite(terms, self.global_step, self.current_epoch)
        self.log_training_values({f"train/{k}": v for k, v in terms.items()}, len(x))
        return terms["loss"]

    def _evaluate(
        self, batch: dict[str, torch.Tensor], stage: str, metrics: MetricCollection
    ) -> None:
        x = batch["image"]
        scores = self.anomaly_score(x)
        self.last_scores = scores.detach()
        metrics.update(metric_input(scores), batch["target"])
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
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the resolved run config (plain types) so a checkpoint rebuilds its model alone."""
        if self.run_config is not None:
            checkpoint["robustad_config"] = self.run_config
