"""Rebuild a trained detector from its checkpoint alone, without unpickling arbitrary objects.

A checkpoint holds the resolved run config (`robustad_config`, plain types) and the weights
with the detector's calibration (score statistics, threshold) as buffers; it is read with
`weights_only=True` and its config is treated as untrusted data: the model is rebuilt from an
explicit registry of classes by exact name, with plain values as arguments, so no checkpoint
can name code to run.
"""

from __future__ import annotations

import functools
import inspect
import math
from pathlib import Path
from typing import Any

import torch

from robustad.data import ContaminatedDataModule
from robustad.errors import ConfigError, RobustADError
from robustad.models import AEModule, PCAModule, RSRAEModule, VAEModule
from robustad.models.base import AnomalyModule
from robustad.models.networks import (
    MLPVAE,
    ConvAutoencoder,
    ConvRSRAutoencoder,
    MLPAutoencoder,
    PCAReconstructor,
    ResidualAutoencoder,
    ResidualVAE,
    RSRAutoencoder,
)
from robustad.models.robust import TrimmedLoss
from robustad.models.scoring import SCORERS, RaPP, scorer_named
from robustad.thresholds import METHODS

CONFIG_KEY = "robustad_config"
# Where checkpoints written before calibration became buffers kept their threshold and statistics.
LEGACY_THRESHOLD_KEY = "robustad_threshold"
LEGACY_PREFIXES = {"nap.": "score.nap.", "score_scaler.": "score.scaler."}
LEGACY_SCORE_KEYS = ("score", "rapp_components", "rapp_from_input")
# Inside the stored config: the config-group options it was composed from (model: rsrae, ...).
CHOICES_KEY = "config_choices"

# Everything a checkpoint may build, by exact name: a stored config names one of these classes,
# never a callable of its own choosing. A model's components go in their named slots only.
MODULES: dict[str, type] = {
    f"robustad.models.{cls.__name__}": cls for cls in (AEModule, PCAModule, RSRAEModule, VAEModule)
}
NETWORKS: dict[str, type] = {
    f"robustad.models.networks.{cls.__name__}": cls
    for cls in (
        ConvAutoencoder,
        ConvRSRAutoencoder,
        MLPAutoencoder,
        MLPVAE,
        PCAReconstructor,
        RSRAutoencoder,
        ResidualAutoencoder,
        ResidualVAE,
    )
}
OPTIMIZERS: dict[str, type] = {
    f"torch.optim.{cls.__name__}": cls
    for cls in (torch.optim.AdamW, torch.optim.Adam, torch.optim.SGD, torch.optim.RMSprop)
}
SCHEDULERS: dict[str, type] = {
    f"torch.optim.lr_scheduler.{cls.__name__}": cls
    for cls in (torch.optim.lr_scheduler.OneCycleLR, torch.optim.lr_scheduler.CosineAnnealingLR)
}
DATAMODULE = "robustad.data.ContaminatedDataModule"
ROBUST: dict[str, type] = {"robustad.models.robust.TrimmedLoss": TrimmedLoss}
SLOTS: dict[str, dict[str, type]] = {
    "net": NETWORKS,
    "score": SCORERS,
    "optimizer": OPTIMIZERS,
    "scheduler": SCHEDULERS,
    "robust": ROBUST,
}
# Built later with the parameters (`_partial_: true` in the configs).
PARTIAL_SLOTS = ("optimizer", "scheduler")
PLAIN_TYPES = (str, int, float, bool, type(None))


