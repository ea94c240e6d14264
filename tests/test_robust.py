"""Contamination-robust training on hand-made data: planted outliers are left out of the loss."""

from __future__ import annotations

import pytest
import torch

from robustad.errors import ConfigError
from robustad.models import AEModule
from robustad.models.networks import MLPAutoencoder
from robustad.models.robust import TrimmedLoss, outlier_share, reduce_terms


def planted_losses() -> torch.Tensor:
    """Eight ordinary losses and two planted outliers (indices 3 and 7)."""
    losses = torch.tensor([1.0, 1.1, 0.9, 50.0, 1.2, 0.8, 1.05, 40.0, 0.95, 1.0])
    return losses


def test_trimmed_loss_drops_the_planted_outliers_after_warm_up() -> None:
    rule = TrimmedLoss(contamination=0.2, warmup_epochs=1)
    assert rule.fraction == pytest.approx(0.2)
    assert rule.weights(planted_losses(), epoch=0) is None  # warm-up: every sample counts
    weights = rule.weights(planted_losses(), epoch=1)
    assert weights.tolist() == [1, 1, 1, 0, 1, 1, 1, 0, 1, 1]


def test_fraction_from_ratio_factor_and_cap() -> None:
    assert outlier_share(None, 0.25) == pytest.approx(0.2)  # r / (1 + r)
    assert outlier_share(0.1, None) == pytest.approx(0.1)
    assert outlier_share(None, None) is None
    assert TrimmedLoss(factor=3, contamination=0.1).fraction == pytest.approx(0.3)
    assert TrimmedLoss(factor=3, contamination=0.4).fraction == pytest.approx(0.5)


def test_unknown_contamination_is_estimated_from_the_batch() -> None:
    rule = TrimmedLoss(warmup_epochs=0)  # nothing stated: median + 3 MAD
    assert rule.fraction is None
    assert rule.weights(planted_losses(), epoch=0).tolist() == [1, 1, 1, 0, 1, 1, 1, 0, 1, 1]
    assert rule.weights(torch.ones(6), epoch=0) is None  # nothing stands out


def test_no_trimming_and_clean_data_keep_every_sample() -> None:
    assert TrimmedLoss(fraction=0).weights(planted_losses(), epoch=5) is None
    assert TrimmedLoss(contamination=0.0).weights(planted_losses(), epoch=5) is None


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"fraction": 1.5}, "robust.fraction"),
        ({"factor": 0}, "robust.factor"),
        ({"warmup_epochs": -1}, "robust.warmup_epochs"),
    ],
)
def test_bad_settings_name_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        TrimmedLoss(**kwargs)


def test_weighted_means_ignore_the_dropped_samples() -> None:
    weights = torch.tensor([1.0, 0.0, 1.0])
    terms = {"loss": torch.tensor([1.0, 100.0, 3.0]), "orthogonality": torch.tensor(5.0)}
    reduced = reduce_terms(terms, weights)
    assert reduced["loss"].item() == pytest.approx(2.0)
    assert reduced["orthogonality"].item() == 5.0


def test_model_gradient_comes_from_the_inliers_only() -> None:
    """A batch of inliers plus planted outliers gives the loss and gradient of the inliers."""
    torch.manual_seed(0)
    net = MLPAutoencoder(input_shape=(1, 4, 4), hidden_dims=[8], latent_dim=2)
    model = AEModule(
        net,
        optimizer=torch.optim.SGD,
        robust=TrimmedLoss(contamination=0.25, warmup_epochs=0),
    )
    inliers = torch.full((6, 1, 4, 4), 0.5) + 0.01 * torch.randn(6, 1, 4, 4)
    outliers = torch.zeros(2, 1, 4, 4)
    outliers[:, :, ::2] = 1.0  # far from the inliers and from the untrained output
    model.train()
    mixed = model.training_losses(torch.cat([inliers, outliers]))["loss"]
    mixed.backward()
    grads_mixed = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.robust = None
    clean = model.training_losses(inliers)["loss"]
    clean.backward()
    assert mixed.item() == pytest.approx(clean.item(), rel=1e-6)
    for got, want in zip(grads_mixed, (p.grad for p in model.parameters()), strict=True):
        assert torch.allclose(got, want, atol=1e-6)


def test_training_reports_the_share_left_out_and_evaluation_does_not() -> None:
    net = MLPAutoencoder(input_shape=(1, 4, 4), hidden_dims=[8], latent_dim=2)
    model = AEModule(net, optimizer=torch.optim.SGD, robust=TrimmedLoss(fraction=0.25))
    x = torch.rand(8, 1, 4, 4)
    model.train()
    assert model.training_losses(x)["left_out"].item() == 0.0  # warm-up epoch: none left out
    model.robust = TrimmedLoss(fraction=0.25, warmup_epochs=0)
    assert model.training_losses(x)["left_out"].item() == pytest.approx(0.25)
    model.robust = TrimmedLoss(warmup_epochs=0)  # nothing stated: median + 3 MAD
    alike = torch.full((8, 1, 4, 4), 0.5)
    assert model.training_losses(alike)["left_out"].item() == 0.0
    alike[7] = 10.0  # one planted outlier: the estimate is its share
    assert model.training_losses(alike)["left_out"].item() == pytest.approx(1 / 8)
    model.robust = TrimmedLoss(fraction=0)  # robust=none: nothing to report
    assert "left_out" not in model.training_losses(x)
    model.robust = TrimmedLoss(fraction=0.25)
    model.eval()
    assert "left_out" not in model.training_losses(x)


def test_evaluation_losses_are_not_trimmed() -> None:
    net = MLPAutoencoder(input_shape=(1, 4, 4), hidden_dims=[8], latent_dim=2)
    model = AEModule(net, optimizer=torch.optim.SGD, robust=TrimmedLoss(fraction=0.4))
    x = torch.rand(10, 1, 4, 4)
    model.eval()
    trimmed_off = model.training_losses(x)["loss"]
    assert trimmed_off.item() == pytest.approx(model.sample_losses(x)["loss"].mean().item())


def test_combined_score_is_a_sum_of_training_standardised_scores(tmp_path) -> None:
    """l2_cosine = (l2 - mean) / std + (cosine - mean) / std with training-split statistics,
    kept as buffers: a reloaded model scores identically without the training data."""
    from robustad.models.losses import cosine_error, l2_error

    torch.manual_seed(0)
    make = lambda: AEModule(  # noqa: E731
        MLPAutoencoder(input_shape=(1, 4, 4), hidden_dims=[8], latent_dim=2),
        optimizer=torch.optim.SGD,
        score="l2_cosine",
    )
    model = make()
    train_x, new_x = torch.rand(40, 1, 4, 4), torch.rand(6, 1, 4, 4)
    model.calibrate([train_x[:20], train_x[20:]])
    with torch.no_grad():
        parts = [f(train_x, model.reconstruct(train_x)) for f in (l2_error, cosine_error)]
        new_parts = [f(new_x, model.reconstruct(new_x)) for f in (l2_error, cosine_error)]
    expected = sum((n - p.mean()) / p.std() for n, p in zip(new_parts, parts, strict=True))
    assert torch.allclose(model.anomaly_score(new_x), expected, atol=1e-5)
    reloaded = make()
    reloaded.load_state_dict(model.state_dict())
    assert torch.allclose(reloaded.anomaly_score(new_x), expected, atol=1e-5)
