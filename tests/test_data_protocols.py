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
        # val's inliers with outliers at the training amount (none): for choosing a threshold
        "calibration": {"n": 6, "outliers": 0},
    }
    for name in ("val", "test"):
        inliers, outliers = make_up(dm, name)
        assert inliers == {4} and outliers and 4 not in outliers
    val_inliers = dm.splits["val"].images[dm.splits["val"].targets == 0]
    assert torch.equal(dm.splits["calibration"].images.sort(0).values, val_inliers.sort(0).values)


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
        "calibration": {"n": 54, "outliers": 0},
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
        # Types and ranges: nothing is coerced (1.5 silently run as 1).
        (dict(batch_size=1.5), r"data\.batch_size.*1\.5.*integer >= 1"),
        (dict(batch_size="abc"), r"data\.batch_size.*'abc'.*integer >= 1"),
        (dict(batch_size=True), r"data\.batch_size.*True"),
        (dict(batch_size=0), r"data\.batch_size.*0"),
        (dict(eval_batch_size=2.0), r"data\.eval_batch_size.*2\.0"),
        (dict(num_workers=-1), r"data\.num_workers.*-1.*integer >= 0"),
        (dict(num_workers="2"), r"data\.num_workers.*'2'"),
        (dict(seed=1.5), r"data\.seed.*1\.5"),
        (dict(seed="abc"), r"data\.seed.*'abc'"),
        (dict(val_fraction=0.0), r"data\.val_fraction.*0\.0.*0 < value < 1"),
        (dict(val_fraction=1), r"data\.val_fraction.*1"),
        (dict(val_fraction="abc"), r"data\.val_fraction.*'abc'"),
        (dict(val_fraction=True), r"data\.val_fraction.*True"),
        (dict(val_fraction=float("nan")), r"data\.val_fraction.*nan"),
        (dict(download="yes"), r"data\.download.*'yes'.*true or false"),
        (dict(image_shape=[28, 28]), r"data\.image_shape.*\[28, 28\].*channels"),
        (dict(image_shape="abc"), r"data\.image_shape.*'abc'"),
        (dict(image_shape=[1, 28.5, 28]), r"data\.image_shape"),
        (dict(dataset=["mnist"]), r"data\.dataset.*\['mnist'\].*digits"),
        (dict(data_dir=""), r"data\.data_dir.*''.*folder"),
        (dict(data_dir=3), r"data\.data_dir.*3.*folder"),
        (dict(inlier_classes="abc"), r"data\.inlier_classes.*'abc'.*class ids 0\.\.9"),
        (dict(inlier_classes=1.5), r"data\.inlier_classes.*1\.5.*a list of class ids"),
        (dict(inlier_classes={"a": 1}), r"data\.inlier_classes.*\{'a': 1\}"),
        (dict(inlier_classes=[]), r"data\.inlier_classes.*\[\].*non-empty"),
        (dict(inlier_classes=None, outlier_classes=[]), r"data\.outlier_classes.*non-empty"),
        (dict(inlier_classes=[True]), r"data\.inlier_classes.*\[True\]"),
        (dict(inlier_classes=list(range(10))), r"data\.outlier_classes.*non-empty pool"),
        (dict(contamination="abc"), r"data\.contamination.*'abc'"),
        (dict(eval_contamination=1.5), r"data\.eval_contamination.*1\.5"),
        (dict(contamination=None, outlier_ratio=float("inf")), r"data\.outlier_ratio.*inf"),
    ],
)
def test_bad_input_is_a_config_error_at_construction(overrides: dict, pattern: str) -> None:
    kwargs = dict(dataset="mnist", download=False, inlier_classes=[4])
    kwargs.update(overrides)
    with pytest.raises(ConfigError, match=pattern):
        ContaminatedDataModule(**kwargs)


