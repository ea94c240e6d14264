"""What contamination-robust training costs: each job with `robust=trimmed` against the very same
job with `robust=none`, interleaved, each run in its own process; medians and pairwise ratios.

    python scripts/bench_robust.py --data-dir ../shared/datasets [--models ae rsrae vae]
        [--repeats 5] [-- extra overrides, e.g. trainer.max_epochs=10]

The two variants of a model alternate (and swap which goes first every repeat), so a machine
whose speed drifts slows both alike; the ratio is taken pair by pair, then its median. "job s"
is the run's own `duration_s` (metrics.json: data, fit, calibration and test); "process s"
adds Python start-up and imports. The issue's bound: robust training costs at most 15 %.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

VARIANTS = ("trimmed", "none")


def run_job(model: str, robust: str, out_dir: Path, data_dir: Path, extra: Sequence[str]) -> dict:
    """One training job in a fresh process: its own duration and the process's wall time."""
    command = [
        sys.executable,
        "-m",
        "robustad",
        "train",
        f"model={model}",
        f"robust={robust}",
        f"data.data_dir={data_dir}",
        "cpu_threads=1",
        "logger=csv",
        f"hydra.run.dir={out_dir}",
        *extra,
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{done.stderr[-2000:]}")
    record = json.loads((out_dir / "metrics.json").read_text())
    return {"job": float(record["duration_s"]), "process": wall, "auroc": record["test/auroc"]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--models", nargs="+", default=["ae", "rsrae", "vae"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("overrides", nargs="*", help="extra overrides for every job")
    args = parser.parse_args(argv)
    data_dir = args.data_dir.resolve()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_robust_") as tmp:
        for model in args.models:
            results: dict[str, list[dict]] = {variant: [] for variant in VARIANTS}
            for repeat in range(args.repeats):
                order = VARIANTS if repeat % 2 == 0 else VARIANTS[::-1]
                for variant in order:
                    out_dir = Path(tmp) / f"{model}_{variant}_{repeat}"
                    results[variant].append(
                        run_job(model, variant, out_dir, data_dir, args.overrides)
                    )
            ratios = [
                trimmed["job"] / plain["job"]
                for trimmed, plain in zip(results["trimmed"], results["none"], strict=True)
            ]
            for variant in VARIANTS:
                runs = results[variant]
                rows.append(
                    f"| {model} | {variant} | {len(runs)} "
                    f"| {statistics.median(r['job'] for r in runs):.2f} "
                    f"| {statistics.median(r['process'] for r in runs):.2f} "
                    f"| {statistics.median(r['auroc'] for r in runs):.3f} "
                    f"| {f'{statistics.median(ratios):.3f}' if variant == 'trimmed' else ''} |"
                )
    print(
        "| model | robust | runs | median job s | median process s | test AUROC "
        "| trimmed / none (median of pairs) |\n|---|---|---|---|---|---|---|"
    )
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
