"""RSRAE loss terms against values computed by hand on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from robustad.errors import ArgumentError
from robustad.models import losses
from robustad.models.networks import RSRAutoencoder, RSRLayer
from robustad.models.rsrae import rsrae_loss_terms


def test_l21_reconstruction_is_a_per_sample_norm_not_a_batch_norm() -> None:
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    x_hat = torch.zeros(2, 2)
    per_sample = losses.l2_error(x, x_hat)
    assert per_sample.tolist() == [5.0, 0.0]
    # Batch mean of per-sample norms (5 + 0) / 2 = 2.5 ...
    assert per_sample.mean().item() == pytest.approx(2.5)
    # ... differs from a batch-wide Frobenius norm (5) and from the squared error mean (12.5).
    assert torch.linalg.norm(x - x_hat).item() == pytest.approx(5.0)
    assert losses.squared_error(x, x_hat).mean().item() == pytest.approx(12.5)


def test_projection_error_by_hand() -> None:
    A = torch.tensor([[1.0, 0.0, 0.0]])  # d=1, D=3: the subspace is the first axis
    z = torch.tensor([[1.0, 2.0, 2.0], [5.0, 0.0, 0.0]])
    # z - A^T A z removes the first coordinate: norms sqrt(8) and 0.
    assert losses.rsr_projection_error(z, A).tolist() == pytest.approx([math.sqrt(8.0), 0.0])


def test_orthogonality_error_by_hand() -> None:
    A = torch.tensor([[2.0, 0.0], [0.0, 1.0]])  # A A^T - I = diag(3, 0)
    assert losses.rsr_orthogonality_error(A).item() == pytest.approx(9.0)
    B = torch.tensor([[1.0, 1.0]])  # A A^T = [[2]] -> (2 - 1)^2
    assert losses.rsr_orthogonality_error(B).item() == pytest.approx(1.0)


def test_total_loss_combines_terms_with_lambdas() -> None:
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    x_hat = torch.zeros(2, 2)
    A = torch.tensor([[1.0, 0.0, 0.0]]) * 2.0
    z = torch.tensor([[1.0, 2.0, 2.0], [5.0, 0.0, 0.0]])
    terms = {k: v.mean() for k, v in rsrae_loss_terms(x, x_hat, z, A, 0.5, 0.25).items()}
    # A^T A z with A = [2,0,0]: 4 * z_1 on axis 0 -> residuals (1-4, 2, 2) and (5-20, 0, 0).
    projection = (math.sqrt(9 + 4 + 4) + 15.0) / 2
    orthogonality = (4.0 - 1.0) ** 2
    assert terms["reconstruction"].item() == pytest.approx(2.5)
    assert terms["projection"].item() == pytest.approx(projection)
    assert terms["orthogonality"].item() == pytest.approx(orthogonality)
    assert terms["loss"].item() == pytest.approx(2.5 + 0.5 * projection + 0.25 * orthogonality)


def test_rsr_layer_starts_orthonormal_and_checks_d_below_D() -> None:
    layer = RSRLayer(d=4, D=10)
    assert torch.allclose(layer.A @ layer.A.T, torch.eye(4), atol=1e-5)
    with pytest.raises(ArgumentError, match=r"invalid d: 10.*0 < d < D \(D = 10\)"):
        RSRLayer(d=10, D=10)


def test_renormalised_code_has_unit_norm() -> None:
    net = RSRAutoencoder(input_shape=(1, 8, 8), hidden_dims=(16,), D=8, d=3, renormalize=True)
    out = net(torch.rand(5, 1, 8, 8))
    assert out.x_hat.shape == (5, 1, 8, 8)
    assert out.z.shape == (5, 8) and out.z_rsr.shape == (5, 3)
