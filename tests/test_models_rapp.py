"""RaPP SAP and NAP against hand-computed values; NAP statistics survive a checkpoint."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustad.models import AEModule
from robustad.models.networks import MLPAutoencoder
from robustad.models.rapp import NAPStatistics
from robustad.models.scoring import RaPP


def hand_set_ae(score: str, rapp_from_input: bool = True) -> AEModule:
    """2 -> 1 -> 2 linear autoencoder: z = x1 + 2 x2, x~ = (z, z)."""
    net = MLPAutoencoder((1, 1, 2), hidden_dims=(), latent_dim=1, output_activation="identity")
    with torch.no_grad():
        encoder, decoder = net.encoder[0], net.decoder[0]
        encoder.weight.copy_(torch.tensor([[1.0, 2.0]]))
        decoder.weight.copy_(torch.tensor([[1.0], [1.0]]))
        nn.init.zeros_(encoder.bias)
        nn.init.zeros_(decoder.bias)
    scorer = RaPP(score.removeprefix("rapp_"), from_input=rapp_from_input)
    return AEModule(net, optimizer=torch.optim.SGD, score=scorer)


def test_sap_matches_a_hand_computed_case() -> None:
    model = hand_set_ae("rapp_sap")
    x = torch.tensor([[[[1.0, 3.0]]]])
    # z = 7, x~ = (7, 7), z(x~) = 21: input difference (-6, -4), code difference -14.
    assert model.anomaly_score(x).item() == pytest.approx(36 + 16 + 196)
    # The pathway from the first hidden layer on: the code difference alone.
    assert hand_set_ae("rapp_sap", rapp_from_input=False).anomaly_score(x).item() == 196


def test_nap_matches_a_hand_computed_case() -> None:
    stats = NAPStatistics()
    # Centred training differences along the axes: variances (n - 1 = 3) 2/3 and 8/3.
    stats.fit(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]]))
    score = stats.score(torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
    assert score.tolist() == pytest.approx([1 / (2 / 3) + 1 / (8 / 3), 0.0])


def test_nap_keeps_at_most_max_components_and_drops_zero_variance() -> None:
    differences = torch.zeros(10, 4)
    differences[:, :3] = torch.randn(10, 3) * torch.tensor([3.0, 2.0, 1.0])
    assert NAPStatistics().fit(differences) is None
    full, capped = NAPStatistics(), NAPStatistics(max_components=2)
    full.fit(differences)
    capped.fit(differences)
    assert full.axes.shape == (3, 4)  # the constant fourth coordinate carries no variance
    assert capped.axes.shape == (2, 4)


def test_nap_module_scores_through_the_path_and_survives_a_state_dict() -> None:
    torch.manual_seed(0)
    net = MLPAutoencoder((1, 4, 4), hidden_dims=(8,), latent_dim=2)
    model = AEModule(net, optimizer=torch.optim.SGD, score="rapp_nap")
    train = torch.rand(50, 1, 4, 4)
    model.eval()
    model.calibrate([train[:25], train[25:]])
    differences = model.score.differences(model, train)
    mean = differences.mean(0)
    _, s, vh = torch.linalg.svd(differences - mean, full_matrices=False)
    keep = s > 1e-5 * s[0]
    by_hand = (((differences[:3] - mean) @ vh[keep].T) / (s[keep] / 49**0.5)).pow(2).sum(1)
    assert torch.allclose(model.anomaly_score(train[:3]), by_hand, rtol=1e-3)

    fresh = AEModule(
        MLPAutoencoder((1, 4, 4), hidden_dims=(8,), latent_dim=2), torch.optim.SGD, score="rapp_nap"
    )
    fresh.load_state_dict(model.state_dict())  # buffers are resized to the fitted shapes
    fresh.eval()
    assert torch.equal(fresh.anomaly_score(train[:3]), model.anomaly_score(train[:3]))


def test_nap_fitted_batch_by_batch_scores_like_the_full_svd() -> None:
    generator = torch.Generator().manual_seed(0)
    differences = torch.randn(300, 12, generator=generator) @ torch.randn(
        12, 12, generator=generator
    )
    differences[:, 3] = 0.0  # a direction without training variance is dropped by both
    full, streamed = NAPStatistics(max_components=8), NAPStatistics(max_components=8)
    full.fit(differences)
    streamed.fit_batches(differences.split(32))
    probe = torch.randn(5, 12, generator=generator)
    assert streamed.axes.shape == full.axes.shape == (8, 12)
    assert torch.allclose(streamed.score(probe), full.score(probe), rtol=1e-4)
    wide, reference = NAPStatistics(), NAPStatistics()
    wide.fit_batches(differences.split(32), dense_limit=4)  # wider than the limit: full SVD
    reference.fit(differences)
    assert torch.equal(wide.score(probe), reference.score(probe))
