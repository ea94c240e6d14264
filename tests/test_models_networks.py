"""Pure networks: shapes for 28x28 and 8x8, residual depth, the plain-MLP control."""

from __future__ import annotations

import pytest
import torch

from robustad.models.networks import (
    ConvAutoencoder,
    ConvRSRAutoencoder,
    ResidualAutoencoder,
    ResidualVAE,
)


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 8, 8), (3, 10, 6)])
def test_conv_networks_round_trip_any_image_shape(shape: tuple[int, int, int]) -> None:
    x = torch.rand(2, *shape)
    cae = ConvAutoencoder(shape, channels=(4, 8), latent_dim=3)
    assert cae(x).shape == x.shape
    assert cae.encode(x).shape == (2, 3)
    rsr = ConvRSRAutoencoder(shape, channels=(4, 8), kernel_sizes=(5, 3), d=3)
    out = rsr(x)
    assert out.x_hat.shape == x.shape
    assert out.z.shape == (2, rsr.rsr.A.shape[1]) and out.z_rsr.shape == (2, 3)


def test_official_conv_rsrae_layout_on_mnist() -> None:
    net = ConvRSRAutoencoder((1, 28, 28))
    assert [m.out_channels for m in net.encoder if isinstance(m, torch.nn.Conv2d)] == [32, 64, 128]
    assert net.rsr.A.shape == (10, 128 * 4 * 4)  # D from the flattened conv features, d = 10
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.encoder)
    assert any(isinstance(m, torch.nn.Tanh) for m in net.encoder)


@pytest.mark.parametrize("n_layers", [0, 1, 3])
def test_residual_vae_depths(n_layers: int) -> None:
    net = ResidualVAE((1, 8, 8), widths=(16, 8), n_layers=n_layers, latent_dim=2)
    x = torch.rand(5, 1, 8, 8)
    out = net(x)
    assert out.x_hat.shape == x.shape and out.mu.shape == (5, 2) and out.logvar.shape == (5, 2)
    blocks = [m for m in net.encoder if type(m).__name__ == "PreActResidualBlock"]
    assert len(blocks) == 2 * n_layers
    # RaPP reads every block output and every stage activation, then the code.
    assert len(net.hidden_activations(x)) == 2 * n_layers + 2 + 1


def test_residual_blocks_start_as_identity_and_plain_control_matches_size() -> None:
    residual = ResidualAutoencoder((1, 8, 8), widths=(16, 8), n_layers=2, latent_dim=2)
    plain = ResidualAutoencoder((1, 8, 8), widths=(16, 8), n_layers=2, latent_dim=2, residual=False)
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert count(residual) == count(plain)
    block = residual.encoder[1].eval()
    h = torch.randn(4, 16)
    assert torch.equal(block(h), h)
