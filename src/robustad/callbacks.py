"""Callbacks that read the scores the model already computes during validation and test.

`AnomalyThreshold` picks the 0/1 decision threshold, stores it in every checkpoint and reports
precision / recall / F1 at it; `TensorBoardDiagnostics` draws what a scalar cannot show. Both
collect `pl_module.last_scores` batch by batch, so neither needs a second pass over val or test.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_warn

from robustad.errors import ConfigError, RobustADError
from robustad.thresholds import binary_report, check_method, contamination_threshold, f1_threshold

THRESHOLD_KEY = "robustad_threshold"
Batch = dict[str, torch.Tensor]


def batch_scores(pl_module: pl.LightningModule) -> torch.Tensor:
    scores = getattr(pl_module, "last_scores", None)
    if scores is None:
        raise RobustADError(
            f"{type(pl_module).__name__} stores no per-sample scores (`last_scores`); "
            "these callbacks need a robustad AnomalyModule"
        )
    return scores


@torch.no_grad()
def score_split(
    trainer: pl.Trainer, pl_module: pl.LightningModule, split: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores and targets of a whole split in eval mode, leaving the global RNG untouched."""
    datamodule = trainer.datamodule
    if datamodule is None:
        raise RobustADError(
            f"the threshold needs the {split} split, but the trainer has no datamodule"
        )
    was_training = pl_module.training
    pl_module.eval()
    scores, targets = [], []
    try:
        # A shuffled loader draws its seed from the global RNG: fork it so training is unchanged.
        with torch.random.fork_rng(devices=[]):
            for batch in getattr(datamodule, f"{split}_dataloader")():
                batch = trainer.strategy.batch_to_device(batch, pl_module.device)
                scores.append(pl_module.anomaly_score(batch["image"]).float().cpu())
                targets.append(batch["target"].cpu())
    finally:
        pl_module.train(was_training)
    return torch.cat(scores), torch.cat(targets)


class _Scores:
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


