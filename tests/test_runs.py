"""A run's life on disk: the record from the first moment, refusal, resume that continues from
last.ckpt and ends as an uninterrupted run would, interruption, a full disk; closed-form
checkpoints; moved checkpoints evaluated on data elsewhere."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from test_scoring import compose_cfg

from robustad import runs
from robustad.errors import RobustADError
from robustad.evaluate import evaluate
from robustad.runs import recorded, write_json_atomic
from robustad.train import RunHistory, train

FAST = ["data=digits", "trainer=cpu", "logger=csv", "callbacks.tensorboard.n_images=0"]
EPOCHS = ["trainer.max_epochs=4"]


def record(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "metrics.json").read_text())


def stop_at_epoch(monkeypatch: pytest.MonkeyPatch, epoch: int, exc: BaseException) -> None:
    """Make the run fail as the given epoch starts (after the previous epoch's checkpoints)."""

    def hook(self: RunHistory, trainer: Any, pl_module: Any) -> None:
        if trainer.current_epoch == epoch:
            raise exc

    monkeypatch.setattr(RunHistory, "on_train_epoch_start", hook, raising=False)


def test_resumed_run_ends_like_an_uninterrupted_one(make_cfg, tmp_path, monkeypatch) -> None:
    whole = train(make_cfg([*FAST, *EPOCHS], output_dir=tmp_path / "whole"))

    run_dir = tmp_path / "broken"
    stop_at_epoch(monkeypatch, 2, RuntimeError("simulated crash"))
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(make_cfg([*FAST, *EPOCHS], output_dir=run_dir))
    failed = record(run_dir)
    assert failed["status"] == "failed" and "simulated crash" in failed["error"]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    monkeypatch.undo()

    # Without resume=true the folder is refused and nothing in it changes.
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    with pytest.raises(RobustADError, match=r"unfinished run \(status: failed\).*resume=true"):
        train(make_cfg([*FAST, *EPOCHS], output_dir=run_dir))
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before

    resumed = train(make_cfg([*FAST, *EPOCHS, "resume=true"], output_dir=run_dir))
    assert resumed["status"] == "done" and resumed["resumed_from"].endswith("last.ckpt")
    for key in ("test/auroc", "test/ap", "val/auroc", "test/threshold"):
        assert resumed[key] == pytest.approx(whole[key], abs=1e-6), key
    assert [row["epoch"] for row in resumed["history"]] == [0, 1, 2, 3]
    for got, want in zip(resumed["history"], whole["history"], strict=True):
        assert got == pytest.approx(want)
    kept = json.loads((run_dir / "metrics.failed-1.json").read_text())
    assert kept["status"] == "failed"  # the attempt's record is kept
    assert len(list((run_dir / "checkpoints").glob("best_epoch_*.ckpt"))) == 1


def test_resume_refuses_another_configuration(make_cfg, tmp_path, monkeypatch) -> None:
    run_dir = tmp_path / "run"
    stop_at_epoch(monkeypatch, 1, RuntimeError("crash"))
    with pytest.raises(RuntimeError):
        train(make_cfg([*FAST, *EPOCHS], output_dir=run_dir))
    monkeypatch.undo()
    with pytest.raises(RobustADError, match=r"another configuration .*model.optimizer.lr"):
        train(make_cfg([*FAST, *EPOCHS, "resume=true", "model.optimizer.lr=0.01"], run_dir))
    assert record(run_dir)["status"] == "failed"  # the attempt's record is untouched


def test_ctrl_c_is_recorded_as_interrupted(make_cfg, tmp_path, monkeypatch) -> None:
    run_dir = tmp_path / "run"
    stop_at_epoch(monkeypatch, 1, KeyboardInterrupt())
    with pytest.raises(RobustADError, match="interrupted"):
        train(make_cfg([*FAST, *EPOCHS], output_dir=run_dir))
    assert record(run_dir)["status"] == "interrupted"


def test_a_finished_run_is_never_overwritten(make_cfg, tmp_path) -> None:
    run_dir = tmp_path / "run"
    train(make_cfg([*FAST, "debug=fdr"], output_dir=run_dir))
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    with pytest.raises(RobustADError, match="holds a finished run"):
        train(make_cfg([*FAST, "debug=fdr", "model=ae"], output_dir=run_dir))
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_killed_run_is_recognisable_from_its_record(make_cfg, tmp_path, monkeypatch) -> None:
    """`kill -9` runs no handler: the record written at the start must already say `running`."""
    seen: dict[str, Any] = {}

    def peek(self: RunHistory, trainer: Any, pl_module: Any) -> None:
        seen.update(record(tmp_path / "run"))

    monkeypatch.setattr(RunHistory, "on_train_epoch_start", peek, raising=False)
    train(make_cfg([*FAST, "debug=fdr"], output_dir=tmp_path / "run"))
    assert seen["status"] == "running" and seen["model"] == "rsrae"


def test_a_full_disk_keeps_the_first_error_and_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    real_write = Path.write_text
    calls = {"n": 0}

    def full_disk(self: Path, text: str, *args: Any, **kwargs: Any) -> int:
        calls["n"] += 1
        if calls["n"] > 1:  # the `running` record fits; the final one does not
            real_write(self, "")
            raise OSError(28, "No space left on device")
        return real_write(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(ValueError, match="the real failure"), recorded(path, {}):
        raise ValueError("the real failure")
    monkeypatch.undo()
    assert json.loads(path.read_text())["status"] == "running"
    assert not list(tmp_path.glob("*.tmp"))


def test_write_json_atomic_removes_its_temporary_file(tmp_path: Path, monkeypatch) -> None:
    def fail(*args: Any) -> None:
        raise OSError("boom")

    monkeypatch.setattr(runs.os, "replace", fail)
    with pytest.raises(OSError):
        write_json_atomic(tmp_path / "m.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_pca_checkpoint_moved_with_its_data_is_evaluated(make_cfg, tmp_path, mnist_dir) -> None:
    """PCA writes last.ckpt and a best checkpoint like any model; eval.py scores it on data that
    now lives in another folder (`data.data_dir=...` without choosing `data=`)."""
    run_dir = tmp_path / "pca"
    data = ["data=mnist", f"data.data_dir={mnist_dir}", "data.download=false"]
    overrides = [*FAST[1:], *data, "model=pca", "test_ckpt=best"]
    metrics = train(make_cfg(overrides, output_dir=run_dir))
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert ckpts == ["best_epoch_000.ckpt", "last.ckpt"]
    assert metrics["test/threshold"] > 0

    moved = tmp_path / "elsewhere"
    shutil.move(str(mnist_dir), moved)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    eval_overrides = [f"ckpt_path={ckpt}", "trainer=cpu", f"data.data_dir={moved}"]
    again = evaluate(compose_cfg("eval", eval_overrides, tmp_path / "eval"))
    assert again["test/auroc"] == pytest.approx(metrics["test/auroc"])
    assert again["test/f1"] == pytest.approx(metrics["test/f1"])


def test_pca_with_nap_runs(make_cfg, tmp_path: Path) -> None:
    metrics = train(make_cfg([*FAST, "model=pca", "model/score=rapp_nap"], tmp_path / "nap"))
    assert metrics["status"] == "done" and 0 <= metrics["test/auroc"] <= 1


def test_listed_trainer_arguments_are_plain_overrides(make_cfg, tmp_path: Path) -> None:
    overrides = [
        *FAST,
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.enable_progress_bar=false",
    ]
    metrics = train(make_cfg(overrides, tmp_path / "run"))
    assert metrics["status"] == "done" and len(metrics["history"]) == 2
