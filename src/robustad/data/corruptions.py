"""MNIST-C-style corruptions (Mu & Gilmer, 2019) as batched torch ops, seeded, severities 1..5.

Each corruption maps float images (n, 1, H, W) in [0, 1] to the same; the parameters follow
MNIST-C's tables where it has them (noise, blur, affine, brightness, fog), given for 28x28 images
and scaled to other sizes. MNIST-C's line-type corruptions have no severity; here severity is the
number of lines (1 = MNIST-C), and `stripe` / `canny_edges` grow in width / strength
(severity 4 / 5 = MNIST-C). Torchvision's functional transforms do the resampling and blurring;
every random draw comes from the generator passed in, so outliers are fixed by the sampling seed.

`contrast` and `fog` can score below chance with a reconstruction score, and that is the data, not
a bug: both follow MNIST-C's formulas (contrast: (x - mean) * c + mean per image, numerically
equal to MNIST-C's; fog: x + s * field in [0, 1], then * max / (max + s)) and both shrink the
digit, the part an autoencoder gets wrong, to c (0.4 .. 0.05) or 1 / (1 + s) (0.4 .. 0.25) of its
contrast. Contrast-damaged digits are easier to reconstruct than clean ones even for a model
trained on clean images. Fog adds a smooth haze that such a model does not know (it is then
detected), but a training split that holds fogged images teaches the haze, and the faint digit
beneath is then easier than a clean one. Measured on MNIST class 4 (MLP autoencoder, l2 score,
severity 3): clean training, AUROC 1.00 for fog and 0.16 for contrast; 6 % of the training split
corrupted, 0.49 for fog (0.01 with MNIST-C's own, smoother fog field) and 0.00 for contrast.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as nnf
import torchvision.transforms.v2.functional as tvf

from robustad.errors import ConfigError

SEVERITIES = (1, 2, 3, 4, 5)
Corruption = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]


def _scale(x: torch.Tensor) -> float:
    """Pixel lengths in MNIST-C's tables are for 28x28 images."""
    return min(x.shape[-2:]) / 28.0


