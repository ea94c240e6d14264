"""NAP with its k largest principal axes only, for trained `rapp_nap` runs: validation and test
AUROC per k, mean over the runs, so the cap can be chosen on validation AUROC.

    python scripts/results/nap_components.py /tmp/results/mm/ours --components 16 32 64 128 256

Each run's tested checkpoint is reloaded with its stored config; the NAP statistics are refitted
on its training split (as training does) and truncated to k axes (`all`: every axis with
training variance, the shipped `components: null`). `--data-dir` points the stored data config
at a dataset folder on this machine.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from sklearn.metrics import roc_auc_score

from robustad.checkpoint import CONFIG_KEY, build_datamodule, build_model, load_checkpoint
from robustad.models.rapp import NAPStatistics
from robustad.sweeps import read_metrics


def batches(datamodule, split: str) -> Iterator[dict[str, torch.Tensor]]:
    loader = getattr(datamodule, f"{split}_dataloader")()
    for batch in loader:
        yield datamodule.on_after_batch_transfer(batch, 0)


@torch.no_grad()
def differences_and_targets(model, datamodule, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    found = [
        (model.score.differences(model, b["image"]), b["target"])
        for b in batches(datamodule, split)
    ]
    return torch.cat([d for d, _ in found]), torch.cat([t for _, t in found])


def auroc(scores: torch.Tensor, targets: torch.Tensor) -> float:
    return float(roc_auc_score(targets.numpy(), scores.numpy()))


def run_aurocs(run_dir: Path, components: Sequence[int | None], data_dir: str | None) -> dict:
    metrics = read_metrics(run_dir / "metrics.json") or {}
    tested = metrics.get("tested_checkpoint")
    path = (
        Path(tested) if tested and tested != "last weights" else run_dir / "checkpoints/last.ckpt"
    )
    checkpoint = load_checkpoint(path)
    model = build_model(checkpoint)
    model.eval()
    data_cfg = dict(checkpoint[CONFIG_KEY]["data"])
    if data_dir:
        data_cfg["data_dir"] = data_dir
    datamodule = build_datamodule(data_cfg)
    datamodule.setup("fit")
    datamodule.setup("test")
    train, _ = differences_and_targets(model, datamodule, "train")
    full = NAPStatistics()
    full.fit_batches([train])  # as training fits it
    evaluated = {
        split: differences_and_targets(model, datamodule, split) for split in ("val", "test")
    }
    result = {}
    for k in components:
        nap = NAPStatistics(k)
        nap.mean, nap.axes, nap.scales = full.mean, full.axes[:k], full.scales[:k]
        result[k] = {split: auroc(nap.score(d), t) for split, (d, t) in evaluated.items()}
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directories", type=Path, nargs="+")
    parser.add_argument("--components", nargs="+", default=["16", "32", "64", "128", "256", "all"])
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    components = [None if k == "all" else int(k) for k in args.components]
    runs = [
        path.parent
        for root in args.directories
        for path in sorted(root.rglob("metrics.json"))
        if (read_metrics(path) or {}).get("status") == "done"
    ]
    per_run = {run: run_aurocs(run, components, args.data_dir) for run in runs}
    print(f"{len(runs)} runs: {', '.join(sorted({r.parent.name for r in runs}))}")
    print("| components | val/auroc (mean) | test/auroc (mean) |")
    print("|---|---|---|")
    for k in components:
        val = statistics.fmean(r[k]["val"] for r in per_run.values())
        test = statistics.fmean(r[k]["test"] for r in per_run.values())
        print(f"| {'all' if k is None else k} | {val:.3f} | {test:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
