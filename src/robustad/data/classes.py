"""Class selection by id or name, checked against the dataset's class list before reading data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from robustad.errors import ConfigError


def _allowed(names: Sequence[str], dataset: str) -> str:
    shown = ", ".join(repr(n) for n in names[:12]) + (", ..." if len(names) > 12 else "")
    return f"class ids 0..{len(names) - 1} or class names ({shown}) for dataset {dataset}"


def _one(item: Any, names: Sequence[str]) -> int | None:
    """An int is an id; a string a name (exact, else unique case-insensitive), else an id."""
    if isinstance(item, bool):
        return None
    if isinstance(item, int):
        return item if 0 <= item < len(names) else None
    if not isinstance(item, str):
        return None
    if item in names:
        return names.index(item)
    folded = [i for i, name in enumerate(names) if name.casefold() == item.casefold()]
    if len(folded) == 1:
        return folded[0]
    if item.strip().isdigit():
        return _one(int(item), names)
    return None


def resolve_classes(key: str, classes: Any, names: Sequence[str], dataset: str) -> list[int] | None:
    """Map ids and names to sorted unique ids; None stays None ("every other class")."""
    if classes is None:
        return None
    if isinstance(classes, int | str):
        classes = [classes]
    elif not isinstance(classes, Sequence):  # e.g. 1.5 or a mapping: neither an id nor a list
        raise ConfigError(key, classes, f"a list of {_allowed(names, dataset)}, or null")
    items = list(classes)
    ids = [_one(item, names) for item in items]
    bad = [item for item, i in zip(items, ids, strict=True) if i is None]
    if bad:
        raise ConfigError(key, bad, _allowed(names, dataset))
    if not ids:
        raise ConfigError(key, classes, f"a non-empty list: {_allowed(names, dataset)}, or null")
    return sorted(set(ids))  # type: ignore[arg-type]


def complete_selection(
    inliers: list[int] | None, outliers: list[int] | None, n_classes: int
) -> tuple[list[int], list[int]]:
    """Fill a null side with every class not on the other side; the two must not overlap."""
    if inliers is None and outliers is None:
        raise ConfigError(
            "data.inlier_classes",
            None,
            "a list of classes (it may be null only when data.outlier_classes is set)",
        )
    if inliers is None:
        inliers = [c for c in range(n_classes) if c not in outliers]  # type: ignore[operator]
    if outliers is None:
        outliers = [c for c in range(n_classes) if c not in inliers]
    overlap = sorted(set(inliers) & set(outliers))
    if overlap:
        raise ConfigError(
            "data.outlier_classes",
            outliers,
            f"classes disjoint from data.inlier_classes (both hold {overlap})",
        )
    if not inliers:
        raise ConfigError("data.inlier_classes", inliers, "a non-empty set of inlier classes")
    if not outliers:
        raise ConfigError("data.outlier_classes", outliers, "a non-empty pool of outlier classes")
    return inliers, outliers
