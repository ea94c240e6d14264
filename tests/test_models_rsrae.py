"""RSRAE optimisation modes: alternating steps three optimisers per batch, clipped and scheduled."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from robustad.models import health
from robustad.models.health import hand_over_gradient_clipping
from robustad.train import train

TINY = ["model.net.hidden_dims=[16]", "model.net.D=8", "model.net.d=3", "data.batch_size=32"]


def fit_two_batches(
    make_cfg, mode: str, overrides: tuple[str, ...] = ()
) -> tuple[pl.Trainer, pl.LightningModule]:
    cfg = make_cfg(["model=rsrae", f"model.mode={mode}", "data=digits", *TINY, *overrides])
    datamodule, model = instantiate(cfg.data), instantiate(cfg.model)
    settings = {"gradient_clip_val": cfg.trainer.gradient_clip_val}
    settings.update(hand_over_gradient_clipping(model, cfg.trainer))
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        **settings,
    )
    trainer.fit(model, datamodule=datamodule)
    return trainer, model


def test_alternating_mode_steps_each_optimizer_and_scheduler_every_batch(
    make_cfg, monkeypatch
) -> None:
    clipped: list[float | None] = []
    original = health.clip_gradients

    def spy(parameters, value, algorithm):
        clipped.append(value)
        return original(parameters, value, algorithm)

    monkeypatch.setattr(health, "clip_gradients", spy)
    trainer, model = fit_two_batches(make_cfg, "alternating")
    assert not model.automatic_optimization
    assert len(trainer.optimizers) == 3
    for optimizer in trainer.optimizers:
        steps = {int(state["step"]) for state in optimizer.state.values()}
        assert steps == {2}, "every optimiser steps once per batch"
    reconstruction, projection, orthogonality = trainer.optimizers
    assert reconstruction.param_groups[0]["max_lr"] * 10 == pytest.approx(
        projection.param_groups[0]["max_lr"]
    )
    assert [p for g in orthogonality.param_groups for p in g["params"]] == [model.net.rsr.A]
    assert all(config.scheduler.last_epoch == 2 for config in trainer.lr_scheduler_configs)
    assert clipped == [1.0] * 6  # the trainer's gradient_clip_val, applied by the module
    for term in ("reconstruction", "projection", "orthogonality"):
        assert f"train/grad_norm_{term}" in trainer.callback_metrics


def test_joint_mode_uses_one_optimizer_and_logs_the_gradient_norm(make_cfg) -> None:
    trainer, model = fit_two_batches(make_cfg, "joint")
    assert model.automatic_optimization and len(trainer.optimizers) == 1
    assert torch.isfinite(trainer.callback_metrics["train/grad_norm"])


@pytest.mark.parametrize("mode", ["alternating", "joint"])
def test_both_modes_log_the_share_the_trimmed_loss_leaves_out(make_cfg, mode: str) -> None:
    trainer, model = fit_two_batches(make_cfg, mode, ("robust.warmup_epochs=0",))
    dropped_per_batch = int(model.robust.fraction * 32)  # two full batches of 32
    assert dropped_per_batch > 0
    assert trainer.callback_metrics["train/left_out"].item() == pytest.approx(
        dropped_per_batch / 32
    )


def test_alternating_mode_runs_through_train_with_trainer_clipping_on(make_cfg) -> None:
    cfg = make_cfg(
        ["model=rsrae", "model.mode=alternating", "data=digits", "debug=fdr", "trainer=cpu", *TINY]
    )
    assert (
        cfg.trainer.gradient_clip_val > 0
    )  # Lightning alone would refuse this with manual optimisation
    metrics = train(cfg)
    assert metrics["status"] == "done"
    assert Path(cfg.paths.output_dir, "metrics.json").is_file()
