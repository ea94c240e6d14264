"""Median wall time per finished job of each sweep folder, split by model and score.

    python scripts/results/durations.py /tmp/results/rsrae_grid/* /tmp/results/rapp_mnist_unimodal

Reads `duration_s` from every metrics.json (status done); for planning sweep sizes.
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from robustad.report import collect
from robustad.sweeps import read_metrics


def _duration(path: Path) -> float | None:
    value = (read_metrics(path) or {}).get("duration_s")
    return float(value) if isinstance(value, int | float) else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directories", type=Path, nargs="+")
    args = parser.parse_args(argv)
    print("| sweep | model | score | jobs | median s per job |\n|---|---|---|---|---|")
    for root in args.directories:
        if not root.is_dir():
            continue
        times: dict[tuple[str, str], list[float]] = defaultdict(list)
        for run in collect(root):
            duration = _duration(root / run.path / "metrics.json")
            if run.status == "done" and duration is not None:
                times[(run.keys["model"], run.keys["score"])].append(duration)
        for (model, score), values in sorted(times.items()):
            median = statistics.median(values)
            print(f"| {root.name} | {model} | {score} | {len(values)} | {median:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
