"""The Python API: `Detector` fits, scores, thresholds, saves and loads like PyOD, on the same
modules and checkpoint format as train.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from robustad import Detector
from robustad.data.sources import load_digits
from robustad.errors import ConfigError, RobustADError
from robustad.models import AEModule, RSRAEModule

SMALL_AE = ["model.net.hidden_dims=[32]", "model.net.latent_dim=8"]


def contaminated_digits(c: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training images: zeros with a fraction c of other digits; test: zeros and others."""
    digits = load_digits()
    rng = np.random.default_rng(0)
    train_x, train_y = digits.train_images.numpy(), digits.train_labels.numpy()
    inliers, others = train_x[train_y == 0], train_x[train_y != 0]
    n_out = round(c * len(inliers) / (1 - c))
    train = np.concatenate([inliers, others[rng.choice(len(others), n_out, replace=False)]])
    test_x, test_y = digits.test_images.numpy(), digits.test_labels.numpy()
    keep = (test_y == 0) | (rng.random(len(test_y)) < 0.15)
    return train, np.r_[np.zeros(len(inliers)), np.ones(n_out)], test_x[keep], test_y[keep] != 0


def test_readme_example_fits_scores_predicts_saves_and_loads(tmp_path: Path) -> None:
    train, _, test_x, test_outlier = contaminated_digits(0.1)
    det = Detector(model="ae", contamination=0.1, max_epochs=5, overrides=SMALL_AE)
    assert det.fit(train) is det
    scores = det.decision_function(test_x)
    assert scores.shape == (len(test_x),) and np.isfinite(scores).all()
    assert roc_auc_score(test_outlier, scores) > 0.7  # higher = more anomalous
    labels = det.predict(test_x)
    assert set(np.unique(labels)) <= {0, 1}
    np.testing.assert_array_equal(labels, (scores > det.threshold_).astype(int))
    # PyOD's training attributes, and a threshold near the expected contamination
    assert det.decision_scores_.shape == (len(train),)
    assert 0.02 < det.labels_.mean() < 0.3
    # float images in [0, 1] and (N, 1, H, W) are the same images
    as_float = torch.from_numpy(test_x).float().unsqueeze(1) / 255.0
    np.testing.assert_allclose(det.decision_function(as_float), scores, rtol=1e-5)
    saved = det.save(tmp_path / "det.ckpt")
    again = Detector.load(saved)
    np.testing.assert_array_equal(again.decision_function(test_x), scores)
    assert again.threshold_ == det.threshold_
    assert isinstance(AEModule.load_from_checkpoint(saved), AEModule)
    with pytest.raises(RobustADError, match="not a RSRAEModule"):
        RSRAEModule.load_from_checkpoint(saved)


def test_pca_is_a_detector_like_any_other(tmp_path: Path) -> None:
    train, _, test_x, test_outlier = contaminated_digits(0.1)
    det = Detector(model="pca", contamination=0.1, overrides=["model.net.rank=8"])
    scores = det.fit(train).decision_function(test_x)
    assert roc_auc_score(test_outlier, scores) > 0.7
    again = Detector.load(det.save(tmp_path / "pca.ckpt"))
    np.testing.assert_array_equal(again.decision_function(test_x), scores)
    assert again.threshold_ == det.threshold_


def test_label_free_threshold_methods() -> None:
    train, _, _, _ = contaminated_digits(0.1)
    det = Detector(model="pca", contamination=0.1, threshold="mad").fit(train)
    assert det.detector_.calibration.threshold_info()["method"] == "mad"


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"contamination": 0.7}, "contamination"),
        ({"threshold": "f1"}, "threshold"),
        ({"threshold": "median"}, "threshold"),
    ],
)
def test_bad_arguments_name_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        Detector(model="pca", **kwargs)


def test_bad_images_and_unknown_model_are_refused() -> None:
    with pytest.raises(ConfigError, match="X"):
        Detector(model="pca").fit(np.zeros((5, 2, 3, 4, 5), dtype=np.uint8))
    with pytest.raises(ConfigError, match=r"outside \[0, 1\]"):
        Detector(model="pca").fit(np.full((20, 8, 8), 3.0))
    with pytest.raises(RobustADError, match="nosuchmodel"):
        Detector(model="nosuchmodel").fit(np.zeros((20, 8, 8), dtype=np.uint8))
    with pytest.raises(RobustADError, match="not fitted"):
        Detector(model="pca").decision_function(np.zeros((2, 8, 8), dtype=np.uint8))


def test_checkpoints_written_without_hydra_score_and_load(tmp_path: Path) -> None:
    """A detector built and trained in plain Python + Lightning describes itself in its
    checkpoint: robustad-score, eval's loader and load_from_checkpoint all rebuild it."""
    import functools

    import pytorch_lightning as pl

    from robustad.callbacks import AnomalyThreshold
    from robustad.data.arrays import ArrayDataModule
    from robustad.models.networks import MLPAutoencoder
    from robustad.models.robust import TrimmedLoss
    from robustad.score import main as score_main

    train, _, test_x, _ = contaminated_digits(0.1)
    model = AEModule(
        net=MLPAutoencoder(input_shape=(1, 8, 8), hidden_dims=[32], latent_dim=8),
        optimizer=functools.partial(torch.optim.AdamW, lr=1e-3),
        scheduler=functools.partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=1e-3),
        robust=TrimmedLoss(contamination=0.1),
    )
    trainer = pl.Trainer(
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[AnomalyThreshold(contamination=0.1)],
    )
    trainer.fit(model, datamodule=ArrayDataModule(train, contamination=0.1, batch_size=32))
    ckpt = tmp_path / "plain.ckpt"
    trainer.save_checkpoint(ckpt)
    loaded = AEModule.load_from_checkpoint(ckpt)
    x = torch.from_numpy(test_x).float().unsqueeze(1) / 255.0
    model.eval()
    assert torch.equal(loaded.anomaly_score(x), model.anomaly_score(x))
    np.save(tmp_path / "x.npy", test_x)
    out = tmp_path / "s.csv"
    args = ["--ckpt", str(ckpt), "--input", str(tmp_path / "x.npy"), "--output", str(out)]
    assert score_main([*args, "--device", "cpu"]) == 0
    assert len(out.read_text().splitlines()) == 1 + len(test_x)


def test_rsrae_in_its_alternating_default_mode_fits_through_the_api(tmp_path: Path) -> None:
    train, _, test_x, test_outlier = contaminated_digits(0.1)
    small = ["model.net.hidden_dims=[32]", "model.net.D=16", "model.net.d=4"]
    det = Detector(model="rsrae", contamination=0.1, max_epochs=3, overrides=small).fit(train)
    assert det.detector_.mode == "alternating"
    scores = det.decision_function(test_x)
    assert roc_auc_score(test_outlier, scores) > 0.6
    np.testing.assert_array_equal(
        Detector.load(det.save(tmp_path / "r.ckpt")).decision_function(test_x), scores
    )


def test_a_device_this_machine_lacks_is_refused_by_name() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(ConfigError, match=r"`device`.*cuda"):
        Detector(model="pca", device="cuda")
    with pytest.raises(ConfigError, match="`device`"):
        Detector(model="pca", device="gpu0")
