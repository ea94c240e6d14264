"""Corruption outliers: each corruption changes images within range, seeded; the split layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_datamodule, synthetic_images

from robustad.data import ContaminatedDataModule
from robustad.data.corruptions import CORRUPTIONS, corrupt
from robustad.errors import ConfigError


@pytest.fixture(scope="module")
def digits_like() -> torch.Tensor:
    return torch.from_numpy(synthetic_images(np.arange(32) % 10))


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
@pytest.mark.parametrize("severity", [1, 5])
def test_each_corruption_changes_every_image_keeps_shape_and_range(
    digits_like: torch.Tensor, name: str, severity: int
) -> None:
    out, which = corrupt(digits_like, [name], severity, torch.Generator().manual_seed(0))
    assert out.shape == digits_like.shape and out.dtype == torch.uint8  # uint8 is [0, 255] by type
    assert (out != digits_like).flatten(1).any(1).all(), "some image came out unchanged"
    assert which.tolist() == [0] * len(digits_like)
    again, _ = corrupt(digits_like, [name], severity, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


@pytest.mark.parametrize("name", ["gaussian_noise", "rotate", "fog", "zigzag", "motion_blur"])
def test_higher_severity_damages_more(digits_like: torch.Tensor, name: str) -> None:
    damage = [
        (
            corrupt(digits_like, [name], s, torch.Generator().manual_seed(0))[0].float()
            - digits_like.float()
        )
        .abs()
        .mean()
        for s in (1, 5)
    ]
    assert damage[1] > damage[0]


def test_mixed_corruptions_are_spread_evenly(digits_like: torch.Tensor) -> None:
    names = ["fog", "stripe", "shot_noise", "translate"]
    _, which = corrupt(digits_like, names, 3, torch.Generator().manual_seed(1))
    assert which.bincount().tolist() == [8, 8, 8, 8]


def make_dm(data_dir: Path, **overrides) -> ContaminatedDataModule:
    return make_datamodule(
        data_dir,
        **{
            **dict(
                val_fraction=0.2,
                contamination=0.25,
                outlier_source="corruption",
                corruptions=["rotate", "fog"],
                severity=3,
            ),
            **overrides,
        },
    )


def test_corrupted_outliers_come_from_the_inlier_class_never_twice(mnist_dir: Path) -> None:
    dm = make_dm(mnist_dir)
    # Class 4: 24 training images split 18 clean + 6 corrupted; 6 validation (2); 12 test (3).
    assert dm.split_sizes == {
        "train": {"n": 24, "outliers": 6},
        "val": {"n": 6, "outliers": 2},
        "test": {"n": 12, "outliers": 3},
    }
    assert dm.split_details["train"]["corruptions"] == {"rotate": 3, "fog": 3}
    for name in ("train", "val", "test"):
        assert set(dm.splits[name].labels.tolist()) == {4}
        assert len(set(dm.plan[name].indices.tolist())) == dm.split_sizes[name]["n"]
    assert not set(dm.plan["train"].indices.tolist()) & set(dm.plan["val"].indices.tolist())


def test_only_outliers_are_altered(mnist_dir: Path) -> None:
    dm = make_dm(mnist_dir)
    source = dm._load().train_images
    split, plan = dm.splits["train"], dm.plan["train"]
    original = source[plan.indices]
    changed = (split.images != original).flatten(1).any(1)
    assert torch.equal(changed, plan.is_outlier)


@pytest.mark.parametrize(
    ("protocol", "amount", "expected"),
    [
        ("transductive", dict(contamination=None, outlier_ratio=0.5), (12, 4)),
        ("unimodal", {}, (12, 6)),
    ],
)
def test_corruption_with_other_protocols(
    mnist_dir: Path, protocol: str, amount: dict, expected: tuple
) -> None:
    dm = make_dm(mnist_dir, protocol=protocol, **amount)
    n, outliers = expected
    assert dm.split_sizes["test"] == {"n": n, "outliers": outliers}


def test_corruption_is_seeded_by_the_sampling_seed(mnist_dir: Path) -> None:
    torch.manual_seed(5)
    a = make_dm(mnist_dir)
    torch.manual_seed(6)
    b = make_dm(mnist_dir)
    c = make_dm(mnist_dir, seed=3)
    assert torch.equal(a.splits["train"].images, b.splits["train"].images)
    assert not torch.equal(a.splits["train"].images, c.splits["train"].images)


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        (dict(corruptions=["fog", "snow"]), r"data\.corruptions.*\['snow'\].*gaussian_noise"),
        (dict(corruptions=[]), r"data\.corruptions"),
        (dict(severity=0), r"data\.severity.*0.*\[1, 2, 3, 4, 5\]"),
        (dict(severity=6), r"data\.severity.*6"),
        (
            dict(outlier_classes=[1]),
            r"data\.outlier_classes.*null with data\.outlier_source=corruption",
        ),
        (dict(protocol="multimodal"), r"data\.outlier_source.*multimodal"),
    ],
)
def test_bad_corruption_settings(overrides: dict, pattern: str) -> None:
    kwargs = dict(
        dataset="mnist", inlier_classes=[4], outlier_source="corruption", corruptions=["fog"]
    )
    kwargs.update(overrides)
    with pytest.raises(ConfigError, match=pattern):
        ContaminatedDataModule(**kwargs)


def test_null_corruptions_means_all_of_them() -> None:
    dm = ContaminatedDataModule(
        dataset="mnist", inlier_classes=[4], outlier_source="corruption", corruptions=None
    )
    assert dm.corruptions == list(CORRUPTIONS)


def test_all_corruptions_on_a_tiny_split_train_end_to_end(make_cfg) -> None:
    from robustad.train import train

    cfg = make_cfg(["data=digits", "data.outlier_source=corruption", "debug=fdr", "logger=csv"])
    assert train(cfg)["status"] == "done"


def test_no_corruption_is_called_with_an_empty_group(
    digits_like: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every corruption mixed over 0, 1 and 3 images: the idle ones are skipped, not called."""
    from robustad.data import corruptions

    sizes: list[int] = []

    def recording(fn):
        def wrapped(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
            sizes.append(len(x))
            return fn(x, severity, g)

        return wrapped

    for name, fn in list(CORRUPTIONS.items()):
        monkeypatch.setitem(corruptions.CORRUPTIONS, name, recording(fn))
    for n in (0, 1, 3):
        out, which = corrupt(digits_like[:n], list(CORRUPTIONS), 3, torch.Generator())
        assert out.shape == (n, 28, 28) and len(which) == n
    assert sizes == [1] * 4 and 0 not in sizes


def test_idle_corruptions_are_drawn_at_random(digits_like: torch.Tensor) -> None:
    """With fewer images than corruptions the used ones vary with the seed, late names too."""
    used = set()
    for seed in range(10):
        _, which = corrupt(
            digits_like[:3], list(CORRUPTIONS), 1, torch.Generator().manual_seed(seed)
        )
        assert len(set(which.tolist())) == 3
        used |= set(which.tolist())
    assert max(used) >= len(CORRUPTIONS) - 6 and min(used) < 6


def test_few_outliers_with_every_corruption_mixed_set_up() -> None:
    """sklearn's digits, all 18 corruptions: most splits have fewer outliers than corruptions."""
    dm = ContaminatedDataModule(
        dataset="digits",
        image_shape=(1, 8, 8),
        outlier_source="corruption",
        corruptions=None,
        contamination=0.05,
        val_fraction=0.2,
    )
    dm.setup("fit")
    for name in ("train", "val", "test"):
        details = dm.split_details[name]
        assert 0 < details["outliers"] < len(CORRUPTIONS)
        assert sum(details["corruptions"].values()) == details["outliers"]


def test_contrast_is_mnist_c_formula() -> None:
    """MNIST-C: (x - mean) * c + mean, the mean taken per image; c = 0.2 at severity 3."""
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    mean = x.mean((1, 2, 3), keepdim=True)
    assert torch.allclose(CORRUPTIONS["contrast"](x, 3, torch.Generator()), (x - mean) * 0.2 + mean)


def test_fog_is_a_unit_haze_added_then_rescaled_like_mnist_c() -> None:
    """MNIST-C: (x + s * field) * max / (max + s), field in [0, 1]; s = 2.5 at severity 3."""
    x = torch.from_numpy(synthetic_images(np.arange(4))).unsqueeze(1).float() / 255.0
    out = CORRUPTIONS["fog"](x, 3, torch.Generator().manual_seed(0))
    peak = x.amax((1, 2, 3), keepdim=True)
    field = (out * (peak + 2.5) / peak - x) / 2.5
    assert torch.allclose(field.amin((1, 2, 3)), torch.zeros(4), atol=1e-5)
    assert torch.allclose(field.amax((1, 2, 3)), torch.ones(4), atol=1e-5)


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        (dict(severity=2.5), r"data\.severity.*2\.5.*integer"),
        (dict(severity=3.0), r"data\.severity.*3\.0"),
        (dict(severity=True), r"data\.severity.*True"),
        (dict(corruptions=5), r"data\.corruptions.*5.*null for all"),
        (dict(corruptions=[1]), r"data\.corruptions.*\[1\]"),
        (dict(outlier_source="classes", corruptions=None, severity=9), r"data\.severity.*9"),
    ],
)
def test_bad_severity_and_corruption_types(overrides: dict, pattern: str) -> None:
    kwargs = dict(
        dataset="mnist", inlier_classes=[4], outlier_source="corruption", corruptions=["fog"]
    )
    kwargs.update(overrides)
    with pytest.raises(ConfigError, match=pattern):
        ContaminatedDataModule(**kwargs)
