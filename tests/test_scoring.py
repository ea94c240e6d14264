"""Scoring with a trained model: thresholds, weights_only checkpoints, eval.py, robustad-score."""

from __future__ import annotations

import csv
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict
from PIL import Image

from robustad.checkpoint import build_model, load_checkpoint
from robustad.data.idx import write_idx
from robustad.data.sources import load_digits
from robustad.errors import ConfigError, RobustADError
from robustad.evaluate import evaluate
from robustad.report import collect
from robustad.score import main as score_main
from robustad.thresholds import binary_report, contamination_threshold, f1_threshold
from robustad.train import train

CONFIG_DIR = Path(__file__).resolve().parents[1] / "src" / "robustad" / "configs"
TINY = [
    "data=digits",
    "model=ae",
    "model.net.hidden_dims=[16]",
    "model.net.latent_dim=4",
    "trainer=cpu",
    "logger=csv",
    "trainer.max_epochs=1",
]


def compose_cfg(name: str, overrides: list[str], out: Path) -> DictConfig:
    """Compose train.yaml or eval.yaml as Hydra would, outputs in `out`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = cfg.hydra.runtime.output_dir = str(out)
        cfg.paths.log_dir = str(out.parent / "logs")
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One tiny AE trained for an epoch on digits (contamination threshold), shared by the tests."""
    out = tmp_path_factory.mktemp("trained") / "run"
    cfg = compose_cfg("train", TINY, out)
    metrics = train(cfg)
    GlobalHydra.instance().clear()
    return {"metrics": metrics, "ckpt": out / "checkpoints" / "last.ckpt", "cfg": cfg}


def digits_test_images(n: int = 12) -> np.ndarray:
    return load_digits().test_images[:n].numpy()


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


# --- threshold rules -------------------------------------------------------------------------
def test_contamination_threshold_is_pyod_quantile() -> None:
    scores = np.random.default_rng(0).normal(size=1000)
    value = contamination_threshold(torch.as_tensor(scores), 0.1)
    assert value == pytest.approx(np.percentile(scores, 90))
    assert np.mean(scores > value) == pytest.approx(0.1, abs=0.002)


def test_f1_threshold_is_optimal_and_strict() -> None:
    rng = np.random.default_rng(1)
    targets = (rng.random(200) < 0.2).astype(int)
    scores = rng.normal(size=200) + 1.5 * targets
    scores[:10] = scores[10]  # ties must fall on one side of the threshold
    value = f1_threshold(scores, targets)
    assert not np.any(scores == value)
    best = max(binary_report(scores, targets, t)["f1"] for t in np.r_[scores, scores.min() - 1])
    assert binary_report(scores, targets, value)["f1"] == pytest.approx(best)


