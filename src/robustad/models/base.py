"""Shared LightningModule: optimisation, the scorer and threshold, whole-epoch AUROC/AP.

Models only say how to compute their loss and reconstruction; everything a results table
depends on (score convention, metrics, schedule, threshold report) lives here once. Validation,
test and predict steps return their scores; metrics and callbacks read those outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAUROC, BinaryAveragePrecision

from robustad.errors import RobustADError
from robustad.models import health
from robustad.models.calibration import Calibration
from robustad.models.robust import TrimmedLoss, left_out_share, reduce_terms
from robustad.models.scoring import Scorer, scorer_named
from robustad.thresholds import binary_report, f1_threshold


def metric_input(scores: torch.Tensor) -> torch.Tensor:
    """Scores mapped into [0, 1] by a strictly increasing map, in float64 (AUROC/AP unchanged).

    torchmetrics treats predictions outside [0, 1] as logits and applies a float32 sigmoid, which
    saturates: every score above ~17 became 1.0 and tied, so large scores (RaPP, summed errors)
    collapsed to AUROC 0.5.
    """
    s = scores.double()
    return 0.5 + 0.5 * s / (1.0 + s.abs())


class EpochScores:
    """Scores and targets gathered over one val or test epoch (a few bytes per sample)."""

    def __init__(self) -> None:
        self.scores: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []

    def add(self, scores: torch.Tensor, targets: torch.Tensor) -> None:
        self.scores.append(scores.detach().float().cpu())
        self.targets.append(targets.detach().cpu())

    def __len__(self) -> int:
        return sum(len(s) for s in self.scores)

    def arrays(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cat(self.scores), torch.cat(self.targets)


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

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        score: Scorer | str = "l2",
        robust: TrimmedLoss | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        # The scorer (a component, configs/model/score/) with its training statistics, and the
        # threshold: both fitted after the weights, both buffers, so both in every checkpoint.
        self.score = scorer_named(score) if isinstance(score, str) else score
        self.score.check_model(self)
        self.calibration = Calibration()
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        # Contamination-robust training (robustad.models.robust): which samples a batch learns from.
        self.robust = robust
        metrics = MetricCollection({"auroc": BinaryAUROC(), "ap": BinaryAveragePrecision()})
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.run_config: dict[str, Any] | None = None
        self._statistics_step: int | None = None  # the training step the statistics are from
        self.test_scores = EpochScores()  # the test epoch's scores, for the threshold report
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
        return self.reduce_robustly(terms, self.sample_weights(terms["loss"]))

    def reduce_robustly(
        self, terms: dict[str, torch.Tensor], weights: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """Batch means of the terms under the robust weights; while training with a robust rule,
        also `left_out`, the share of the batch kept out of the gradient (logged as
        `train/left_out`: how much the rule trims, its estimate when no share is stated)."""
        reduced = reduce_terms(terms, weights)
        if self.training and self.robust is not None and self.robust.active:
            reduced["left_out"] = left_out_share(weights, terms["loss"])
        return reduced

    @torch.no_grad()
    def anomaly_score(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) decision scores, higher = more anomalous."""
        return self.score(self, x)

    @torch.no_grad()
    def calibrate(self, images: Iterable[torch.Tensor]) -> None:
        """Fit the scorer's training statistics (NAP axes, combined-score means) to the current
        weights from batches of training images, in eval mode. Call it whenever the weights
        change; scorers without statistics ignore it."""
        if self.score.needs_statistics:
            with self.evaluating():
                self.score.fit(self, images)

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        """Eval mode (batch norm on running statistics) for a pass, then the mode as it was."""
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    def batches(self, loader: Iterable[Any], limit: int | None = None) -> Iterator[dict]:
        """A loader's batches (at most about `limit` images) on this module's device, converted
        by the attached datamodule as in a training step."""
        datamodule = self.trainer.datamodule
        seen = 0
        for batch in loader:
            if limit is not None and seen >= limit:
                return
            batch = datamodule.transfer_batch_to_device(batch, self.device, 0)
            batch = datamodule.on_after_batch_transfer(batch, 0)
            seen += len(batch["image"])
            yield batch

    def training_images(self, limit: int | None = None) -> Iterator[torch.Tensor]:
        """The datamodule's training images (shuffled batches, at most about `limit` images)."""
        for batch in self.batches(self.trainer.datamodule.train_dataloader(), limit):
            yield batch["image"]

    def on_validation_start(self) -> None:
        """The statistics must match the weights being validated: refit them once per training
        step (testing right after the last validation reuses them). The pass over the training
        split leaves the training RNG untouched."""
        if not self.score.needs_statistics or self.trainer.datamodule is None:
            return
        step = self.trainer.global_step
        if self._statistics_step == step and self.score.statistics_fitted:
            return
        limit = self.score.statistics_images
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            self.calibrate(self.training_images(limit))
        self._statistics_step = step

    def on_test_start(self) -> None:
        """Weights loaded from a checkpoint come with their statistics; fit only if none are."""
        if not self.score.statistics_fitted:
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

    def _evaluate(self, batch: dict[str, torch.Tensor], stage: str) -> dict[str, torch.Tensor]:
        x = batch["image"]
        self.log(f"{stage}/loss", self.training_losses(x)["loss"], on_epoch=True, batch_size=len(x))
        return {"score": self.anomaly_score(x), "target": batch["target"]}

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict:
        """{"score", "target"}: what the metrics, the threshold and the diagnostics read."""
        return self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict:
        return self._evaluate(batch, "test")

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict:
        """{"score", "outlier"}: outlier = score > the stored threshold (None without one)."""
        scores = self.anomaly_score(batch["image"])
        outlier = scores > self.calibration.threshold if self.calibration.has_threshold else None
        return {"score": scores, "outlier": outlier}

    def _update_metrics(self, outputs: dict[str, torch.Tensor], metrics: MetricCollection) -> None:
        """Whole-epoch AUROC/AP from the step's outputs; unlabelled data (target -1) has none."""
        target = outputs["target"]
        if bool((target < 0).any()):
            return
        metrics.update(metric_input(outputs["score"]), target)
        # Logging the collection makes Lightning compute it once over the whole epoch.
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=metrics is self.val_metrics)

    def on_validation_batch_end(
        self, outputs: dict, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._update_metrics(outputs, self.val_metrics)

    def on_test_epoch_start(self) -> None:
        self.test_scores = EpochScores()

    def on_test_batch_end(
        self, outputs: dict, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._update_metrics(outputs, self.test_metrics)
        self.test_scores.add(outputs["score"], outputs["target"])

    def on_test_epoch_end(self) -> None:
        """Precision, recall and F1 at the stored threshold, and the best F1 any threshold could
        reach on these labels (how far the label-free threshold is from it)."""
        threshold = self.calibration.threshold_info()
        if threshold is None or not len(self.test_scores):
            return
        scores, targets = self.test_scores.arrays()
        if bool((targets < 0).any()):
            return
        report = binary_report(scores, targets, threshold["value"])
        (tn, fp), (fn, tp) = report["confusion_matrix"]
        values = {"threshold": threshold["value"], **report, "tn": tn, "fp": fp, "fn": fn, "tp": tp}
        if bool((targets > 0).any()):
            best = f1_threshold(scores, targets)
            values["best_f1"] = binary_report(scores, targets, best)["f1"]
        for key, value in values.items():
            if key != "confusion_matrix":
                self.log(f"test/{key}", float(value), on_step=False, on_epoch=True)

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

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls, checkpoint_path: str | Path, map_location: Any = None, **kwargs: Any
    ) -> AnomalyModule:
        """Rebuild from the checkpoint's stored config, as eval and the scorer do (registered
        classes and plain values only, weights_only loading): Lightning's own method would need
        the network and optimizer objects, which are not hyperparameters."""
        from robustad.checkpoint import build_model, load_checkpoint

        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)}: the checkpoint decides")
        model = build_model(load_checkpoint(checkpoint_path, key="checkpoint_path"))
        if not isinstance(model, cls):
            raise RobustADError(
                f"{checkpoint_path} holds a {type(model).__name__}, not a {cls.__name__}"
            )
        return model.to(map_location) if isinstance(map_location, str | torch.device) else model

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the resolved run config (plain types) so a checkpoint rebuilds its model alone;
        a detector built without Hydra describes itself from its constructor arguments."""
        from robustad.checkpoint import CONFIG_KEY, describe

        checkpoint[CONFIG_KEY] = self.run_config if self.run_config is not None else describe(self)
