"""Reading images users bring: image files through Pillow, folders of them, .npy, IDX."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robustad.errors import ConfigError, RobustADError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm")
ARRAY_SUFFIXES = (".npy",)
IMAGE_CHANNELS = {"L": 1, "RGB": 3}
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


def read_folder(path: Path, key: str = "--input") -> tuple[list[str], np.ndarray]:
    """File names and (N, C, H, W) uint8 images of every image file in a folder."""
    if not path.is_dir():
        raise ConfigError(key, str(path), "a folder of images (no folder at that path)")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ConfigError(key, str(path), f"{ACCEPTED} (the folder holds no images)")
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
        return read_folder(path)
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
