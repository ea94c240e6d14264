"""A checkpoint is data: crafted configs cannot name code to run, write files or import modules.

Attacks are planted in a genuine checkpoint from a tiny trained AE (the reproduction in the
issue: `robustad.train.Path.write_text` beside `model.net.activation` wrote a file)."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from test_scoring import TINY, compose_cfg, digits_test_images

from robustad.checkpoint import (
    CONFIG_KEY,
    MODULES,
    NETWORKS,
    OPTIMIZERS,
    ROBUST,
    SCHEDULERS,
    build_model,
    load_checkpoint,
)
from robustad.errors import RobustADError
from robustad.score import main as score_main
from robustad.train import train

CONFIG_DIR = Path(__file__).resolve().parents[1] / "src" / "robustad" / "configs"
NEVER_IMPORTED = "http.server"


@pytest.fixture(scope="module")
def genuine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("genuine") / "run"
    train(compose_cfg("train", TINY, out))
    return torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)


def write_file_node(target: Path) -> dict[str, Any]:
    return {
        "_target_": "robustad.train.Path.write_text",
        "_args_": [{"_target_": "robustad.train.Path", "_args_": [str(target)]}, "x"],
    }


def plant(checkpoint: dict[str, Any], where: list[str], node: Any) -> dict[str, Any]:
    crafted = copy.deepcopy(checkpoint)
    parent = crafted[CONFIG_KEY]["model"]
    for key in where[:-1]:
        parent = parent[key]
    parent[where[-1]] = node
    return crafted


def attacks(target: Path) -> dict[str, tuple[list[str], Any]]:
    return {
        "prefix trick beside activation": (["net", "activation"], write_file_node(target)),
        "prefix trick as the model": (["_target_"], "robustad.train.Path.write_text"),
        "torch.load through torch.nn": (
            ["net", "_target_"],
            "torch.nn.modules.module.torch.load",
        ),
        "write_idx as the network": (["net", "_target_"], "robustad.data.idx.write_idx"),
        "_args_ on the net": (["net", "_args_"], [str(target)]),
        "_partial_ on the net": (["net", "_partial_"], True),
        "_convert_ on the model": (["_convert_"], "all"),
        "_recursive_ on the model": (["_recursive_"], False),
        "target inside a list": (["net", "hidden_dims"], [write_file_node(target)]),
        "unknown import target": (["net", "_target_"], f"{NEVER_IMPORTED}.test"),
        "nested node in a plain key": (["score"], write_file_node(target)),
        "optimizer swapped for a function": (["optimizer", "_target_"], "torch.load"),
        "unknown keyword": (["net", "pickle_module"], "os"),
    }


@pytest.mark.parametrize("name", list(attacks(Path("x"))))
def test_crafted_checkpoint_builds_nothing(genuine, tmp_path: Path, name: str) -> None:
    target = tmp_path / "pwned.pth"
    where, node = attacks(target)[name]
    crafted = plant(genuine, where, node)
    sys.modules.pop(NEVER_IMPORTED, None)
    with pytest.raises(RobustADError, match="checkpoint config `model"):
        build_model(crafted)
    assert not target.exists()
    assert NEVER_IMPORTED not in sys.modules


def test_score_cli_on_a_crafted_checkpoint_writes_nothing(genuine, tmp_path, capsys) -> None:
    target = tmp_path / "pwned.pth"
    crafted = plant(genuine, ["net", "activation"], write_file_node(target))
    path = tmp_path / "crafted.ckpt"
    torch.save(crafted, path)
    images = tmp_path / "images.npy"
    import numpy as np

    np.save(images, digits_test_images(4))
    assert score_main(["--ckpt", str(path), "--input", str(images)]) != 0
    assert not target.exists()
    assert "cannot name code" in capsys.readouterr().err


def test_genuine_checkpoint_rebuilds_with_identical_scores(genuine, tmp_path: Path) -> None:
    path = tmp_path / "genuine.ckpt"
    torch.save(genuine, path)
    model = build_model(load_checkpoint(path))
    again = build_model(load_checkpoint(path))
    x = torch.from_numpy(digits_test_images(8)).float().div(255).unsqueeze(1)
    assert torch.equal(model.anomaly_score(x), again.anomaly_score(x))


def test_mismatched_weights_are_one_clear_error(genuine) -> None:
    crafted = plant(genuine, ["net", "latent_dim"], 5)
    with pytest.raises(RobustADError, match="weights do not match its stored model config"):
        build_model(crafted)


def test_every_shipped_target_is_registered() -> None:
    """Each `_target_` a model config can produce is rebuildable from a checkpoint."""
    known = {**MODULES, **NETWORKS, **OPTIMIZERS, **SCHEDULERS, **ROBUST}
    for folder in ("model", "optimizer", "scheduler", "robust"):
        for path in (CONFIG_DIR / folder).glob("*.yaml"):
            text = yaml.safe_load(path.read_text()) or {}
            nodes = [text, *(v for v in text.values() if isinstance(v, dict))]
            for node in nodes:
                if "_target_" in node:
                    assert node["_target_"] in known, f"{path.name}: {node['_target_']}"


def test_eval_rebuilds_the_stored_data_module_from_plain_values(genuine, tmp_path) -> None:
    """eval.py without data=... uses the checkpoint's data config: it cannot name code either."""
    from robustad.evaluate import evaluate

    target = tmp_path / "pwned.pth"
    crafted = copy.deepcopy(genuine)
    crafted[CONFIG_KEY]["data"]["_target_"] = "robustad.train.Path.write_text"
    crafted[CONFIG_KEY]["data"]["_args_"] = [str(target), "x"]
    path = tmp_path / "crafted.ckpt"
    torch.save(crafted, path)
    cfg = compose_cfg("eval", [f"ckpt_path={path}", "trainer=cpu"], tmp_path / "eval")
    with pytest.raises(RobustADError, match=r"checkpoint config `data\._target_`"):
        evaluate(cfg)
    assert not target.exists()
