"""Loss terms, kept apart from the networks so they can be tested on hand-made tensors.

Every per-sample function returns shape (B,); callers average over the batch, which is the
paper's sum over samples scaled by 1/B (the same minimiser, independent of batch size).
"""

from __future__ import annotations

import torch


def flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def l2_error(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """||x_t - x~_t||_2 per sample: the L2,1 norm's summands (not squared)."""
    return torch.linalg.vector_norm(flat(x) - flat(x_hat), ord=2, dim=1)


def squared_error(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """||x_t - x~_t||_2^2 per sample (the usual autoencoder loss)."""
    return (flat(x) - flat(x_hat)).pow(2).sum(dim=1)


def rsr_projection_error(z: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """||z_t - A^T A z_t||_2 per sample: how far each code lies from the span of A's rows."""
    projected = (z @ A.T) @ A
    return torch.linalg.vector_norm(z - projected, ord=2, dim=1)


def rsr_orthogonality_error(A: torch.Tensor) -> torch.Tensor:
    """||A A^T - I_d||_F^2: keeps A's rows an orthonormal basis of the recovered subspace."""
    identity = torch.eye(A.shape[0], device=A.device, dtype=A.dtype)
    return (A @ A.T - identity).pow(2).sum()


def l1_error(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """||x_t - x~_t||_1 per sample: less dominated by a few badly reconstructed pixels than L2."""
    return (flat(x) - flat(x_hat)).abs().sum(dim=1)


def l21_error(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """L2,1 norm of each sample's error image: the L2 norms of its rows (channels x height), summed.

    Between l2 (one norm over the image) and l1 (every pixel alone): a stroke that is missing
    entirely costs per row, not quadratically.
    """
    rows = (x - x_hat).reshape(x.shape[0], -1, x.shape[-1])
    return torch.linalg.vector_norm(rows, ord=2, dim=2).sum(dim=1)


def cosine_error(x: torch.Tensor, x_hat: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """1 - cos(x_t, x~_t) per sample (official RSRAE code's score): ignores overall brightness."""
    return 1.0 - torch.nn.functional.cosine_similarity(flat(x), flat(x_hat), dim=1, eps=eps)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Each channel of (B, C, H, W) images convolved with a Gaussian of `sigma` pixels (radius
    round(3 sigma), zeros outside the image): a pixel's error then counts with its neighbours',
    so a stroke drawn one pixel to the side costs less than a stroke that is missing."""
    radius = max(1, round(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    weights = torch.exp(-(offsets**2) / (2 * sigma**2))
    weights = weights / weights.sum()
    channels = images.shape[1]
    kernel = (weights[:, None] * weights[None, :]).expand(channels, 1, -1, -1)
    return torch.nn.functional.conv2d(images, kernel, padding=radius, groups=channels)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per sample, in closed form."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)
