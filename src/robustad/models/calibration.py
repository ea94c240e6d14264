"""The decision threshold a detector carries: buffers, so it travels in `state_dict`, in every
checkpoint Lightning writes and in any export, never patched into files afterwards.

(The score's own training statistics, such as RaPP's NAP axes, are buffers of the scorer,
`robustad.models.scoring`.)
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from robustad.errors import ConfigError
from robustad.thresholds import METHODS


class Calibration(nn.Module):
    """`threshold` is NaN until one is set; `threshold_method` indexes `thresholds.METHODS`
    (-1 = none), so "how was it chosen" survives a checkpoint without pickled strings."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("threshold", torch.tensor(math.nan, dtype=torch.float64))
        self.register_buffer("threshold_method", torch.tensor(-1))

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
