"""The README's commands as a user types them: a sweep run exactly as written from a fresh
folder (no hydra.sweep.dir), every other sweep line composed and its folder named, the wheel
running from another folder, `python -m robustad`."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "src" / "robustad" / "configs"
README = (REPO / "README.md").read_text()
PLUGINS = {
    "hparams_search=rsrae_optuna": "hydra_plugins.hydra_optuna_sweeper",
    "hydra/launcher=local_parallel": "hydra_plugins.hydra_joblib_launcher",
    "hydra/launcher=slurm": "hydra_plugins.hydra_submitit_launcher",
}


def readme_commands(prefix: str) -> list[str]:
    """Every README command starting with `prefix` (code blocks and table cells), without its
    comment; placeholders (`...`, `<time>`) left out."""
    found = []
    for match in re.finditer(rf"(?m)(?:^|`){re.escape(prefix)}[^`\n]*", README):
        command = match.group(0).lstrip("`").split("  #")[0].strip()
        if "..." not in command and "<" not in command:
            found.append(command)
    return sorted(set(found))


def env_without_root() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "ROBUSTAD_ROOT"}


def run_in(folder: Path, *command: str, env: dict[str, str] | None = None) -> Any:
    """A command as a user runs it from `folder` (no $ROBUSTAD_ROOT)."""
    return subprocess.run(
        list(command),
        cwd=folder,
        env=env or env_without_root(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


SWEEP_LINE = "python train.py -m data=digits seed=0,1"


def test_readme_sweep_runs_exactly_as_typed(tmp_path: Path) -> None:
    """Plain `-m`, launched from a folder of the user's: Hydra names the sweep folder itself."""
    assert SWEEP_LINE in README
    args = shlex.split(SWEEP_LINE)[2:]
    result = run_in(tmp_path, sys.executable, str(REPO / "train.py"), *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    (sweep,) = (tmp_path / "outputs" / "train" / "multiruns").iterdir()
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["0_data=digits,seed=0", "1_data=digits,seed=1"]
    for job in jobs:
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert metrics["status"] == "done" and metrics["model"] == "rsrae"
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file()
        log_text = (sweep / job / "train.log").read_text()
        assert "test/auroc=" in log_text  # the summary line reaches the job's log file
    # No progress-bar redraws in a sweep's output, none of Lightning's known noise.
    output = result.stdout + result.stderr
    assert "\r" not in output
    for noise in ("LeafSpec", "Tip:", "GPU available", "log_every_n_steps", "FLOPs"):
        assert noise not in output, noise


def first_values(args: list[str]) -> list[str]:
    """The overrides of one job of the sweep: the first value of every swept key."""
    parsed = OverridesParser.create().parse_overrides(args)
    return [
        f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}"
        if o.is_sweep_override()
        else o.input_line
        for o in parsed
    ]


@pytest.mark.parametrize("command", readme_commands("python train.py -m"))
def test_every_readme_sweep_line_names_its_folder(command: str, tmp_path: Path, monkeypatch):
    """Each `-m` line composes, and its sweep folder resolves with no Hydra runtime set (where
    `${hydra:runtime.cwd}` failed) under the folder it was launched from."""
    args = shlex.split(command)[3:]
    for key, plugin in PLUGINS.items():
        if key in args:
            pytest.importorskip(plugin, reason=f"{key} needs its extra")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ROBUSTAD_ROOT", raising=False)
    GlobalHydra.instance().clear()
    HydraConfig.instance().cfg = None
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(
                "train",
                overrides=[*first_values(args), "hydra.mode=MULTIRUN"],
                return_hydra_config=True,
            )
        sweep_dir = Path(cfg.hydra.sweep.dir)
    finally:
        GlobalHydra.instance().clear()
    assert sweep_dir.parent.parent == tmp_path / "outputs" / cfg.task_name


def test_python_dash_m_robustad_trains(tmp_path: Path) -> None:
    result = run_in(
        tmp_path, sys.executable, "-m", "robustad", "data=digits", "debug=fdr", "hydra.run.dir=run"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "done"


def test_wheel_ships_configs_and_runs_from_another_folder(tmp_path: Path) -> None:
    """`pip wheel .` holds the configs and py.typed; unpacked and put on the path alone (no
    checkout, no editable install), `python -m robustad` trains from an unrelated folder."""
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheel_dir), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheel_dir.glob("robustad-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    for needed in ("train.yaml", "eval.yaml", "model/rsrae.yaml", "hydra/default.yaml"):
        assert f"robustad/configs/{needed}" in names, needed
    assert "robustad/py.typed" in names
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**env_without_root(), "PYTHONPATH": str(tmp_path / "site")}
    probe = "import robustad, sys; print(robustad.__file__)"
    where = run_in(work, sys.executable, "-c", probe, env=env)
    assert where.stdout.startswith(str(tmp_path / "site")), where.stdout + where.stderr
    result = run_in(work, sys.executable, "-m", "robustad", "data=digits", "debug=fdr", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((work / "outputs" / "debug" / "runs").glob("*/metrics.json"))
