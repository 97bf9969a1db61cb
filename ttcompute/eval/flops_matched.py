"""``ttc flops-matched``: small policy + compute-optimal test-time compute vs a larger policy.

Snell et al. (sec. 7) count pretraining at 6·N·D_pretrain and inference at 2·N·D_inference FLOPs. A
model M times larger, pretrained on the same data, costs as much in total as the small model
generating ``M + 3·(D_pretrain/D_inference)·(M − 1)`` times as many inference tokens. With
R = D_inference / D_pretrain that is ``M + 3(M − 1)/R``: at R = 0.16 (little inference) the small
model may spend ~250× a greedy answer on a 14× larger rival; at R = 22 only ~16×.

When the two models were pretrained on different amounts of data (D_s, D_l), equating
``6·N_l·D_l + 2·N_l·D_inf`` with ``6·N_s·D_s + 2·N_s·X·D_inf`` gives
``X = M + 3·(N_l·D_l − N_s·D_s) / (N_s·D_inf)`` with D_inf = R·D_l; it is the paper's formula when
D_s = D_l. Parameter counts and D_pretrain come from each checkpoint's ``training_log.json``
(``num_parameters``, ``num_train_tokens``) unless given.

The small model's accuracy at a FLOPs-matched budget X (in generations, one generation costing what
the larger model's greedy answer costs in tokens) is the compute-optimal curve at the largest
searched budget <= X -- never more compute than matched; when X exceeds every searched budget the
largest is used and the row says ``capped`` (the small model is then *under*-credited). Verifier
FLOPs are not charged, as in the paper.

Inputs: ``ttc compute-optimal`` output (per-bin held-out curves), and a ``ttc sample`` run of the
large policy on the same problems with ``--temperature 0 --num_samples 1``. Outputs:
``flops_matched.json``, ``flops_matched.md``, ``flops_matched.png`` (bars per bin, one panel per R).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ttcompute.core.bootstrap import paired_interval
from ttcompute.core.config import save_resolved_config
from ttcompute.core.errors import InputError
from ttcompute.core.outputs import require_unique_ids
from ttcompute.core.shards import load_sharded, write_json
from ttcompute.eval.efficiency import format_interval
from ttcompute.eval.flops_matched_config import FlopsMatchedConfig
from ttcompute.eval.plots import plot_flops_matched
from ttcompute.eval.select import load_bins

logger = logging.getLogger(__name__)


def matched_generations(
    small_params: float,
    large_params: float,
    ratio: float,
    small_tokens: float = 1.0,
    large_tokens: float | None = None,
) -> float:
    """How many greedy answers' worth of tokens the small model may generate at the large model's
    total FLOPs (pretraining + inference), for R = D_inference / D_pretrain = ``ratio``.

    >>> round(matched_generations(1, 14, 0.16), 2)  # the paper's formula: M + 3 (M - 1) / R
    257.75
    >>> round(matched_generations(1, 14, 22), 3)
    15.773
    """
    large_tokens = small_tokens if large_tokens is None else large_tokens
    inference_tokens = ratio * large_tokens
    multiple = large_params / small_params
    return multiple + 3 * (large_params * large_tokens - small_params * small_tokens) / (
        small_params * inference_tokens
    )


def accuracy_at(curve: dict[int, float], budget: float) -> tuple[int, float, bool]:
    """The curve at the largest budget <= ``budget`` (or its smallest budget), and whether ``budget``
    lies beyond every budget of the curve.

    >>> accuracy_at({1: 0.4, 4: 0.6, 16: 0.7}, 9.5), accuracy_at({1: 0.4, 4: 0.6}, 100)
    ((4, 0.6, False), (4, 0.6, True))
    """
    fitting = [b for b in curve if b <= budget]
    used = max(fitting) if fitting else min(curve)
    return used, curve[used], budget > max(curve)


def _model_numbers(path: str | None, params: int | None, tokens: int | None, which: str) -> tuple[int, int]:
    if params is not None and tokens is not None:
        return params, tokens
    if path is None:
        raise InputError(f"--{which}_model (a checkpoint with training_log.json) or --{which}_params and "
                         f"--{which}_pretrain_tokens are needed")  # fmt: skip
    log_file = Path(path) / "training_log.json"
    if not log_file.is_file():
        raise InputError(f"{log_file}: no such file; pass --{which}_params and --{which}_pretrain_tokens")
    log = json.loads(log_file.read_text())
    for key in ("num_parameters", "num_train_tokens"):
        if not isinstance(log.get(key), int) or log[key] <= 0:
            raise InputError(f"{log_file}: field {key} missing or not a positive integer")
    return params or log["num_parameters"], tokens or log["num_train_tokens"]


def large_verdicts(samples_dir: str, bins: dict[str, Any]) -> dict[str, bool]:
    """The large policy's verdict (its first sample) on every compared problem."""
    samples = load_sharded(samples_dir)
    for column in ("problem_id", "correct"):
        if column not in samples.column_names:
            raise InputError(f"{samples_dir}: missing column '{column}' (not ttc sample output?)")
    require_unique_ids(list(samples["problem_id"]), samples_dir)
    verdicts = dict(zip(samples["problem_id"], samples["correct"]))
    missing = sorted(set(bins) - verdicts.keys())
    if missing:
        raise InputError(
            f"{samples_dir}: no answer of the large policy for {len(missing)} problem(s) of the comparison, "
            f"e.g. {missing[:3]} (sample the same problems)"
        )
    out = {}
    for problem_id in bins:
        if not verdicts[problem_id]:
            raise InputError(f"{samples_dir}: problem {problem_id} has no samples")
        out[problem_id] = bool(verdicts[problem_id][0])
    return out


