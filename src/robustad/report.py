"""`robustad-report <dir>`: every metrics.json under a folder -> one CSV and a Markdown table.

Runs are grouped by model x score x dataset x protocol x inlier (and outlier) classes x
contamination (or outlier ratio); each metric gets its mean and standard deviation over the
group's runs (the seeds). Failed runs are listed apart. Everything is read from the files next
to each metrics.json (its config_resolved.yaml; never Hydra's .hydra/ copies, which a later
command may rewrite), never from absolute paths stored in them, so a copied or moved output
folder reports the same.
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from robustad.errors import RobustADError
from robustad.score_names import score_label
from robustad.sweeps import read_metrics

log = logging.getLogger("robustad")

# What makes two runs the same experiment on the same images (--versus compares on these).
SPLIT_KEYS = (
    "dataset",
    "protocol",
    "inlier_classes",
    "outlier_classes",
    "contamination",
    "outlier_ratio",
)
GROUP_KEYS = ("model", "score", *SPLIT_KEYS)
DEFAULT_METRICS = ("test/auroc", "test/ap", "val/auroc", "val/ap")
PLOT_METRICS = ("test/auroc", "test/ap")
# Config keys that differ between runs without making them different experiments (values that
# hold the run's own output folder, such as checkpoint paths, are ignored too).
IGNORED_CONFIG_KEYS = (
    "seed",
    "paths.",
    "hydra.",
    "task_name",
    "tags",
    "resume",
    "data.data_dir",
    "config_choices.",
)


@dataclass
class Run:
    """One job folder: where it is (relative to the report's root), what it ran, what it got."""

    path: str
    status: str
    keys: dict[str, str]
    seed: Any
    metrics: dict[str, float]
    error: str = ""
    config: dict[str, Any] = field(default_factory=dict)


def _load_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        content = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return content if isinstance(content, dict) else {}


def _select(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(
            _flatten(value, f"{prefix}{key}." if isinstance(value, dict) else f"{prefix}{key}")
        )
    return flat


def _own_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The flattened config less the keys whose values name the run's own output folder."""
    flat = _flatten(config)
    own_dir = str(flat.get("paths.output_dir") or "\0")
    return {k: v for k, v in flat.items() if not (isinstance(v, str) and v.startswith(own_dir))}


def score_name(node: Any) -> str:
    """A scorer config as the short name its config file has (l2, l2_cosine, rapp_nap,
    neg_elbo); configs from before scorers were components stored that name as is."""
    if not isinstance(node, dict):
        return _format_value(node)
    kind = str(node.get("_target_", "")).rsplit(".", 1)[-1]
    if kind == "Reconstruction":
        metric = node.get("metric")
        return score_label(
            metric if isinstance(metric, list) else [str(metric)], node.get("smoothing") or 0.0
        )
    if kind == "RaPP":
        return f"rapp_{node.get('aggregation')}"
    if kind == "NegativeELBO":
        return "neg_elbo"
    return kind


def _format_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _number_key(text: str) -> tuple[Any, ...]:
    """Sort "2" before "10" and numbers before names."""
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)


def load_run(metrics_path: Path, root: Path, extra_keys: Sequence[str] = ()) -> Run:
    job_dir = metrics_path.parent
    metrics = read_metrics(metrics_path) or {
        "status": "unreadable",
        "error": "metrics.json cannot be read",
    }
    # The run's own record only (metrics.json and the config written beside it): Hydra's
    # `.hydra/` copies are rewritten by any later command pointed at the folder.
    config = _load_yaml(job_dir / "config_resolved.yaml")
    keys = {
        # metrics.json names the model by its config (rsrae_conv, cae, ...).
        "model": _format_value(metrics.get("model")),
        "score": score_name(_select(config, "model.score")),
        "dataset": _format_value(_select(config, "data.dataset") or metrics.get("dataset")),
        # Configs from before `data.protocol` existed ran the inductive protocol.
        "protocol": _format_value(_select(config, "data.protocol") or "inductive"),
        "inlier_classes": _format_value(_select(config, "data.inlier_classes")),
        "outlier_classes": _format_value(_select(config, "data.outlier_classes")),
        "contamination": _format_value(_select(config, "data.contamination")),
        "outlier_ratio": _format_value(_select(config, "data.outlier_ratio")),
    }
    keys.update({key: _format_value(_select(config, key)) for key in extra_keys})
    values = {
        key: float(value)
        for key, value in metrics.items()
        if "/" in key and isinstance(value, int | float) and not isinstance(value, bool)
    }
    seed = config.get("seed", metrics.get("seed"))
    return Run(
        path=job_dir.relative_to(root).as_posix() or ".",
        status=str(metrics.get("status", "unknown")),
        keys=keys,
        seed=seed,
        metrics=values,
        error=str(metrics.get("error", "")),
        config=config,
    )


def collect(root: Path, extra_keys: Sequence[str] = ()) -> list[Run]:
    """Every metrics.json under root (archived attempts, metrics.failed-1.json, are not read)."""
    if not root.is_dir():
        raise RobustADError(f"{root} is not a directory")
    paths = sorted(root.rglob("metrics.json"))
    if not paths:
        raise RobustADError(f"no metrics.json under {root}; is it a run or sweep output folder?")
    runs = [load_run(path, root, extra_keys) for path in paths]
    if all(run.status == "unreadable" for run in runs):
        names = ", ".join(run.path + "/metrics.json" for run in runs[:3])
        raise RobustADError(f"no readable metrics.json under {root} (unreadable: {names})")
    return runs


@dataclass
class Group:
    keys: dict[str, str]
    runs: list[Run]

    @property
    def seeds(self) -> list[Any]:
        return [run.seed for run in self.runs]

    def stats(self, metric: str) -> tuple[float | None, float | None]:
        """Mean and sample standard deviation (None with a single run) of one metric."""
        values = [run.metrics[metric] for run in self.runs if metric in run.metrics]
        if not values:
            return None, None
        std = statistics.stdev(values) if len(values) > 1 else None
        return statistics.fmean(values), std

    def differing_config(self) -> list[str]:
        """Config keys varying inside the group besides the seed: runs that should not be pooled."""
        flats = [_own_settings(run.config) for run in self.runs]
        keys = set().union(*flats)
        return sorted(
            key
            for key in keys
            if not key.startswith(IGNORED_CONFIG_KEYS)
            and len({repr(flat.get(key)) for flat in flats}) > 1
        )


def group_runs(runs: Sequence[Run], group_keys: Sequence[str]) -> list[Group]:
    groups: dict[tuple[str, ...], list[Run]] = defaultdict(list)
    for run in runs:
        groups[tuple(run.keys[key] for key in group_keys)].append(run)
    ordered = sorted(groups.items(), key=lambda item: [_number_key(v) for v in item[0]])
    return [
        Group(dict(zip(group_keys, values, strict=True)), members) for values, members in ordered
    ]


class MeanGroup(Group):
    """Groups that differ only in the averaged keys (e.g. inlier_classes): each metric is the
    mean of the groups' means, its spread their standard deviation (class-to-class)."""

    def __init__(self, keys: dict[str, str], members: list[Group]) -> None:
        super().__init__(keys, [run for group in members for run in group.runs])
        self.members = members

    def stats(self, metric: str) -> tuple[float | None, float | None]:
        means = [m for m, _ in (group.stats(metric) for group in self.members) if m is not None]
        if not means:
            return None, None
        return statistics.fmean(means), statistics.stdev(means) if len(means) > 1 else None

    def differing_config(self) -> list[str]:
        return sorted({key for group in self.members for key in group.differing_config()})


def average_groups(groups: Sequence[Group], over: Sequence[str]) -> list[Group]:
    """One MeanGroup per combination of the other keys; the averaged keys' columns are empty."""
    merged: dict[tuple[tuple[str, str], ...], list[Group]] = defaultdict(list)
    for group in groups:
        keys = tuple((k, "" if k in over else v) for k, v in group.keys.items())
        merged[keys].append(group)
    return [MeanGroup(dict(keys), members) for keys, members in merged.items()]


@dataclass
class Versus:
    """Each group against a reference model (e.g. PCA) on the very same splits: on how many of
    its splits (classes, when averaged over them) its mean `metric` is higher, and by how much
    on average. Ties count as not higher."""

    model: str
    metric: str
    reference: dict[tuple[str, ...], float]

    @classmethod
    def of(cls, groups: Sequence[Group], model: str, metric: str) -> Versus:
        # Per split, the reference's mean by setting (its groups differ only in these).
        found: dict[tuple[str, ...], dict[str, float]] = defaultdict(dict)
        for group in groups:
            mean, _ = group.stats(metric)
            if group.keys["model"] == model and mean is not None:
                found[_split(group)][_setting(group)] = mean
        if not found:
            raise RobustADError(f"--versus {model}: no finished {model} run with {metric}")
        for by_setting in found.values():
            if len(by_setting) > 1:  # averaging two references would compare with neither
                raise RobustADError(
                    f"--versus {model}: {len(by_setting)} different {model} settings on the "
                    f"same split ({', '.join(sorted(by_setting))}); keep one in the folder"
                )
        return cls(model, metric, {split: next(iter(m.values())) for split, m in found.items()})

    @property
    def header(self) -> str:
        return f"{self.metric} > {self.model} (splits, mean diff)"

    def cell(self, group: Group) -> str:
        if group.keys["model"] == self.model:
            return ""
        members = group.members if isinstance(group, MeanGroup) else [group]
        diffs = []
        for member in members:
            mean, split = member.stats(self.metric)[0], _split(member)
            if mean is not None and split in self.reference:
                diffs.append(mean - self.reference[split])
        if not diffs:
            return ""
        wins = sum(diff > 0 for diff in diffs)
        return f"{wins} / {len(diffs)} ({statistics.fmean(diffs):+.3f})"


def _split(group: Group) -> tuple[str, ...]:
    return tuple(group.keys[key] for key in SPLIT_KEYS)


def _setting(group: Group) -> str:
    """What sets a group apart from others on its split (score, --group-by values)."""
    return " ".join(f"{k}={v}" for k, v in group.keys.items() if k not in (*SPLIT_KEYS, "model"))


def load_published(path: Path) -> list[dict[str, Any]]:
    """Published numbers to show beside ours: a YAML list of {where: {key: value, ...},
    value: number, source: text} entries; `where` matches the report's grouping keys."""
    entries = _load_yaml_list(path)
    for i, entry in enumerate(entries):
        if (
            not isinstance(entry, dict)
            or "value" not in entry
            or not isinstance(entry.get("where", {}), dict)
        ):
            raise RobustADError(
                f"{path}: entry {i} must be a mapping with `where` (keys) and `value`"
            )
    return entries


def _load_yaml_list(path: Path) -> list[Any]:
    try:
        content = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RobustADError(f"cannot read the published numbers {path}: {exc}") from exc
    if not isinstance(content, list):
        raise RobustADError(f"{path}: expected a YAML list of published entries")
    return content


def published_for(group: Group, published: Sequence[dict[str, Any]]) -> str:
    cells = [
        f"{entry['value']}" + (f" ({entry['source']})" if entry.get("source") else "")
        for entry in published
        if all(group.keys.get(k) == _format_value(v) for k, v in entry.get("where", {}).items())
    ]
    return "; ".join(cells)


def metric_names(runs: Sequence[Run], wanted: Sequence[str]) -> list[str]:
    """The wanted metrics first (those present), then every other test/ and val/ metric."""
    present = {key for run in runs for key in run.metrics}
    others = sorted(
        key for key in present if key.startswith(("test/", "val/")) and key not in wanted
    )
    return [key for key in wanted if key in present] + others


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None:
        return ""
    return "nan" if math.isnan(value) else f"{value:.{digits}f}"


def write_csv(
    groups: Sequence[Group], group_keys: Sequence[str], metrics: Sequence[str], path: Path
) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        header = [*group_keys, "n", "seeds"]
        for metric in metrics:
            header += [f"{metric}_mean", f"{metric}_std"]
        writer.writerow(header)
        for group in groups:
            row = [group.keys[key] for key in group_keys]
            row += [len(group.runs), " ".join(str(seed) for seed in group.seeds)]
            for metric in metrics:
                mean, std = group.stats(metric)
                row += [_fmt(mean, 6), _fmt(std, 6)]
            writer.writerow(row)


def write_runs_csv(
    runs: Sequence[Run], group_keys: Sequence[str], metrics: Sequence[str], path: Path
) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "status", *group_keys, "seed", *metrics, "error"])
        for run in runs:
            values = [_fmt(run.metrics.get(metric), 6) for metric in metrics]
            writer.writerow(
                [
                    run.path,
                    run.status,
                    *(run.keys[k] for k in group_keys),
                    run.seed,
                    *values,
                    run.error,
                ]
            )


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(
    groups: Sequence[Group],
    failed: Sequence[Run],
    group_keys: Sequence[str],
    metrics: Sequence[str],
    published: Sequence[dict[str, Any]] = (),
    versus: Versus | None = None,
) -> str:
    """Mean ± std per group (columns that are empty for every group are left out), the
    published number where one matches, and the comparison with a reference model."""
    shown = [key for key in group_keys if any(group.keys[key] for group in groups)] or list(
        group_keys
    )
    extra = (["published"] if published else []) + ([versus.header] if versus else [])
    lines = [
        "| " + " | ".join([*shown, "n", *metrics, *extra]) + " |",
        "|" + "---|" * (len(shown) + 1 + len(metrics) + len(extra)),
    ]
    notes = []
    for group in groups:
        cells = [_md_escape(group.keys[key]) for key in shown] + [str(len(group.runs))]
        for metric in metrics:
            mean, std = group.stats(metric)
            cells.append(_fmt(mean, 3) + (f" ± {_fmt(std, 3)}" if std is not None else ""))
        if published:
            cells.append(_md_escape(published_for(group, published)))
        if versus:
            cells.append(versus.cell(group))
        lines.append("| " + " | ".join(cells) + " |")
        differing = group.differing_config()
        if differing:
            label = ", ".join(f"{key}={group.keys[key]}" for key in shown if group.keys[key])
            notes.append(
                f"- {label}: its runs also differ in {', '.join(differing[:5])}"
                f"{' ...' if len(differing) > 5 else ''}; separate them with --group-by."
            )
    if not groups:
        lines.append(
            "| "
            + " | ".join(["(no finished runs)"] + [""] * (len(shown) + len(metrics) + len(extra)))
            + " |"
        )
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\nPooled runs that differ in more than the seed:\n" + "\n".join(notes) + "\n"
    if failed:
        text += f"\n## Failed runs ({len(failed)})\n\n| run | status | error |\n|---|---|---|\n"
        text += "".join(
            f"| {_md_escape(r.path)} | {r.status} | {_md_escape(r.error)} |\n" for r in failed
        )
    return text


