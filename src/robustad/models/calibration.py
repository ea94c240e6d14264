"""What a detector fits on data after its weights: score statistics and the decision threshold.

All of it is held as buffers of one `Calibration` module inside the detector, so it travels in
`state_dict`, in every checkpoint Lightning writes and in any export, and is never patched into
files afterwards. Whoever changes the weights refits it (`AnomalyModule.calibrate`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from robustad.errors import ConfigError
from robustad.models import rapp
from robustad.thresholds import METHODS


class ScoreStandardizer(nn.Module):
    """Mean and std of each component score over training images, saved with the weights."""

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


class Calibration(nn.Module):
    """Score statistics (RaPP's NAP axes, a combined score's means) and the threshold.

    `threshold` is NaN until one is set; `threshold_method` indexes `thresholds.METHODS`
    (-1 = none), so "how was it chosen" survives a checkpoint without pickled strings.
    """

    def __init__(self, nap_components: int | None, n_combined: int, use_nap: bool) -> None:
        super().__init__()
        self.nap = rapp.NAPStatistics(nap_components) if use_nap else None
        self.scaler = ScoreStandardizer(n_combined) if n_combined else None
        self.register_buffer("threshold", torch.tensor(math.nan, dtype=torch.float64))
        self.register_buffer("threshold_method", torch.tensor(-1))

    @property
    def needs_statistics(self) -> bool:
        return self.nap is not None or self.scaler is not None

    @property
    def statistics_fitted(self) -> bool:
        if self.nap is not None:
            return self.nap.fitted
        return self.scaler is None or bool(self.scaler.fitted)

    @property
    def has_threshold(self) -> bool:
        return not math.isnan(float(self.threshold))

    def set_threshold(self, value: float, method: str) -> None:
        self.threshold.fill_(float(value))
        self.threshold_method.fill_(METHODS.index(method))

    def threshold_info(self) -> dict[str, Any] | None:
        """{"method", "value"}, or None when no threshold was ever set."""
        if not self.has_threshold:
            return None
        return {"method": METHODS[int(self.threshold_method)], "value": float(self.threshold)}


def override_threshold(calibration: Calibration, value: Any, key: str) -> None:
    """The one way a user-given threshold replaces the stored one (eval, score, Detector)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(key, value, "a finite number (score > threshold = outlier)")
    calibration.set_threshold(float(value), "fixed")
