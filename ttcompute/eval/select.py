"""``ttc select``: apply selection rules to saved search candidates; accuracy vs budget per bin.

Nothing is generated or scored again: ``ttc search`` saved every final candidate with its step
scores, so any rule and any aggregation of step scores is recomputed here in seconds. Best-of-N rows
give three strategies (``majority``, ``best_of_n``, ``best_of_n_weighted``); a tree search's rows give
one, its own name with its settings (e.g. ``beam_search M=4``, ``lookahead k=3 M=sqrt``,
``dvts M=4``), selected by weighted best-of-N as in the paper; revision rows give three per chain
length L: ``revisions L=4 majority``, ``... weighted`` (over all attempts) and ``... hierarchical``
(within each chain, then across).

Adaptive strategies (``ttcompute/eval/adaptive.py``) are evaluated on the same candidates: a
stopping rule's record has the cap as its ``budget``, what it drew as ``generations`` and whether the
rule stopped it before the cap as ``settled``. ``accuracy.json`` holds them under ``adaptive``, the
verifier's ceiling (pass@N with oracle selection) and within-problem ranking under ``ceiling``, and
``prefixes.parquet`` (problem_id, bin, rule, and per n of best-of-N's candidates: correct, confidence,
policy_flops, prm_flops) feeds batch allocation.

Outputs (``output_dir``): ``selections.parquet`` (problem_id, bin, strategy, method, budget,
generations, selected, answer, correct, policy_flops, prm_flops, total_flops -- majority vote is
charged no PRM compute, nor is any majority rule -- and reused_samples, the search's), ``accuracy.json``, ``accuracy.md`` (a table per bin) and
``accuracy_vs_budget.png`` (one panel for all problems and one per bin), and ``strategies.json``: the
search directory read and, for every strategy name, the search setting and selection rule behind it
(method, width_setting, beam_width per budget, lookahead, search_aggregation, chain_length, rule,
selection_aggregation), so that ``ttc route`` can run a chosen strategy again on new problems.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from ttcompute.core.bootstrap import mean_interval, paired_interval
from ttcompute.core.budget import inference_flops
from ttcompute.core.config import save_resolved_config
from ttcompute.core.errors import InputError
from ttcompute.core.outputs import load_difficulty, misaligned_candidates
from ttcompute.core.recorded_paths import RECORDED_PATHS
from ttcompute.core.recorded_paths import record as record_path
from ttcompute.core.selection import (
    best_of_n,
    group_equivalent_answers,
    hierarchical_best_of_n,
    majority_vote,
    weighted_best_of_n,
)
from ttcompute.core.shards import load_sharded, read_manifest, write_json
from ttcompute.core.steps import aggregate
from ttcompute.core.stopping import RULES, VERIFIER_RULES, StoppingRule, answered, confidences, stopped_pick
from ttcompute.eval.adaptive import (
    KINDS,
    Models,
    SearchRows,
    adaptive_records,
    check_strategies,
    parse_strategy,
    strategy_grid,
)
from ttcompute.eval.efficiency import format_interval
from ttcompute.eval.plots import plot_accuracy_vs_budget
from ttcompute.eval.prm_metrics import within_problem_ranking
from ttcompute.eval.search.revision_chains import revision_step_metrics
from ttcompute.eval.select_config import SelectConfig

logger = logging.getLogger(__name__)

BON_RULES = ("majority", "best_of_n", "best_of_n_weighted")


def strategy_name(method: str, width_setting: str, lookahead: int, search_aggregation: str) -> str:
    """The name of a tree search's setting in tables and plots.

    >>> strategy_name("lookahead", "sqrt", 3, "last"), strategy_name("beam_search", "4", 0, "min")
    ('lookahead k=3 M=sqrt', 'beam_search M=4 rank=min')
    """
    parts = [method]
    if method == "lookahead":
        parts.append(f"k={lookahead}")
    if width_setting:
        parts.append(f"M={width_setting}")
    if search_aggregation != "last":
        parts.append(f"rank={search_aggregation}")
    return " ".join(parts)


def candidate_score(step_scores: list[float], aggregation: str) -> float:
    """A candidate's score; one without steps (an empty solution) scores 0."""
    return aggregate(step_scores, aggregation) if step_scores else 0.0


