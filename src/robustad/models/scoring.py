"""Scorers: how a detector turns an image into one anomaly score (higher = more anomalous).

A scorer is a Hydra component of the model (`model/score=<name>`, configs/model/score/) and an
`nn.Module`: whatever it fits on training images after the weights (RaPP's NAP axes, the
statistics of a combined score) are its buffers, saved with the weights. It reads the model
through a small interface: `reconstruct(x)`, `hidden_activations(x)` (RaPP's pathway) and, for
`NegativeELBO`, `negative_elbo(x)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from robustad.errors import ConfigError
from robustad.models import losses, rapp
from robustad.models.arguments import RecordsArguments
from robustad.score_names import score_label

ErrorFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Per-sample reconstruction errors, higher = more anomalous.
ERRORS: dict[str, ErrorFn] = {
    "l2": losses.l2_error,
    "squared": losses.squared_error,
    "l21": losses.l21_error,
    "l1": losses.l1_error,
    "cosine": losses.cosine_error,
}
AGGREGATIONS = ("sap", "nap")


class Scorer(RecordsArguments, nn.Module):
    """Base: `forward(model, x)` gives (B,) scores; `fit` fits training statistics, if any."""

    name: str
    # How many training images `fit` needs at most (None: the whole training split).
    statistics_images: int | None = None

    def __init__(self) -> None:
        super().__init__()

    @property
    def needs_statistics(self) -> bool:
        return False

    @property
    def statistics_fitted(self) -> bool:
        return True

    def fit(self, model: Any, images: Iterable[torch.Tensor]) -> None:
        """Fit the statistics to the model's current weights (eval mode, no grad)."""

    def check_model(self, model: Any) -> None:
        """Refuse a model this scorer cannot read, when the model is built."""


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

    def forward(self, components: torch.Tensor) -> torch.Tensor:
        if not bool(self.fitted):
            raise RuntimeError("a combined score needs training statistics: calibrate() first")
        return ((components - self.mean) / self.std).sum(dim=1)


