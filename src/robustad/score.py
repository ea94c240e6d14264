"""`robustad-score`: anomaly scores and 0/1 labels for new images from a trained checkpoint.

    robustad-score --ckpt last.ckpt --input <folder of images | image file | file.npy | IDX file>
                   [--output scores.csv] [--threshold VALUE]

Inputs are uint8 images (PNG, JPEG, BMP, TIFF, WebP, ... through Pillow; .npy; IDX), scaled by
1/255 as in training. The label uses the threshold stored in the checkpoint at training time
(`score > threshold` = outlier, 1) unless --threshold is given. torch is imported only once the
arguments are parsed, so `--help` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robustad.errors import ConfigError, RobustADError
from robustad.images import ACCEPTED, read_inputs

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_shape(images: np.ndarray, expected: Sequence[int], source: str | Path) -> None:
    got = tuple(images.shape[1:])
    if got != tuple(expected):
        fmt = "x".join
        raise RobustADError(
            f"{source}: images are {fmt(map(str, got))} (channels x height x width) but the "
            f"model was trained on {fmt(map(str, expected))}; resize or convert them first"
        )


def resolve_device(device: str, key: str = "--device") -> str:
    """auto | cpu | cuda | cuda:N, checked against what this machine has (`key` names the
    setting in errors)."""
    import torch

    if not isinstance(device, str) or not DEVICE_PATTERN.match(device):
        raise ConfigError(key, device, "auto, cpu, cuda or cuda:N")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(key, device, "auto or cpu: this machine has no CUDA device")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(key, device, f"cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    return device


def check_output(path: Path, overwrite: bool) -> None:
    """Refused before any work: a folder, or an existing file without --overwrite."""
    if path.is_dir():
        raise ConfigError("--output", str(path), "a CSV file path (this is a folder)")
    if path.exists() and not overwrite:
        raise RobustADError(f"{path} already exists; choose another --output or pass --overwrite")


def score(
    ckpt: str | Path,
    input_path: str | Path,
    output: str | Path,
    threshold: float | None = None,
    batch_size: int = 1024,
    device: str = "auto",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Score every input and write the CSV; returns a summary (counts, threshold, output path)."""
    from robustad.checkpoint import build_model, load_checkpoint, trained_image_shape
    from robustad.models.calibration import override_threshold
    from robustad.prediction import CSVScoreWriter, predict

    if batch_size < 1:
        raise ConfigError("--batch-size", batch_size, "a positive integer")
    output = Path(output)
    check_output(output, overwrite)
    device = resolve_device(device)
    checkpoint = load_checkpoint(ckpt, key="--ckpt")
    model = build_model(checkpoint)
    if threshold is not None:
        override_threshold(model.calibration, threshold, "--threshold")
    elif not model.calibration.has_threshold:
        raise RobustADError(
            "the checkpoint stores no threshold (trained without callbacks.threshold); "
            "pass --threshold VALUE"
        )
    names, images = read_inputs(input_path)
    check_shape(images, trained_image_shape(checkpoint), input_path)
    _, labels = predict(model, images, batch_size, device, [CSVScoreWriter(output, names)])
    return {
        "n": len(names),
        "outliers": int(labels.sum()),
        "threshold": model.calibration.threshold_info(),
        "output": str(output),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="robustad-score", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="a robustad checkpoint (.ckpt)")
    parser.add_argument("--input", required=True, help=ACCEPTED)
    parser.add_argument("--output", default="scores.csv", help="CSV to write (default: scores.csv)")
    parser.add_argument(
        "--threshold", type=float, default=None, help="fixed threshold instead of the stored one"
    )
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument(
        "--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ..."
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing --output file"
    )
    args = parser.parse_args(argv)
    try:
        summary = score(
            args.ckpt,
            args.input,
            args.output,
            args.threshold,
            args.batch_size,
            args.device,
            args.overwrite,
        )
    except RobustADError as exc:
        print(f"[robustad] error: {exc}", file=sys.stderr)
        return 1
    threshold = summary["threshold"]
    print(
        f"[robustad] scored {summary['n']} inputs, {summary['outliers']} above the "
        f"{threshold['method']} "
        f"threshold {threshold['value']:.6g} -> {summary['output']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