def select_row(row: dict[str, Any], aggregation: str) -> list[dict[str, Any]]:
    """The selections of one search row: one record per strategy it supports."""
    answers = row["answers"]
    if not answers:
        raise InputError(f"problem {row['problem_id']}: a {row['method']} row with no candidates")
    has_scores = any(row["step_scores"])
    scores = [candidate_score(s, aggregation) for s in row["step_scores"]]
    groups = group_equivalent_answers(answers)  # once for every rule of the row
    # strategy -> (rule, whether it uses the verifier's scores)
    if row["method"] == "best_of_n":
        rules = {"majority": (lambda: majority_vote(answers, groups=groups), False)}
        if has_scores:
            rules["best_of_n"] = (lambda: best_of_n(scores), True)
            rules["best_of_n_weighted"] = (lambda: weighted_best_of_n(answers, scores, groups=groups), True)
    elif row["method"] == "revisions":
        name = f"revisions {row['width_setting']}"
        rules = {f"{name} majority": (lambda: majority_vote(answers, groups=groups), False)}
        if has_scores:
            rules[f"{name} weighted"] = (lambda: weighted_best_of_n(answers, scores, groups=groups), True)
            rules[f"{name} hierarchical"] = (
                lambda: hierarchical_best_of_n(answers, scores, row["subtrees"]),
                True,
            )
    else:
        name = strategy_name(row["method"], row["width_setting"], row["lookahead"], row["search_aggregation"])
        rules = {name: (lambda: weighted_best_of_n(answers, scores, groups=groups), True)}
    records = []
    for strategy, (rule, uses_verifier) in rules.items():
        index = rule()
        prm_flops = row["prm_flops"] if uses_verifier else 0
        records.append(
            {
                "problem_id": row["problem_id"],
                "strategy": strategy,
                "method": row["method"],
                "budget": row["budget"],
                "generations": row["generations"],
                "selected": index,
                "answer": answers[index],
                "correct": bool(row["correct"][index]),
                "policy_flops": row["policy_flops"],
                "prm_flops": prm_flops,
                "total_flops": row["policy_flops"] + prm_flops,
                # Candidates drawn before the search (a difficulty probe's samples): compute-optimal
                # charges the probe only for what the strategy did not reuse.
                "reused_samples": int(row.get("reused_samples") or 0),
                "settled": None,  # adaptive strategies: whether the rule stopped before the cap
            }
        )
    return records


def is_adaptive(strategy: str) -> bool:
    """Whether a strategy name is an adaptive strategy's (``ttcompute/eval/adaptive.py``).

    >>> is_adaptive("adaptive_vote rule=beta tau=0.95 B=64"), is_adaptive("beam_search M=4")
    (True, False)
    """
    return strategy.split(" ", 1)[0] in KINDS


def score_quantiles(rows: SearchRows, score_of, config: SelectConfig) -> list[float]:
    """The default thresholds of the verifier rules: ``config.verifier_quantiles`` of the scores of
    every saved best-of-N candidate (of every final candidate without best-of-N), to 3 digits; the
    scores alone, never their correctness.

    >>> rows = SearchRows({"p": {"step_scores": [[0.1], [0.2], [0.3], [0.4], [0.5]]}}, {}, {}, {5})
    >>> score_quantiles(rows, lambda r: [s[-1] for s in r["step_scores"]], SelectConfig(verifier_quantiles=[0.5]))
    [0.3]
    """
    source = list(rows.best_of_n.values()) or [r for runs in rows.trees.values() for r in runs.values()]
    scores = [s for row in source for s in score_of(row)]
    if not scores:
        return []
    values = np.quantile(np.asarray(scores, dtype=float), sorted(config.verifier_quantiles))
    return sorted({float(f"{v:.3g}") for v in values if v > 0})


