"""Decision thresholds on anomaly scores, with PyOD's semantics: `score > threshold` is an outlier.

Pure functions on arrays so that training (callback), evaluation and the scorer agree exactly.
Every rule is applied to scores of held-out images (the validation split: part of the
contaminated training pool the weights never fitted), because training scores are lower than
those of any new image and a threshold taken from them flags too much new data. Only `f1`
reads labels; `contamination` needs the outlier fraction (PyOD), `mad` and `iqr` nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from robustad.errors import ConfigError

METHODS = ("contamination", "fixed", "f1", "mad", "iqr")
# Outlier fences from the score distribution's shape alone (no contamination, no labels).
MAD_FENCE = 3.0  # median + 3 scaled MADs (Hampel's rule)
IQR_FENCE = 1.5  # Q3 + 1.5 IQR (Tukey's fence)

ArrayLike = np.ndarray | torch.Tensor


def _as_numpy(values: ArrayLike) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)


def check_method(method: str, value: float | None, contamination: float | None) -> None:
    """Fail before training when the threshold settings cannot work."""
    key = "callbacks.threshold"
    if method not in METHODS:
        raise ConfigError(f"{key}.method", method, f"one of {list(METHODS)}")
    if method == "fixed" and (
        value is None or isinstance(value, bool) or not isinstance(value, int | float)
    ):
        raise ConfigError(f"{key}.value", value, "a number (the fixed threshold) when method=fixed")
    if (
        method == "contamination"
        and contamination is not None
        and not 0.0 <= float(contamination) < 1.0
    ):
        raise ConfigError(
            f"{key}.contamination",
            contamination,
            "a fraction 0 <= c < 1, or null for the training split's outlier share",
        )


def contamination_threshold(train_scores: ArrayLike, contamination: float) -> float:
    """The (1 - c) quantile of the training scores, as PyOD's `threshold_` (linear interp.)."""
    scores = _as_numpy(train_scores)
    if scores.size == 0:
        raise ValueError("no training scores to take a quantile of")
    return float(np.percentile(scores, 100.0 * (1.0 - float(contamination))))


def f1_threshold(scores: ArrayLike, targets: ArrayLike) -> float:
    """The F1-maximising threshold on labelled scores; halfway between two scores (`>` rule)."""
    s, y = _as_numpy(scores), _as_numpy(targets) > 0.5
    if s.size == 0 or not y.any():
        raise ValueError("an F1-optimal threshold needs scored samples with at least one outlier")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    # Cut after the last of each run of equal scores: flag the k highest-scored samples.
    last_of_run = np.r_[s[1:] != s[:-1], True]
    tp = np.cumsum(y)[last_of_run]
    flagged = np.flatnonzero(last_of_run) + 1
    f1 = 2 * tp / (flagged + y.sum())
    best = int(np.argmax(f1))
    cut = flagged[best] - 1  # index of the lowest flagged score
    below = s[cut + 1] if cut + 1 < s.size else s[cut] - max(1.0, abs(s[cut]))
    return float((s[cut] + below) / 2.0)


def mad_threshold(scores: ArrayLike, k: float = MAD_FENCE) -> float:
    """median + k x 1.4826 x MAD: robust to the outliers it is meant to flag."""
    s = _as_numpy(scores)
    median = np.median(s)
    return float(median + k * 1.4826 * np.median(np.abs(s - median)))


def iqr_threshold(scores: ArrayLike, k: float = IQR_FENCE) -> float:
    """Tukey's upper fence, Q3 + k x (Q3 - Q1)."""
    q1, q3 = np.percentile(_as_numpy(scores), [25.0, 75.0])
    return float(q3 + k * (q3 - q1))


def choose_threshold(
    method: str,
    scores: ArrayLike,
    targets: ArrayLike | None = None,
    contamination: float | None = None,
    value: float | None = None,
) -> float:
    """The threshold `method` picks from held-out `scores` (targets only for `f1`)."""
    if method == "fixed":
        return float(value)
    if method == "contamination":
        return contamination_threshold(scores, contamination)
    if method == "f1":
        return f1_threshold(scores, targets)
    if method == "mad":
        return mad_threshold(scores)
    if method == "iqr":
        return iqr_threshold(scores)
    raise ValueError(f"unknown threshold method {method!r}; one of {list(METHODS)}")


def binary_report(scores: ArrayLike, targets: ArrayLike, threshold: float) -> dict[str, Any]:
    """Precision, recall, F1 and confusion matrix [[tn, fp], [fn, tp]] of `score > threshold`."""
    s, y = _as_numpy(scores), _as_numpy(targets) > 0.5
    pred = s > threshold
    tp, fp = int(np.sum(pred & y)), int(np.sum(pred & ~y))
    fn, tn = int(np.sum(~pred & y)), int(np.sum(~pred & ~y))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "confusion_matrix": [[tn, fp], [fn, tp]],
    }
