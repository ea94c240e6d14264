"""Reconstruction scores on hand-made images: what smoothing forgives and what it does not."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from robustad.errors import ConfigError
from robustad.models import losses
from robustad.models.scoring import Reconstruction, scorer_named
from robustad.report import score_name


def stroke(column: int | None, size: int = 16) -> torch.Tensor:
    """A (1, 1, size, size) image with one vertical stroke (none when column is None)."""
    image = torch.zeros(1, 1, size, size)
    if column is not None:
        image[..., 3:13, column] = 1.0
    return image


def scored(scorer: Reconstruction, x: torch.Tensor, x_hat: torch.Tensor) -> float:
    return float(scorer(SimpleNamespace(reconstruct=lambda _: x_hat), x))


def test_gaussian_blur_keeps_an_inner_pixels_mass_and_is_symmetric() -> None:
    image = torch.zeros(1, 2, 11, 11)
    image[0, 1, 5, 5] = 1.0
    blurred = losses.gaussian_blur(image, 1.0)
    assert blurred.shape == image.shape
    assert blurred[0, 0].abs().sum() == 0  # channels stay apart
    assert torch.isclose(blurred[0, 1].sum(), torch.tensor(1.0))
    assert torch.allclose(blurred[0, 1], blurred[0, 1].T)
    assert torch.allclose(blurred[0, 1], blurred[0, 1].flip(0))
    assert blurred[0, 1, 5, 5] == blurred[0, 1].max()


def test_smoothing_forgives_a_shifted_stroke_more_than_a_missing_one() -> None:
    x, shifted, missing = stroke(7), stroke(8), stroke(None)
    plain, smooth = Reconstruction("l2"), Reconstruction("l2", smoothing=1.0)
    # Pixel by pixel, a stroke one pixel to the side is wrong twice: worse than no stroke at all.
    assert scored(plain, x, shifted) > scored(plain, x, missing)
    # At the scale of strokes the order turns: the shifted stroke is the nearer one (1.06 vs 1.59).
    assert scored(smooth, x, shifted) < 0.7 * scored(smooth, x, missing)
    assert scored(smooth, x, x) == 0


def test_smoothed_cosine_ignores_brightness_like_the_plain_one() -> None:
    x = stroke(7)
    smooth = Reconstruction("cosine", smoothing=1.0)
    assert scored(smooth, x, 0.5 * x) == pytest.approx(0.0, abs=1e-6)
    assert scored(smooth, x, stroke(12)) > 0.5


def test_smoothed_score_names_round_trip_through_configs_and_reports() -> None:
    scorer = scorer_named("l2_cosine_smooth1")
    assert (scorer.metrics, scorer.smoothing, scorer.name) == (
        ["l2", "cosine"],
        1.0,
        "l2_cosine_smooth1",
    )
    node = {"_target_": "robustad.models.scoring.Reconstruction", **scorer.init_arguments}
    assert score_name(node) == "l2_cosine_smooth1"
    assert score_name({**node, "smoothing": 0.0}) == "l2_cosine"
    assert scorer_named("l1").name == "l1"


@pytest.mark.parametrize("smoothing", [-1.0, True, "wide"])
def test_bad_smoothing_names_the_key_and_what_is_allowed(smoothing: object) -> None:
    with pytest.raises(ConfigError, match=r"model\.score\.smoothing.*sigma in pixels"):
        Reconstruction("l2", smoothing=smoothing)  # type: ignore[arg-type]


def test_smoothing_refuses_images_without_height_and_width() -> None:
    flat = torch.zeros(2, 64)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\) images"):
        scored(Reconstruction("l2", smoothing=1.0), flat, flat)
