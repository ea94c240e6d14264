"""Contamination-robust training, shared by every trainable model (`robust=...` in train.yaml).

The training set holds outliers. An autoencoder first learns the inliers (the bulk), and the
outliers are then the samples it reconstructs worst; left in the loss, they are learnt too, and
their scores sink toward the inliers'. A trimmed loss (as in least trimmed squares, and the
trimmed/robust autoencoders of Zhou & Paffenroth 2017 and Lai et al. 2020's discussion of
training length) leaves the highest-loss fraction of every batch out of the gradient once a
warm-up has taught the network the bulk. Only the unlabelled training losses are used: the
fraction comes from the contamination the user states (PyOD's `contamination`), or, when that is
unknown, from the batch's own loss distribution (median + 3 MAD).
"""

from __future__ import annotations

import math

import torch

from robustad.errors import ConfigError
from robustad.models.arguments import RecordsArguments

# A loss above median + MAD_CUTOFF * 1.4826 * MAD is an outlier's (3 sigma for a normal bulk).
MAD_CUTOFF = 3.0
MAD_TO_SIGMA = 1.4826


def outlier_share(contamination: float | None, outlier_ratio: float | None) -> float | None:
    """The training split's outlier fraction from either way of stating it, None if unknown."""
    if contamination is not None:
        return float(contamination)
    if outlier_ratio is not None:
        return float(outlier_ratio) / (1.0 + float(outlier_ratio))
    return None


class TrimmedLoss(RecordsArguments):
    """Sample weights for a batch: 0 for its `fraction` highest losses after `warmup_epochs`, 1
    for the rest.

    fraction: null = `factor` x the stated outlier share (`contamination`, or `outlier_ratio`
    r as r / (1 + r)); with neither stated, each batch drops the losses above median + 3 MAD.
    `fraction: 0` (`robust=none`) trains on every sample, as a plain autoencoder does.
    """

    def __init__(
        self,
        fraction: float | None = None,
        factor: float = 1.0,
        warmup_epochs: int = 1,
        contamination: float | None = None,
        outlier_ratio: float | None = None,
    ) -> None:
        if fraction is not None and not (
            isinstance(fraction, int | float)
            and not isinstance(fraction, bool)
            and 0 <= fraction < 1
        ):
            raise ConfigError("robust.fraction", fraction, "null (from the data) or 0 <= f < 1")
        if not (isinstance(factor, int | float) and math.isfinite(factor) and factor > 0):
            raise ConfigError("robust.factor", factor, "a number > 0")
        if (
            isinstance(warmup_epochs, bool)
            or not isinstance(warmup_epochs, int)
            or (warmup_epochs < 0)
        ):
            raise ConfigError("robust.warmup_epochs", warmup_epochs, "an integer >= 0")
        share = outlier_share(contamination, outlier_ratio)
        if fraction is None and share is not None:
            fraction = min(0.5, factor * share)
        self.fraction = fraction  # None: estimated per batch
        self.warmup_epochs = warmup_epochs

    @property
    def active(self) -> bool:
        return self.fraction is None or self.fraction > 0

    @torch.no_grad()
    def weights(self, losses: torch.Tensor, epoch: int) -> torch.Tensor | None:
        """(B,) weights in {0, 1}, or None when every sample counts (warm-up, nothing to trim)."""
        if not self.active or epoch < self.warmup_epochs or losses.numel() < 2:
            return None
        if self.fraction is None:
            median = losses.median()
            mad = (losses - median).abs().median()
            keep = losses <= median + MAD_CUTOFF * MAD_TO_SIGMA * mad
            return keep.to(losses.dtype) if not bool(keep.all()) else None
        n_drop = int(self.fraction * losses.numel())
        if n_drop == 0:
            return None
        weights = torch.ones_like(losses)
        weights[torch.topk(losses, n_drop).indices] = 0.0
        return weights


def left_out_share(weights: torch.Tensor | None, losses: torch.Tensor) -> torch.Tensor:
    """The share of a batch its weights keep out of the gradient (0 when every sample counts)."""
    return losses.new_zeros(()) if weights is None else 1.0 - weights.mean()


def reduce_terms(
    terms: dict[str, torch.Tensor], weights: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    """Per-sample terms (B,) to their (weighted) batch means; scalar terms as they are."""
    reduced = {}
    for name, value in terms.items():
        if value.ndim == 0:
            reduced[name] = value
        elif weights is None:
            reduced[name] = value.mean()
        else:
            reduced[name] = (value * weights).sum() / weights.sum()
    return reduced
