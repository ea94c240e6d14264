"""TensorBoard diagnostics: what the event files hold, when; a no-op without TensorBoard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from robustad.callbacks import TensorBoardDiagnostics
from robustad.errors import ConfigError
from robustad.train import train

TINY = [
    "data=digits",
    "model=ae",
    "model.net.hidden_dims=[16]",
    "model.net.latent_dim=4",
    "trainer=cpu",
]


def load_events(log_dir: Path) -> list[EventAccumulator]:
    accumulators = []
    for path in sorted(log_dir.glob("events.out.tfevents*")):
        acc = EventAccumulator(
            str(path), size_guidance={"images": 0, "histograms": 0, "tensors": 0, "scalars": 0}
        )
        acc.Reload()
        accumulators.append(acc)
    return accumulators


def tags(accumulators: list[EventAccumulator], kind: str) -> set[str]:
    return {tag for acc in accumulators for tag in acc.Tags()[kind]}


def plugin_content(acc: EventAccumulator, plugin: str) -> dict[str, bytes]:
    try:
        return acc.PluginTagToContent(plugin)
    except KeyError:
        return {}


def test_event_files_hold_every_diagnostic(make_cfg) -> None:
    cfg = make_cfg(
        [
            *TINY,
            "trainer.max_epochs=2",
            "callbacks.tensorboard.every_n_epochs=2",
            "callbacks.tensorboard.max_embeddings=50",
        ]
    )
    metrics = train(cfg)
    log_dir = Path(cfg.paths.output_dir) / "tensorboard"
    events = load_events(log_dir)
    for stage in ("val", "test"):
        assert {f"{stage}/scores_inliers", f"{stage}/scores_outliers"} <= tags(events, "histograms")
        drawn = {"highest_lowest_scored", "roc_pr_curves", "score_histogram"}
        assert {f"{stage}/{name}" for name in drawn} <= tags(events, "images")
        assert f"{stage}/pr_curve" in tags(events, "tensors")
    # every_n_epochs=2 over 2 epochs: validation drawn once, at the last epoch.
    val_steps = [
        e.step
        for acc in events
        if "val/scores_inliers" in acc.Tags()["histograms"]
        for e in acc.Histograms("val/scores_inliers")
    ]
    assert len(val_steps) == 1 and len(metrics["history"]) == 2
    grid = next(
        acc.Images("test/highest_lowest_scored")[-1]
        for acc in events
        if "test/highest_lowest_scored" in acc.Tags()["images"]
    )
    # six rows (highest: images, reconstructions, error maps; lowest: the same) of 8 columns
    assert grid.height > grid.width / 2
    # Embedding projector: config plus metadata with class labels, capped at max_embeddings.
    assert "val/latent" in (log_dir / "projector_config.pbtxt").read_text()
    metadata = next(log_dir.glob("*/test%2flatent/metadata.tsv")).read_text().splitlines()
    assert metadata[0].split("\t") == ["label", "target"] and len(metadata) == 1 + 50
    assert {row.split("\t")[1] for row in metadata[1:]} <= {"inlier", "outlier"}
    # hparams tab: the run's config against its final val and test metrics (own subfolder).
    hparams_events = load_events(log_dir / "hparams")
    content = [plugin_content(acc, "hparams") for acc in hparams_events]
    content = next(c for c in content if c)
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/experiment"]
    ).experiment
    assert {"data.contamination", "seed", "model._target_"} <= {
        h.name for h in experiment.hparam_infos
    }
    assert {"test/auroc", "test/ap", "test/f1", "val/auroc"} <= {
        m.name.tag for m in experiment.metric_infos
    }


@pytest.mark.parametrize("overrides", [["logger=csv", "trainer.max_epochs=1"], ["debug=fdr"]])
def test_no_tensorboard_logger_is_a_no_op(make_cfg, overrides: list[str]) -> None:
    cfg = make_cfg([*TINY, *overrides])
    metrics = train(cfg)
    assert metrics["status"] == "done"
    out = Path(cfg.paths.output_dir)
    assert not list(out.rglob("projector_config.pbtxt"))
    assert not [path for path in out.rglob("events.out.tfevents*")]


@pytest.mark.parametrize(
    ("key", "value"), [("every_n_epochs", 0), ("max_scores", 0), ("n_images", -1)]
)
def test_bad_settings_name_the_key(key: str, value: int) -> None:
    with pytest.raises(ConfigError, match=f"callbacks.tensorboard.{key}"):
        TensorBoardDiagnostics(**{key: value})


def test_a_failed_run_still_gets_its_hparams_row(make_cfg, monkeypatch) -> None:
    from robustad.models.base import AnomalyModule

    def fail_in_second_epoch(self: AnomalyModule) -> None:
        if self.current_epoch == 1:
            raise RuntimeError("injected failure")

    monkeypatch.setattr(AnomalyModule, "on_train_epoch_start", fail_in_second_epoch)
    cfg = make_cfg([*TINY, "trainer.max_epochs=3"])
    with pytest.raises(RuntimeError, match="injected failure"):
        train(cfg)
    written = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert written["status"] == "failed"
    hparams_events = load_events(Path(cfg.paths.output_dir) / "tensorboard" / "hparams")
    content = next(c for c in (plugin_content(acc, "hparams") for acc in hparams_events) if c)
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/experiment"]
    ).experiment
    assert "val/auroc" in {m.name.tag for m in experiment.metric_infos}
    session = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]
    ).session_start_info
    assert session.hparams["status"].string_value == "failed"
