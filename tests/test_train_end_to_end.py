"""Every data x model config composes and trains a fast dev run through `train(cfg)`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from robustad.errors import RobustADError
from robustad.train import train

MODELS = ["ae", "cae", "vae", "rvae", "rae", "pca", "rsrae", "rsrae_conv"]


# Dataset -> (fixture writing its synthetic IDX files, overrides that fit the small fixture).
DATASETS: dict[str, tuple[str | None, list[str]]] = {
    "digits": (None, []),
    "mnist": ("mnist_dir", ["data.contamination=0.1"]),
    "fashion_mnist": ("fashion_dir", ["data.contamination=0.1"]),
    "emnist": ("emnist_dir", ["data.contamination=0.3", "data.val_fraction=0.5"]),
}


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("data", list(DATASETS))
def test_fast_dev_run_writes_finite_metrics(
    make_cfg, request: pytest.FixtureRequest, model: str, data: str
) -> None:
    fixture, extra = DATASETS[data]
    overrides = [f"model={model}", f"data={data}", "debug=fdr", "trainer=cpu", *extra]
    if fixture is not None:
        data_dir = request.getfixturevalue(fixture)
        overrides += [f"data.data_dir={data_dir}", "data.download=false"]
    cfg = make_cfg(overrides)
    metrics = train(cfg)
    written = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert written["status"] == "done"
    for key in ("test/auroc", "test/ap", "val/auroc", "val/ap"):
        assert math.isfinite(written[key]) and 0.0 <= written[key] <= 1.0, key
        assert written[key] == metrics[key]
    assert Path(written["config_path"]).is_file()


@pytest.mark.parametrize("model", ["rapp_ae", "rapp_vae"])
def test_rapp_networks_train_with_the_papers_layers(make_cfg, model: str) -> None:
    """The RaPP configs are AE / VAE with the paper's 10-layer batch-norm network."""
    cfg = make_cfg([f"model={model}", "data=digits", "debug=fdr", "trainer=cpu"])
    assert cfg.model.net.hidden_dims == [707, 631, 554, 478, 402, 325, 249, 172, 96]
    assert cfg.model.net.batch_norm and cfg.model.net.latent_dim == 20
    assert train(cfg)["status"] == "done"


def test_short_training_writes_checkpoints_logs_and_history(make_cfg) -> None:
    cfg = make_cfg(["data=digits", "trainer=cpu", "trainer.max_epochs=2", "test_ckpt=best"])
    metrics = train(cfg)
    out = Path(cfg.paths.output_dir)
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert list((out / "tensorboard").glob("events.out.tfevents*"))
    assert [row["epoch"] for row in metrics["history"]] == [0, 1]
    assert metrics["tested_checkpoint"].endswith(".ckpt")
    assert metrics["split_sizes"]["train"]["outliers"] > 0


def test_seed_zero_is_honoured(make_cfg, tmp_path: Path) -> None:
    runs = [
        train(
            make_cfg(
                ["data=digits", "trainer=cpu", "trainer.max_epochs=1", "seed=0"], tmp_path / f"r{i}"
            )
        )
        for i in range(2)
    ]
    assert runs[0]["test/auroc"] == runs[1]["test/auroc"]
    assert runs[0]["val/loss"] == runs[1]["val/loss"]


def test_existing_metrics_are_never_overwritten(make_cfg) -> None:
    cfg = make_cfg(["data=digits", "debug=fdr", "trainer=cpu"])
    train(cfg)
    metrics_file = Path(cfg.paths.output_dir) / "metrics.json"
    before = metrics_file.read_text()
    with pytest.raises(RobustADError, match="refusing to overwrite"):
        train(cfg)
    assert metrics_file.read_text() == before