def plan_adaptive(config: SelectConfig, rows: SearchRows, score_of) -> list:
    """The adaptive strategies to evaluate: the grid of the config's rules, taus and caps (by default
    those the search can feed) and the ones named; refused in one line when the search cannot feed one.
    """
    where = config.search_dir
    grid_rows = rows
    if config.adaptive and not rows.has_costs and (rows.best_of_n or rows.revisions):
        logger.warning(
            "%s: no per-candidate cost saved (a search from before adaptive strategies): the adaptive grid "
            "covers its tree searches only; rerun ttc search for the others",
            where,
        )
        grid_rows = dataclasses.replace(rows, best_of_n={}, revisions={}, best_of_n_budgets=set())
    strategies = []
    if config.adaptive:
        rules = config.adaptive_rules
        if rules is None:
            rules = [r for r in RULES if rows.has_scores or r not in VERIFIER_RULES]
        unknown = [r for r in rules if r not in RULES]
        if unknown:
            raise InputError(f"--adaptive_rules: unknown rule(s) {unknown}; choose from {RULES}")
        needing = [r for r in rules if r in VERIFIER_RULES]
        if needing and not rows.has_scores:
            raise InputError(
                f"{where}: --adaptive_rules {' '.join(needing)} read verifier scores, and the search ran without --prm"
            )
        caps = config.adaptive_caps
        if caps is None:
            caps = [b for b in grid_rows.best_of_n_budgets if b >= 2]
        strategies = strategy_grid(
            caps if grid_rows.best_of_n else [],
            grid_rows.revision_settings,
            grid_rows.tree_budgets,
            rules,
            config.adaptive_taus,
            config.esc_windows,
            config.verifier_taus
            if config.verifier_taus is not None
            else score_quantiles(rows, score_of, config),
            config.escalation_caps,
        )
        check_strategies(strategies, grid_rows, where)
    named = []
    for name in config.adaptive_strategies:
        try:
            named.append(parse_strategy(name))
        except ValueError as err:
            raise InputError(f"--adaptive_strategies: {err}") from None
    check_strategies(named, rows, where)
    return list({s.name: s for s in strategies + named}.values())


def strategy_settings(row: dict[str, Any], strategy: str, aggregation: str) -> dict[str, Any]:
    """The search setting and selection rule behind one of ``select_row``'s strategies of ``row``
    (``rule``: majority | best_of_n | best_of_n_weighted, revisions' weighted | hierarchical, or
    ``tree``: weighted best-of-N over a tree search's final beams).

    >>> row = {"method": "revisions", "width_setting": "L=4", "beam_width": 0, "lookahead": 0,
    ...        "search_aggregation": "last", "chain_length": 4, "budget": 8}
    >>> strategy_settings(row, "revisions L=4 hierarchical", "min")["rule"]
    'hierarchical'
    """
    if row["method"] == "best_of_n":
        rule = strategy
    elif row["method"] == "revisions":
        rule = strategy.rsplit(" ", 1)[1]
    else:
        rule = "tree"
    return {
        "method": row["method"],
        "width_setting": row["width_setting"],
        "beam_width": {str(row["budget"]): row.get("beam_width", 0)},
        "lookahead": row["lookahead"],
        "search_aggregation": row["search_aggregation"],
        "chain_length": row.get("chain_length") or 0,
        "rule": rule,
        "selection_aggregation": aggregation,
    }


def accuracy_by_bin(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, dict[int, float]]]:
    """``{bin: {strategy: {budget: accuracy}}}``, with bin ``"all"`` over every record.

    >>> acc = accuracy_by_bin([
    ...     {"bin": 1, "strategy": "s", "budget": 4, "correct": True},
    ...     {"bin": 2, "strategy": "s", "budget": 4, "correct": False}])
    >>> acc["all"]["s"][4], acc["1"]["s"][4], acc["2"]["s"][4]
    (0.5, 1.0, 0.0)
    """
    hits: dict[tuple[str, str, int], list[bool]] = defaultdict(list)
    for record in records:
        for group in ("all", None if record.get("bin") is None else str(record["bin"])):
            if group is not None:
                hits[(group, record["strategy"], record["budget"])].append(record["correct"])
    table: dict[str, dict[str, dict[int, float]]] = {}
    order = sorted(hits.items(), key=lambda kv: (_bin_order(kv[0][0]), _strategy_order(kv[0][1]), kv[0][2]))
    for (group, strategy, budget), values in order:
        table.setdefault(group, {}).setdefault(strategy, {})[budget] = round(sum(values) / len(values), 4)
    return table