def test_binary_report_counts() -> None:
    report = binary_report([0.1, 0.4, 0.6, 0.9], [0, 1, 0, 1], threshold=0.5)
    assert report["confusion_matrix"] == [[1, 1], [1, 1]]
    assert report["precision"] == report["recall"] == report["f1"] == 0.5


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("callbacks.threshold.method=median", "method"),
        ("callbacks.threshold.method=fixed", "value"),
    ],
)
def test_bad_threshold_settings_fail_before_training(
    tmp_path: Path, override: str, key: str
) -> None:
    cfg = compose_cfg("train", [*TINY, override], tmp_path / "run")
    with pytest.raises(ConfigError, match=f"callbacks.threshold.{key}"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


# --- checkpoints -----------------------------------------------------------------------------
def test_checkpoint_loads_weights_only_with_pyod_threshold(trained: dict[str, Any]) -> None:
    checkpoint = torch.load(trained["ckpt"], map_location="cpu", weights_only=True)
    plain = (bool, int, float, str, type(None))
    assert all(isinstance(v, plain) for v in checkpoint.get("hyper_parameters", {}).values())
    assert "robustad_threshold" not in checkpoint  # no file is patched after fit
    model = build_model(checkpoint)
    stored = model.calibration.threshold_info()
    assert stored["method"] == "contamination"
    assert checkpoint["state_dict"]["calibration.threshold"] == stored["value"]
    # Recompute the rule independently: (1 - c) quantile of the held-out validation split's
    # scores (images the weights never fitted), c the training split's realised outlier share
    # (callbacks.threshold.contamination: null).
    datamodule = instantiate(trained["cfg"].data)
    datamodule.setup("fit")
    images = datamodule.splits["val"].images.unsqueeze(1).float() / 255.0
    expected = np.percentile(
        model.anomaly_score(images).numpy(), 100 * (1 - datamodule.train_contamination)
    )
    assert stored["value"] == pytest.approx(expected, rel=1e-5)
    assert trained["metrics"]["test/threshold"] == pytest.approx(stored["value"], rel=1e-6)


@pytest.mark.parametrize("method", ["f1", "fixed"])
def test_other_threshold_methods_are_stored(tmp_path: Path, method: str) -> None:
    out = tmp_path / "run"
    overrides = [
        *TINY,
        f"callbacks.threshold.method={method}",
        "callbacks.threshold.value=0.5",
        "test_ckpt=best",
    ]
    metrics = train(compose_cfg("train", overrides, out))
    best = metrics["tested_checkpoint"]
    stored = build_model(load_checkpoint(best)).calibration.threshold_info()
    assert stored["method"] == method
    assert metrics["test/threshold"] == pytest.approx(stored["value"], rel=1e-6)
    if method == "fixed":
        assert stored["value"] == 0.5
    else:
        assert 0.0 <= metrics["test/f1"] <= 1.0


def test_checkpoints_from_before_scorer_components_still_load(trained: dict[str, Any]) -> None:
    """Older checkpoints named the score (`score: l2_cosine`, `rapp_from_input`) and kept its
    statistics at the top level of the state dict; they load as today's components."""
    checkpoint = torch.load(trained["ckpt"], map_location="cpu", weights_only=True)
    x = torch.from_numpy(digits_test_images()).unsqueeze(1).float() / 255.0
    model_cfg = checkpoint["robustad_config"]["model"]
    assert model_cfg["score"]["_target_"] == "robustad.models.scoring.Reconstruction"
    # Today's node for what a legacy name meant (unsmoothed: smoothing came later).
    model_cfg["score"] = {**model_cfg["score"], "metric": ["l2", "cosine"], "smoothing": 0.0}
    today = build_model(checkpoint)
    model_cfg["score"] = "l2_cosine"
    state = checkpoint["state_dict"]
    for key in [k for k in state if k.startswith("score.scaler.")]:
        state[key.replace("score.scaler.", "score_scaler.")] = state.pop(key)
    legacy = build_model(checkpoint)
    assert torch.equal(legacy.anomaly_score(x), today.anomaly_score(x))
    model_cfg["score"] = "rapp_sap"  # before rapp_from_input existed the pathway began at x
    for key in [k for k in state if k.startswith("score_scaler.")]:
        del state[key]  # sap fits no statistics
    assert build_model(checkpoint).score.from_input is True
    model_cfg["rapp_from_input"] = False
    assert build_model(checkpoint).score.from_input is False


def test_untrusted_model_target_is_refused(trained: dict[str, Any], tmp_path: Path) -> None:
    checkpoint = torch.load(trained["ckpt"], map_location="cpu", weights_only=True)
    checkpoint["robustad_config"]["model"]["_target_"] = "os.system"
    with pytest.raises(RobustADError, match=r"os\.system"):
        build_model(checkpoint)


# --- eval.py -----------------------------------------------------------------------------------
def test_eval_reproduces_test_metrics_with_confusion_matrix(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    metrics = evaluate(compose_cfg("eval", [f"ckpt_path={trained['ckpt']}", "trainer=cpu"], out))
    assert (out / "metrics.json").is_file() and metrics["status"] == "done"
    # Named by the config it was trained from (model=ae), in metrics.json and in the report.
    assert metrics["model"] == "ae"
    assert [run.keys["model"] for run in collect(out)] == ["ae"]
    for key in (
        "test/auroc",
        "test/ap",
        "test/precision",
        "test/recall",
        "test/f1",
        "test/threshold",
    ):
        assert metrics[key] == pytest.approx(trained["metrics"][key], rel=1e-5), key
    (tn, fp), (fn, tp) = metrics["test/confusion_matrix"]
    split = metrics["split_sizes"]["test"]
    assert tn + fp + fn + tp == split["n"] and fn + tp == split["outliers"]
    assert metrics["test/precision"] == pytest.approx(tp / (tp + fp) if tp + fp else 0.0)


def test_eval_threshold_override_and_other_protocol(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    overrides = [
        f"ckpt_path={trained['ckpt']}",
        "trainer=cpu",
        "data=digits",
        "data.inlier_classes=[3]",
        "threshold=-1e9",
    ]
    metrics = evaluate(compose_cfg("eval", overrides, tmp_path / "eval"))
    assert metrics["test/threshold_method"] == "fixed"
    assert metrics["test/recall"] == 1.0  # every score is above -1e9


def test_eval_without_ckpt_path_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ckpt_path"):
        evaluate(compose_cfg("eval", ["trainer=cpu"], tmp_path / "eval"))


def test_eval_on_other_image_shape_is_refused(
    trained: dict[str, Any], tmp_path: Path, mnist_dir: Path
) -> None:
    overrides = [
        f"ckpt_path={trained['ckpt']}",
        "data=mnist",
        f"data.data_dir={mnist_dir}",
        "data.download=false",
    ]
    with pytest.raises(ConfigError, match=r"\[1, 8, 8\]"):
        evaluate(compose_cfg("eval", overrides, tmp_path / "eval"))


# --- robustad-score ------------------------------------------------------------------------------
def test_score_formats_agree_and_use_stored_threshold(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    images = digits_test_images()
    np.save(tmp_path / "x.npy", images)
    write_idx(tmp_path / "x-idx3-ubyte.gz", images)
    png_dir = tmp_path / "pngs"
    png_dir.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(png_dir / f"img{i:02d}.png")
    rows = {}
    for name, source in (
        ("npy", tmp_path / "x.npy"),
        ("idx", tmp_path / "x-idx3-ubyte.gz"),
        ("png", png_dir),
    ):
        output = tmp_path / f"{name}.csv"
        assert (
            score_main(
                [
                    "--ckpt",
                    str(trained["ckpt"]),
                    "--input",
                    str(source),
                    "--output",
                    str(output),
                    "--device",
                    "cpu",
                ]
            )
            == 0
        )
        rows[name] = read_rows(output)
    assert [r["input"] for r in rows["png"]] == [f"img{i:02d}.png" for i in range(len(images))]
    assert [r["input"] for r in rows["npy"]] == [str(i) for i in range(len(images))]
    scores = np.array([float(r["score"]) for r in rows["npy"]])
    for other in ("idx", "png"):
        np.testing.assert_allclose([float(r["score"]) for r in rows[other]], scores, rtol=1e-6)
    checkpoint = load_checkpoint(trained["ckpt"])
    expected = build_model(checkpoint).anomaly_score(
        torch.from_numpy(images).unsqueeze(1).float() / 255.0
    )
    np.testing.assert_allclose(scores, expected.numpy(), rtol=1e-5)
    threshold = build_model(checkpoint).calibration.threshold_info()["value"]
    assert [int(r["label"]) for r in rows["npy"]] == [int(s > threshold) for s in scores]


def test_score_fixed_threshold_and_no_overwrite(
    trained: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "x.npy", digits_test_images(5))
    output = tmp_path / "s.csv"
    args = [
        "--ckpt",
        str(trained["ckpt"]),
        "--input",
        str(tmp_path / "x.npy"),
        "--output",
        str(output),
    ]
    assert score_main([*args, "--threshold=-1e9"]) == 0
    assert {r["label"] for r in read_rows(output)} == {"1"}
    before = output.read_text()
    assert score_main(args) == 1
    assert "already exists" in capsys.readouterr().err
    assert output.read_text() == before
    assert score_main([*args, "--overwrite", "--threshold", "1e9"]) == 0
    assert {r["label"] for r in read_rows(output)} == {"0"}


@pytest.mark.parametrize(
    ("array", "shown"),
    [(np.zeros((3, 28, 28), np.uint8), "1x28x28"), (np.zeros((3, 3, 8, 8), np.uint8), "3x8x8")],
)
def test_score_wrong_shape_names_both_shapes(
    trained: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    array: np.ndarray,
    shown: str,
) -> None:
    np.save(tmp_path / "bad.npy", array)
    output = tmp_path / "s.csv"
    rc = score_main(
        [
            "--ckpt",
            str(trained["ckpt"]),
            "--input",
            str(tmp_path / "bad.npy"),
            "--output",
            str(output),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and shown in err and "trained on 1x8x8" in err
    assert not output.exists()


def test_score_rejects_float_arrays(
    trained: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "f.npy", np.zeros((2, 8, 8), np.float32))
    assert (
        score_main(
            [
                "--ckpt",
                str(trained["ckpt"]),
                "--input",
                str(tmp_path / "f.npy"),
                "--output",
                str(tmp_path / "s.csv"),
            ]
        )
        == 1
    )
    assert "uint8" in capsys.readouterr().err


def test_score_help_answers_without_importing_torch() -> None:
    probe = (
        "import sys\n"
        "from robustad.score import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip().endswith("False")


def test_score_reads_jpeg_and_grayscale_images(trained: dict[str, Any], tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(digits_test_images(3)):
        Image.fromarray(image).save(folder / f"{i}.jpg", quality=95)
    Image.fromarray(digits_test_images(1)[0]).save(tmp_path / "one.png")
    out = tmp_path / "scores.csv"
    assert (
        score_main(["--ckpt", str(trained["ckpt"]), "--input", str(folder), "--output", str(out)])
        == 0
    )
    assert [row["input"] for row in read_rows(out)] == ["0.jpg", "1.jpg", "2.jpg"]
    single = tmp_path / "single.csv"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "not writable" warning from numpy -> torch
        args = ["--ckpt", str(trained["ckpt"]), "--input", str(tmp_path / "one.png")]
        assert score_main([*args, "--output", str(single)]) == 0


@pytest.mark.parametrize("model", ["ae", "cae", "vae", "rvae", "rae", "pca", "rsrae", "rsrae_conv"])
def test_every_model_checkpoints_evaluates_and_scores(tmp_path: Path, model: str) -> None:
    """Train one epoch, then eval.py and robustad-score from the last checkpoint alone: the
    same test metrics, the stored threshold, scores equal to the Python API's."""
    from test_models_training import TINY as TINY_NETS

    from robustad import Detector

    overrides = [f"model={model}", *TINY_NETS[model], "data=digits", "trainer=cpu", "logger=csv"]
    trained_metrics = train(
        compose_cfg("train", [*overrides, "trainer.max_epochs=1"], tmp_path / "run")
    )
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    evaluated = evaluate(compose_cfg("eval", [f"ckpt_path={ckpt}", "trainer=cpu"], tmp_path / "ev"))
    for key in ("test/auroc", "test/ap", "test/f1", "test/threshold"):
        assert evaluated[key] == pytest.approx(trained_metrics[key], rel=1e-5), key
    images = digits_test_images(16)
    np.save(tmp_path / "x.npy", images)
    out = tmp_path / "s.csv"
    args = ["--ckpt", str(ckpt), "--input", str(tmp_path / "x.npy"), "--output", str(out)]
    assert score_main([*args, "--device", "cpu"]) == 0
    rows = read_rows(out)
    scores = np.array([float(r["score"]) for r in rows])
    np.testing.assert_allclose(Detector.load(ckpt).decision_function(images), scores, rtol=1e-5)
    threshold = trained_metrics["test/threshold"]
    assert [int(r["label"]) for r in rows] == [int(s > threshold) for s in scores]
