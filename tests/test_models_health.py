"""A non-finite loss stops the run at once, names term and step, and keeps earlier checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from robustad.models import VAEModule
from robustad.models.health import NonFiniteLossError, check_finite, clip_gradients
from robustad.train import train


def test_check_finite_names_the_term_not_the_sum() -> None:
    terms = {
        "loss": torch.tensor(float("nan")),
        "kl": torch.tensor(float("inf")),
        "rec": torch.tensor(1.0),
    }
    with pytest.raises(NonFiniteLossError, match=r"`kl` = inf at global step 7 \(epoch 2\)"):
        check_finite(terms, step=7, epoch=2)
    check_finite({"loss": torch.tensor(0.5)}, step=0, epoch=0)


def _params_with_grads(*grads: list[float]) -> list[torch.nn.Parameter]:
    params = [torch.nn.Parameter(torch.zeros(len(g))) for g in grads]
    for param, grad in zip(params, grads, strict=True):
        param.grad = torch.tensor(grad)
    return params


@pytest.mark.parametrize(
    ("value", "algorithm", "expected"),
    [
        (None, None, [[3.0, 0.0], [4.0]]),  # no clipping: the norm is still measured
        (1.0, "norm", [[0.6, 0.0], [0.8]]),  # scaled to total norm 1
        (10.0, "norm", [[3.0, 0.0], [4.0]]),  # under the threshold: unchanged
        (2.0, "value", [[2.0, 0.0], [2.0]]),  # each entry clamped
    ],
)
def test_clip_gradients_returns_the_norm_before_clipping(value, algorithm, expected) -> None:
    params = [*_params_with_grads([3.0, 0.0], [4.0]), torch.nn.Parameter(torch.ones(2))]
    norm = clip_gradients(params, value, algorithm)  # the last parameter has no gradient
    assert float(norm) == pytest.approx(5.0)
    for param, want in zip(params, expected, strict=False):
        assert param.grad.tolist() == pytest.approx(want, abs=1e-5)


def test_non_finite_loss_fails_the_run_and_keeps_checkpoints(make_cfg, monkeypatch) -> None:
    original = VAEModule.training_losses

    def kl_explodes_in_epoch_1(self, x):
        terms = original(self, x)
        if self.training and self.current_epoch == 1:
            terms["kl"] = terms["kl"] * float("inf")
        return terms

    monkeypatch.setattr(VAEModule, "training_losses", kl_explodes_in_epoch_1)
    cfg = make_cfg(
        [
            "model=vae",
            "model.net.hidden_dims=[16]",
            "data=digits",
            "trainer=cpu",
            "trainer.max_epochs=3",
        ]
    )
    with pytest.raises(NonFiniteLossError) as info:
        train(cfg)
    assert info.value.term == "kl" and info.value.epoch == 1
    out = Path(cfg.paths.output_dir)
    written = json.loads((out / "metrics.json").read_text())
    assert written["status"] == "failed"
    assert "`kl`" in written["error"] and f"global step {info.value.step}" in written["error"]
    kept = sorted((out / "checkpoints").glob("*.ckpt"))  # written at the end of epoch 0
    assert kept
    for path in kept:
        assert torch.load(path, map_location="cpu", weights_only=False)["epoch"] == 0