_FAMILIES = ("majority", "best_of_n", "best_of_n_weighted", "beam_search", "lookahead", "dvts", "revisions")


def _strategy_order(strategy: str) -> tuple[int, str]:
    family = strategy.split(" ")[0]
    return (_FAMILIES.index(family) if family in _FAMILIES else len(_FAMILIES), strategy)


def _bin_order(group: str) -> tuple[int, str]:
    return (0, "") if group == "all" else (1, group.zfill(4))


def markdown_tables(accuracy: dict[str, dict[str, dict[int, float]]], bin_sizes: dict[str, int]) -> str:
    """One Markdown table (strategies x budgets) per bin."""
    lines = []
    for group, strategies in accuracy.items():
        budgets = sorted({b for values in strategies.values() for b in values})
        title = "All problems" if group == "all" else f"Bin {group}"
        lines += [f"### {title} ({bin_sizes.get(group, 0)} problems)", ""]
        lines.append("| strategy | " + " | ".join(str(b) for b in budgets) + " |")
        lines.append("|---|" + "---:|" * len(budgets))
        for strategy, values in strategies.items():
            cells = [f"{values[b]:.3f}" if b in values else "" for b in budgets]
            lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def adaptive_settings(strategy, settings: dict[str, dict[str, Any]], aggregation: str) -> dict[str, Any]:
    """The search setting behind an adaptive strategy -- its static base's (best-of-N, the revision
    chains of its L, its tree search) -- with rule ``adaptive`` and the strategy's name, which
    ``ttc route`` parses back."""
    if strategy.kind in ("adaptive_vote", "adaptive_prm"):
        base = settings["majority"]
    elif strategy.kind == "adaptive_revisions":
        base = settings[f"revisions L={strategy.chain_length} majority"]
    else:
        base = settings[strategy.tree]
    return {
        **base,
        "beam_width": dict(base["beam_width"]),
        "rule": "adaptive",
        "adaptive": strategy.name,
        "selection_aggregation": aggregation,
    }


