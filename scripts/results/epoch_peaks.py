"""Final-epoch against best-epoch validation AUROC of each sweep folder's finished runs.

    python scripts/results/epoch_peaks.py /tmp/results/rsrae_conv_grid /tmp/results/rsrae_conv_lr

Reads the per-epoch history in every metrics.json (status done). Diagnostic only: on the
transductive protocol the validation set is the scored set, so the best epoch is picked with
labels; it shows whether a model was better earlier in training than where it ended. Epochs
are counted from 0.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from pathlib import Path

from robustad.sweeps import read_metrics


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directories", type=Path, nargs="+")
    args = parser.parse_args(argv)
    print(
        "| sweep | runs | final-epoch AUROC (mean) | best-epoch AUROC (mean) "
        "| best epoch (median, range) |"
    )
    print("|---|---|---|---|---|")
    for root in args.directories:
        found = (read_metrics(path) or {} for path in sorted(root.rglob("metrics.json")))
        histories = [m["history"] for m in found if m.get("status") == "done" and m.get("history")]
        if not histories:
            continue
        finals = [history[-1]["val/auroc"] for history in histories]
        best = [max(history, key=lambda row: row["val/auroc"]) for history in histories]
        epochs = [row["epoch"] for row in best]
        where = f"{statistics.median(epochs):g} ({min(epochs)}-{max(epochs)})"
        print(
            f"| {root.name} | {len(histories)} | {statistics.fmean(finals):.3f} | "
            f"{statistics.fmean(row['val/auroc'] for row in best):.3f} | {where} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