def _rand(x: torch.Tensor, g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(shape or x.shape, generator=g)


def _signs(n: int, g: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, (n,), generator=g) * 2 - 1


def _per_group(
    x: torch.Tensor, keys: torch.Tensor, fn: Callable[[torch.Tensor, int], torch.Tensor]
) -> torch.Tensor:
    """Apply a transform with one parameter to each group of images sharing that parameter."""
    out = torch.empty_like(x)
    for key in keys.unique().tolist():
        mask = keys == key
        out[mask] = fn(x[mask], int(key))
    return out


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur with a kernel of +-3 sigma, capped so reflect padding fits the image."""
    size = min(x.shape[-2:])
    k = min(2 * math.ceil(3 * sigma) + 1, 2 * size - 1)
    return tvf.gaussian_blur(x, kernel_size=[k, k], sigma=[sigma, sigma])


def gaussian_noise(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    c = (0.08, 0.12, 0.18, 0.26, 0.38)[severity - 1]
    return x + c * torch.randn(x.shape, generator=g)


def shot_noise(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    c = (60, 25, 12, 5, 3)[severity - 1]
    return torch.poisson(x * c, generator=g) / c


def impulse_noise(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    c = (0.03, 0.06, 0.09, 0.17, 0.27)[severity - 1]
    hit, salt = _rand(x, g) < c, _rand(x, g) < 0.5
    return torch.where(hit, salt.to(x.dtype), x)


def gaussian_blur(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    return _blur(x, max(0.5, (1, 2, 3, 4, 6)[severity - 1] * _scale(x)))


def glass_blur(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    """Blur, shuffle pixels locally (each moves with probability 1/2 by up to `delta`), blur."""
    sigma, delta, iterations = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))[
        severity - 1
    ]
    n, _, h, w = x.shape
    delta = max(1, round(delta * _scale(x)))
    x = _blur(x, sigma * _scale(x))
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    for _ in range(iterations):
        move = torch.randint(0, 2, (n, h, w), generator=g)
        dr = torch.randint(-delta, delta, (n, h, w), generator=g) * move
        dc = torch.randint(-delta, delta, (n, h, w), generator=g) * move
        source = (rows + dr).clamp(0, h - 1) * w + (cols + dc).clamp(0, w - 1)
        x = x.flatten(1).gather(1, source.flatten(1)).view(n, 1, h, w)
    return _blur(x, sigma * _scale(x))


def motion_blur(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    """One-sided blur along a random direction in [-45, 45] degrees, one kernel per image."""
    length = (3, 5, 7, 9, 11)[severity - 1] * _scale(x)
    n, _, h, w = x.shape
    k = 2 * math.ceil(length) + 1
    angle = (_rand(x, g, n) * 90 - 45) * math.pi / 180
    t = torch.linspace(0, length, 8 * k)
    weight = torch.exp(-0.5 * (t / (length / 2)) ** 2)
    cols = (k // 2 + t[None] * torch.cos(angle)[:, None]).round().long().clamp(0, k - 1)
    rows = (k // 2 + t[None] * torch.sin(angle)[:, None]).round().long().clamp(0, k - 1)
    kernel = torch.zeros(n, k * k).scatter_add_(
        1, rows * k + cols, weight.expand(n, -1).contiguous()
    )
    kernel = (kernel / kernel.sum(1, keepdim=True)).view(n, 1, k, k)
    padded = nnf.pad(x.view(1, n, h, w), [k // 2] * 4)
    return nnf.conv2d(padded, kernel, groups=n).view(n, 1, h, w)


def _affine(x: torch.Tensor, **params: float | list[float]) -> torch.Tensor:
    defaults: dict = {"angle": 0.0, "translate": [0.0, 0.0], "scale": 1.0, "shear": [0.0, 0.0]}
    return tvf.affine(x, **{**defaults, **params}, interpolation=tvf.InterpolationMode.BILINEAR)


def rotate(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    degrees = math.degrees((0.2, 0.4, 0.6, 0.8, 1.0)[severity - 1])
    return _per_group(x, _signs(len(x), g), lambda b, s: _affine(b, angle=s * degrees))


def shear(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    degrees = math.degrees((0.2, 0.4, 0.6, 0.8, 1.0)[severity - 1])
    return _per_group(x, _signs(len(x), g), lambda b, s: _affine(b, shear=[s * degrees, 0.0]))


def scale(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    return _affine(x, scale=(0.9, 0.8, 0.7, 0.6, 0.5)[severity - 1])


def translate(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    shift = max(1, round((1, 2, 3, 4, 5)[severity - 1] * _scale(x)))
    direction = (_signs(len(x), g) + 1) + (_signs(len(x), g) + 1) // 2  # 0..3: (dx, dy) signs

    def move(batch: torch.Tensor, d: int) -> torch.Tensor:
        dx, dy = (1 if d & 2 else -1) * shift, (1 if d & 1 else -1) * shift
        return _affine(batch, translate=[float(dx), float(dy)])

    return _per_group(x, direction, move)


def brightness(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    return x + (0.1, 0.2, 0.3, 0.4, 0.5)[severity - 1]


def contrast(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    return tvf.adjust_contrast(x, (0.4, 0.3, 0.2, 0.1, 0.05)[severity - 1])


def stripe(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    """Invert a band at each side (MNIST-C inverts a quarter of the width: severity 4)."""
    w = x.shape[-1]
    band = max(1, round(w * (0.1, 0.15, 0.2, 0.25, 0.3)[severity - 1]))
    cols = torch.arange(w)
    inside = (cols < band) | (cols >= w - band)
    return torch.where(inside, 1.0 - x, x)


def fog(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    """A random haze added, then the image rescaled by max / (max + strength), as in MNIST-C.

    The haze is octaves of upsampled noise normalised to [0, 1] per image. MNIST-C crops 28x28
    from a 256x256 plasma fractal normalised as a whole, whose octaves fall off as decay**2: its
    haze is smoother and spans less of [0, 1]; this rougher one is harder to learn (see above).
    """
    strength, decay = ((1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))[severity - 1]
    n, _, h, w = x.shape
    field = torch.zeros(n, 1, h, w)
    for octave in range(1, 6):
        noise = _rand(x, g, n, 1, 2**octave + 1, 2**octave + 1) * 2 - 1
        field += decay**-octave * nnf.interpolate(
            noise, size=(h, w), mode="bilinear", align_corners=True
        )
    low = field.amin((1, 2, 3), keepdim=True)
    field = (field - low) / (field.amax((1, 2, 3), keepdim=True) - low).clamp_min(1e-8)
    peak = x.amax((1, 2, 3), keepdim=True)
    return (x + strength * field) * peak / (peak + strength)


def spatter(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    """Opaque grey (63/255, MNIST-C's mud colour) round splashes at random places."""
    n, _, h, w = x.shape
    blobs, radius = severity, (2.0, 2.5, 3.0, 3.5, 4.0)[severity - 1] * _scale(x)
    centre_r, centre_c = (
        _rand(x, g, n, blobs, 1, 1) * (h - 1),
        _rand(x, g, n, blobs, 1, 1) * (w - 1),
    )
    rows, cols = torch.arange(h).view(1, 1, h, 1), torch.arange(w).view(1, 1, 1, w)
    dist = ((rows - centre_r) ** 2 + (cols - centre_c) ** 2).sqrt()
    mud = (radius + 0.5 - dist).clamp(0, 1).amax(1, keepdim=True)
    return x * (1 - mud) + (63 / 255) * mud


def _segments(p0: torch.Tensor, p1: torch.Tensor, h: int, w: int, width: float) -> torch.Tensor:
    """Soft lines (MNIST-C's log(1 - d / 2.3) + 1 falloff) through (n, S, 2) (col, row) ends."""
    rows, cols = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    pix = torch.stack([cols, rows], -1).view(1, 1, h * w, 2)
    a, b = p0.unsqueeze(2), p1.unsqueeze(2)
    ab = b - a
    t = (((pix - a) * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-8)).clamp(0, 1)
    d = (pix - (a + t.unsqueeze(-1) * ab)).norm(dim=-1).clamp(max=width - 1e-6)
    ink = (torch.log(1 - d / width) + 1).clamp(0, 1).amax(1)
    return ink.view(-1, 1, h, w)


def dotted_line(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    """`severity` dashed lines from the left edge to the right edge (2-pixel dashes)."""
    n, _, h, w = x.shape
    ends = _rand(x, g, n, severity, 2) * (h - 1)
    p0 = torch.stack([torch.zeros_like(ends[..., 0]), ends[..., 0]], -1)
    p1 = torch.stack([torch.full_like(ends[..., 1], w - 1.0), ends[..., 1]], -1)
    dashes = ((torch.arange(w) // 2) % 2 == 1).to(x.dtype)
    return x + _segments(p0, p1, h, w, 2.3 * _scale(x)) * dashes


def zigzag(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    """`severity` zigzag lines (2-pixel zigs) across the image at random heights and slopes."""
    n, _, h, w = x.shape
    s = _scale(x)
    amplitude, c0, c1 = 2.0 * s, 2.0 * s, w - 3.0 * s
    r0 = _rand(x, g, n, severity) * (h - 1)
    r1 = r0 + (_rand(x, g, n, severity) * 10 - 5) * s
    theta = torch.atan((r1 - r0) / (c1 - c0))
    length = (c1 - c0) / torch.cos(theta)
    k = int((c1 - c0 - amplitude) // (2 * amplitude)) + 1
    along = torch.cat([torch.zeros(1), (2 * torch.arange(k) + 1) * amplitude])
    across = torch.cat([torch.zeros(1), amplitude * (-1.0) ** torch.arange(k)])
    along = torch.minimum(along.expand(n, severity, -1), length.unsqueeze(-1))
    cos, sin = torch.cos(theta).unsqueeze(-1), torch.sin(theta).unsqueeze(-1)
    cs = c0 + along * cos - across * sin
    rs = r0.unsqueeze(-1) + along * sin + across * cos
    points = torch.stack([cs, rs], -1)  # (n, lines, k + 1, 2)
    p0, p1 = points[:, :, :-1].flatten(1, 2), points[:, :, 1:].flatten(1, 2)
    return x + _segments(p0, p1, h, w, 2.3 * s)


def canny_edges(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    """Thin edges of the lightly smoothed image (Sobel magnitude above a quarter of its peak),
    blended in with weight severity / 5 (5 = MNIST-C: edges only)."""
    smooth = _blur(x, 1.0 * _scale(x))
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    kernels = torch.stack([sobel, sobel.T]).unsqueeze(1)
    grad = nnf.conv2d(nnf.pad(smooth, [1, 1, 1, 1], mode="replicate"), kernels).norm(
        dim=1, keepdim=True
    )
    edges = (grad > 0.25 * grad.amax((1, 2, 3), keepdim=True).clamp_min(1e-8)).to(x.dtype)
    weight = severity / 5
    return (1 - weight) * x + weight * edges


CORRUPTIONS: dict[str, Corruption] = {
    fn.__name__: fn
    for fn in (
        gaussian_noise, shot_noise, impulse_noise,
        gaussian_blur, glass_blur, motion_blur,
        rotate, shear, scale, translate,
        brightness, contrast, stripe, fog, spatter,
        dotted_line, zigzag, canny_edges,
    )
}  # fmt: skip


def check_corruptions(names: Sequence[str] | str | None) -> list[str]:
    """Validate names: null = all of them, mixed; one name or a non-empty list of them."""
    allowed = f"a list of names from {list(CORRUPTIONS)}, or null for all"
    if names is None:
        return list(CORRUPTIONS)
    if isinstance(names, str):
        names = [names]
    elif not isinstance(names, Sequence):
        raise ConfigError("data.corruptions", names, allowed)
    chosen = list(names)
    unknown = [name for name in chosen if not isinstance(name, str) or name not in CORRUPTIONS]
    if unknown or not chosen:
        raise ConfigError("data.corruptions", unknown or chosen, allowed)
    return chosen


def check_severity(severity: object) -> None:
    """An integer level 1..5 (a float such as 2.5 has no MNIST-C parameters)."""
    if isinstance(severity, bool) or not isinstance(severity, int) or severity not in SEVERITIES:
        raise ConfigError("data.severity", severity, f"an integer level in {list(SEVERITIES)}")


def corrupt(
    images: torch.Tensor,
    names: Sequence[str],
    severity: int,
    generator: torch.Generator,
    chunk: int = 2048,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt uint8 images (N, H, W); the corruptions are spread evenly, in seeded random order.

    Counts differ by at most one; which corruptions get the extra image is drawn too, so with
    fewer images than corruptions a random subset is used, not always the first names. A
    corruption handed no image is skipped: the batched ops (grouped convolutions) refuse empty
    input. Returns the corrupted uint8 images and, per image, the index into `names` it received.
    """
    n = len(images)
    rank = torch.randperm(len(names), generator=generator)
    which = rank[torch.arange(n) % len(names)][torch.randperm(n, generator=generator)]
    out = images.clone()
    for i, name in enumerate(names):
        rows = torch.nonzero(which == i, as_tuple=True)[0]
        if len(rows) == 0:
            continue
        for part in rows.split(chunk):
            x = images[part].unsqueeze(1).float().div_(255.0)
            y = CORRUPTIONS[name](x, severity, generator).clamp_(0.0, 1.0)
            out[part] = y.mul_(255.0).round_().to(torch.uint8).squeeze(1)
    return out, which
