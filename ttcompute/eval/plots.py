"""Matplotlib figures of the evaluation stages, written as PNG files (no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

# Files only, never a window: the Agg backend, chosen before pyplot is imported.
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Best-of-N family in blues/greys, tree searches in warm colours, so families read at a glance.
_FAMILY_COLOURS = {
    "majority": "#7f7f7f",
    "best_of_n": "#9ecae1",
    "best_of_n_weighted": "#1f77b4",
    "beam_search": ["#d62728", "#ff9896", "#8c564b"],
    "lookahead": ["#2ca02c", "#98df8a", "#bcbd22"],
    "dvts": ["#9467bd", "#c5b0d5", "#e377c2"],
    "revisions": ["#ff7f0e", "#ffbb78", "#e6550d", "#fdae6b", "#a55194", "#de9ed6", "#8c6d31", "#e7ba52"],
}


def _colour(strategy: str, seen: dict[str, int]) -> str:
    family = strategy.split(" ")[0]
    colours = _FAMILY_COLOURS.get(family, "#17becf")
    if isinstance(colours, str):
        return colours
    index = seen.setdefault(strategy, sum(s.split(" ")[0] == family for s in seen))
    return colours[index % len(colours)]


def _curve(axis, values: dict[int, float], **style) -> None:
    """One line of a {x: y} mapping, x sorted, with the markers every figure here uses."""
    xs = sorted(values)
    axis.plot(xs, [values[x] for x in xs], marker="o", markersize=3, **style)


def plot_accuracy_vs_budget(
    accuracy: dict[str, dict[str, dict[int, float]]], problems: dict[str, int], path: str | Path
) -> Path:
    """Accuracy vs budget (log2 axis), one line per strategy, one panel per bin ("all" first)."""
    groups = list(accuracy)
    columns = min(3, len(groups))
    rows = (len(groups) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.8 * rows), squeeze=False)
    seen: dict[str, int] = {}
    for axis, group in zip(axes.flat, groups):
        for strategy, values in accuracy[group].items():
            _curve(
                axis,
                values,
                label=strategy,
                color=_colour(strategy, seen),
                linestyle="--"
                if strategy in ("majority", "best_of_n") or strategy.endswith("majority")
                else "-",
            )
        axis.set_xscale("log", base=2)
        axis.set_title(
            ("all problems" if group == "all" else f"bin {group}") + f" (n={problems.get(group, 0)})"
        )
        axis.set_xlabel("generation budget N")
        axis.set_ylabel("accuracy")
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(groups) :]:
        axis.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(5, len(labels)), fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.04 + 0.025 * ((len(labels) - 1) // 5), 1, 1))
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_compute_optimal(
    curve: dict[int, float],
    baseline: dict[int, float],
    by_bin: dict[str, dict[int, float]],
    baseline_name: str,
    path: str | Path,
    bands: dict[str, dict[int, tuple[float, float]]] | None = None,
) -> Path:
    """Left: compute-optimal vs the baseline over all problems (``bands``: each curve's 95% interval
    per budget, ``{"compute-optimal" | "baseline": {budget: (low, high)}}``, shaded); right:
    compute-optimal per bin."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for values, label, key, colour in (
        (curve, "compute-optimal", "compute-optimal", "#d62728"),
        (baseline, baseline_name, "baseline", "#1f77b4"),
    ):
        _curve(left, values, label=label, color=colour)
        band = (bands or {}).get(key)
        if band:
            xs = sorted(band)
            left.fill_between(
                xs, [band[x][0] for x in xs], [band[x][1] for x in xs], color=colour, alpha=0.15
            )
    left.set_title("all problems (held-out folds)")
    left.legend(fontsize=8, frameon=False)
    cmap = plt.get_cmap("viridis")
    for i, (group, values) in enumerate(by_bin.items()):
        _curve(
            right,
            values,
            label=f"bin {group}",
            color=cmap(i / max(len(by_bin) - 1, 1)),
        )
    right.set_title("compute-optimal per difficulty bin (1 = easiest)")
    right.legend(fontsize=8, frameon=False)
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("generation budget N")
        axis.set_ylabel("accuracy")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_flops_matched(table: dict[str, dict], path: str | Path) -> Path:
    """One panel per R: small policy + compute-optimal TTC vs the large policy, bars per bin."""
    figure, axes = plt.subplots(1, len(table), figsize=(4.6 * len(table), 3.8), squeeze=False)
    for axis, (ratio, entry) in zip(axes.flat, table.items()):
        groups = list(entry["bins"])
        x = np.arange(len(groups))
        small = [entry["bins"][g]["small_ttc"] for g in groups]
        large = [entry["bins"][g]["large"] for g in groups]
        axis.bar(x - 0.2, small, 0.4, label="small + compute-optimal TTC", color="#d62728")
        axis.bar(x + 0.2, large, 0.4, label="large, greedy", color="#1f77b4")
        axis.set_xticks(x, [g if g == "all" else f"bin {g}" for g in groups], fontsize=8)
        axis.set_ylim(0, 1.05)
        title = f"R = {ratio} (X = {entry['matched_generations']:g} generations)"
        capped = [row["budget_used"] for row in entry["bins"].values() if row.get("capped")]
        if capped:  # the small model got less than matched: say so where the eye is
            title += f"\nsmall model capped at the largest searched budget, {max(capped)}"
        axis.set_title(title, fontsize=10)
        axis.set_ylabel("accuracy")
        axis.grid(axis="y", alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_revision_ratio(curves: dict[int, dict[int, float]], path: str | Path) -> Path:
    """Accuracy vs chain length L (N/L parallel chains of L), one line per budget N."""
    figure, axis = plt.subplots(figsize=(6, 4))
    cmap = plt.get_cmap("plasma")
    for i, (budget, values) in enumerate(curves.items()):
        _curve(
            axis,
            values,
            label=f"N = {budget}",
            color=cmap(i / max(len(curves), 1)),
        )
    axis.set_xscale("log", base=2)
    axis.set_xlabel("sequential revisions per chain L (1 = all parallel, N = one chain)")
    axis.set_ylabel("accuracy (verifier-weighted over all attempts)")
    axis.set_title("Sequential / parallel ratio")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, frameon=False)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_spend(
    curves: dict[str, dict[float, float]],
    baselines: dict[str, dict[int, float]],
    ceiling: dict[int, float] | None,
    path: str | Path,
    fronts: dict[str, dict[float, float]] | None = None,
) -> Path:
    """Accuracy vs generations actually spent per problem (log2 axis): the spend-axis compute-optimal
    curve of each predictor (every cost counted), the static baselines, each adaptive family's front
    over all problems (thin, dotted), and the verifier's ceiling (pass@N with oracle selection: what
    no selection rule can exceed)."""
    figure, axis = plt.subplots(figsize=(7.5, 4.6))
    for colour, (name, front) in zip(["#bcbd22", "#17becf", "#e377c2", "#8c564b"], (fronts or {}).items()):
        _curve(axis, front, label=f"{name} (front, in-sample)", color=colour, linestyle=":", linewidth=1)
    palette = ["#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"]
    for colour, (name, curve) in zip(palette, curves.items()):
        _curve(axis, curve, label=f"adaptive compute-optimal ({name})", color=colour)
    for (name, curve), style in zip(baselines.items(), ("-", "--", ":")):
        _curve(axis, {float(b): a for b, a in curve.items()}, label=name, color="#1f77b4", linestyle=style)
    if ceiling:
        _curve(axis, {float(b): a for b, a in ceiling.items()}, label="ceiling: pass@N, oracle selection",
               color="#7f7f7f", linestyle="-.")  # fmt: skip
    axis.set_xscale("log", base=2)
    axis.set_xlabel("generations spent per problem (predictor included)")
    axis.set_ylabel("accuracy")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return Path(path)


def plot_spend_by_bin(spent: dict[str, list[float]], title: str, path: str | Path) -> Path:
    """Generations each problem spent, one box (and its points) per difficulty bin."""
    groups = list(spent)
    figure, axis = plt.subplots(figsize=(1.2 * len(groups) + 3, 3.8))
    axis.boxplot([spent[g] for g in groups], showmeans=True)
    rng = np.random.default_rng(0)  # jitter only: the points are the data
    for k, group in enumerate(groups, start=1):
        values = spent[group]
        axis.scatter(k + rng.uniform(-0.18, 0.18, len(values)), values, s=6, alpha=0.35, color="#1f77b4")
    axis.set_xticks(range(1, len(groups) + 1), [f"bin {g}" for g in groups])
    axis.set_yscale("symlog", base=2, linthresh=1)
    axis.set_ylabel("generations spent")
    axis.set_title(title, fontsize=9)
    axis.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return Path(path)
