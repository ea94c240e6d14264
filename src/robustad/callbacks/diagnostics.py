"""TensorBoard diagnostics drawn from the scores validation and test steps return.

Score histograms per class with the threshold, PR curves, a ROC/PR figure, the highest- and
lowest-scored images labelled with score and true label beside their reconstructions and
error maps, latent codes, and the hparams tab; no second pass over the data.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_warn

from robustad.errors import ConfigError
from robustad.models.base import EpochScores

Batch = dict[str, torch.Tensor]


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
        self.scores = EpochScores()
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
    def _collect(
        self, pl_module: pl.LightningModule, outputs: dict[str, Any], batch: Batch
    ) -> None:
        buf = self._buffer
        if buf is None:
            return
        scores, images = outputs["score"], batch["image"]
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
        self._collect(pl_module, outputs, batch)

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
        self._collect(pl_module, outputs, batch)

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
