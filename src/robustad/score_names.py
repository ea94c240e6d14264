"""Short names of scores, shared by the scorers and `robustad-report` (which must not import
torch to read a sweep)."""

from __future__ import annotations

from collections.abc import Sequence


def score_label(metrics: Sequence[str], smoothing: float = 0.0) -> str:
    """A Reconstruction score's short name: `l2_cosine`, or `l2_cosine_smooth1` when blurred."""
    label = "_".join(metrics)
    return f"{label}_smooth{smoothing:g}" if smoothing else label