class AnomalyThreshold(pl.Callback):
    """Chooses the decision threshold (`score > threshold` = outlier) for the current weights.

    method: `contamination` = the (1 - c) quantile of the training scores (PyOD's rule),
    `fixed` = `value`, `f1` = the F1-optimal threshold on the validation split. The result,
    `{"method", "value"}`, goes into every checkpoint under `robustad_threshold`, so scoring
    new data later needs no training data. At test end it logs `test/threshold`,
    `test/precision`, `test/recall`, `test/f1` and the confusion counts `test/tn|fp|fn|tp`.
    `stored` (a checkpoint's threshold) is used as is instead of choosing one.
    """

    def __init__(
        self,
        method: str = "contamination",
        value: float | None = None,
        contamination: float | None = None,
        stored: dict[str, Any] | None = None,
    ) -> None:
        if stored is None:
            check_method(method, value, contamination)
        self.method, self.value, self.contamination = method, value, contamination
        self.stored = stored
        self.report: dict[str, Any] | None = None  # the last test's metrics, with the threshold
        self._val = _Scores()
        self._val_step = -1
        self._test = _Scores()
        self._cache: tuple[int, dict[str, Any]] | None = None
        self._loaded: dict[str, Any] | None = None  # threshold of checkpoint weights being tested
        self._weights_from_ckpt = False
        self._fitting = False

    # --- choosing ---------------------------------------------------------------------------
    def _choose(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, val_is_current: bool
    ) -> dict[str, Any]:
        if self.method == "fixed":
            value = float(self.value)
        elif self.method == "contamination":
            train_scores, _ = score_split(trainer, pl_module, "train")
            contamination = self.contamination
            if contamination is None:  # e.g. an outlier_ratio protocol: use the realised share
                contamination = trainer.datamodule.train_contamination
            value = contamination_threshold(train_scores, contamination)
        else:
            scores, targets = (
                self._val.arrays()
                if val_is_current and len(self._val)
                else score_split(trainer, pl_module, "val")
            )
            value = f1_threshold(scores, targets)
        return {"method": self.method, "value": value}

    def current(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        """The threshold for the weights the module holds now (computed once per training step)."""
        if self.stored is not None:
            return self.stored
        if self._weights_from_ckpt:
            if self._loaded is None:
                self._loaded = self._choose(trainer, pl_module, val_is_current=False)
            return self._loaded
        step = trainer.global_step
        if self._cache is None or self._cache[0] != step:
            self._cache = (
                step,
                self._choose(trainer, pl_module, val_is_current=self._val_step == step),
            )
        return self._cache[1]

    # --- hooks ------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._weights_from_ckpt = False

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._val, self._val_step = _Scores(), -1

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Batch,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not trainer.sanity_checking:
            self._val.add(batch_scores(pl_module), batch["target"])

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._val_step = trainer.global_step

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self._deferred():
            return  # added to the files still on disk when fitting ends (`_complete_checkpoints`)
        checkpoint[THRESHOLD_KEY] = dict(self.current(trainer, pl_module))

    def _deferred(self) -> bool:
        """While fitting, the contamination rule's pass over the training split waits for the end.

        A checkpoint is written every epoch but most are overwritten later: scoring the training
        split once per file that survives, instead of once per epoch, saves an extra forward pass
        over the training data every epoch.
        """
        return self._fitting and self.stored is None and self.method == "contamination"

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fitting = True

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fitting = False
        self._complete_checkpoints(trainer, pl_module)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """Checkpoints written before a failure still get their threshold."""
        if not self._fitting:
            return
        self._fitting = False
        try:
            self._complete_checkpoints(trainer, pl_module)
        except Exception as exc:  # never hide the original failure
            rank_zero_warn(f"could not store thresholds in the checkpoints after a failure: {exc}")

    @torch.no_grad()
    def _complete_checkpoints(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Add the threshold of each checkpoint's own weights to the checkpoint files on disk."""
        paths = {
            Path(p)
            for callback in trainer.checkpoint_callbacks
            for p in (callback.best_model_path, callback.last_model_path, *callback.best_k_models)
            if p
        }
        current = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        by_step: dict[int, dict[str, Any]] = {}
        try:
            for path in sorted(p for p in paths if p.is_file()):
                checkpoint = torch.load(path, map_location="cpu", weights_only=True)
                if THRESHOLD_KEY in checkpoint:
                    continue
                step = int(checkpoint.get("global_step", -1))
                if step not in by_step:
                    pl_module.load_state_dict(checkpoint["state_dict"])
                    by_step[step] = self._choose(trainer, pl_module, val_is_current=False)
                checkpoint[THRESHOLD_KEY] = dict(by_step[step])
                tmp = path.with_name(path.name + ".tmp")
                torch.save(checkpoint, tmp)
                os.replace(tmp, path)
        finally:
            pl_module.load_state_dict(current)
        if trainer.global_step in by_step:  # the last weights: test needs no second pass
            self._cache = (trainer.global_step, by_step[trainer.global_step])

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Testing a saved checkpoint (e.g. test_ckpt=best) uses the threshold saved with it."""
        self._weights_from_ckpt = True
        self._loaded = checkpoint.get(THRESHOLD_KEY)

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._test = _Scores()

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Batch,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._test.add(batch_scores(pl_module), batch["target"])

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        threshold = self.current(trainer, pl_module)
        scores, targets = self._test.arrays()
        report = binary_report(scores, targets, threshold["value"])
        (tn, fp), (fn, tp) = report["confusion_matrix"]
        scalars = {
            "threshold": threshold["value"],
            "precision": report["precision"],
            "recall": report["recall"],
            "f1": report["f1"],
        }
        scalars.update({"tn": tn, "fp": fp, "fn": fn, "tp": tp})
        for key, value in scalars.items():
            pl_module.log(f"test/{key}", float(value), on_step=False, on_epoch=True)
        self.report = {
            "test/threshold": threshold["value"],
            "test/threshold_method": threshold["method"],
            **{f"test/{k}": v for k, v in report.items()},
        }


def _flat_hparams(node: Any, prefix: str = "") -> dict[str, Any]:
    """Scalar view of a config for TensorBoard's hparams tab (targets shortened to class names)."""
    if isinstance(node, dict):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            if key == "_partial_":
                continue
            name = f"{prefix}.{key}" if prefix else str(key)
            flat.update(_flat_hparams(value, name))
        return flat
    if isinstance(node, str) and prefix.endswith("_target_"):
        return {prefix: node.rsplit(".", 1)[-1]}
    if node is None or isinstance(node, list | tuple):
        return {prefix: str(node)}
    return {prefix: node if isinstance(node, bool | int | float | str) else str(node)}


class _Extremes:
    """The k highest- and k lowest-scored images seen so far, kept by merging each batch in."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.high: tuple[torch.Tensor, torch.Tensor] | None = None
        self.low: tuple[torch.Tensor, torch.Tensor] | None = None

    def _merge(
        self,
        kept: tuple[torch.Tensor, torch.Tensor] | None,
        scores: torch.Tensor,
        images: torch.Tensor,
        largest: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if kept is not None:
            scores, images = torch.cat([kept[0], scores]), torch.cat([kept[1], images])
        idx = scores.topk(min(self.k, len(scores)), largest=largest).indices
        return scores[idx], images[idx]

    def add(self, scores: torch.Tensor, images: torch.Tensor) -> None:
        self.high = self._merge(self.high, scores, images, largest=True)
        self.low = self._merge(self.low, scores, images, largest=False)


class _EpochBuffer:
    """What TensorBoardDiagnostics gathers from one val/test epoch, capped in size."""

    def __init__(self, max_scores: int, n_images: int, max_embeddings: int, figures: bool) -> None:
        self.max_scores, self.max_embeddings = max_scores, max_embeddings
        self.figures = figures  # ROC/PR figure, extreme images, embeddings (the costly drawings)
        self.scores = _Scores()
        self.extremes = _Extremes(n_images) if n_images > 0 else None
        self.codes: list[torch.Tensor] = []
        self.code_meta: list[
            tuple[torch.Tensor, torch.Tensor, torch.Tensor]
        ] = []  # label, target, image

    def n_codes(self) -> int:
        return sum(len(c) for c in self.codes)


class TensorBoardDiagnostics(pl.Callback):
    """Score histograms, ROC/PR curves, extreme images and reconstructions, latents, hparams.

    From the scores the validation pass already computes (at most `max_scores` of them): score
    histograms and TensorBoard's PR curve every `every_n_epochs` validation epochs; the drawn
    ROC/PR figure, the `n_images` highest- and lowest-scored images and the latent codes of the
    first `max_embeddings` samples every `figures_every_n_epochs` epochs and at the last epoch
    (rendering them took longer than the validation pass itself); everything at test end.
    Does nothing unless a TensorBoardLogger is attached (so also nothing under a fast dev run).
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        max_scores: int = 10000,
        n_images: int = 8,
        max_embeddings: int = 500,
        figures_every_n_epochs: int = 10,
    ) -> None:
        for key, value, low in (
            ("every_n_epochs", every_n_epochs, 1),
            ("figures_every_n_epochs", figures_every_n_epochs, 1),
            ("max_scores", max_scores, 1),
            ("n_images", n_images, 0),
            ("max_embeddings", max_embeddings, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"callbacks.tensorboard.{key}", value, f"an integer >= {low}")
        self.every_n_epochs, self.max_scores = every_n_epochs, max_scores
        self.n_images, self.max_embeddings = n_images, max_embeddings
        self.figures_every_n_epochs = figures_every_n_epochs
        self._buffer: _EpochBuffer | None = None
        self._warned: set[str] = set()

    @staticmethod
    def _writer(trainer: pl.Trainer) -> Any:
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                return logger.experiment
        return None

    def _warn_once(self, what: str, message: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            rank_zero_warn(message)

    # --- collection -------------------------------------------------------------------------
    def _start(self, trainer: pl.Trainer, active: bool, figures: bool = True) -> None:
        active = active and self._writer(trainer) is not None
        self._buffer = (
            _EpochBuffer(
                self.max_scores,
                self.n_images if figures else 0,
                self.max_embeddings if figures else 0,
                figures,
            )
            if active
            else None
        )

    @torch.no_grad()
    def _collect(self, pl_module: pl.LightningModule, batch: Batch) -> None:
        buf = self._buffer
        if buf is None:
            return
        scores, images = batch_scores(pl_module), batch["image"]
        room = buf.max_scores - len(buf.scores)
        if room > 0:
            buf.scores.add(scores[:room], batch["target"][:room])
        if buf.extremes is not None:
            buf.extremes.add(scores.detach(), images)
        room = buf.max_embeddings - buf.n_codes()
        if room > 0 and "embeddings" not in self._warned:
            try:
                codes = pl_module.encode(images[:room])
            except NotImplementedError as exc:
                self._warn_once("embeddings", f"no latent codes for the embedding projector: {exc}")
                return
            buf.codes.append(codes.float().cpu())
            buf.code_meta.append(
                (batch["label"][:room].cpu(), batch["target"][:room].cpu(), images[:room].cpu())
            )

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and epoch == trainer.max_epochs
        figures = last or epoch % self.figures_every_n_epochs == 0
        due = figures or epoch % self.every_n_epochs == 0
        self._start(trainer, due and not trainer.sanity_checking, figures)

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Batch,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._collect(pl_module, batch)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer, pl_module, "val")

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start(trainer, True)

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Batch,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._collect(pl_module, batch)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer, pl_module, "test")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The hparams tab: the run's config against its final test metrics, one row per run."""
        writer = self._writer(trainer)
        if writer is None:
            return
        from torch.utils.tensorboard.summary import hparams

        config = getattr(pl_module, "run_config", None)
        source = (
            {k: config[k] for k in ("model", "data", "seed") if k in config}
            if config
            else dict(pl_module.hparams)
        )
        params = {k: v for k, v in _flat_hparams(source).items() if not k.endswith("_dir")}
        metrics = {
            k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")
        }
        if not metrics:
            return
        # The values are the scalars already logged under the same tags in this run.
        file_writer = writer._get_file_writer()
        for summary in hparams(params, metrics):
            file_writer.add_summary(summary)
        file_writer.flush()

    # --- drawing ----------------------------------------------------------------------------
    @torch.no_grad()
    def _write(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        buf, self._buffer = self._buffer, None
        writer = self._writer(trainer)
        if buf is None or writer is None or not len(buf.scores):
            return
        step = trainer.global_step
        scores, targets = buf.scores.arrays()
        outlier = targets > 0
        for name, mask in (("inliers", ~outlier), ("outliers", outlier)):
            if mask.any():
                writer.add_histogram(f"{stage}/scores_{name}", scores[mask], step)
        if outlier.any() and (~outlier).any():
            spread = (scores.max() - scores.min()).clamp_min(1e-12)
            writer.add_pr_curve(
                f"{stage}/pr_curve", outlier, (scores - scores.min()) / spread, step
            )
            if buf.figures:
                self._roc_figure(writer, f"{stage}/roc_pr_curves", scores, outlier, step)
        if buf.extremes is not None and buf.extremes.high is not None:
            writer.add_image(
                f"{stage}/highest_lowest_scored", self._extremes_grid(pl_module, buf.extremes), step
            )
        if buf.codes:
            labels, target, images = (
                torch.cat(parts) for parts in zip(*buf.code_meta, strict=True)
            )
            meta = [
                [str(int(c)), "outlier" if t else "inlier"]
                for c, t in zip(labels, target, strict=True)
            ]
            writer.add_embedding(
                torch.cat(buf.codes),
                metadata=meta,
                metadata_header=["label", "target"],
                label_img=images.clamp(0, 1),
                global_step=step,
                tag=f"{stage}/latent",
            )
        writer.flush()

    @staticmethod
    def _extremes_grid(pl_module: pl.LightningModule, extremes: _Extremes) -> torch.Tensor:
        """Rows: highest-scored images, their reconstructions, lowest-scored, theirs."""
        from torchvision.utils import make_grid

        high, low = extremes.high[1], extremes.low[1]
        rows = [high, pl_module.reconstruct(high), low, pl_module.reconstruct(low)]
        grid = torch.cat([r.float().clamp(0, 1).cpu() for r in rows])
        scale = max(1, math.ceil(28 / grid.shape[-1]))  # 8x8 digits are unreadable at 1:1
        if scale > 1:
            grid = F.interpolate(grid, scale_factor=scale, mode="nearest")
        return make_grid(grid, nrow=len(high), padding=2, pad_value=1.0)

    def _roc_figure(
        self, writer: Any, tag: str, scores: torch.Tensor, outlier: torch.Tensor, step: int
    ) -> None:
        """ROC and precision-recall curves side by side (TensorBoard has no ROC plugin)."""
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError:
            self._warn_once(
                "matplotlib", "matplotlib is not installed: no ROC figure in TensorBoard"
            )
            return
        from sklearn.metrics import auc, precision_recall_curve, roc_curve

        y, s = outlier.numpy(), scores.numpy()
        fpr, tpr, _ = roc_curve(y, s)
        precision, recall, _ = precision_recall_curve(y, s)
        fig = Figure(figsize=(8, 4), dpi=80)
        roc_ax, pr_ax = fig.subplots(1, 2)
        roc_ax.plot(fpr, tpr, label=f"AUROC {auc(fpr, tpr):.3f}")
        roc_ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
        roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
        pr_ax.plot(recall, precision, label=f"outlier rate {y.mean():.3f}")
        pr_ax.set(xlabel="recall", ylabel="precision", title="precision-recall", ylim=(0, 1.02))
        for ax in (roc_ax, pr_ax):
            ax.legend(loc="lower right")
        fig.tight_layout()
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        image = np.asarray(canvas.buffer_rgba())[..., :3]
        writer.add_image(tag, image, step, dataformats="HWC")
