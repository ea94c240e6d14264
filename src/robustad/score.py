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
import csv
import math
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from robustad.errors import ConfigError, RobustADError

if TYPE_CHECKING:
    from robustad.models.base import AnomalyModule

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm")
ARRAY_SUFFIXES = (".npy",)
IMAGE_CHANNELS = {"L": 1, "RGB": 3}
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
ACCEPTED = (
    f"a folder of images, an image ({', '.join(IMAGE_SUFFIXES)}), a .npy of uint8 images "
    "or an IDX file (.gz ok)"
)


def read_image(path: Path) -> np.ndarray:
    """One image as (C, H, W) uint8: grayscale (L) or RGB; other modes converted."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.mode not in IMAGE_CHANNELS:
                image = image.convert("RGB" if "A" in image.mode or image.mode == "P" else "L")
            array = np.array(image, dtype=np.uint8)  # a copy: writable, so torch can use it
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise RobustADError(f"{path}: not a readable image ({exc})") from exc
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1).copy()


def _as_nchw(array: np.ndarray, source: Path) -> np.ndarray:
    """(H, W) one image, (N, H, W) grayscale images, (N, C, H, W) as is; uint8 only."""
    if array.dtype != np.uint8:
        raise RobustADError(
            f"{source}: images must be uint8 (0-255, scaled like training); got dtype {array.dtype}"
        )
    if array.size == 0:
        raise RobustADError(f"{source}: holds no images (shape {array.shape})")
    if array.ndim == 2:
        return array[None, None]
    if array.ndim == 3:
        return array[:, None]
    if array.ndim == 4:
        return array
    raise RobustADError(
        f"{source}: expected (H, W), (N, H, W) or (N, C, H, W) images; got shape {array.shape}"
    )


def _read_folder(path: Path) -> tuple[list[str], np.ndarray]:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ConfigError("--input", str(path), f"{ACCEPTED} (the folder holds no images)")
    images = [read_image(p) for p in files]
    first = images[0].shape
    odd = next((i for i, im in enumerate(images) if im.shape != first), None)
    if odd is not None:
        raise RobustADError(
            f"{path}: images differ in shape, e.g. {files[0].name} {first} "
            f"vs {files[odd].name} {images[odd].shape}"
        )
    return [p.name for p in files], np.stack(images)


def read_inputs(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Names (file names, or indices for arrays) and (N, C, H, W) uint8 images."""
    from robustad.data.idx import read_idx

    path = Path(path).expanduser()
    if path.is_dir():
        return _read_folder(path)
    if not path.is_file():
        raise ConfigError("--input", str(path), f"{ACCEPTED} (nothing at that path)")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return [path.name], read_image(path)[None]
    if suffix in ARRAY_SUFFIXES:
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise RobustADError(f"cannot read {path} as a numpy array: {exc}") from exc
    else:
        array = read_idx(path)  # IDX, raw or .gz; anything else says it is not IDX
    images = _as_nchw(np.ascontiguousarray(array), path)
    return [str(i) for i in range(len(images))], images


def check_shape(images: np.ndarray, expected: Sequence[int], source: str | Path) -> None:
    got = tuple(images.shape[1:])
    if got != tuple(expected):
        fmt = "x".join
        raise RobustADError(
            f"{source}: images are {fmt(map(str, got))} (channels x height x width) but the "
            f"model was trained on {fmt(map(str, expected))}; resize or convert them first"
        )


def resolve_device(device: str) -> str:
    """auto | cpu | cuda | cuda:N, checked against what this machine has."""
    import torch

    if not DEVICE_PATTERN.match(device):
        raise ConfigError("--device", device, "auto, cpu, cuda or cuda:N")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("--device", device, "auto or cpu: this machine has no CUDA device")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ConfigError("--device", device, f"cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    return device


def score_images(
    model: AnomalyModule, images: np.ndarray, batch_size: int = 1024, device: str = "cpu"
) -> np.ndarray:
    """(N,) anomaly scores of uint8 images, scaled by 1/255 exactly like the training batches."""
    import torch

    model = model.to(device).eval()
    scores = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(images[start : start + batch_size]).to(device)
            scores.append(model.anomaly_score(batch.float().div_(255.0)).float().cpu())
    return torch.cat(scores).numpy()


def resolve_threshold(checkpoint: dict[str, Any], override: float | None) -> dict[str, Any]:
    from robustad.checkpoint import stored_threshold

    if override is not None:
        if not math.isfinite(override):
            raise ConfigError("--threshold", override, "a finite number")
        return {"method": "fixed", "value": float(override)}
    stored = stored_threshold(checkpoint)
    if stored is None:
        raise RobustADError(
            "the checkpoint stores no threshold (trained without callbacks.threshold); "
            "pass --threshold VALUE"
        )
    return stored


def check_output(path: Path, overwrite: bool) -> None:
    """Refused before any work: a folder, or an existing file without --overwrite."""
    if path.is_dir():
        raise ConfigError("--output", str(path), "a CSV file path (this is a folder)")
    if path.exists() and not overwrite:
        raise RobustADError(f"{path} already exists; choose another --output or pass --overwrite")


def write_csv(path: Path, names: Sequence[str], scores: np.ndarray, labels: np.ndarray) -> None:
    """One row per input, written via a temporary file that never outlives a failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["input", "score", "label"])
            writer.writerows(
                (n, repr(float(s)), int(lab))
                for n, s, lab in zip(names, scores, labels, strict=True)
            )
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise RobustADError(f"cannot write {path}: {exc}") from exc


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

    if batch_size < 1:
        raise ConfigError("--batch-size", batch_size, "a positive integer")
    output = Path(output)
    check_output(output, overwrite)
    device = resolve_device(device)
    checkpoint = load_checkpoint(ckpt, key="--ckpt")
    chosen = resolve_threshold(checkpoint, threshold)
    names, images = read_inputs(input_path)
    check_shape(images, trained_image_shape(checkpoint), input_path)
    scores = score_images(build_model(checkpoint), images, batch_size, device)
    labels = scores > chosen["value"]
    write_csv(output, names, scores, labels)
    return {
        "n": len(names),
        "outliers": int(labels.sum()),
        "threshold": chosen,
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