def plot(groups: Sequence[Group], path: Path) -> Path:
    """AUROC and AP against contamination (or outlier ratio), one line per model, averaged over
    inlier classes and seeds, with a band of one standard deviation over those runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x_key = "contamination" if any(g.keys["contamination"] for g in groups) else "outlier_ratio"
    points: dict[str, dict[float, list[Run]]] = defaultdict(lambda: defaultdict(list))
    line_keys = ("model", "score", "dataset", "protocol")
    varying = [k for k in line_keys if len({g.keys[k] for g in groups}) > 1] or ["model"]
    for group in groups:
        if not group.keys[x_key]:
            continue
        label = " · ".join(group.keys[k] for k in varying if group.keys[k])
        points[label][float(group.keys[x_key])].extend(group.runs)
    if not points:
        raise RobustADError(f"nothing to plot: no finished run sets data.{x_key}")
    fig, axes = plt.subplots(
        1, len(PLOT_METRICS), figsize=(5 * len(PLOT_METRICS), 4), squeeze=False
    )
    for ax, metric in zip(axes[0], PLOT_METRICS, strict=True):
        for label, by_x in sorted(points.items()):
            xs = sorted(by_x)
            values = [[r.metrics[metric] for r in by_x[x] if metric in r.metrics] for x in xs]
            kept = [(x, v) for x, v in zip(xs, values, strict=True) if v]
            if not kept:
                continue
            x_values = [x for x, _ in kept]
            means = [statistics.fmean(v) for _, v in kept]
            stds = [statistics.stdev(v) if len(v) > 1 else 0.0 for _, v in kept]
            ax.plot(x_values, means, marker="o", label=label)
            ax.fill_between(
                x_values,
                [m - s for m, s in zip(means, stds, strict=True)],
                [m + s for m, s in zip(means, stds, strict=True)],
                alpha=0.2,
            )
        ax.set_xlabel(
            "contamination (outlier fraction)"
            if x_key == "contamination"
            else "outliers per inlier"
        )
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fixed = [g for k in line_keys if k not in varying and (g := groups[0].keys[k])]
    note = "mean over inlier classes and seeds, band ±1 std"
    fig.suptitle(" · ".join([*fixed, note]), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def report(
    root: Path,
    out: Path | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    extra_keys: Sequence[str] = (),
    make_plot: bool = False,
    average_over: Sequence[str] = (),
    published: Path | None = None,
    versus: str | None = None,
    versus_metric: str = "test/auroc",
) -> dict[str, Path]:
    """Write summary.csv, runs.csv, summary.md (and auroc_ap.png) into out; return their paths.

    `average_over` (e.g. inlier_classes) averages the groups' means over those keys' values;
    `published` adds a column of published numbers (load_published's format); `versus` (a
    model name, e.g. pca) a column saying on how many splits each group beats that model.
    """
    root = root.resolve()
    out = (out or root / "report").resolve()
    if out.exists() and not out.is_dir():
        raise RobustADError(f"--out {out} is a file; give a folder for the report")
    runs = collect(root, extra_keys)
    group_keys = [*GROUP_KEYS, *(k for k in extra_keys if k not in GROUP_KEYS)]
    unknown = [k for k in average_over if k not in group_keys]
    if unknown:
        raise RobustADError(
            f"--average-over {','.join(unknown)}: not a grouping key; allowed: "
            f"{', '.join(group_keys)} (add others with --group-by)"
        )
    entries = load_published(published) if published else []
    done = [run for run in runs if run.status == "done"]
    failed = [run for run in runs if run.status != "done"]
    groups = group_runs(done, group_keys)
    compared = Versus.of(groups, versus, versus_metric) if versus else None
    if average_over:
        groups = average_groups(groups, average_over)
    names = metric_names(done, metrics)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RobustADError(f"cannot create the report folder {out}: {exc}") from exc
    written = {
        "summary_csv": out / "summary.csv",
        "runs_csv": out / "runs.csv",
        "markdown": out / "summary.md",
    }
    write_csv(groups, group_keys, names, written["summary_csv"])
    write_runs_csv(runs, group_keys, names, written["runs_csv"])
    shown_metrics = [m for m in metrics if m in names] or names[:4]
    title = f"# Results: {len(done)} finished, {len(failed)} failed runs under {root.name}\n\n"
    if average_over:
        title += f"Means over {', '.join(average_over)} (± the spread between them).\n\n"
    table = markdown(groups, failed, group_keys, shown_metrics, entries, compared)
    written["markdown"].write_text(title + table)
    if make_plot:
        try:
            written["plot"] = plot(groups, out / "auroc_ap.png")
        except ImportError:
            log.warning("--plot needs matplotlib, which cannot be imported: no figure written")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    default_metrics = ",".join(DEFAULT_METRICS)
    parser = argparse.ArgumentParser(
        prog="robustad-report",
        description="Collect every metrics.json under a run or sweep folder into one table.",
    )
    parser.add_argument("directory", type=Path, help="folder to search (a sweep, or outputs/)")
    parser.add_argument(
        "--out", type=Path, default=None, help="where to write (default: <directory>/report)"
    )
    parser.add_argument(
        "--metrics",
        default=default_metrics,
        help=f"comma-separated metrics for the Markdown table (default: {default_metrics})",
    )
    parser.add_argument(
        "--group-by",
        default="",
        help="extra comma-separated config keys to group by, e.g. model.mode,model.lambda1",
    )
    parser.add_argument(
        "--average-over",
        default="",
        help="comma-separated grouping keys to average over, e.g. inlier_classes (class means)",
    )
    parser.add_argument(
        "--published",
        type=Path,
        default=None,
        help="YAML list of published numbers ({where: {model: ae, ...}, value, source}) to show",
    )
    parser.add_argument(
        "--versus",
        default=None,
        help="a reference model (e.g. pca): add on how many splits each group beats it",
    )
    parser.add_argument(
        "--versus-metric",
        default="test/auroc",
        help="the metric --versus compares (default: test/auroc)",
    )
    parser.add_argument("--plot", action="store_true", help="also write auroc_ap.png")
    args = parser.parse_args(argv)
    try:
        written = report(
            args.directory,
            out=args.out,
            metrics=[m for m in args.metrics.split(",") if m],
            extra_keys=[k for k in args.group_by.split(",") if k],
            make_plot=args.plot,
            average_over=[k for k in args.average_over.split(",") if k],
            published=args.published,
            versus=args.versus,
            versus_metric=args.versus_metric,
        )
    except RobustADError as exc:
        print(f"[robustad] error: {exc}", file=sys.stderr)
        return 1
    print(written["markdown"].read_text())
    for path in written.values():
        print(f"[robustad] wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
