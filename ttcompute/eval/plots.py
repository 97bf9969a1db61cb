"""Matplotlib figures of the evaluation stages, written as PNG files (no display needed)."""

from __future__ import annotations

from pathlib import Path

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


def plot_accuracy_vs_budget(
    accuracy: dict[str, dict[str, dict[int, float]]], problems: dict[str, int], path: str | Path
) -> Path:
    """Accuracy vs budget (log2 axis), one line per strategy, one panel per bin ("all" first)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(accuracy)
    columns = min(3, len(groups))
    rows = (len(groups) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.8 * rows), squeeze=False)
    seen: dict[str, int] = {}
    for axis, group in zip(axes.flat, groups):
        for strategy, values in accuracy[group].items():
            budgets = sorted(values)
            axis.plot(
                budgets,
                [values[b] for b in budgets],
                marker="o",
                markersize=3,
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
