"""Every model config: shapes, finite loss, a step lowers the loss, far-off inputs score higher."""

from __future__ import annotations

import pytest
import torch

from robustad.assembly import build as build_node
from robustad.errors import ArgumentError, ConfigError
from robustad.models import AnomalyModule, PCAModule
from robustad.models.base import EpochMeans
from tests.conftest import synthetic_images

# Tiny networks for 1x8x8 inputs (data=digits), so every test runs in well under a second.
TINY = {
    "ae": ["model.net.hidden_dims=[32]", "model.net.latent_dim=4"],
    "cae": ["model.net.channels=[4,8]", "model.net.latent_dim=4"],
    "vae": ["model.net.hidden_dims=[32]", "model.net.latent_dim=4"],
    "rvae": ["model.net.widths=[32,16]", "model.net.n_layers=1", "model.net.latent_dim=4"],
    "rae": ["model.net.widths=[32,16]", "model.net.n_layers=1", "model.net.latent_dim=4"],
    "pca": ["model.net.rank=4"],
    "rsrae": ["model.net.hidden_dims=[32]", "model.net.D=16", "model.net.d=4"],
    "rsrae_conv": ["model.net.channels=[4,8,16]", "model.net.d=4"],
}
GRADIENT_MODELS = [name for name in TINY if name != "pca"]


def build(make_cfg, name: str, *extra: str) -> AnomalyModule:
    cfg = make_cfg([f"model={name}", "data=digits", *TINY[name], *extra])
    return build_node(cfg.model)


def inliers(n: int = 32, seed: int = 0) -> torch.Tensor:
    """One 'class' of 8x8 images (a bright bar at a fixed row plus noise), floats in [0, 1]."""
    images = synthetic_images(torch.full((n,), 4).numpy(), size=8, seed=seed)
    return torch.from_numpy(images).float().div(255).unsqueeze(1)


def fit(model: AnomalyModule, x: torch.Tensor, steps: int) -> None:
    """A short fit on a fixed batch (PCA: its closed-form fit)."""
    if isinstance(model, PCAModule):
        model.net.accumulate(x)
        model.net.fit()
    else:
        optimizer = model.optimizer_factory(params=model.parameters(), lr=1e-2)
        model.train()
        for _ in range(steps):
            optimizer.zero_grad()
            model.training_losses(x)["loss"].backward()
            optimizer.step()
    model.eval()
    model.calibrate([x])


def loss_on(model: AnomalyModule, x: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(1)  # the same VAE samples before and after the step
    return model.training_losses(x)["loss"]


@pytest.mark.parametrize("name", list(TINY))
def test_shapes_and_finite_loss(make_cfg, name: str) -> None:
    model = build(make_cfg, name)
    x = inliers(6)
    assert model.reconstruct(x).shape == x.shape
    terms = model.training_losses(x)
    assert all(torch.isfinite(v) for v in terms.values())
    assert terms["loss"].shape == ()
    fit(model, x, steps=1)
    assert model.anomaly_score(x).shape == (6,)


@pytest.mark.parametrize("name", GRADIENT_MODELS)
def test_one_step_lowers_the_loss_on_a_fixed_batch(make_cfg, name: str) -> None:
    torch.manual_seed(0)
    model = build(make_cfg, name)
    x = inliers()
    model.train()
    optimizer = model.optimizer_factory(params=model.parameters())
    before = loss_on(model, x)
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    assert loss_on(model, x).item() < before.item()


@pytest.mark.parametrize("name", list(TINY))
def test_far_off_input_scores_higher_after_a_short_fit(make_cfg, name: str) -> None:
    torch.manual_seed(0)
    model = build(make_cfg, name)
    x = inliers()
    fit(model, x, steps=100)
    far_off = 1.0 - inliers(8, seed=1)  # inverted images: nothing like the training data
    with torch.no_grad():
        assert model.anomaly_score(far_off).min() > model.anomaly_score(x[:8]).max()


@pytest.mark.parametrize("score", ["l2", "l21", "l1", "cosine", "squared", "rapp_sap", "rapp_nap"])
def test_every_score_ranks_far_off_inputs_higher(make_cfg, score: str) -> None:
    torch.manual_seed(0)
    model = build(make_cfg, "ae", f"model/score={score}")
    x = inliers()
    fit(model, x, steps=100)
    far_off = 1.0 - inliers(8, seed=1)
    scores = model.anomaly_score(torch.cat([x[:8], far_off]))
    assert scores.shape == (16,)
    assert scores[8:].min() > scores[:8].max()


def test_vae_negative_elbo_score_and_kl_warmup(make_cfg) -> None:
    torch.manual_seed(0)
    model = build(make_cfg, "vae", "model/score=neg_elbo", "model.kl_warmup_steps=10")
    assert model.current_kl_weight() == 0.0  # step 0 of the warm-up
    x = inliers()
    fit(model, x, steps=100)
    far_off = 1.0 - inliers(8, seed=1)
    assert model.anomaly_score(far_off).min() > model.anomaly_score(x[:8]).max()


@pytest.mark.parametrize(
    ("name", "override", "key"),
    [
        ("ae", "model.score.metric=bogus", "model.score.metric"),
        ("vae", "model.kl_weight=-1", "model.kl_weight"),
        ("vae", "model.mc_samples=0", "model.mc_samples"),
        ("rsrae", "model.mode=sometimes", "model.mode"),
        ("rae", "model.net.n_layers=-1", "model.net.n_layers"),
        ("cae", "model.net.channels=[]", "model.net.channels"),
        ("cae", "model.net.kernel_sizes=[3,3,3]", "model.net.kernel_sizes"),
        ("pca", "model.net.rank=65", "model.net.rank"),
        ("ae", "model/score=rapp_nap model.score.components=0", "model.score.components"),
        ("pca", "model/score=neg_elbo", "model.score"),
    ],
)
def test_bad_model_values_name_the_key(make_cfg, name: str, override: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(make_cfg, name, *override.split())
    assert info.value.key == key


def test_networks_name_their_own_arguments_outside_configs() -> None:
    """Networks know nothing of configs: a plain ValueError naming the argument."""
    from robustad.models.networks import MLPAutoencoder

    with pytest.raises(ArgumentError, match="invalid hidden_dims: \\[0\\]") as info:
        MLPAutoencoder((1, 8, 8), hidden_dims=[0])
    assert isinstance(info.value, ValueError) and not isinstance(info.value, ConfigError)


def test_epoch_means_weight_each_batch_by_its_size_and_start_over() -> None:
    means = EpochMeans()
    means.add({"loss": torch.tensor(1.0), "term": torch.tensor(4.0)}, weight=3)
    means.add({"grad_norm": torch.tensor(2.0)}, weight=1)
    means.add({"loss": torch.tensor(3.0), "term": torch.tensor(0.0)}, weight=1)
    popped = {name: float(value) for name, value in means.pop().items()}
    assert popped == pytest.approx({"loss": 1.5, "term": 3.0, "grad_norm": 2.0})
    assert means.pop() == {}