def adaptive_summary(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per adaptive strategy and bin (``all`` too): its cap, accuracy, mean generations and FLOPs
    spent, and the share of problems its rule settled before the cap.

    >>> out = adaptive_summary([
    ...     {"strategy": "s", "bin": 1, "budget": 8, "correct": True, "generations": 2, "total_flops": 4,
    ...      "settled": True},
    ...     {"strategy": "s", "bin": 2, "budget": 8, "correct": False, "generations": 8, "total_flops": 16,
    ...      "settled": False}])
    >>> {k: v for k, v in out["s"]["all"].items() if not k.endswith("interval")}
    {'cap': 8, 'problems': 2, 'accuracy': 0.5, 'mean_generations': 5.0, 'mean_total_flops': 10.0, 'settled': 0.5}
    >>> out["s"]["all"]["generations_interval"]["low"], out["s"]["all"]["generations_interval"]["high"]
    (2.0, 8.0)
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[(record["strategy"], "all")].append(record)
        if record.get("bin") is not None:
            groups[(record["strategy"], str(record["bin"]))].append(record)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (strategy, group), rows in sorted(groups.items(), key=lambda kv: (kv[0][0], _bin_order(kv[0][1]))):
        n = len(rows)
        out.setdefault(strategy, {})[group] = {
            "cap": rows[0]["budget"],
            "problems": n,
            "accuracy": round(sum(r["correct"] for r in rows) / n, 4),
            "mean_generations": round(sum(r["generations"] for r in rows) / n, 4),
            "mean_total_flops": sum(r["total_flops"] for r in rows) / n,
            "settled": round(sum(bool(r["settled"]) for r in rows) / n, 4),
        }
        if group == "all":  # 95% bootstrap over problems of both (the table's intervals)
            out[strategy][group]["accuracy_interval"] = mean_interval([r["correct"] for r in rows])
            out[strategy][group]["generations_interval"] = mean_interval([r["generations"] for r in rows])
    return out


def accuracy_given_up(
    records: list[dict[str, Any]], cap: int, hopeless: set[str], num_resamples: int = 1000
) -> dict[str, Any]:
    """For each stopping rule capped at ``cap`` (the largest best-of-N budget): the generations it spent,
    weighted best-of-N's accuracy at ``cap`` minus the rule's (paired 95% bootstrap over problems), and
    its stopping errors -- the share of problems it stopped early on a wrong answer that best-of-N at
    the cap got right (``stopped_wrong``), and the share it ran to the cap on although none of the
    ``cap`` candidates is correct (``capped_hopeless``: ``hopeless``, spend no rule could turn into
    accuracy)."""
    baseline = {
        r["problem_id"]: r["correct"]
        for r in records
        if r["strategy"] == "best_of_n_weighted" and r["budget"] == cap
    }
    by_strategy: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in records:
        if r["budget"] == cap and r["strategy"].startswith(("adaptive_vote ", "adaptive_prm ")):
            by_strategy[r["strategy"]][r["problem_id"]] = r
    out = {}
    for strategy, rows in sorted(by_strategy.items()):
        problems = sorted(set(rows) & set(baseline))
        if not problems:
            continue
        n = len(problems)
        outcomes = {"rule": [rows[p]["correct"] for p in problems], "base": [baseline[p] for p in problems]}
        early = [p for p in problems if rows[p]["settled"] and rows[p]["generations"] < cap]
        capped = [p for p in problems if p not in early]
        out[strategy] = {
            "generations": round(sum(rows[p]["generations"] for p in problems) / n, 4),
            "given_up": paired_interval(
                outcomes, lambda x: float(x["base"].mean() - x["rule"].mean()), num_resamples=num_resamples
            ),
            "stopped_early": round(len(early) / n, 4),
            "stopped_wrong": round(sum(baseline[p] and not rows[p]["correct"] for p in early) / n, 4),
            "capped_hopeless": round(sum(p in hopeless for p in capped) / n, 4),
        }
    return out


def adaptive_table(summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The adaptive strategies over all problems, fewest generations first (Markdown)."""
    lines = [
        "## Adaptive strategies (all problems; generations actually spent)",
        "",
        "| strategy | cap | generations [95% CI] | accuracy [95% CI] | settled before the cap |",
        "|---|---:|---:|---:|---:|",
    ]
    rows = sorted(
        summary.items(), key=lambda kv: (kv[1]["all"]["mean_generations"], -kv[1]["all"]["accuracy"])
    )
    for strategy, entry in rows:
        e = entry["all"]
        generations = format_interval(e.get("generations_interval"), digits=2)
        accuracy = format_interval(e.get("accuracy_interval"))
        if generations == "-":
            generations = f"{e['mean_generations']:.2f}"
        if accuracy == "-":
            accuracy = f"{e['accuracy']:.3f}"
        lines.append(f"| {strategy} | {e['cap']} | {generations} | {accuracy} | {e['settled']:.2f} |")
    return "\n".join(lines) + "\n\n"


def verifier_ceiling(rows: SearchRows, bins: dict[str, int], score_of) -> dict[str, Any]:
    """What the verifier leaves on the table, per bin (``all`` too): pass@N with oracle selection -- a
    correct answer among best-of-N's first N candidates, the most any selection rule could reach -- at
    every best-of-N budget, and how well the verifier ranks a problem's own candidates
    (:func:`~ttcompute.eval.prm_metrics.within_problem_ranking` on all of them)."""
    budgets = sorted(rows.best_of_n_budgets)
    members: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for problem, row in rows.best_of_n.items():
        members["all"].append(row)
        if problem in bins:
            members[str(bins[problem])].append(row)
    out: dict[str, Any] = {}
    for group in sorted(members, key=_bin_order):
        group_rows = members[group]
        out[group] = {
            "problems": len(group_rows),
            "pass_at_n": {
                str(b): round(sum(any(r["correct"][:b]) for r in group_rows) / len(group_rows), 4)
                for b in budgets
            },
        }
        if rows.has_scores:
            out[group]["within_problem"] = within_problem_ranking(
                [score_of(r) for r in group_rows], [r["correct"] for r in group_rows]
            )
    return out


def prefix_rows(rows: SearchRows, bins: dict[str, int], score_of, models: Models) -> list[dict[str, Any]]:
    """Per problem, what its first n best-of-N candidates give for every n: weighted best-of-N's verdict
    (majority vote without a verifier), the confidence in that answer (the verifier's ``share``, the
    agreement rule ``beta`` without one) and the FLOPs spent so far -- what batch allocation reads
    (``prefixes.parquet``; :mod:`~ttcompute.eval.batch_allocation`)."""
    out = []
    for problem, row in sorted(rows.best_of_n.items()):
        answers = row["answers"]
        groups = group_equivalent_answers(answers)
        scores = score_of(row) if rows.has_scores else None
        rule = StoppingRule("share" if scores is not None else "beta")
        confidence = confidences(rule, groups, answered(answers), scores)
        correct, policy, prm = [], [], []
        for n in range(1, len(answers) + 1):
            pick = stopped_pick(rule, answers, scores, groups, n)
            correct.append(bool(row["correct"][pick]))
            policy.append(inference_flops(models.policy_parameters, sum(row["num_tokens"][:n])))
            charged = sum(row["prm_tokens_by_candidate"][:n]) if scores is not None else 0
            prm.append(inference_flops(models.verifier_parameters, charged))
        out.append({"problem_id": problem, "bin": bins.get(problem), "rule": rule.rule, "correct": correct,
                    "confidence": confidence, "policy_flops": policy, "prm_flops": prm})  # fmt: skip
    return out


def ceiling_table(ceiling: dict[str, Any], accuracy: dict[str, dict[str, dict[int, float]]]) -> str:
    """pass@N with oracle selection per bin, the selection gap of weighted best-of-N beside it, and the
    verifier's within-problem ranking (Markdown)."""
    budgets = sorted({int(b) for entry in ceiling.values() for b in entry["pass_at_n"]})
    lines = [
        "## The verifier's ceiling: a correct answer among the first N candidates (oracle selection)",
        "",
        "Gap: that minus weighted best-of-N's accuracy. Within a problem: P(a correct candidate outscores a",
        "wrong one of the same problem) and how often the top-scored candidate is correct (problems with a",
        "correct one).",
        "",
        "| bin | "
        + " | ".join(f"pass@{b}" for b in budgets)
        + " | gap at "
        + str(budgets[-1])
        + " | within-problem AUC | top-1 correct |",
        "|---|" + "---:|" * (len(budgets) + 3),
    ]
    for group, entry in ceiling.items():
        weighted = accuracy.get(group, {}).get("best_of_n_weighted", {})
        top = str(budgets[-1])
        gap = entry["pass_at_n"][top] - weighted[budgets[-1]] if budgets[-1] in weighted else None
        ranking = entry.get("within_problem") or {}
        cells = [f"{entry['pass_at_n'][str(b)]:.3f}" for b in budgets]
        lines.append(
            f"| {group} | " + " | ".join(cells) + f" | {'-' if gap is None else f'{gap:.3f}'} | "
            f"{_maybe(ranking.get('auc'))} | {_maybe(ranking.get('top1'))} |"
        )
    return "\n".join(lines) + "\n\n"


def _interval(interval: dict[str, Any] | None, value: float, digits: int) -> str:
    if not interval:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{interval['low']:.{digits}f}, {interval['high']:.{digits}f}]"


def _maybe(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def load_bins(difficulty_dir: str, problem_ids: set[str]) -> dict[str, int]:
    table = load_difficulty(difficulty_dir)
    bins = dict(zip(table["problem_id"], table["bin"]))
    missing = sorted(problem_ids - bins.keys())
    if missing:
        raise InputError(
            f"{difficulty_dir}: no difficulty bin for {len(missing)} searched problem(s), e.g. {missing[:3]} "
            "(run ttc difficulty on samples of the same problems)"
        )
    return bins


def run_select(config: SelectConfig) -> dict[str, Any]:
    """The ``ttc select`` stage."""
    search = load_sharded(config.search_dir)
    needed = ["problem_id", "method", "width_setting", "lookahead", "search_aggregation", "budget", "answers"]
    missing = [c for c in needed if c not in search.column_names]
    if missing:
        raise InputError(f"{config.search_dir}: missing column(s) {missing} (not ttc search output?)")
    if len(search) == 0:
        raise InputError(f"{config.search_dir}: the search output has no rows")
    out = Path(config.output_dir or Path(config.search_dir) / "select")
    bins = load_bins(config.difficulty_dir, set(search["problem_id"])) if config.difficulty_dir else {}

    records = []
    settings: dict[str, dict[str, Any]] = {}
    rows = []
    for index, row in enumerate(search):
        # Rejected, not skipped: leaving a problem out would silently change every accuracy here.
        problem = misaligned_candidates(row)
        if not problem and not row["answers"]:
            problem = f"field answers: a {row['method']} row with no candidates"
        if problem:
            raise InputError(f"{config.search_dir}: row {index} (problem {row['problem_id']}): {problem}")
        rows.append(row)
        for record in select_row(row, config.aggregation):
            record["bin"] = bins.get(record["problem_id"])
            records.append(record)
            found = strategy_settings(row, record["strategy"], config.aggregation)
            known = settings.setdefault(record["strategy"], found)
            known["beam_width"].update(found["beam_width"])
    by_problem = SearchRows.of(rows, lambda r: strategy_name(r["method"], r["width_setting"], r["lookahead"],
                                                              r["search_aggregation"]))  # fmt: skip

    def score_of(row: dict[str, Any]) -> list[float]:
        return [candidate_score(s, config.aggregation) for s in row["step_scores"]]

    adaptive = plan_adaptive(config, by_problem, score_of)
    info = read_manifest(config.search_dir).get("info", {})
    models = Models(int(info.get("policy_parameters") or 0), int(info.get("verifier_parameters") or 0))
    if adaptive:
        found = adaptive_records(
            by_problem,
            adaptive,
            lambda r: [candidate_score(s, config.aggregation) for s in r["step_scores"]],
            models,
        )
        for record in found:
            record["bin"] = bins.get(record["problem_id"])
        records += found
        for strategy in adaptive:
            settings[strategy.name] = adaptive_settings(strategy, settings, config.aggregation)
        logger.info("Adaptive strategies: %d evaluated on the saved candidates", len(adaptive))
    static = [r for r in records if not is_adaptive(r["strategy"])]
    accuracy = accuracy_by_bin(static)
    problems_in = {"all": len(set(search["problem_id"]))}
    for problem_id in set(search["problem_id"]):
        if problem_id in bins:
            problems_in[str(bins[problem_id])] = problems_in.get(str(bins[problem_id]), 0) + 1
    mean_flops: dict[str, dict[int, float]] = defaultdict(dict)
    sums: dict[tuple[str, int], list[int]] = defaultdict(list)
    for record in static:
        sums[(record["strategy"], record["budget"])].append(record["total_flops"])
    for (strategy, budget), values in sorted(sums.items()):
        mean_flops[strategy][budget] = float(sum(values) / len(values))

    out.mkdir(parents=True, exist_ok=True)
    save_resolved_config(out, "select", config)
    table = datasets.Dataset.from_list(records)
    tmp = out / ".selections.parquet.tmp"
    table.to_parquet(str(tmp))
    tmp.replace(out / "selections.parquet")
    revision_rows = [
        {
            k: row[k]
            for k in ("problem_id", "method", "budget", "chain_length", "correct", "subtrees", "positions")
        }
        for row in search
        if row["method"] == "revisions"
    ]
    summary = {
        "aggregation": config.aggregation,
        "problems": problems_in,
        "accuracy": {
            g: {s: {str(b): a for b, a in v.items()} for s, v in t.items()} for g, t in accuracy.items()
        },
        "mean_total_flops": {s: {str(b): f for b, f in v.items()} for s, v in mean_flops.items()},
    }
    if by_problem.best_of_n and by_problem.has_costs:
        prefixes = datasets.Dataset.from_list(prefix_rows(by_problem, bins, score_of, models))
        tmp = out / ".prefixes.parquet.tmp"
        prefixes.to_parquet(str(tmp))
        tmp.replace(out / "prefixes.parquet")
    adaptive_found = adaptive_summary(r for r in records if is_adaptive(r["strategy"]))
    if adaptive_found:
        summary["adaptive"] = adaptive_found
    ceiling = verifier_ceiling(by_problem, bins, score_of) if by_problem.best_of_n else {}
    for group, entry in ceiling.items():
        # The selection gap: what the verifier leaves below its ceiling at each budget.
        weighted = accuracy.get(group, {}).get("best_of_n_weighted") or accuracy.get(group, {}).get(
            "majority", {}
        )
        entry["gap"] = {
            b: round(v - weighted[int(b)], 4) for b, v in entry["pass_at_n"].items() if int(b) in weighted
        }
    if ceiling:
        summary["ceiling"] = ceiling
    if by_problem.best_of_n_budgets and adaptive_found:
        cap = max(by_problem.best_of_n_budgets)
        hopeless = {p for p, row in by_problem.best_of_n.items() if not any(row["correct"][:cap])}
        summary["given_up"] = accuracy_given_up(records, cap, hopeless)
    if revision_rows:
        summary["revisions"] = revision_step_metrics(revision_rows)
        logger.info(
            "Revisions: pass@1 by step %s; correct -> incorrect %s, incorrect -> correct %s",
            summary["revisions"]["pass_at_1_by_step"],
            summary["revisions"]["correct_to_incorrect"],
            summary["revisions"]["incorrect_to_correct"],
        )
    write_json(out / "accuracy.json", summary)
    write_json(
        out / "strategies.json",
        {
            # Relative to this file (core/recorded_paths.py): the run can move and still route.
            "search_dir": record_path(config.search_dir, out),
            RECORDED_PATHS: ["/search_dir"],
            "selection_aggregation": config.aggregation,
            "strategies": dict(sorted(settings.items())),
        },
    )
    revision_lines = ""
    if "revisions" in summary:
        metrics = summary["revisions"]
        revision_lines = (
            "## Revisions\n\n| step | "
            + " | ".join(str(t) for t in range(len(metrics["pass_at_1_by_step"])))
            + " |\n|---|"
            + "---:|" * len(metrics["pass_at_1_by_step"])
            + "\n| pass@1 | "
            + " | ".join(f"{v:.3f}" for v in metrics["pass_at_1_by_step"])
            + " |\n\n"
            f"Correct answers turned incorrect by a revision: {metrics['correct_to_incorrect']}; "
            f"incorrect turned correct: {metrics['incorrect_to_correct']}.\n\n"
        )
    (out / "accuracy.md").write_text(
        f"# Accuracy vs budget (generations); selection aggregation: {config.aggregation}\n\n"
        + revision_lines
        + (ceiling_table(ceiling, accuracy) if ceiling else "")
        + markdown_tables(accuracy, problems_in)
        + ("\n" + adaptive_table(adaptive_found) if adaptive_found else "")
    )
    plot = plot_accuracy_vs_budget(accuracy, problems_in, out / "accuracy_vs_budget.png")
    logger.info(
        "Selections of %d search rows -> %s (table: accuracy.md, plot: %s)", len(search), out, plot.name
    )
    return {"output_dir": str(out), "accuracy": summary["accuracy"]}
