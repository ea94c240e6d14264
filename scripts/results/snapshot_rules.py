"""Score ensembles over training snapshots and a label-free stopping rule, against the last epoch.

    python scripts/results/snapshot_rules.py /tmp/results/snapshots

Reads sweeps trained with `callbacks.model_checkpoint.save_top_k=-1` (one checkpoint per epoch,
each with the score statistics fitted to its own weights). For every run it scores the training,
validation and test splits with every epoch's checkpoint, then compares ways of turning the
snapshots into one detector, none of which looks at a label:

- `last`: the last epoch (what robustad ships);
- `mean of last K` / `mean of all`: the standardised scores averaged over the last K epochs or
  over every epoch after the first (a snapshot ensemble);
- `stop at widest gap`: the epoch at which the training split's top `contamination` share of
  scores stands furthest above the rest (mean of that top share minus the median, in MADs).

Prints a Markdown table of mean validation and test AUROC per dataset, contamination and rule.
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from robustad.checkpoint import CONFIG_KEY, build_datamodule, build_model, load_checkpoint
from robustad.data.datamodule import ContaminatedDataModule
from robustad.models.base import AnomalyModule
from robustad.models.robust import outlier_share
from robustad.sweeps import read_metrics

SPLITS = ("train", "val", "test")
EVALUATED = ("val", "test")
ENSEMBLE_SIZES = (3, 5, 10)


@torch.no_grad()
def split_scores(
    model: AnomalyModule, datamodule: ContaminatedDataModule, split: str
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and outlier targets of one split, in the order its loader gives them."""
    scores, targets = [], []
    for batch in getattr(datamodule, f"{split}_dataloader")():
        batch = datamodule.on_after_batch_transfer(batch, 0)
        scores.append(model.anomaly_score(batch["image"]))
        targets.append(batch["target"])
    return torch.cat(scores).numpy(), torch.cat(targets).numpy()


def tail_gap(scores: np.ndarray, share: float) -> float:
    """How far the top `share` of the scores stands above the bulk, in MADs (label-free)."""
    median = np.median(scores)
    mad = np.median(np.abs(scores - median)) + 1e-12
    top = scores[scores >= np.quantile(scores, 1.0 - share)]
    return float((top.mean() - median) / mad)


def rule_aurocs(run: Path) -> tuple[tuple[str, float], dict[str, dict[str, float]]] | None:
    """((dataset, contamination), {rule: {split: AUROC}}) of one run, None without snapshots."""
    checkpoints = sorted((run / "checkpoints").glob("best_epoch_*.ckpt"))
    if len(checkpoints) < 2:
        return None
    data = load_checkpoint(checkpoints[0])[CONFIG_KEY]["data"]
    datamodule = build_datamodule(data)
    datamodule.setup("fit")
    datamodule.setup("test")
    scores: dict[str, list[np.ndarray]] = defaultdict(list)
    targets: dict[str, np.ndarray] = {}
    for path in checkpoints:
        model = build_model(load_checkpoint(path)).eval()
        for split in SPLITS:
            split_score, targets[split] = split_scores(model, datamodule, split)
            scores[split].append(split_score)
    epochs = {split: np.stack(scores[split]) for split in SPLITS}
    rules = {
        "last": lambda s: s[-1],
        **{f"mean of last {k}": (lambda s, k=k: s[-k:].mean(axis=0)) for k in ENSEMBLE_SIZES},
        "mean of all": lambda s: s[1:].mean(axis=0),
    }
    share = outlier_share(data.get("contamination"), data.get("outlier_ratio"))
    if share:  # the stopping rule needs the stated outlier share
        gaps = [tail_gap(s, share) for s in epochs["train"]]
        stop = 1 + int(np.argmax(gaps[1:]))  # the first epoch is the trimming warm-up
        rules["stop at widest gap"] = lambda s: s[stop]
    aurocs = {
        rule: {split: roc_auc_score(targets[split], pick(epochs[split])) for split in EVALUATED}
        for rule, pick in rules.items()
    }
    return (data["dataset"], share or 0.0), aurocs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder holding the sweeps' run folders")
    args = parser.parse_args(argv)
    table: dict[tuple[str, float], dict[str, list[dict[str, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for metrics_path in sorted(args.root.rglob("metrics.json")):
        if (read_metrics(metrics_path) or {}).get("status") != "done":
            continue
        found = rule_aurocs(metrics_path.parent)
        if found is not None:
            setting, aurocs = found
            for rule, values in aurocs.items():
                table[setting][rule].append(values)
    print("| dataset | contamination | rule | n | val/auroc | test/auroc |")
    print("|---|---|---|---|---|---|")
    for (dataset, contamination), rules in sorted(table.items()):
        for rule, runs in rules.items():
            means = " | ".join(f"{statistics.fmean(r[s] for r in runs):.3f}" for s in EVALUATED)
            print(f"| {dataset} | {contamination:g} | {rule} | {len(runs)} | {means} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