def large_accuracy_by_bin(samples_dir: str, bins: dict[str, Any]) -> tuple[dict[str, float], dict[str, int]]:
    """The large policy's accuracy (first sample of each problem) per bin and over ``"all"``."""
    groups: dict[str, list[bool]] = {"all": []}
    for problem_id, hit in large_verdicts(samples_dir, bins).items():
        groups["all"].append(hit)
        groups.setdefault(str(bins[problem_id]), []).append(hit)
    return (
        {g: round(sum(v) / len(v), 4) for g, v in groups.items()},
        {g: len(v) for g, v in groups.items()},
    )


def difference_interval(
    small: dict[str, bool], large: dict[str, bool], problems: list[str], resamples: int, seed: int
) -> dict[str, Any] | None:
    """Small + TTC minus the large policy on ``problems``, paired bootstrap 95% (None if unpaired)."""
    if not problems or any(p not in small or p not in large for p in problems):
        return None
    outcomes = {"small": [small[p] for p in problems], "large": [large[p] for p in problems]}
    return paired_interval(
        outcomes, lambda x: float(x["small"].mean() - x["large"].mean()), num_resamples=resamples, seed=seed
    )


def _load_compute_optimal(directory: str) -> dict[str, Any]:
    path = Path(directory) / "compute_optimal.json"
    if not path.is_file():
        raise InputError(f"{path}: no such file (run ttc compute-optimal first)")
    return json.loads(path.read_text())


def _curves(summary: dict[str, Any]) -> dict[str, dict[int, float]]:
    curves = {"all": {int(b): a for b, a in summary["all"].items()}}
    for group, cells in summary["bins"].items():
        curves[group] = {int(b): c["accuracy"] for b, c in cells.items()}
    return curves


def _problem_bins(config: FlopsMatchedConfig, summary: dict[str, Any]) -> dict[str, Any]:
    """Each compared problem's bin: the difficulty output given, else the bins compute-optimal used."""
    if config.difficulty_dir:
        wanted = set(summary.get("problem_bins", {}))
        bins = load_bins(config.difficulty_dir, wanted)
        return {p: b for p, b in bins.items() if p in wanted} if wanted else bins
    if not summary.get("problem_bins"):
        raise InputError(f"{config.compute_optimal_dir}: no problem_bins; pass --difficulty_dir")
    return summary["problem_bins"]


