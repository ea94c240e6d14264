"""Bad input, table-driven, across train, eval, score and report: one line that names the key
(or file), the value and what is allowed; no traceback; refused before training; nothing
already written is lost."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from test_scoring import TINY, compose_cfg

from robustad.cli import run_evaluation, run_training
from robustad.data.idx import write_idx
from robustad.data.sources import MNIST_FILES
from robustad.report import main as report_main
from robustad.score import main as score_main
from robustad.train import train

REPO = Path(__file__).resolve().parents[1]
FAST = ["data=digits", "trainer=cpu", "logger=csv", "debug=fdr"]
NO_FDR = "trainer.fast_dev_run=false"
HAS_CUDA = torch.cuda.is_available()

Overrides = Callable[[Path], list[str]]


def mnist(edit: Callable[[Path], None] | None = None, *more: str) -> Overrides:
    """MNIST from synthetic IDX files in tmp/data (edited first by `edit`)."""

    def make(tmp: Path) -> list[str]:
        from conftest import write_mnist_like

        root = write_mnist_like(tmp / "data")
        if edit is not None:
            edit(root / "MNIST" / "raw")
        return ["data=mnist", f"data.data_dir={root}", "data.download=false", *more]

    return make


def truncate(raw: Path) -> None:
    path = raw / (MNIST_FILES["train_images"] + ".gz")
    data = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(data[: len(data) // 2]))


def corrupt_deflate(raw: Path) -> None:
    path = raw / (MNIST_FILES["train_images"] + ".gz")
    blob = bytearray(path.read_bytes())
    for i in range(len(blob) // 3, len(blob) // 3 + 64):
        blob[i] ^= 0xFF
    path.write_bytes(bytes(blob))


def mismatched_labels(raw: Path) -> None:
    write_idx(raw / (MNIST_FILES["train_labels"] + ".gz"), np.zeros(7, dtype=np.uint8))


def two_d_labels(raw: Path) -> None:
    write_idx(raw / (MNIST_FILES["train_labels"] + ".gz"), np.zeros((300, 2), dtype=np.uint8))


def data_dir_is_a_file(tmp: Path) -> list[str]:
    path = tmp / "not-a-folder"
    path.write_text("x")
    return ["data=mnist", f"data.data_dir={path}", "data.download=false"]


def empty_data_dir(tmp: Path) -> list[str]:
    (tmp / "empty").mkdir()
    return ["data=mnist", f"data.data_dir={tmp / 'empty'}", "data.download=false"]


TRAIN_CASES: list[tuple[str, list[str] | Overrides, str]] = [
    ("max_epochs negative", ["trainer.max_epochs=-1", NO_FDR], r"trainer\.max_epochs.*-1"),
    ("max_epochs zero", ["trainer.max_epochs=0", NO_FDR], r"trainer\.max_epochs.*0"),
    ("max_epochs text", ["trainer.max_epochs=abc", NO_FDR], r"trainer\.max_epochs.*abc"),
    ("lr negative", ["model.optimizer.lr=-0.001"], r"model\.optimizer\.lr.*-0\.001.*> 0"),
    ("lr text", ["model.optimizer.lr=abc"], r"model\.optimizer\.lr.*abc"),
    ("weight decay negative", ["model.optimizer.weight_decay=-1"], r"weight_decay.*-1.*>= 0"),
    ("pct_start above 1", ["model.scheduler.pct_start=2"], r"scheduler\.pct_start.*2.*\(0, 1\)"),
    ("clip negative", ["trainer.gradient_clip_val=-1"], r"gradient_clip_val.*-1"),
    ("clip algorithm", ["trainer.gradient_clip_algorithm=max"], r"gradient_clip_algorithm.*max"),
    ("accelerator unknown", ["trainer.accelerator=tpu"], r"trainer\.accelerator.*tpu"),
    ("batch limit negative", ["trainer.limit_train_batches=-3"], r"limit_train_batches.*-3"),
    ("log interval zero", ["trainer.log_every_n_steps=0"], r"log_every_n_steps.*0"),
    ("seed text", ["seed=abc"], r"`seed`.*abc"),
    ("cpu_threads zero", ["cpu_threads=0"], r"cpu_threads.*0"),
    ("resume not boolean", ["resume=maybe"], r"resume.*maybe"),
    ("test_ckpt unknown", ["test_ckpt=worst"], r"test_ckpt.*worst"),
    ("contamination 2", ["data.contamination=2"], r"data\.contamination.*2"),
    ("contamination negative", ["data.contamination=-0.1"], r"data\.contamination.*-0\.1"),
    ("too many outliers", ["data.contamination=0.9"], r"data\.contamination.*at most"),
    ("class missing", ["data.inlier_classes=[42]"], r"data\.inlier_classes.*42"),
    ("class name unknown", ["data.inlier_classes=[cat]"], r"data\.inlier_classes.*cat"),
    ("classes overlap", ["data.inlier_classes=[3]", "data.outlier_classes=[3]"], r"outlier_c"),
    ("batch size fraction", ["data.batch_size=1.5"], r"data\.batch_size.*1\.5"),
    ("batch size text", ["data.batch_size=abc"], r"data\.batch_size.*abc"),
    ("val fraction leaves no training", ["data.val_fraction=0.999"], r"data\.val_fraction"),
    ("protocol unknown", ["data.protocol=sideways"], r"data\.protocol.*sideways"),
    ("multimodal without a novel class", ["data.protocol=multimodal"], r"data\.outlier_classes"),
    ("severity 9", ["data.outlier_source=corruption", "data.severity=9"], r"data\.severity.*9"),
    ("corruption unknown", ["data.outlier_source=corruption", "data.corruptions=[x]"], r"x"),
    ("outlier source", ["data.outlier_source=aliens"], r"data\.outlier_source.*aliens"),
    ("score metric unknown", ["model.score.metric=nope"], r"model\.score\.metric.*nope"),
    ("hidden width zero", ["model.net.hidden_dims=[0]"], r"model\.net\.hidden_dims.*0"),
    ("rsrae d >= D", ["model.net.d=200"], r"model\.net\.d.*200"),
    ("rsrae mode", ["model.mode=sideways"], r"model\.mode.*sideways"),
    (
        "rapp components",
        ["model/score=rapp_nap", "model.score.components=0"],
        r"model\.score\.components.*0",
    ),
    ("data_dir is a file", data_dir_is_a_file, r"not-a-folder"),
    ("data_dir empty", empty_data_dir, r"MNIST"),
    ("idx truncated", mnist(truncate), r"train-images-idx3-ubyte.*(truncated|corrupt)"),
    ("gzip deflate corrupt", mnist(corrupt_deflate), r"train-images-idx3-ubyte"),
    ("idx length mismatch", mnist(mismatched_labels), r"train-labels-idx1-ubyte"),
    ("idx 2-d labels", mnist(two_d_labels), r"train-labels-idx1-ubyte.*1-D|train-labels.*shape"),
]
if not HAS_CUDA:
    TRAIN_CASES.append(("gpu without one", ["trainer.accelerator=gpu"], r"no CUDA device"))


def error_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    records = [r for r in caplog.records if r.levelname == "ERROR" and r.name == "robustad"]
    assert all(r.exc_info is None for r in records)  # no traceback
    return [r.getMessage() for r in records]


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [pytest.param(o, p, id=name) for name, o, p in TRAIN_CASES],
)
def test_train_refuses_bad_input(make_cfg, tmp_path, caplog, overrides, pattern) -> None:
    extra = overrides(tmp_path) if callable(overrides) else overrides
    cfg = make_cfg([*FAST, *extra])
    with pytest.raises(SystemExit) as exit_info:
        run_training(cfg)
    assert exit_info.value.code == 1
    (line,) = error_lines(caplog)
    assert line.startswith("error: ")
    assert re.search(pattern, line), line
    out = Path(cfg.paths.output_dir)
    assert not (out / "checkpoints").exists()  # refused before training
    if "resume" not in pattern:  # `resume` is checked before the run's record is started
        assert json.loads((out / "metrics.json").read_text())["status"] == "failed"


# --- what Hydra itself refuses, and run folders, through the command line -----------------------


def run_cli(args: list[str], cwd: Path, script: str = "train.py") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(["model=nope"], ["model/nope", "rsrae"], id="unknown model"),
        pytest.param(["data=cifar"], ["data/cifar", "mnist"], id="unknown dataset"),
        pytest.param(["trainer.max_epoch=3"], ["trainer.max_epoch"], id="typo'd key"),
        pytest.param(["+trainer.max_epochs=3"], ["trainer.max_epochs"], id="plus on existing"),
        pytest.param(["experiment=nope"], ["experiment/nope"], id="unknown experiment"),
        pytest.param(["model/score=nope"], ["model/score/nope", "rapp_nap"], id="unknown score"),
    ],
)
def test_cli_composition_errors_are_one_message(tmp_path: Path, args, expected) -> None:
    result = run_cli(args, tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    for text in expected:
        assert text in result.stderr
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("*.ckpt"))


def test_run_folder_that_is_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("keep me")
    result = run_cli([*FAST, f"hydra.run.dir={target}"], tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert str(target) in result.stderr
    assert target.read_text() == "keep me"


def test_run_folder_that_cannot_be_created_is_refused(tmp_path: Path) -> None:
    result = run_cli([*FAST, "hydra.run.dir=/proc/robustad-run"], tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot create the run folder /proc/robustad-run" in result.stderr


def test_finished_run_folder_is_refused_and_kept(make_cfg, tmp_path, caplog) -> None:
    run_dir = tmp_path / "run"
    train(make_cfg(FAST, output_dir=run_dir))
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit):
        run_training(make_cfg([*FAST, "model=ae"], output_dir=run_dir))
    (line,) = error_lines(caplog)
    assert "holds a finished run" in line and "resume=true" in line
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


# --- eval ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "run"
    train(compose_cfg("train", TINY, out))
    return out / "checkpoints" / "last.ckpt"


def foreign_files(tmp: Path, ckpt: Path) -> dict[str, Path]:
    text = tmp / "notes.ckpt"
    text.write_text("not a checkpoint")
    plain = tmp / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, plain)
    return {"text": text, "plain": plain}


EVAL_CASES: list[tuple[str, Callable[[Path, Path], list[str]], str]] = [
    ("no ckpt_path", lambda tmp, ckpt: [], r"ckpt_path"),
    ("ckpt missing", lambda tmp, ckpt: [f"ckpt_path={tmp / 'gone.ckpt'}"], r"gone\.ckpt"),
    ("ckpt is a folder", lambda tmp, ckpt: [f"ckpt_path={tmp}"], r"ckpt_path"),
    (
        "ckpt is text",
        lambda tmp, ckpt: [f"ckpt_path={foreign_files(tmp, ckpt)['text']}"],
        r"notes\.ckpt",
    ),
    (
        "ckpt is not robustad's",
        lambda tmp, ckpt: [f"ckpt_path={foreign_files(tmp, ckpt)['plain']}"],
        r"not a robustad checkpoint",
    ),
    ("threshold text", lambda tmp, ckpt: [f"ckpt_path={ckpt}", "threshold=abc"], r"threshold"),
    (
        "other image shape",
        lambda tmp, ckpt: [f"ckpt_path={ckpt}", *mnist()(tmp)],
        r"image_shape.*\[1, 8, 8\]",
    ),
]


@pytest.mark.parametrize(
    ("make_args", "pattern"), [pytest.param(a, p, id=n) for n, a, p in EVAL_CASES]
)
def test_eval_refuses_bad_input(tiny_ckpt, tmp_path, caplog, make_args, pattern) -> None:
    cfg = compose_cfg("eval", ["trainer=cpu", *make_args(tmp_path, tiny_ckpt)], tmp_path / "ev")
    with pytest.raises(SystemExit) as exit_info:
        run_evaluation(cfg)
    assert exit_info.value.code == 1
    (line,) = error_lines(caplog)
    assert re.search(pattern, line), line


def test_eval_refuses_a_folder_holding_a_run(tiny_ckpt, tmp_path, caplog) -> None:
    out = tmp_path / "ev"
    out.mkdir()
    (out / "metrics.json").write_text('{"status": "done"}')
    cfg = compose_cfg("eval", ["trainer=cpu", f"ckpt_path={tiny_ckpt}"], out)
    with pytest.raises(SystemExit):
        run_evaluation(cfg)
    assert (out / "metrics.json").read_text() == '{"status": "done"}'


# --- score and report ---------------------------------------------------------------------------


def score_inputs(tmp: Path) -> dict[str, Path]:
    from PIL import Image

    folder = tmp / "inputs"
    folder.mkdir(exist_ok=True)
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(folder / "big.png")
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp / "rgb.png")
    (tmp / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage")
    np.save(tmp / "empty.npy", np.zeros((0, 8, 8), dtype=np.uint8))
    np.save(tmp / "good.npy", np.zeros((3, 8, 8), dtype=np.uint8))
    return {
        "big": folder / "big.png",
        "rgb": tmp / "rgb.png",
        "broken": tmp / "broken.png",
        "empty": tmp / "empty.npy",
        "good": tmp / "good.npy",
    }


SCORE_CASES: list[tuple[str, Callable[[Path, Path, dict[str, Path]], list[str]], str]] = [
    (
        "ckpt missing",
        lambda t, c, i: ["--ckpt", str(t / "x.ckpt"), "--input", str(i["good"])],
        "x.ckpt",
    ),
    ("input missing", lambda t, c, i: ["--ckpt", str(c), "--input", str(t / "nope.npy")], "nope"),
    ("wrong size", lambda t, c, i: ["--ckpt", str(c), "--input", str(i["big"])], r"28"),
    ("wrong channels", lambda t, c, i: ["--ckpt", str(c), "--input", str(i["rgb"])], r"3"),
    ("corrupt png", lambda t, c, i: ["--ckpt", str(c), "--input", str(i["broken"])], "broken"),
    ("empty npy", lambda t, c, i: ["--ckpt", str(c), "--input", str(i["empty"])], "empty"),
    (
        "threshold nan",
        lambda t, c, i: ["--ckpt", str(c), "--input", str(i["good"]), "--threshold", "nan"],
        "threshold",
    ),
    (
        "output is a folder",
        lambda t, c, i: [
            "--ckpt",
            str(c),
            "--input",
            str(i["good"]),
            "--output",
            str(t),
            "--overwrite",
        ],
        "output",
    ),
    (
        "device unknown",
        lambda t, c, i: ["--ckpt", str(c), "--input", str(i["good"]), "--device", "gpu0"],
        "device",
    ),
]
if not HAS_CUDA:
    SCORE_CASES.append(
        (
            "cuda without one",
            lambda t, c, i: ["--ckpt", str(c), "--input", str(i["good"]), "--device", "cuda"],
            "CUDA",
        )
    )


@pytest.mark.parametrize(
    ("make_args", "needle"), [pytest.param(a, n, id=name) for name, a, n in SCORE_CASES]
)
def test_score_refuses_bad_input(
    tiny_ckpt, tmp_path, capsys, monkeypatch, make_args, needle
) -> None:
    monkeypatch.chdir(tmp_path)  # the default --output, scores.csv, lands here
    args = make_args(tmp_path, tiny_ckpt, score_inputs(tmp_path))
    code = score_main(args)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert re.search(needle, err, re.IGNORECASE), err
    assert not list(tmp_path.glob("*.tmp"))


def broken_metrics(tmp: Path) -> Path:
    (tmp / "run").mkdir()
    (tmp / "run" / "metrics.json").write_text("{not json")
    return tmp


REPORT_CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    ("missing folder", lambda t: [str(t / "nowhere")], "nowhere"),
    ("empty folder", lambda t: [str(t)], "metrics.json"),
    ("only a broken metrics.json", lambda t: [str(broken_metrics(t))], "metrics.json"),
    (
        "--out is a file",
        lambda t: [str(broken_metrics(t)), "--out", str(t / "run" / "metrics.json")],
        "out",
    ),
]


@pytest.mark.parametrize(
    ("make_args", "needle"), [pytest.param(a, n, id=x) for x, a, n in REPORT_CASES]
)
def test_report_refuses_bad_input(tmp_path, capsys, make_args, needle) -> None:
    args = make_args(tmp_path)
    snapshot = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code = report_main(args)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert "Traceback" not in err and needle in err, err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == snapshot


def test_refused_rerun_leaves_the_finished_runs_hydra_files(tmp_path: Path) -> None:
    """The refusal comes before Hydra rewrites `.hydra/*.yaml`: the folder still says what ran."""
    run_dir = tmp_path / "run"
    first = run_cli([*FAST, f"hydra.run.dir={run_dir}"], tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    again = run_cli([*FAST, "model=ae", f"hydra.run.dir={run_dir}"], tmp_path)
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert "holds a finished run" in again.stderr
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before
