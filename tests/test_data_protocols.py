"""Protocols: exact split sizes and make-up, disjointness, seeds, bad input, and whole runs.

The `mnist_dir` fixture has 30 training and 12 test images per class (10 classes).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import make_datamodule

from robustad.data import ContaminatedDataModule
from robustad.errors import ConfigError
from robustad.train import train


def make_dm(data_dir: Path, **overrides) -> ContaminatedDataModule:
    return make_datamodule(data_dir, **{**dict(val_fraction=0.2), **overrides})


def make_up(dm: ContaminatedDataModule, name: str) -> tuple[set[int], set[int]]:
    split = dm.splits[name]
    return set(split.labels[split.targets == 0].tolist()), set(
        split.labels[split.targets == 1].tolist()
    )


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # RSRAE's form: all 12 test images of class 4 plus c x 12 outliers.
        (dict(protocol="transductive", contamination=None, outlier_ratio=0.5), (18, 6)),
        (dict(protocol="transductive", contamination=None, outlier_ratio=0.9), (23, 11)),
        (dict(protocol="transductive", contamination=0.25), (16, 4)),
    ],
)
def test_transductive_fits_and_scores_one_test_split_set(
    mnist_dir: Path, overrides: dict, expected: tuple
) -> None:
    dm = make_dm(mnist_dir, **overrides)
    n, outliers = expected
    assert dm.split_sizes == {
        key: {"n": n, "outliers": outliers} for key in ("train", "val", "test")
    }
    assert dm.splits["train"] is dm.splits["val"] is dm.splits["test"]
    assert dm.plan["train"].source == "test"
    inliers, outlier_labels = make_up(dm, "train")
    assert inliers == {4} and 4 not in outlier_labels


def test_unimodal_has_clean_training_and_half_novel_evaluation(mnist_dir: Path) -> None:
    dm = make_dm(mnist_dir, protocol="unimodal", contamination=0.0)
    assert dm.split_sizes == {
        "train": {"n": 24, "outliers": 0},
        "val": {"n": 12, "outliers": 6},
        "test": {"n": 24, "outliers": 12},
    }
    for name in ("val", "test"):
        inliers, outliers = make_up(dm, name)
        assert inliers == {4} and outliers and 4 not in outliers


def test_unimodal_takes_contamination_on_top(mnist_dir: Path) -> None:
    dm = make_dm(mnist_dir, protocol="unimodal", contamination=0.25)
    assert dm.split_sizes["train"] == {"n": 32, "outliers": 8}
    assert dm.split_sizes["test"] == {"n": 24, "outliers": 12}


def test_multimodal_one_novel_class_all_of_it_held_out(mnist_dir: Path) -> None:
    dm = make_dm(
        mnist_dir,
        protocol="multimodal",
        inlier_classes=None,
        outlier_classes=[4],
        contamination=0.0,
    )
    # 270 normal training images: 54 to validation; the novel class's 30: 6 held out for validation.
    assert dm.split_sizes == {
        "train": {"n": 216, "outliers": 0},
        "val": {"n": 60, "outliers": 6},
        "test": {"n": 120, "outliers": 12},
    }
    inliers, outliers = make_up(dm, "test")
    assert inliers == set(range(10)) - {4} and outliers == {4}


def test_multimodal_contamination_draws_from_the_rest_of_the_novel_class(mnist_dir: Path) -> None:
    dm = make_dm(
        mnist_dir,
        protocol="multimodal",
        inlier_classes=None,
        outlier_classes=[4],
        contamination=0.1,
    )
    assert dm.split_sizes["train"] == {"n": 240, "outliers": 24}
    with pytest.raises(ConfigError, match=r"data\.contamination.*54 training outliers.*at most 24"):
        make_dm(
            mnist_dir,
            protocol="multimodal",
            inlier_classes=None,
            outlier_classes=[4],
            contamination=0.2,
        )


@pytest.mark.parametrize("protocol", ["inductive", "unimodal", "multimodal"])
def test_held_out_splits_are_disjoint(mnist_dir: Path, protocol: str) -> None:
    classes = dict(inlier_classes=None, outlier_classes=[4]) if protocol == "multimodal" else {}
    dm = make_dm(mnist_dir, protocol=protocol, contamination=0.1, **classes)
    train, val, test = (dm.plan[name] for name in ("train", "val", "test"))
    assert (train.source, val.source, test.source) == ("train", "train", "test")
    assert not set(train.indices.tolist()) & set(val.indices.tolist())
    for split in (train, val, test):
        assert len(set(split.indices.tolist())) == len(split)


def test_ratio_and_fraction_agree(mnist_dir: Path) -> None:
    by_fraction = make_dm(mnist_dir, contamination=0.25)
    by_ratio = make_dm(mnist_dir, contamination=None, outlier_ratio=1 / 3)
    assert by_ratio.split_sizes == by_fraction.split_sizes
    assert by_ratio.train_contamination == by_fraction.train_contamination == 0.25


@pytest.mark.parametrize("protocol", ["inductive", "transductive", "unimodal", "multimodal"])
def test_sampling_follows_data_seed_not_training_seed(mnist_dir: Path, protocol: str) -> None:
    kwargs = dict(protocol=protocol, contamination=0.25)
    if protocol == "multimodal":
        kwargs.update(inlier_classes=None, outlier_classes=[4], contamination=0.05)
    torch.manual_seed(1)
    a = make_dm(mnist_dir, **kwargs)
    torch.manual_seed(2)
    b = make_dm(mnist_dir, **kwargs)
    c = make_dm(mnist_dir, seed=1, **kwargs)
    for name in ("train", "val", "test"):
        assert torch.equal(a.splits[name].images, b.splits[name].images)
        assert torch.equal(a.splits[name].targets, b.splits[name].targets)
    assert not torch.equal(a.splits["train"].images, c.splits["train"].images)


# --- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        (
            dict(protocol="semi"),
            r"data\.protocol.*'semi'.*inductive.*transductive.*unimodal.*multimodal",
        ),
        (
            dict(contamination=0.1, outlier_ratio=0.5),
            r"data\.outlier_ratio.*0\.5.*null when data\.contamination",
        ),
        (dict(contamination=None), r"data\.contamination.*None.*outlier_ratio"),
        (dict(contamination=None, outlier_ratio=-0.1), r"data\.outlier_ratio.*-0\.1.*>= 0"),
        (dict(contamination=-0.1), r"data\.contamination.*-0\.1.*0 <= value < 1"),
        (dict(contamination=1.0), r"data\.contamination.*1\.0.*0 <= value < 1"),
        (dict(protocol="transductive", contamination=0.0), r"data\.contamination.*needs outliers"),
        (
            dict(protocol="unimodal", eval_contamination=0.2),
            r"data\.eval_contamination.*null with data\.protocol=unimodal",
        ),
        (
            dict(inlier_classes=[4, "7"], outlier_classes=[7, 8]),
            r"data\.outlier_classes.*disjoint.*\[7\]",
        ),
        (dict(inlier_classes=[10]), r"data\.inlier_classes.*\[10\].*class ids 0\.\.9"),
        (dict(inlier_classes=None, outlier_classes=None), r"data\.inlier_classes.*None"),
        (dict(outlier_source="noise"), r"data\.outlier_source.*'noise'.*classes.*corruption"),
        (
            dict(corruptions=["fog"]),
            r"data\.corruptions.*null unless data\.outlier_source=corruption",
        ),
    ],
)
def test_bad_input_is_a_config_error_at_construction(overrides: dict, pattern: str) -> None:
    kwargs = dict(dataset="mnist", download=False, inlier_classes=[4])
    kwargs.update(overrides)
    with pytest.raises(ConfigError, match=pattern):
        ContaminatedDataModule(**kwargs)


def test_ratio_asking_for_more_outliers_than_exist_says_how_many(mnist_dir: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"data\.outlier_ratio.*120 outliers requested.*at most 108 outliers exist",
    ):
        make_dm(mnist_dir, protocol="transductive", contamination=None, outlier_ratio=10)


# --- whole runs through train() -------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides",
    [
        ["data.protocol=transductive", "data.contamination=0.2"],
        ["data.protocol=unimodal", "data.contamination=0"],
        [
            "data.protocol=multimodal",
            "data.inlier_classes=null",
            "data.outlier_classes=[3]",
            "data.contamination=0",
        ],
        ["data.outlier_source=corruption", "data.corruptions=[fog,rotate]", "data.severity=4"],
    ],
    ids=["transductive", "unimodal", "multimodal", "corruption"],
)
def test_protocols_run_end_to_end(make_cfg, overrides: list[str]) -> None:
    cfg = make_cfg(["data=digits", "model=ae", "trainer=cpu", "debug=fdr", *overrides])
    metrics = train(cfg)
    written = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert written["status"] == "done"
    assert math.isfinite(written["test/auroc"]) and written["split_sizes"]["test"]["outliers"] > 0
    assert written["split_sizes"] == metrics["split_sizes"]


def test_both_amounts_fail_before_training(make_cfg) -> None:
    cfg = make_cfg(["data=digits", "trainer=cpu", "debug=fdr", "data.outlier_ratio=0.5"])
    with pytest.raises(ConfigError, match=r"data\.outlier_ratio"):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()
