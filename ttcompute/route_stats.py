"""The stats of a ``ttc route`` output, apart from the stage so that ``ttc merge`` computes them
without loading torch."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ttcompute.core.shards import load_sharded


def route_stats(output_dir: str) -> dict[str, Any]:
    """Accuracy (when graded), compute, generations and strategy counts of a ``ttc route`` output."""
    table = load_sharded(output_dir)
    rows = list(table)
    graded = [r["correct"] for r in rows if r["correct"] is not None]
    n = max(len(rows), 1)
    totals = {
        name: sum(r[name] for r in rows)
        for name in ("policy_flops", "prm_flops", "predictor_flops", "total_flops")
    }
    return {
        "stage": "route",
        "num_problems": len(rows),
        "num_graded": len(graded),
        "accuracy": round(sum(graded) / len(graded), 4) if graded else None,
        "compute": totals,
        "total_flops_per_problem": totals["total_flops"] / n,
        "generations": sum(r["generations"] for r in rows),
        "generations_per_problem": sum(r["generations"] for r in rows) / n,
        "budgets": dict(sorted(Counter(str(r["budget"]) for r in rows).items())),
        "strategies": dict(sorted(Counter(r["strategy"] for r in rows).items())),
        "bins": dict(sorted(Counter(str(r["bin"]) for r in rows).items())),
    }
