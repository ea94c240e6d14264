"""Mean over classes of a sweep's runs, beside published numbers (for docs/results.md).

`robustad-report` keeps one row per inlier/outlier class; the papers report the mean over the
10 classes. This groups the same runs (read with robustad.report) without the class keys and
prints a Markdown table: mean ± std over classes, the number of classes, and a published value.

    python scripts/results/class_mean.py /tmp/results/rapp_mnist_unimodal \
        --published "model=ae,score=l2:0.972" "model=vae,score=l2:0.957" \
                    "model=ae,score=rapp_nap:0.979"

Several folders are pooled (add --group-by keys that tell them apart, e.g. trainer.max_epochs);
--only-classes keeps the runs of some classes. A published spec is
`key=value[,key=value...]:number`; it applies to every row whose keys (model, score,
outlier_ratio, and any --group-by key) match all its pairs.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from robustad.report import GROUP_KEYS, collect, group_runs

CLASS_KEYS = ("inlier_classes", "outlier_classes")


def parse_published(specs: Sequence[str]) -> list[tuple[dict[str, str], str]]:
    parsed = []
    for spec in specs:
        match, _, value = spec.rpartition(":")
        pairs = dict(pair.split("=", 1) for pair in match.split(",") if pair)
        parsed.append((pairs, value))
    return parsed


def published_for(keys: dict[str, str], published: list[tuple[dict[str, str], str]]) -> str:
    hits = [v for pairs, v in published if all(keys.get(k) == val for k, val in pairs.items())]
    return hits[0] if hits else ""


def table(
    roots: Sequence[Path],
    metrics: Sequence[str],
    extra_keys: Sequence[str],
    published: list[tuple[dict[str, str], str]],
    only_classes: Sequence[str] = (),
) -> str:
    runs = [run for root in roots for run in collect(root, extra_keys)]
    if only_classes:
        runs = [r for r in runs if {r.keys[k] for k in CLASS_KEYS} & set(only_classes)]
    done = [r for r in runs if r.status == "done"]
    failed = [r for r in runs if r.status != "done"]
    keys = [k for k in (*GROUP_KEYS, *extra_keys) if k not in CLASS_KEYS]
    groups = group_runs(done, keys)
    shown = [k for k in keys if any(g.keys[k] for g in groups)]
    header = [*shown, "classes", *(f"{m} (mean ± std over classes)" for m in metrics)]
    if published:
        header.append("published")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group in groups:
        cells = [group.keys[k] for k in shown]
        cells.append(
            str(
                len(
                    {r.keys["inlier_classes"] + "/" + r.keys["outlier_classes"] for r in group.runs}
                )
            )
        )
        for metric in metrics:
            mean, std = group.stats(metric)
            cells.append("" if mean is None else f"{mean:.3f}" + (f" ± {std:.3f}" if std else ""))
        if published:
            cells.append(published_for(group.keys, published))
        lines.append("| " + " | ".join(cells) + " |")
    seeds = sorted({str(r.seed) for r in done})
    lines.append("")
    lines.append(f"{len(done)} finished runs (seeds: {', '.join(seeds)}), {len(failed)} failed.")
    lines.extend(f"- failed: {r.path}: {r.error}" for r in failed)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directories", type=Path, nargs="+", help="sweep folders, pooled")
    parser.add_argument("--metrics", default="test/auroc,test/ap")
    parser.add_argument("--group-by", default="", help="extra config keys, e.g. model.mode")
    parser.add_argument("--published", nargs="*", default=[], help="key=value,...:number")
    parser.add_argument(
        "--only-classes", default="", help="comma-separated class ids (inlier or outlier) to keep"
    )
    args = parser.parse_args(argv)
    print(
        table(
            args.directories,
            [m for m in args.metrics.split(",") if m],
            [k for k in args.group_by.split(",") if k],
            parse_published(args.published),
            [c for c in args.only_classes.split(",") if c],
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