@pytest.mark.parametrize(
    ("classes", "pattern"),
    [
        # The default inlier_classes: [4] would make nine classes novel.
        (
            dict(),
            r"data\.outlier_classes.*None.*exactly one novel class.*"
            r"data\.outlier_classes=\[k\] data\.inlier_classes=null.*makes 9 classes novel",
        ),
        (dict(inlier_classes=None), r"data\.outlier_classes.*None.*both are null"),
        (dict(inlier_classes=None, outlier_classes=[3, 5]), r"\[3, 5\].*makes 2 classes novel"),
    ],
)
def test_multimodal_needs_one_novel_class(classes: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        ContaminatedDataModule(protocol="multimodal", **classes)


def test_multimodal_accepts_any_selection_with_one_novel_class() -> None:
    every_other = ContaminatedDataModule(
        protocol="multimodal", inlier_classes=[0, 1, 2, 4, 5, 6, 7, 8, 9]
    )
    assert (every_other.inlier_classes, every_other.outlier_classes) == (
        [0, 1, 2, 4, 5, 6, 7, 8, 9],
        [3],
    )
    named = ContaminatedDataModule(protocol="multimodal", inlier_classes=None, outlier_classes="3")
    assert named.outlier_classes == [3] and len(named.inlier_classes) == 9


def test_unimodal_needs_one_normal_class() -> None:
    assert ContaminatedDataModule(protocol="unimodal").inlier_classes == [4]  # the default
    with pytest.raises(
        ConfigError,
        match=r"data\.inlier_classes.*\[3, 4\].*exactly one normal class.*"
        r"data\.inlier_classes=\[k\] data\.outlier_classes=null.*makes 2 classes normal",
    ):
        ContaminatedDataModule(protocol="unimodal", inlier_classes=[3, 4])
    with pytest.raises(ConfigError, match=r"data\.inlier_classes.*None.*makes 9 classes normal"):
        ContaminatedDataModule(protocol="unimodal", inlier_classes=None, outlier_classes=[3])


@pytest.mark.parametrize(
    ("dataset", "classes", "pattern"),
    [
        ("digits", dict(inlier_classes=[10]), r"data\.inlier_classes.*\[10\].*0\.\.9.*digits"),
        ("fashion_mnist", dict(inlier_classes=["sneaker", "Boot"]), r"\['Boot'\].*'T-shirt/top'"),
        (
            "fashion_mnist",
            dict(inlier_classes=["Sneaker"], outlier_classes=[7, 9]),
            r"data\.outlier_classes.*disjoint.*\[7\]",
        ),
        ("emnist", dict(inlier_classes=["!"]), r"data\.inlier_classes.*'!'.*0\.\.61.*emnist"),
        ("emnist", dict(inlier_classes=[62]), r"data\.inlier_classes.*\[62\].*0\.\.61"),
        ("emnist", dict(emnist_split="letters", inlier_classes=[27]), r"\[27\].*0\.\.26"),
        ("emnist", dict(inlier_classes=["A"], outlier_classes=[]), r"data\.outlier_classes.*\[\]"),
    ],
)
def test_classes_are_checked_against_the_dataset(dataset: str, classes: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        ContaminatedDataModule(dataset=dataset, **classes)


@pytest.mark.parametrize(
    ("val_fraction", "sizes"),
    [
        (0.999, r"of 30 inliers it puts 30 in validation and 0 in training"),
        (0.97, r"puts 29 in validation and 1 in training"),
        (0.01, r"puts 0 in validation and 30 in training"),
    ],
)
def test_val_fraction_must_leave_training_and_validation_images(
    mnist_dir: Path, val_fraction: float, sizes: str
) -> None:
    dm = ContaminatedDataModule(data_dir=str(mnist_dir), download=False, val_fraction=val_fraction)
    with pytest.raises(ConfigError, match=rf"data\.val_fraction.*{val_fraction}.*{sizes}"):
        dm.setup("fit")


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        (
            dict(contamination=0.01),
            r"data\.eval_contamination.*same as data\.contamination=0\.01"
            r".*test split at least one outlier.*12 inliers",
        ),
        (dict(contamination=0.0, eval_contamination=0.03), r"data\.eval_contamination.*0\.03"),
        (dict(protocol="transductive", contamination=0.02), r"data\.contamination.*transductive"),
        (dict(contamination=0.04, outlier_source="corruption"), r"test split.*12 inliers"),
    ],
)
def test_scored_splits_without_outliers_are_refused(
    mnist_dir: Path, overrides: dict, pattern: str
) -> None:
    with pytest.raises(ConfigError, match=pattern):
        make_dm(mnist_dir, **overrides)


def test_validation_without_outliers_is_only_a_warning(
    mnist_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Validation only monitors (the test split is what is reported): training may go on."""
    dm = make_dm(mnist_dir, contamination=0.1, val_fraction=0.1)
    assert dm.split_sizes["val"] == {"n": 3, "outliers": 0}
    assert "validation split's 3 inliers get 0 outliers" in caplog.text


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