def run_flops_matched(config: FlopsMatchedConfig) -> dict[str, Any]:
    """The ``ttc flops-matched`` stage."""
    summary = _load_compute_optimal(config.compute_optimal_dir)
    curves = _curves(summary)
    small_params, small_tokens = _model_numbers(
        config.small_model, config.small_params, config.small_pretrain_tokens, "small"
    )
    large_params, large_tokens = _model_numbers(
        config.large_model, config.large_params, config.large_pretrain_tokens, "large"
    )
    bins = _problem_bins(config, summary)
    large, sizes = large_accuracy_by_bin(config.large_samples_dir, bins)
    large_hits = large_verdicts(config.large_samples_dir, bins)
    small_hits = {int(b): v for b, v in summary.get("per_problem", {}).items()}
    members: dict[str, list[str]] = {"all": sorted(bins)}
    for problem_id in sorted(bins):
        members.setdefault(str(bins[problem_id]), []).append(problem_id)
    groups = ["all"] + sorted((g for g in curves if g != "all"), key=lambda g: (len(g), g))
    table: dict[str, Any] = {}
    for ratio in config.ratios:
        generations = matched_generations(small_params, large_params, ratio, small_tokens, large_tokens)
        if generations < 1:
            logger.warning("R=%s: the small model's pretraining alone exceeds the large model's total", ratio)
        rows = {}
        for group in groups:
            if group not in large or not curves[group]:
                continue
            used, accuracy, capped = accuracy_at(curves[group], generations)
            rows[group] = {
                "small_ttc": accuracy,
                "large": large[group],
                "budget_used": used,
                "capped": capped,
                # Paired over the group's problems; None for a compute-optimal output without verdicts.
                "difference": difference_interval(
                    small_hits.get(used, {}), large_hits, members.get(group, []),
                    config.bootstrap_resamples, config.bootstrap_seed,
                ),
            }  # fmt: skip
        table[f"{ratio:g}"] = {"matched_generations": round(generations, 2), "bins": rows}
    result = {
        "small": {"params": small_params, "pretrain_tokens": small_tokens},
        "large": {"params": large_params, "pretrain_tokens": large_tokens},
        "size_multiple": round(large_params / small_params, 3),
        "problems_per_bin": sizes,
        "ratios": table,
    }
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_resolved_config(out, "flops-matched", config)
    write_json(out / "flops_matched.json", result)
    (out / "flops_matched.md").write_text(markdown_table(result))
    plot = plot_flops_matched(table, out / "flops_matched.png")
    logger.info(
        "FLOPs-matched (M = %.1f): %s -> %s (plot: %s)",
        result["size_multiple"],
        {r: v["bins"].get("all") for r, v in table.items()},
        out,
        plot.name,
    )
    return {"output_dir": str(out), "ratios": table}


def winner(row: dict[str, Any]) -> str:
    """Who wins a row: the side the difference's 95% interval lies on, else no clear winner (the
    plain comparison of the two accuracies when there is no interval).

    >>> winner({"small_ttc": 0.6, "large": 0.5, "difference": {"estimate": 0.1, "low": -0.02, "high": 0.2}})
    'no clear winner'
    """
    interval = row.get("difference")
    if interval and interval.get("low") is not None:
        if interval["low"] > 0:
            return "small + TTC"
        if interval["high"] < 0:
            return "large"
        return "no clear winner"
    if row["small_ttc"] == row["large"]:
        return "tie"
    return "small + TTC" if row["small_ttc"] > row["large"] else "large"


def markdown_table(result: dict[str, Any]) -> str:
    lines = [
        "# FLOPs-matched: small policy + compute-optimal test-time compute vs the large policy (greedy)",
        "",
        f"Small: {result['small']['params']:,} parameters, {result['small']['pretrain_tokens']:,} pretraining "
        f"tokens; large: {result['large']['params']:,} ({result['size_multiple']}x), "
        f"{result['large']['pretrain_tokens']:,} tokens. Budget X = matched generations per problem "
        "(`capped`: X is beyond the largest searched budget, the small model is given less).",
        "",
        "| R | X | bin | small + TTC | budget used | large | difference [95% CI] | winner |",
        "|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for ratio, entry in result["ratios"].items():
        for group, row in entry["bins"].items():
            used = f"{row['budget_used']}{' (capped)' if row['capped'] else ''}"
            lines.append(
                f"| {ratio} | {entry['matched_generations']} | {group} | {row['small_ttc']:.3f} | {used} | "
                f"{row['large']:.3f} | {format_interval(row.get('difference'))} | {winner(row)} |"
            )
    return "\n".join(lines) + "\n"