class Reconstruction(Scorer):
    """A reconstruction error of x against x~ (`l2`, `squared`, `l21`, `l1`, `cosine`), or the
    sum of several, each standardised by its mean and std over training images (`[l2, cosine]`:
    l2 sees how much of an image is wrong, cosine which way, regardless of brightness).
    `smoothing` > 0 blurs x and x~ alike with a Gaussian of that many pixels first, so that
    errors are compared at the scale of strokes rather than of single pixels."""

    # A mean and a std need no more than a random few thousand training images: the cap keeps
    # the refit before each validation to a fraction of an epoch.
    statistics_images = 2048

    def __init__(self, metric: str | Sequence[str] = "l2", smoothing: float = 0.0) -> None:
        super().__init__()
        metrics = [metric] if isinstance(metric, str) else list(metric)
        if not metrics or any(m not in ERRORS for m in metrics) or len(set(metrics)) < len(metrics):
            raise ConfigError(
                "model.score.metric", metric, f"one of {sorted(ERRORS)}, or a list of them"
            )
        if isinstance(smoothing, bool) or not isinstance(smoothing, int | float) or smoothing < 0:
            raise ConfigError(
                "model.score.smoothing", smoothing, "0 (none) or a Gaussian sigma in pixels > 0"
            )
        self.metrics = metrics
        self.smoothing = float(smoothing)
        self.name = score_label(metrics, self.smoothing)
        self.scaler = ScoreStandardizer(len(metrics)) if len(metrics) > 1 else None

    @property
    def needs_statistics(self) -> bool:
        return self.scaler is not None

    @property
    def statistics_fitted(self) -> bool:
        return self.scaler is None or bool(self.scaler.fitted)

    def pair(self, model: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x and its reconstruction, as the errors compare them."""
        x_hat = model.reconstruct(x)
        if not self.smoothing:
            return x, x_hat
        if x.dim() != 4:
            raise ValueError(f"smoothing needs (B, C, H, W) images, got shape {tuple(x.shape)}")
        return (
            losses.gaussian_blur(x, self.smoothing),
            losses.gaussian_blur(x_hat.reshape(x.shape), self.smoothing),
        )

    def components(self, model: Any, x: torch.Tensor) -> torch.Tensor:
        x, x_hat = self.pair(model, x)
        return torch.stack([ERRORS[m](x, x_hat) for m in self.metrics], dim=1)

    def forward(self, model: Any, x: torch.Tensor) -> torch.Tensor:
        if self.scaler is None:
            return ERRORS[self.metrics[0]](*self.pair(model, x))
        return self.scaler(self.components(model, x))

    def fit(self, model: Any, images: Iterable[torch.Tensor]) -> None:
        if self.scaler is not None:
            self.scaler.fit(torch.cat([self.components(model, x) for x in images]))


class RaPP(Scorer):
    """RaPP (Kim et al., ICLR 2020): differences of hidden activations of x and x~ along the
    encoder. `sap` sums their squares; `nap` whitens them with the training set's principal
    axes (at most `components` of them; null = all). `from_input` starts the pathway at the
    input itself (h_0 = x, whose difference is the reconstruction error)."""

    def __init__(
        self, aggregation: str = "nap", components: int | None = None, from_input: bool = False
    ) -> None:
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise ConfigError("model.score.aggregation", aggregation, f"one of {AGGREGATIONS}")
        if components is not None and (isinstance(components, bool) or int(components) < 1):
            raise ConfigError("model.score.components", components, "null (all) or an integer >= 1")
        self.aggregation, self.from_input = aggregation, bool(from_input)
        self.name = f"rapp_{aggregation}"
        self.nap = rapp.NAPStatistics(components) if aggregation == "nap" else None

    @property
    def needs_statistics(self) -> bool:
        return self.nap is not None

    @property
    def statistics_fitted(self) -> bool:
        return self.nap is None or self.nap.fitted

    def check_model(self, model: Any) -> None:
        if not hasattr(model.net, "hidden_activations"):
            raise ConfigError(
                "model.score",
                self.name,
                f"a score {type(model.net).__name__} supports (no RaPP pathway)",
            )

    def pathway(self, model: Any, x: torch.Tensor) -> list[torch.Tensor]:
        hidden = model.net.hidden_activations(x)
        return [x, *hidden] if self.from_input else hidden

    def differences(self, model: Any, x: torch.Tensor) -> torch.Tensor:
        x_hat = model.reconstruct(x)
        return rapp.path_differences(self.pathway(model, x), self.pathway(model, x_hat))

    def forward(self, model: Any, x: torch.Tensor) -> torch.Tensor:
        differences = self.differences(model, x)
        if self.nap is None:
            return rapp.sap_score(differences)
        return self.nap.score(differences)

    def fit(self, model: Any, images: Iterable[torch.Tensor]) -> None:
        if self.nap is not None:
            self.nap.fit_batches(self.differences(model, x) for x in images)


class NegativeELBO(Scorer):
    """A VAE's negative ELBO (KL weight 1), a Monte Carlo estimate over the model's
    `mc_samples` codes."""

    name = "neg_elbo"

    def check_model(self, model: Any) -> None:
        if not hasattr(model, "negative_elbo"):
            raise ConfigError("model.score", self.name, "a score of a VAE (vae, rvae) only")

    def forward(self, model: Any, x: torch.Tensor) -> torch.Tensor:
        return model.negative_elbo(x)


SCORERS: dict[str, type[Scorer]] = {
    f"robustad.models.scoring.{cls.__name__}": cls for cls in (Reconstruction, RaPP, NegativeELBO)
}


def scorer_named(name: str) -> Scorer:
    """The scorer a short name stands for (`l2`, `l2_cosine`, `rapp_nap`, `neg_elbo`, ...), as
    the configs in configs/model/score/ build it; a convenience for plain Python."""
    if name.startswith("rapp_"):
        return RaPP(name.removeprefix("rapp_"))
    if name == "neg_elbo":
        return NegativeELBO()
    label, _, sigma = name.partition("_smooth")
    metrics = label.split("_")
    return Reconstruction(metrics if len(metrics) > 1 else metrics[0], float(sigma or 0))
