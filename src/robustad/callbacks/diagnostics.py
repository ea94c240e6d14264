"""TensorBoard diagnostics drawn from the scores validation and test steps return.

Score histograms per class with the threshold, PR curves, a ROC/PR figure, the highest- and
lowest-scored images labelled with score and true label beside their reconstructions and
error maps, latent codes, and the hparams tab; no second pass over the data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
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
    """The k highest- and k lowest-scored images seen so far (with their scores, class labels
    and targets), kept by merging each batch in."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.high: list[torch.Tensor] | None = None  # [scores, images, labels, targets]
        self.low: list[torch.Tensor] | None = None

    def _merge(
        self, kept: list[torch.Tensor] | None, new: list[torch.Tensor], largest: bool
    ) -> list[torch.Tensor]:
        if kept is not None:
            new = [torch.cat([a, b]) for a, b in zip(kept, new, strict=True)]
        idx = new[0].topk(min(self.k, len(new[0])), largest=largest).indices
        return [t[idx] for t in new]

    def add(
        self,
        scores: torch.Tensor,
        images: torch.Tensor,
        labels: torch.Tensor,
        targets: torch.Tensor,
    ) -> None:
        new = [scores.detach(), images, labels, targets]
        self.high = self._merge(self.high, new, largest=True)
        self.low = self._merge(self.low, new, largest=False)


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
        self._hparams_written = False
        self._last_val: dict[str, float] = {}  # the latest validation's val/* metrics

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
            buf.extremes.add(scores, images, batch["label"], batch["target"])
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

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._last_val = {
                k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")
            }

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start(trainer, True)

    on_test_batch_end = on_validation_batch_end  # the same collection from the test steps

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer, pl_module, "test")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write_hparams(trainer, pl_module)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """A failed run still gets its row in the hparams tab, with the metrics it reached."""
        try:
            self._write_hparams(trainer, pl_module, failed=True)
        except Exception as exc:  # never hide the original failure
            rank_zero_warn(f"could not write the hparams row after a failure: {exc}")

    def _write_hparams(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, failed: bool = False
    ) -> None:
        """The hparams tab: the run's config against its final val/* and test/* metrics, one
        row per run (SummaryWriter.add_hparams, in the run's `hparams` subfolder)."""
        writer = self._writer(trainer)
        if writer is None or self._hparams_written:
            return
        config = getattr(pl_module, "run_config", None)
        source = (
            {k: config[k] for k in ("model", "data", "seed") if k in config}
            if config
            else dict(pl_module.hparams)
        )
        params = {k: v for k, v in _flat_hparams(source).items() if not k.endswith("_dir")}
        params["status"] = "failed" if failed else "done"
        metrics = dict(self._last_val)  # testing resets callback_metrics to test/* alone
        metrics.update(
            (k, float(v))
            for k, v in trainer.callback_metrics.items()
            if k.startswith(("val/", "test/")) and v.numel() == 1
        )
        if not metrics:
            return
        writer.add_hparams(params, metrics, run_name="hparams")
        self._hparams_written = True

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
        if buf.figures:
            threshold = pl_module.calibration.threshold_info()
            histogram = self._histogram_figure(
                scores, outlier, threshold["value"] if threshold else None
            )
            if histogram is not None:
                writer.add_image(f"{stage}/score_histogram", histogram, step, dataformats="HWC")
        if buf.extremes is not None and buf.extremes.high is not None:
            grid = self._extremes_figure(pl_module, buf.extremes)
            if grid is not None:
                writer.add_image(f"{stage}/highest_lowest_scored", grid, step, dataformats="HWC")
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

    def _extremes_figure(
        self, pl_module: pl.LightningModule, extremes: _Extremes
    ) -> np.ndarray | None:
        """Highest- and lowest-scored images, each titled with its score and true class (and
        whether it is an outlier), above its reconstruction and error map |x - x~| (one colour
        scale for all error maps)."""
        figure = self._figure_module()
        if figure is None:
            return None
        blocks = [("highest", extremes.high), ("lowest", extremes.low)]
        k = len(extremes.high[0])
        fig = figure.Figure(figsize=(1.2 * k, 7.5), dpi=80)
        axes = fig.subplots(6, k, squeeze=False)
        drawn = []
        for name, (scores, images, labels, targets) in blocks:
            recon = pl_module.reconstruct(images)
            error = (images - recon).abs().mean(dim=1, keepdim=True)
            drawn.append((name, scores, images, recon, error, labels, targets))
        # One colour scale for every error map, so a small error looks small.
        error_max = max(float(d[4].max()) for d in drawn) or 1.0
        for block, (name, scores, images, recon, error, labels, targets) in enumerate(drawn):
            for col in range(k):
                for row, (what, tensor) in enumerate(
                    (("image", images), ("reconstruction", recon), ("|error|", error))
                ):
                    ax = axes[3 * block + row, col]
                    top = 1.0 if row < 2 else error_max
                    cmap = "gray" if row < 2 else "magma"
                    ax.imshow(_displayable(tensor[col]), cmap=cmap, vmin=0.0, vmax=top)
                    ax.set_xticks([])
                    ax.set_yticks([])
                    if col == 0:
                        ax.set_ylabel(f"{name}\n{what}" if row == 0 else what, fontsize=7)
                kind = "outlier" if int(targets[col]) > 0 else "inlier"
                axes[3 * block, col].set_title(
                    f"{float(scores[col]):.3g}\nclass {int(labels[col])} ({kind})", fontsize=7
                )
        fig.tight_layout()
        return _render(fig)

    def _histogram_figure(
        self, scores: torch.Tensor, outlier: torch.Tensor, threshold: float | None
    ) -> np.ndarray | None:
        """Inlier and outlier score histograms on shared bins, the threshold as a line."""
        figure = self._figure_module()
        if figure is None:
            return None
        fig = figure.Figure(figsize=(6, 3.5), dpi=80)
        ax = fig.subplots()
        bins = np.histogram_bin_edges(scores.numpy(), bins=50)
        for name, mask, color in (
            ("inliers", ~outlier, "tab:blue"),
            ("outliers", outlier, "tab:red"),
        ):
            if mask.any():
                ax.hist(scores[mask].numpy(), bins=bins, alpha=0.6, color=color,
                        label=f"{name} ({int(mask.sum())})")  # fmt: skip
        if threshold is not None:
            ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3g}")
        ax.set(xlabel="anomaly score (higher = more anomalous)", ylabel="images")
        ax.legend(fontsize=8)
        fig.tight_layout()
        return _render(fig)

    def _figure_module(self) -> Any:
        """matplotlib.figure (a dependency; a broken install warns once and draws nothing)."""
        try:
            from matplotlib import figure
        except ImportError:
            self._warn_once("matplotlib", "matplotlib is not installed: no figures in TensorBoard")
            return None
        return figure

    def _roc_figure(
        self, writer: Any, tag: str, scores: torch.Tensor, outlier: torch.Tensor, step: int
    ) -> None:
        """ROC and precision-recall curves side by side (TensorBoard has no ROC plugin)."""
        figure = self._figure_module()
        if figure is None:
            return
        from sklearn.metrics import auc, precision_recall_curve, roc_curve

        y, s = outlier.numpy(), scores.numpy()
        fpr, tpr, _ = roc_curve(y, s)
        precision, recall, _ = precision_recall_curve(y, s)
        fig = figure.Figure(figsize=(8, 4), dpi=80)
        roc_ax, pr_ax = fig.subplots(1, 2)
        roc_ax.plot(fpr, tpr, label=f"AUROC {auc(fpr, tpr):.3f}")
        roc_ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
        roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
        pr_ax.plot(recall, precision, label=f"outlier rate {y.mean():.3f}")
        pr_ax.set(xlabel="recall", ylabel="precision", title="precision-recall", ylim=(0, 1.02))
        for ax in (roc_ax, pr_ax):
            ax.legend(loc="lower right")
        fig.tight_layout()
        writer.add_image(tag, _render(fig), step, dataformats="HWC")


def _render(fig: Any) -> np.ndarray:
    """A matplotlib figure as an (H, W, 3) uint8 image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _displayable(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] as what imshow takes: (H, W) grayscale or (H, W, 3)."""
    x = image.detach().float().clamp(0, 1).cpu()
    return x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).numpy()
