"""PyOD's detectors on exactly the splits robustad trains and tests on (development benchmark).

    pip install pyod    # benchmark-only; not a robustad dependency
    python scripts/bench_pyod.py --data-dir ../shared/datasets --out pyod_dev.csv

For each dataset x inlier class x contamination of `experiment=dev_benchmark`, the data module
that `train.py` builds samples the contaminated training split and the labelled validation and
test splits (same `data.seed`, so the very same images); each PyOD detector is fitted on the
training split's pixels with its defaults and `contamination` given, and scored with
`decision_function` (higher = more anomalous, as in robustad). One CSV row per detector and
split; `--summary` prints the mean over classes.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from sklearn.metrics import average_precision_score, roc_auc_score

CONFIG_DIR = Path(__file__).resolve().parents[1] / "src" / "robustad" / "configs"
DETECTORS = ("PCA", "IForest", "AutoEncoder")


def detector(name: str, contamination: float, seed: int) -> object:
    """PyOD's defaults, as a user would call them; the AutoEncoder standardises its input."""
    if name == "PCA":
        from pyod.models.pca import PCA

        return PCA(contamination=contamination, random_state=seed)
    if name == "IForest":
        from pyod.models.iforest import IForest

        return IForest(contamination=contamination, random_state=seed)
    from pyod.models.auto_encoder import AutoEncoder

    return AutoEncoder(contamination=contamination, random_state=seed, verbose=0)


def split_arrays(datamodule: object, name: str) -> tuple[np.ndarray, np.ndarray]:
    split = datamodule.splits[name]
    pixels = split.images.reshape(len(split.images), -1).float().div(255.0).numpy()
    return pixels, split.targets.numpy()


def run(args: argparse.Namespace) -> list[dict[str, object]]:
    rows = []
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        for dataset in args.datasets:
            for contamination in args.contaminations:
                for inlier in args.classes:
                    overrides = [
                        "experiment=dev_benchmark",
                        f"data={dataset}",
                        f"data.inlier_classes=[{inlier}]",
                        f"data.contamination={contamination}",
                        f"data.data_dir={args.data_dir}",
                    ]
                    cfg = compose("train", overrides=overrides)
                    datamodule = instantiate(cfg.data)
                    datamodule.setup("fit")
                    x_train, _ = split_arrays(datamodule, "train")
                    for name in args.detectors:
                        torch.manual_seed(args.seed)
                        started = time.perf_counter()
                        model = detector(name, float(contamination), args.seed)
                        model.fit(x_train)
                        seconds = time.perf_counter() - started
                        for split in ("val", "test"):
                            x, y = split_arrays(datamodule, split)
                            scores = model.decision_function(x)
                            rows.append(
                                {
                                    "detector": name,
                                    "dataset": dataset,
                                    "contamination": contamination,
                                    "inlier_class": inlier,
                                    "split": split,
                                    "auroc": roc_auc_score(y, scores),
                                    "ap": average_precision_score(y, scores),
                                    "fit_s": round(seconds, 2),
                                }
                            )
                        print(rows[-1], flush=True)
    return rows


def summary(rows: list[dict[str, object]]) -> None:
    groups: dict[tuple, list[float]] = defaultdict(list)
    for row in rows:
        if row["split"] == "test":
            groups[(row["detector"], row["dataset"], row["contamination"])].append(row["auroc"])
    print("| detector | dataset | contamination | test AUROC (mean over classes) | n |")
    print("|---|---|---|---|---|")
    for (name, dataset, c), values in sorted(groups.items()):
        print(f"| PyOD {name} | {dataset} | {c} | {statistics.mean(values):.3f} | {len(values)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion_mnist"])
    parser.add_argument("--contaminations", nargs="+", default=["0.05", "0.1"])
    parser.add_argument("--classes", nargs="+", type=int, default=list(range(10)))
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=DETECTORS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("pyod_dev.csv"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = run(args)
    with args.out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary(rows)


if __name__ == "__main__":
    main()
