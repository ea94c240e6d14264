"""Rebuild a trained detector from its checkpoint alone, without unpickling arbitrary objects.

A checkpoint holds the resolved run config (`robustad_config`, plain types) and the threshold
chosen at training time (`robustad_threshold`); it is read with `weights_only=True`, and only
model classes from robustad or torch.optim / torch.nn are instantiated from its config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from robustad.callbacks import THRESHOLD_KEY
from robustad.errors import ConfigError, RobustADError
from robustad.models.base import AnomalyModule

CONFIG_KEY = "robustad_config"
# Inside the stored config: the config-group options it was composed from (model: rsrae, ...).
CHOICES_KEY = "config_choices"
# Targets a checkpoint's model config may name: instantiating anything else could run any callable.
ALLOWED_TARGETS = ("robustad.", "torch.optim.", "torch.nn.")


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


def _check_targets(node: Any, where: str = "model") -> None:
    if isinstance(node, dict):
        target = node.get("_target_")
        if target is not None and not str(target).startswith(ALLOWED_TARGETS):
            raise RobustADError(
                f"checkpoint config {where}._target_={target!r} is not allowed "
                f"(only {', '.join(ALLOWED_TARGETS)}*)"
            )
        for key, value in node.items():
            _check_targets(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _check_targets(value, f"{where}[{i}]")


def build_model(checkpoint: dict[str, Any]) -> AnomalyModule:
    """Instantiate the model from the stored run config, load its weights, switch to eval mode."""
    run_config = checkpoint[CONFIG_KEY]
    model_cfg = run_config.get("model")
    if not isinstance(model_cfg, dict):
        raise RobustADError("the checkpoint's run config holds no `model` section")
    _check_targets(model_cfg)
    if "rapp_from_input" not in model_cfg:
        # Written before the option existed, when RaPP's pathway always began at the input.
        model_cfg = {**model_cfg, "rapp_from_input": True}
    model = instantiate(OmegaConf.create(model_cfg))
    model.load_state_dict(checkpoint["state_dict"])
    model.run_config = run_config
    return model.eval()


def trained_image_shape(checkpoint: dict[str, Any]) -> tuple[int, ...]:
    """(C, H, W) of the images the model was trained on."""
    return tuple(int(n) for n in checkpoint[CONFIG_KEY]["data"]["image_shape"])


def stored_threshold(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """{"method", "value"} chosen at training time, or None for a checkpoint saved without one."""
    return checkpoint.get(THRESHOLD_KEY)
