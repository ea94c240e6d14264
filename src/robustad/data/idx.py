"""Read and write IDX files (the MNIST family's format), gzipped or raw, with integrity checks."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from robustad.errors import CorruptDataError

# Third magic byte -> numpy dtype (big-endian where it matters), per the IDX specification.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_DTYPE_CODES = {dtype: code for code, dtype in _IDX_DTYPES.items()}


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:  # truncated, non-gzip or corrupt deflate data
        raise CorruptDataError(
            f"cannot read IDX file {path}: {exc} (corrupt or truncated; replace the file)"
        ) from exc


def read_idx(path: str | Path) -> np.ndarray:
    """Parse one IDX file; a wrong magic number or a length mismatch names the file."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise CorruptDataError(
            f"{path} is not an IDX file: bad magic number {raw[:4].hex() or '(empty)'}"
        )
    dtype = _IDX_DTYPES[raw[2]]
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise CorruptDataError(f"{path}: IDX header truncated ({len(raw)} bytes)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise CorruptDataError(
            f"{path}: IDX length mismatch, header says shape {shape} ({expected} bytes) "
            f"but the file has {len(raw)} bytes (truncated or corrupt)"
        )
    return (
        np.frombuffer(raw, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write an array as IDX (gzipped when the name ends in .gz); used by tests and tools."""
    path = Path(path)
    array = np.asarray(array)
    big_endian = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    code = _DTYPE_CODES.get(np.dtype(big_endian))
    if code is None:
        raise ValueError(
            f"dtype {array.dtype} has no IDX code; allowed: {sorted(map(str, _DTYPE_CODES))}"
        )
    header = bytes([0, 0, code, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    payload = header + array.astype(big_endian).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)
    return path
