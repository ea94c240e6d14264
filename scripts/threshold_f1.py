"""F1 at each label-free threshold rule against the best F1 any threshold reaches, per run.

    python scripts/threshold_f1.py <sweep or run folders...> [--data-dir DIR] [--out f1.md]

For every finished run under the folders: rebuild the detector from `checkpoints/last.ckpt`
and its data from the stored config, score the calibration split (validation, or the separate
calibration split of RaPP's protocols) and the test split, then apply every rule of
`robustad.thresholds` that needs no labels to the calibration scores and report test F1 beside
the best F1 on the test labels. A rule more than 0.1 below the best is flagged.
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

import torch

from robustad.checkpoint import CONFIG_KEY, build_datamodule, build_model, load_checkpoint
from robustad.report import score_name
from robustad.thresholds import binary_report, choose_threshold, f1_threshold

RULES = ("contamination", "mad", "iqr")
FLAG_BELOW = 0.1


@torch.no_grad()
def split_scores(model, datamodule, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    data = datamodule.splits[name]
    scores = []
    for start in range(0, len(data), 1024):
        batch = data[torch.arange(start, min(start + 1024, len(data)))]
        batch = datamodule.on_after_batch_transfer(batch, 0)
        scores.append(model.anomaly_score(batch["image"]))
    return torch.cat(scores), data.targets


def run_row(ckpt: Path, data_dir: str | None) -> tuple[tuple[str, ...], dict[str, float]]:
    checkpoint = load_checkpoint(ckpt)
    config = checkpoint[CONFIG_KEY]
    data_cfg = {**config["data"], **({"data_dir": data_dir} if data_dir else {})}
    datamodule = build_datamodule(data_cfg)
    datamodule.setup("fit")
    model = build_model(checkpoint)
    calibration = "calibration" if "calibration" in datamodule.splits else "val"
    cal_scores, _ = split_scores(model, datamodule, calibration)
    test_scores, test_targets = split_scores(model, datamodule, "test")
    c = datamodule.train_contamination
    row = {
        "best": binary_report(test_scores, test_targets, f1_threshold(test_scores, test_targets))[
            "f1"
        ]
    }
    for rule in RULES:
        threshold = choose_threshold(rule, cal_scores, contamination=c)
        row[rule] = binary_report(test_scores, test_targets, threshold)["f1"]
    key = (
        config.get("config_choices", {}).get("model", "?"),
        score_name(config["model"].get("score")),
        config["data"].get("protocol", "?"),
    )
    return key, row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows: dict[tuple[str, ...], list[dict[str, float]]] = defaultdict(list)
    for folder in args.folders:
        for ckpt in sorted(folder.rglob("checkpoints/last.ckpt")):
            key, row = run_row(ckpt, args.data_dir)
            rows[key].append(row)
    lines = [
        "| model | score | protocol | runs | best F1 | "
        + " | ".join(f"F1 `{r}`" for r in RULES)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(RULES),
    ]
    for key, runs in sorted(rows.items()):
        best = statistics.mean(r["best"] for r in runs)
        cells = []
        for rule in RULES:
            value = statistics.mean(r[rule] for r in runs)
            cells.append(
                f"{value:.3f}" + (" (more than 0.1 below)" if best - value > FLAG_BELOW else "")
            )
        lines.append(
            f"| {' | '.join(key)} | {len(runs)} | {best:.3f} | " + " | ".join(cells) + " |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
