"""`robustad-score`: anomaly scores and 0/1 labels for new images from a trained checkpoint.

    robustad-score --ckpt last.ckpt --input <folder of PNGs | file.png | file.npy | IDX file>
                   [--output scores.csv] [--threshold VALUE]

Inputs are uint8 images, scaled by 1/255 as in training. The label uses the threshold stored
in the checkpoint at training time (`score > threshold` = outlier, 1) unless --threshold is given.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustad.checkpoint import build_model, load_checkpoint, stored_threshold, trained_image_shape
from robustad.data.idx import read_idx
from robustad.errors import ConfigError, RobustADError
from robustad.models.base import AnomalyModule

PNG_CHANNELS = {"L": 1, "RGB": 3}


def _png(path: Path) -> np.ndarray:
    """One PNG as (C, H, W) uint8: grayscale (L) or RGB; 1-bit and palette PNGs converted."""
    from PIL import Image

    with Image.open(path) as image:
        if image.mode == "1":
            image = image.convert("L")
        elif image.mode == "P":
            image = image.convert("RGB")
        if image.mode not in PNG_CHANNELS:
            raise RobustADError(
                f"{path}: PNG mode {image.mode!r} is not supported; save 8-bit grayscale (L) or RGB"
            )
        array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _as_nchw(array: np.ndarray, source: Path) -> np.ndarray:
    """(H, W) one image, (N, H, W) grayscale images, (N, C, H, W) as is; uint8 only."""
    if array.dtype != np.uint8:
        raise RobustADError(
            f"{source}: images must be uint8 (0-255, scaled like training); got dtype {array.dtype}"
        )
    if array.ndim == 2:
        return array[None, None]
    if array.ndim == 3:
        return array[:, None]
    if array.ndim == 4:
        return array
    raise RobustADError(
        f"{source}: expected (H, W), (N, H, W) or (N, C, H, W) images; got shape {array.shape}"
    )


def read_inputs(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Names (file names, or indices for arrays) and (N, C, H, W) uint8 images."""
    path = Path(path).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".png" and p.is_file())
        if not files:
            raise ConfigError("--input", str(path), "a folder holding .png images (none found)")
        images = [_png(p) for p in files]
        shapes = {im.shape for im in images}
        if len(shapes) > 1:
            odd = next(
                p for p, im in zip(files, images, strict=True) if im.shape != images[0].shape
            )
            raise RobustADError(
                f"{path}: PNGs differ in shape, e.g. {files[0].name} {images[0].shape} "
                f"vs {odd.name} {_png(odd).shape}"
            )
        return [p.name for p in files], np.stack(images)
    if not path.is_file():
        raise ConfigError(
            "--input",
            str(path),
            "a folder of PNGs, a .png, a .npy or an IDX file (nothing at that path)",
        )
    if path.suffix.lower() == ".png":
        return [path.name], _png(path)[None]
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise RobustADError(f"cannot read {path} as a numpy array: {exc}") from exc
    else:
        array = read_idx(path)  # IDX, raw or .gz; a wrong magic number says so
    images = _as_nchw(array, path)
    return [str(i) for i in range(len(images))], images


def check_shape(images: np.ndarray, expected: Sequence[int], source: str | Path) -> None:
    got = tuple(images.shape[1:])
    if got != tuple(expected):
        fmt = "x".join
        raise RobustADError(
            f"{source}: images are {fmt(map(str, got))} (channels x height x width) but the "
            "model was "
            f"trained on {fmt(map(str, expected))}; resize or convert them first"
        )


@torch.no_grad()
def score_images(
    model: AnomalyModule, images: np.ndarray, batch_size: int = 1024, device: str = "cpu"
) -> np.ndarray:
    """(N,) anomaly scores of uint8 images, scaled by 1/255 exactly like the training batches."""
    model = model.to(device).eval()
    scores = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(images[start : start + batch_size]).to(device).float().div_(255.0)
        scores.append(model.anomaly_score(batch).float().cpu())
    return torch.cat(scores).numpy()


def resolve_threshold(checkpoint: dict[str, Any], override: float | None) -> dict[str, Any]:
    if override is not None:
        return {"method": "fixed", "value": float(override)}
    stored = stored_threshold(checkpoint)
    if stored is None:
        raise RobustADError(
            "the checkpoint stores no threshold (trained without callbacks.threshold); "
            "pass --threshold VALUE"
        )
    return stored


def write_csv(
    path: Path, names: Sequence[str], scores: np.ndarray, labels: np.ndarray, overwrite: bool
) -> None:
    """One row per input; written via a temporary file, never over an existing file by default."""
    if path.exists() and not overwrite:
        raise RobustADError(f"{path} already exists; choose another --output or pass --overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["input", "score", "label"])
        writer.writerows(
            (n, repr(float(s)), int(lab)) for n, s, lab in zip(names, scores, labels, strict=True)
        )
    os.replace(tmp, path)


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
    if batch_size < 1:
        raise ConfigError("--batch-size", batch_size, "a positive integer")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    checkpoint = load_checkpoint(ckpt, key="--ckpt")
    chosen = resolve_threshold(checkpoint, threshold)
    names, images = read_inputs(input_path)
    check_shape(images, trained_image_shape(checkpoint), input_path)
    scores = score_images(build_model(checkpoint), images, batch_size, device)
    labels = scores > chosen["value"]
    write_csv(Path(output), names, scores, labels, overwrite)
    return {
        "n": len(names),
        "outliers": int(labels.sum()),
        "threshold": chosen,
        "output": str(output),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="robustad-score", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="a robustad checkpoint (.ckpt)")
    parser.add_argument(
        "--input",
        required=True,
        help="folder of PNGs, one .png, a .npy (uint8) or an IDX file (.gz ok)",
    )
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