def load_checkpoint(path: str | Path | None, key: str = "ckpt_path") -> dict[str, Any]:
    """The checkpoint dict, read with `weights_only=True`; `key` names the setting in errors."""
    if path is None or str(path).strip() == "":
        raise ConfigError(
            key,
            path,
            "the path of a robustad .ckpt file, e.g. outputs/train/runs/<time>/checkpoints/last.ckpt",  # noqa: E501
        )
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(key, str(path), "an existing checkpoint file (no file at that path)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in several types; the message says which
        raise RobustADError(
            f"cannot load {path} with torch.load(weights_only=True) ({type(exc).__name__}); "
            "is it a robustad .ckpt file?"
        ) from exc
    if (
        not isinstance(checkpoint, dict)
        or CONFIG_KEY not in checkpoint
        or "state_dict" not in checkpoint
    ):
        raise RobustADError(
            f"{path} is not a robustad checkpoint (no `{CONFIG_KEY}` / `state_dict` entry)"
        )
    return checkpoint


def _refuse(path: str, value: Any, allowed: str) -> RobustADError:
    return RobustADError(
        f"checkpoint config `{path}` = {value!r} is not allowed ({allowed}); "
        "a checkpoint is data and cannot name code to run"
    )


def _plain(value: Any, path: str) -> Any:
    """A constructor argument: plain values and lists of them only."""
    if isinstance(value, PLAIN_TYPES):
        return value
    if isinstance(value, list | tuple):
        return [_plain(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise _refuse(path, value, "only numbers, strings, booleans, null and lists of them")


def _arguments(cls: type, node: dict[str, Any], path: str, allow_partial: bool) -> dict[str, Any]:
    """A node's keyword arguments, checked against the class's signature."""
    accepted = inspect.signature(cls).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    kwargs = {}
    for key, value in node.items():
        where = f"{path}.{key}"
        if key == "_target_":
            continue
        if key == "_partial_":
            if value is not True or not allow_partial:
                raise _refuse(where, value, "only `optimizer` and `scheduler` are partial")
            continue
        if not isinstance(key, str) or key.startswith("_"):
            raise _refuse(where, value, "no Hydra directives besides _target_")
        if key not in accepted and not takes_any:
            raise _refuse(where, value, f"not an argument of {cls.__name__}")
        kwargs[key] = _plain(value, where)
    return kwargs


def _component(slot: str, node: Any, path: str) -> Any:
    """A registered network, optimizer, scheduler or robust rule for one of the model's slots."""
    if node is None:
        return None
    registry = SLOTS[slot]
    target = node.get("_target_") if isinstance(node, dict) else None
    if target not in registry:
        raise _refuse(f"{path}._target_", target, f"one of {sorted(registry)}")
    cls = registry[target]
    partial = slot in PARTIAL_SLOTS and node.get("_partial_") is True
    kwargs = _arguments(cls, node, path, allow_partial=slot in PARTIAL_SLOTS)
    if partial:
        return functools.partial(cls, **kwargs)
    try:
        return cls(**kwargs)
    except RobustADError:
        raise
    except (TypeError, ValueError) as exc:
        raise RobustADError(f"checkpoint config `{path}` cannot be built: {exc}") from exc


def upgraded_model_config(model_cfg: dict[str, Any]) -> dict[str, Any]:
    """Today's layout of a stored model config: before the scorer became a component, `score`
    was a name with `rapp_components` / `rapp_from_input` beside it (and before that option
    existed, RaPP's pathway always began at the input)."""
    score = model_cfg.get("score")
    if not isinstance(score, str):
        return model_cfg
    upgraded = {k: v for k, v in model_cfg.items() if k not in LEGACY_SCORE_KEYS}
    scorer = scorer_named(score)  # the name as configs/model/score/ defines it today
    upgraded["score"] = _node(SCORERS, scorer, scorer.init_arguments)
    if isinstance(scorer, RaPP):
        upgraded["score"]["components"] = model_cfg.get("rapp_components")
        upgraded["score"]["from_input"] = model_cfg.get("rapp_from_input", True)
    return upgraded


def build_model(checkpoint: dict[str, Any]) -> AnomalyModule:
    """Rebuild the model from the stored run config (untrusted data: registered classes only,
    plain values only), load its weights, switch to eval mode."""
    run_config = checkpoint[CONFIG_KEY]
    model_cfg = run_config.get("model") if isinstance(run_config, dict) else None
    if not isinstance(model_cfg, dict):
        raise RobustADError("the checkpoint's run config holds no `model` section")
    target = model_cfg.get("_target_")
    if target not in MODULES:
        raise _refuse("model._target_", target, f"one of {sorted(MODULES)}")
    cls = MODULES[target]
    model_cfg = upgraded_model_config(model_cfg)
    plain = {k: v for k, v in model_cfg.items() if k not in SLOTS}
    kwargs = _arguments(cls, plain, "model", allow_partial=False)
    for slot in SLOTS:
        if slot in model_cfg:
            kwargs[slot] = _component(slot, model_cfg[slot], f"model.{slot}")
    try:
        model = cls(**kwargs)
    except RobustADError:
        raise
    except (TypeError, ValueError) as exc:
        raise RobustADError(f"the checkpoint's model config cannot be built: {exc}") from exc
    try:
        model.load_state_dict(upgraded_state(checkpoint))
    except (RuntimeError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()
        detail = next(
            (line.strip() for line in first[1:] if line.strip()), first[0] if first else ""
        )
        raise RobustADError(
            f"the checkpoint's weights do not match its stored model config ({detail})"
        ) from exc
    model.run_config = run_config
    return model.eval()


def build_datamodule(data_cfg: dict[str, Any]) -> ContaminatedDataModule:
    """The data module a checkpoint's stored data config describes (untrusted data: the one
    data module class, plain values only); a config composed from the shipped files may name it
    the same way."""
    target = data_cfg.get("_target_")
    if target != DATAMODULE:
        raise _refuse("data._target_", target, DATAMODULE)
    kwargs = _arguments(ContaminatedDataModule, data_cfg, "data", allow_partial=False)
    return ContaminatedDataModule(**kwargs)


def trained_image_shape(checkpoint: dict[str, Any]) -> tuple[int, ...]:
    """(C, H, W) of the images the model was trained on."""
    return tuple(int(n) for n in checkpoint[CONFIG_KEY]["data"]["image_shape"])


def _plain_value(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain_value(v) for v in value]
    return value


def _node(registry: dict[str, type], obj_or_cls: Any, arguments: dict[str, Any]) -> dict[str, Any]:
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    target = next((name for name, known in registry.items() if known is cls), None)
    if target is None:
        raise RobustADError(
            f"{cls.__name__} is not a class robustad can rebuild from a checkpoint "
            f"(one of {sorted(registry)})"
        )
    return {"_target_": target, **{k: _plain_value(v) for k, v in arguments.items()}}


def describe(model: AnomalyModule) -> dict[str, Any]:
    """The run config of a detector built in plain Python (no Hydra): its registered classes
    and constructor arguments as plain values, enough for `build_model` and the scorer."""
    node = _node(MODULES, model, dict(model.hparams))
    node["net"] = _node(NETWORKS, model.net, model.net.init_arguments)
    node["score"] = _node(SCORERS, model.score, model.score.init_arguments)
    for slot, factory in (
        ("optimizer", model.optimizer_factory),
        ("scheduler", model.scheduler_factory),
    ):
        if isinstance(factory, functools.partial):
            node[slot] = {**_node(SLOTS[slot], factory.func, factory.keywords), "_partial_": True}
    if model.robust is not None:
        node["robust"] = _node(ROBUST, model.robust, model.robust.init_arguments)
    image_shape = _plain_value(model.net.init_arguments["input_shape"])
    return {"model": node, "data": {"image_shape": image_shape}}


def upgraded_state(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The checkpoint's state_dict in today's layout: checkpoints from before calibration was
    module state kept the score's statistics at the top level (now the scorer's, `score.*`) and
    the threshold beside the weights (now `calibration.*`)."""
    state = dict(checkpoint["state_dict"])
    for old, new in LEGACY_PREFIXES.items():
        for key in [k for k in state if k.startswith(old)]:
            state[new + key[len(old) :]] = state.pop(key)
    legacy = checkpoint.get(LEGACY_THRESHOLD_KEY)
    if isinstance(legacy, dict) and "calibration.threshold" not in state:
        method, value = legacy.get("method"), legacy.get("value")
        if method in METHODS and isinstance(value, int | float) and not isinstance(value, bool):
            state["calibration.threshold"] = torch.tensor(float(value), dtype=torch.float64)
            state["calibration.threshold_method"] = torch.tensor(METHODS.index(method))
    state.setdefault("calibration.threshold", torch.tensor(math.nan, dtype=torch.float64))
    state.setdefault("calibration.threshold_method", torch.tensor(-1))
    return state
