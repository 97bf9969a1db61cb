"""``ttc report``: one ``report.md`` (tables and the plots that matter) and one ``report.json``.

It only reads what the other stages wrote -- nothing is generated or scored again -- so it can be
rebuilt at any time, and the same tables and plots go to W&B with ``--report_to wandb``.

``report.json`` keys (dotted paths into the nested object; stable):

* ``policy.small.pass_at_1``, ``policy.small.params``, ``policy.large.pass_at_1`` (greedy),
  ``policy.large.params``;
* ``prm.first_error_f1`` (ProcessBench-style F1 of ``ttc eval-prm``), ``prm.label_agreement`` (share
  of steps whose hard MC label agrees with the ground truth);
* ``verifiers.by_prm.<name>`` (with a second PRM's outputs: ``--compare_prm_eval_dir`` /
  ``--compare_prm_select_dir``; ``<name>`` its ``prm_kind``, e.g. ``likelihood``,
  ``token_classification``): ``first_error_f1``, ``step_roc_auc`` (its eval-prm's),
  ``best_of_n_weighted.<budget>``, ``beam_search.<budget>`` (its select's, all problems),
  ``drove_headline``; ``verifiers.headline``: the name of the PRM the main search (compute-optimal's)
  used;
* ``reviser.pass_at_1_by_step`` (list, step 0 first);
* ``search.<method>.<budget>``: accuracy over all problems of the best setting of each method family
  (``majority``, ``best_of_n``, ``best_of_n_weighted``, ``beam_search``, ``lookahead``, ``dvts``,
  ``revisions``) at that budget -- the best of a family's settings *in-sample*, named in
  ``search_settings.<method>.<budget>``; compute-optimal is the cross-validated number;
* ``adaptive.<predictor>`` (``none``: no bins; each ``ttc compute-optimal`` run's bins otherwise): the
  spend-axis analysis of static and adaptive strategies -- ``predictor_generations``, ``curve``,
  ``baseline_curve``, ``strongest_fixed_curve``, ``intervals`` (``averaged/best_of_n``,
  ``spend_at_target/best_of_n``, ``ratio_at_target/best_of_n``, and the same ``/strongest_fixed``),
  ``by_bin``; ``adaptive_headline``: the row the headline reads (``--headline_predictor``);
* ``ceiling.<bin>``: ``pass_at_n.<N>`` (oracle selection) and ``within_problem`` (``auc``, ``top1``);
  ``given_up.<rule>``: what each stopping rule capped at the largest budget spends and gives up;
* ``compute_optimal.<budget>``, ``compute_optimal.efficiency_vs_best_of_n``,
  ``compute_optimal.efficiency_vs_best_of_n_with_difficulty_cost`` (ratios at the largest budget
  where they are defined);
* ``flops_matched.<R>.<bin>.small_ttc`` / ``.large`` / ``.difference`` (its 95% interval; bin ``all`` too);
* ``cost.total_flops`` (every stage whose output is given: sampling, labelling, training, search,
  difficulty), ``cost.by_stage``: each one's, less the policy FLOPs of best-of-N candidates a search
  took from a ``ttc sample`` output also given (that output counts them; ``cost.reused_by_stage``),
  ``wall_seconds``;
* ``smoke_test`` (only for ``ttc demo --fast``): ``shows`` and ``does_not_show``, the sentences the
  report and the demo's summary lead with.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from ttcompute.core.budget import inference_flops
from ttcompute.core.checkpoint_identity import checkpoint_identity
from ttcompute.core.config import save_resolved_config
from ttcompute.core.errors import InputError
from ttcompute.core.recorded_paths import RECORDED_PATHS, resolve_tree
from ttcompute.core.shards import load_sharded, read_resolved_config, write_json
from ttcompute.eval.compute_optimal import allocation_table, spend_table
from ttcompute.eval.efficiency import format_interval
from ttcompute.eval.plots import plot_accuracy_vs_budget, plot_revision_ratio
from ttcompute.eval.report_config import ReportConfig

logger = logging.getLogger(__name__)

# The verifiers table: the PRM-weighted rules, one sampling and one tree search.
VERIFIER_FAMILIES = ("best_of_n_weighted", "beam_search")
FAMILIES = ("majority", "best_of_n", "best_of_n_weighted", "beam_search", "lookahead", "dvts", "revisions")


def _read_json(path: Path) -> dict[str, Any]:
    """A stage's JSON output, the paths it recorded resolved against it (core/recorded_paths.py)."""
    try:
        document = json.loads(path.read_text())
        return resolve_tree(document, path) if RECORDED_PATHS in document else document
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not JSON ({err})") from None


def parameter_count(checkpoint: str) -> int:
    """From the checkpoint's ``training_log.json`` if it has one, else by loading its config."""
    log = Path(checkpoint) / "training_log.json"
    if log.is_file() and isinstance(_read_json(log).get("num_parameters"), int):
        return _read_json(log)["num_parameters"]
    try:
        # Explicit: left unset, transformers asks on an interactive terminal whether to run the
        # checkpoint's own code; counting parameters never needs it.
        config = AutoConfig.from_pretrained(checkpoint, trust_remote_code=False)
    except (OSError, ValueError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise InputError(f"{checkpoint}: cannot read the model config ({reason})") from None
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
    return sum(p.numel() for p in model.parameters())


def samples_pass_at_1(samples_dir: str) -> float:
    """Mean correctness over every sample of a ``ttc sample`` run."""
    verdicts = [v for row in load_sharded(samples_dir)["correct"] for v in row]
    if not verdicts:
        raise InputError(f"{samples_dir}: no samples")
    return round(sum(verdicts) / len(verdicts), 4)


def family_of(strategy: str) -> str:
    """The method family of a ``ttc select`` strategy name (revisions rules included).

    >>> family_of("lookahead k=3 M=4"), family_of("revisions L=4 weighted"), family_of("best_of_n")
    ('lookahead', 'revisions', 'best_of_n')
    """
    return strategy.split(" ")[0]


def search_by_family(accuracies: dict[str, dict[str, float]]) -> tuple[dict, dict]:
    """``{family: {budget: best accuracy}}`` and ``{family: {budget: that strategy}}`` over all problems.

    >>> best, which = search_by_family({"dvts M=4": {"8": 0.5}, "dvts M=2": {"8": 0.6, "16": 0.7}})
    >>> best, which
    ({'dvts': {'8': 0.6, '16': 0.7}}, {'dvts': {'8': 'dvts M=2', '16': 'dvts M=2'}})
    """
    best: dict[str, dict[str, float]] = {}
    which: dict[str, dict[str, str]] = {}
    for strategy, curve in accuracies.items():
        family = family_of(strategy)
        if family not in FAMILIES:
            continue
        for budget, accuracy in curve.items():
            if accuracy > best.setdefault(family, {}).get(budget, -1.0):
                best[family][budget] = accuracy
                which.setdefault(family, {})[budget] = strategy
    for family in best:
        order = sorted(best[family], key=int)
        best[family] = {b: best[family][b] for b in order}
        which[family] = {b: which[family][b] for b in order}
    return best, which


def stage_flops(directory: str) -> int:
    """The compute a stage's output records: ``stats.json`` (``compute.total_flops`` or
    ``estimation_compute``) or ``training_log.json`` (``training_flops``); 0 if none."""
    path = Path(directory)
    if (path / "training_log.json").is_file():
        return int(_read_json(path / "training_log.json").get("training_flops") or 0)
    if (path / "stats.json").is_file():
        stats = _read_json(path / "stats.json")
        compute = stats.get("compute") or stats.get("estimation_compute") or {}
        return int(compute.get("total_flops") or 0)
    return 0


def reused_sample_flops(search_dir: str) -> int:
    """Policy FLOPs of the best-of-N candidates a ``ttc search`` took from its ``--initial_samples_dir``
    (each problem's reused candidates once, at its largest best-of-N budget): the search's rows count
    them as the strategy's cost, but the ``ttc sample`` output that drew them already records them."""
    dataset = load_sharded(search_dir)
    if "reused_samples" not in dataset.column_names:  # a search from before --initial_samples_dir
        return 0
    rows = dataset.select_columns(
        ["problem_id", "method", "budget", "num_tokens", "reused_samples"]
    ).to_pandas()
    rows = rows[(rows.method == "best_of_n") & (rows.reused_samples > 0)]
    if rows.empty:
        return 0
    largest = rows.sort_values("budget").groupby("problem_id").tail(1)
    tokens = sum(int(sum(t[:r])) for t, r in zip(largest.num_tokens, largest.reused_samples))
    params = (_read_json(Path(search_dir) / "stats.json").get("compute") or {}).get("policy_parameters", 0)
    return inference_flops(params, tokens)


def stage_costs(cost_dirs: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    """``{dir: FLOPs charged}`` with every generation counted once -- a search's candidates reused from
    a sample output in ``cost_dirs`` are that output's -- and ``{dir: FLOPs not charged again}``."""
    listed = {Path(d).resolve() for d in cost_dirs}
    costs, reused = {}, {}
    for directory in cost_dirs:
        costs[directory] = stage_flops(directory)
        initial = read_resolved_config(directory).get("initial_samples_dir")
        if initial and Path(initial).resolve() in listed and (Path(directory) / "stats.json").is_file():
            reused[directory] = reused_sample_flops(directory)
            costs[directory] -= reused[directory]
    return costs, reused


def _merge_accuracy(select_dirs: list[str]) -> tuple[dict, dict, dict | None]:
    """Accuracy tables of several ``ttc select`` runs (a strategy of an earlier run wins), their
    problem counts, and the revision step metrics of the first run that has them."""
    accuracy: dict[str, dict[str, dict[str, float]]] = {}
    problems: dict[str, int] = {}
    revisions = None
    for directory in select_dirs:
        summary = _read_json(Path(directory) / "accuracy.json")
        for group, table in summary["accuracy"].items():
            for strategy, curve in table.items():
                accuracy.setdefault(group, {}).setdefault(strategy, curve)
        for group, n in summary.get("problems", {}).items():
            problems.setdefault(group, n)
        if revisions is None and summary.get("revisions"):
            revisions = summary["revisions"]
    return accuracy, problems, revisions


def smoke_test_entry(config: ReportConfig) -> dict[str, Any] | None:
    """What a smoke-test run shows and what it does not; None for any other run.

    The run is ``ttc demo --fast``, known by the options that demo recorded beside the profile it
    passes (``--profile_file``): its numbers, printed like a full run's, were read as results.
    """
    if not config.profile_file:
        return None
    demo = read_resolved_config(Path(config.profile_file).parent)
    if not demo.get("fast"):
        return None
    problems = demo["num_problems"]
    return {
        "run": "ttc demo --fast",
        "shows": "every stage runs end to end, each reading what the one before it wrote",
        "does_not_show": (
            f"results: {problems} evaluation problems (one problem moves an accuracy by {1 / problems:.3f}), "
            f"budgets up to {max(demo['budgets'])}, revision chains of {max(demo['revision_lengths'])} "
            f"attempt(s), a PRM and a reviser trained on {demo['prm_problems']} and "
            f"{demo['reviser_problems']} problems, the token-classification PRM for "
            f"{demo['token_prm_max_steps']} steps; `ttc demo` without --fast measures them"
        ),
    }


def smoke_reviser_note(report: dict[str, Any], select_dirs: list[str]) -> str | None:
    """Why a smoke test's revisions score what they do: the reviser's first attempts (no attempt in
    context: the policy's own prompt) against the policy, and how little it trained; None without a
    trained reviser or its training log."""
    reviser = _searched_reviser(select_dirs)
    log = Path(reviser) / "training_log.json" if reviser else None
    steps = (report.get("reviser") or {}).get("pass_at_1_by_step")
    if log is None or not log.is_file() or not steps:
        return None
    trained = _read_json(log)
    # Measured for issue 35 on the fast demo: the policy's loss on the revision trajectories starts
    # at 3.3 nats per token (attempts in context, longer than its training solutions), and 20 steps
    # at the reviser recipe's learning rate took its own prompt from pass@1 0.29 (the policy) to
    # 0.05 on the same problems (1e-4: 0.15): finetuning this short breaks more than it teaches.
    policy = (report.get("policy") or {}).get("small", {}).get("pass_at_1")
    return (
        f"the reviser's first attempts, from the policy's own prompt, score pass@1 {_fmt(steps[0])} against "
        f"the policy's {_fmt(policy)}: {trained.get('global_steps')} training steps on "
        f"{trained.get('num_train_examples')} trajectories leave it at eval token accuracy "
        f"{_fmt((trained.get('eval') or {}).get('eval_mean_token_accuracy'))} (the full demo's reviser: "
        "above 0.99), too few to undo what its first steps on long attempt contexts broke"
    )


def _searched_reviser(select_dirs: list[str]) -> str | None:
    """The reviser of the search a ``ttc select`` output selected from, as both recorded their options."""
    for select_dir in select_dirs:
        search_dir = read_resolved_config(select_dir).get("search_dir")
        reviser = read_resolved_config(search_dir).get("reviser") if search_dir else None
        if reviser:
            return reviser
    return None


def smoke_test_lines(report: dict[str, Any]) -> list[str]:
    """The warning a smoke-test report leads with."""
    smoke = report.get("smoke_test")
    if not smoke:
        return []
    lines = [
        f"> **Smoke test** (`{smoke['run']}`). It shows {smoke['shows']}. Its numbers are not "
        f"{smoke['does_not_show']}.",
    ]
    if smoke.get("reviser"):
        lines += [">", f"> Revisions: {smoke['reviser']}."]
    return [*lines, ""]


def build_report(config: ReportConfig) -> dict[str, Any]:
    """Collect every number of the report into the nested ``report.json`` object."""
    report: dict[str, Any] = {}
    smoke = smoke_test_entry(config)
    if smoke:
        report["smoke_test"] = smoke
    if config.policy_small or config.small_samples_dir:
        small = report.setdefault("policy", {}).setdefault("small", {})
        if config.policy_small:
            small["params"] = parameter_count(config.policy_small)
        if config.small_samples_dir:
            small["pass_at_1"] = samples_pass_at_1(config.small_samples_dir)
    if config.policy_large or config.large_samples_dir:
        large = report.setdefault("policy", {}).setdefault("large", {})
        if config.policy_large:
            large["params"] = parameter_count(config.policy_large)
        if config.large_samples_dir:
            large["pass_at_1"] = samples_pass_at_1(config.large_samples_dir)
    if config.prm_eval_dir:
        metrics = _read_json(Path(config.prm_eval_dir) / "prm_eval.json")
        agreement = metrics.get("label_agreement") or {}
        report["prm"] = {
            # None when the data has no erroneous solution (F1 undefined), as eval-prm writes it.
            "first_error_f1": _rounded(metrics["processbench"]["f1"]),
            "label_agreement": _rounded(agreement.get("step_agreement")),
            "step_roc_auc": _rounded(metrics.get("step_roc_auc")),
            "gold": metrics.get("gold"),
        }
    if config.compare_prm_eval_dir or config.compare_prm_select_dir:
        report["verifiers"] = build_verifiers(config)
    if config.select_dirs:
        accuracy, _, revisions = _merge_accuracy(config.select_dirs)
        best, which = search_by_family(accuracy.get("all", {}))
        report["search"] = best
        report["search_settings"] = which
        if revisions:
            report["reviser"] = {
                "pass_at_1_by_step": revisions["pass_at_1_by_step"],
                "correct_to_incorrect": revisions["correct_to_incorrect"],
                "incorrect_to_correct": revisions["incorrect_to_correct"],
            }
    if config.compute_optimal_dir:
        summary = _read_json(Path(config.compute_optimal_dir) / "compute_optimal.json")
        report["compute_optimal"] = _compute_optimal_entry(summary)
        report["num_evaluation_problems"] = summary.get("num_problems")
    by_predictor = {}
    for directory in ([config.compute_optimal_dir] if config.compute_optimal_dir else []) + list(
        config.compute_optimal_predicted_dirs
    ):
        summary = _read_json(Path(directory) / "compute_optimal.json")
        # The predictor behind the bins (its difficulty output's), else where they came from.
        name = _difficulty_stats(summary).get("predictor", summary.get("bins_from"))
        by_predictor[name] = _compute_optimal_entry(summary)
    if config.compute_optimal_predicted_dirs:
        report["compute_optimal_by_predictor"] = by_predictor
    adaptive = adaptive_entries(
        ([config.compute_optimal_dir] if config.compute_optimal_dir else [])
        + list(config.compute_optimal_predicted_dirs)
    )
    if adaptive:
        report["adaptive"] = adaptive
        report["adaptive_headline"] = (
            config.headline_predictor if config.headline_predictor in adaptive else "none"
        )
    if config.select_dirs:
        selected = _read_json(Path(config.select_dirs[0]) / "accuracy.json")
        for key in ("ceiling", "given_up"):
            if selected.get(key):
                report[key] = selected[key]
    if config.profile_file:
        report["profile_seconds"] = _read_json(Path(config.profile_file))
    if config.flops_matched_dir:
        matched = _read_json(Path(config.flops_matched_dir) / "flops_matched.json")
        report["flops_matched"] = {
            ratio: {
                group: {
                    "small_ttc": row["small_ttc"],
                    "large": row["large"],
                    # Small + TTC minus large, paired bootstrap 95% (None from an older output).
                    "difference": row.get("difference"),
                }
                for group, row in entry["bins"].items()
            }
            for ratio, entry in matched["ratios"].items()
        }
        report["flops_matched_generations"] = {
            r: e["matched_generations"] for r, e in matched["ratios"].items()
        }
    costs, reused = stage_costs(config.cost_dirs)
    report["cost"] = {"total_flops": sum(costs.values()), "by_stage": costs, "reused_by_stage": reused}
    report["wall_seconds"] = config.wall_seconds
    if smoke:
        note = smoke_reviser_note(report, config.select_dirs)
        if note:
            smoke["reviser"] = note
    return report


def build_verifiers(config: ReportConfig) -> dict[str, Any]:
    """The two PRMs side by side: each one's eval-prm metrics and the accuracy of its own search, and
    which one the main search (the compute-optimal headline's) used."""
    compare_select = [config.compare_prm_select_dir] if config.compare_prm_select_dir else []
    entries = [
        verifier_entry(config.prm_eval_dir, config.select_dirs),
        verifier_entry(config.compare_prm_eval_dir, compare_select),
    ]
    headline_select = config.select_dirs[:1]
    if config.compute_optimal_dir:
        headline_select = (
            read_resolved_config(config.compute_optimal_dir).get("select_dirs") or headline_select
        )
    headline_prm = _searched_with(headline_select[0]) if headline_select else None
    by_prm: dict[str, dict[str, Any]] = {}
    headline = None
    for entry in entries:
        prm = entry.get("search_prm") or entry.get("prm")
        name = read_resolved_config(prm).get("prm_kind") if prm else None
        name = name or (Path(prm).name if prm else "unknown")
        name = name if name not in by_prm else f"{name} ({prm})"
        entry["drove_headline"] = bool(headline_prm and prm and _same_path(prm, headline_prm))
        headline = name if entry["drove_headline"] else headline
        by_prm[name] = entry
    return {"headline": headline, "by_prm": by_prm}


def verifier_entry(eval_dir: str | None, select_dirs: list[str]) -> dict[str, Any]:
    """One PRM's row of the verifiers table: its ``prm_eval.json`` metrics and, per
    ``VERIFIER_FAMILIES``, its best setting's accuracy over all problems at each budget."""
    entry: dict[str, Any] = {}
    if eval_dir:
        metrics = _read_json(Path(eval_dir) / "prm_eval.json")
        entry["prm"] = metrics.get("prm")
        entry["first_error_f1"] = _rounded(metrics["processbench"]["f1"])
        entry["step_roc_auc"] = _rounded(metrics.get("step_roc_auc"))
    if select_dirs:
        accuracy, _, _ = _merge_accuracy(select_dirs)
        best, _ = search_by_family(accuracy.get("all", {}))
        entry.update({family: best[family] for family in VERIFIER_FAMILIES if family in best})
        entry["search_prm"] = _searched_with(select_dirs[0])
        if entry.get("prm") and entry["search_prm"] and not _same_path(entry["prm"], entry["search_prm"]):
            logger.warning(
                "%s evaluated %s but %s selected from a search with %s",
                eval_dir,
                entry["prm"],
                select_dirs[0],
                entry["search_prm"],
            )
    return entry


def _searched_with(select_dir: str) -> str | None:
    """The PRM of the search a ``ttc select`` output selected from, as both recorded their options."""
    search_dir = read_resolved_config(select_dir).get("search_dir")
    return read_resolved_config(search_dir).get("prm") if search_dir else None


def _same_path(a: str, b: str) -> bool:
    """Whether two recorded checkpoints are the same: by content (a copy elsewhere is the same PRM)."""
    return a == b or checkpoint_identity(a) == checkpoint_identity(b)


def _verifier_lines(report: dict[str, Any]) -> list[str]:
    by_prm = (report.get("verifiers") or {}).get("by_prm") or {}
    if not by_prm:
        return []
    curves = [entry.get(f) or {} for entry in by_prm.values() for f in VERIFIER_FAMILIES]
    budgets = sorted({b for curve in curves for b in curve}, key=int)
    lines = [
        "## Verifiers side by side",
        "",
        "Each PRM's step metrics are its `ttc eval-prm`'s (first-error F1: ProcessBench-style); each",
        "accuracy is its own search's over all problems at that budget (weighted best-of-N: the PRM ranks",
        "the candidates; beam search: it steers the search). *headline*: the PRM the main search -- and",
        "compute-optimal -- used.",
        "",
        "| verifier | first-error F1 | step ROC-AUC | method | "
        + " | ".join(f"N={b}" for b in budgets)
        + " |",
        "|---|---:|---:|---|" + "---:|" * len(budgets),
    ]
    for name, entry in by_prm.items():
        label = f"{name} (*headline*)" if entry.get("drove_headline") else name
        metrics = f"{_fmt(entry.get('first_error_f1'))} | {_fmt(entry.get('step_roc_auc'))}"
        families = [f for f in VERIFIER_FAMILIES if f in entry] or [None]
        for i, family in enumerate(families):
            head = f"| {label} | {metrics} |" if i == 0 else "| | | |"
            curve = entry.get(family) or {}
            lines.append(
                f"{head} {family or '-'} | " + " | ".join(_fmt(curve.get(b)) for b in budgets) + " |"
            )
    return [*lines, ""]


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "-" if value is None else str(value)


def headline_lines(report: dict[str, Any]) -> list[str]:
    """The report's lead: the averaged saving with every cost counted and its interval, the spend at the
    baseline's top accuracy, the same against the strongest fixed strategy, the paper's ratio at the
    largest budget beside them (labelled), and the verifier's ceiling."""
    adaptive = report.get("adaptive") or {}
    name = report.get("adaptive_headline")
    if name not in adaptive:
        return []
    entry = adaptive[name]
    intervals = entry["intervals"]
    top = max(entry["baseline_curve"], key=int) if entry["baseline_curve"] else None
    bins = "no difficulty bins" if name == "none" else f"`{name}` difficulty bins"
    lines = ["## Headline", ""]
    if top is not None:
        fixed = entry["strongest_fixed_strategy"].get(top)
        lines += [
            f"Compute-optimal over static and adaptive strategies ({bins}; every cost counted: the generations "
            f"each problem spent plus the predictor's {entry['predictor_generations']:.2f}): "
            f"**{format_interval(intervals['averaged/best_of_n'], 2)}x** fewer generations than weighted "
            "best-of-N, averaged over the accuracies both reach; "
            f"**{format_interval(intervals['spend_at_target/best_of_n'], 2)}** generations per problem at weighted "
            f"best-of-N@{top}'s accuracy ({entry['baseline_curve'][top]:.3f}, less 0.01), "
            f"{format_interval(intervals['ratio_at_target/best_of_n'], 1)}x fewer than its {top}.",
            "",
            f"Against the strongest fixed strategy at each budget ({fixed} at {top}): "
            f"**{format_interval(intervals['averaged/strongest_fixed'], 2)}x** averaged, "
            f"{format_interval(intervals['spend_at_target/strongest_fixed'], 2)} generations at its accuracy at "
            f"{top} ({entry['strongest_fixed_curve'][top]:.3f}). 95% paired bootstrap intervals over problems.",
            "",
        ]
    co = report.get("compute_optimal") or {}
    paper = (co.get("intervals") or {}).get("efficiency_vs_best_of_n")
    if paper:
        lines += [
            f"The paper's ratio at the largest budget (static compute-optimal over `{Path(str(co.get('bins_from'))).name}` "
            f"bins, the difficulty estimate not charged): {format_interval(paper, 2)}x at budget "
            f"{co.get('efficiency_at_budget')} -- read off where two flat curves first cross, it swings by "
            "multiples between draws of problems.",
            "",
        ]
    ceiling = (report.get("ceiling") or {}).get("all", {}).get("pass_at_n") or {}
    weighted = (report.get("search") or {}).get("best_of_n_weighted") or {}
    if ceiling:
        n = max(ceiling, key=int)
        gap = (
            f"; weighted best-of-N@{n} reaches {weighted[n]:.3f}, a selection gap of {ceiling[n] - weighted[n]:.3f}"
            if n in weighted
            else ""
        )
        lines += [
            f"The verifier, not the budget, sets the ceiling: a correct answer is among the first {n} candidates "
            f"for {ceiling[n]:.3f} of the problems (pass@{n}, oracle selection){gap}.",
            "",
        ]
    return lines


def adaptive_lines(report: dict[str, Any], images: dict[str, str]) -> list[str]:
    """Every predictor's spend-axis row, the curves and the spend per bin, the ceiling per bin and the
    accuracy each stopping threshold gives up."""
    adaptive = report.get("adaptive") or {}
    if not adaptive:
        return []
    lines = [
        "## Adaptive test-time compute",
        "",
        "Static and adaptive strategies together (stopping rules, revision chains stopped early, tree",
        "searches escalated, giving up), by generations actually spent; each row one way of binning",
        "problems by difficulty, its predictor charged (`none`: no bins, nothing to charge; `oracle`: needs",
        "the answers, a bound). Thresholds and caps are chosen on the other fold.",
        "",
        *spend_table(
            {("**" + k + "**" if k == report.get("adaptive_headline") else k): v for k, v in adaptive.items()}
        ),
        "",
    ]
    if "spend" in images:
        lines += [f"![accuracy vs generations spent]({images['spend']})", ""]
    headline = adaptive.get(report.get("adaptive_headline"))
    if headline:
        lines += [
            "Where the headline's curve reaches weighted best-of-N's top accuracy, per bin (generations spent, "
            "without the predictor):",
            "",
            "| bin | problems | generations | accuracy | options given (problems) |",
            "|---|---:|---:|---:|---|",
        ]
        for group, entry in headline["by_bin"].items():
            given = ", ".join(
                f"{k} ({n})" for k, n in sorted(entry["options"].items(), key=lambda kv: -kv[1])
            )
            lines.append(
                f"| {group} | {entry['problems']} | {entry['generations']:.2f} | {entry['accuracy']:.3f} | {given} |"
            )
        lines.append("")
    if "spend_by_bin" in images:
        lines += [f"![generations spent per problem by bin]({images['spend_by_bin']})", ""]
    ceiling = report.get("ceiling") or {}
    if ceiling:
        budgets = sorted({int(b) for e in ceiling.values() for b in e["pass_at_n"]})
        lines += [
            "### The verifier's ceiling",
            "",
            "pass@N with oracle selection (a correct candidate among the first N) per bin, and in brackets "
            "the selection gap: that minus weighted best-of-N's accuracy at N. Within a problem: P(a correct "
            "candidate outscores a wrong one of the same problem), and how often the top-scored candidate is "
            "correct among problems with a correct one.",
            "",
            "| bin | " + " | ".join(f"pass@{b}" for b in budgets) + " | within-problem AUC | top-1 correct |",
            "|---|" + "---:|" * (len(budgets) + 2),
        ]
        for group, entry in ceiling.items():
            ranking = entry.get("within_problem") or {}
            gap = entry.get("gap") or {}
            cells = [
                _fmt(entry["pass_at_n"].get(str(b))) + (f" ({gap[str(b)]:.3f})" if str(b) in gap else "")
                for b in budgets
            ]
            lines.append(
                f"| {group} | "
                + " | ".join(cells)
                + f" | {_fmt(ranking.get('auc'))} | {_fmt(ranking.get('top1'))} |"
            )
        lines.append("")
    given_up = report.get("given_up") or {}
    if given_up:
        lines += [
            "### What stopping early gives up",
            "",
            "Each stopping rule capped at the largest budget: the generations it spent, weighted best-of-N's "
            "accuracy there minus its own (95% paired bootstrap), and its stopping errors -- the share of "
            "problems it stopped early on a wrong answer that best-of-N at the cap got right, and the share it "
            "ran to the cap on with no correct candidate among them all (spend no rule could use).",
            "",
            "| rule | generations | accuracy given up | stopped early | stopped wrong | ran to the cap, hopeless |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {k} | {v['generations']:.2f} | {format_interval(v['given_up'])} | {_fmt(v.get('stopped_early'))} | "
            f"{_fmt(v.get('stopped_wrong'))} | {_fmt(v.get('capped_hopeless'))} |"
            for k, v in given_up.items()
        ]
        lines.append("")
    return lines


def markdown_report(report: dict[str, Any], images: dict[str, str], tables: dict[str, str]) -> str:
    """``report.md``: the headline, then each analysis with its plot and table."""
    lines = ["# ttcompute report", "", *smoke_test_lines(report), *headline_lines(report)]
    policy = report.get("policy", {})
    if policy:
        lines += ["## Policies", "", "| | parameters | pass@1 |", "|---|---:|---:|"]
        for name in ("small", "large"):
            if name in policy:
                label = "large (greedy)" if name == "large" else "small (sampled)"
                lines.append(
                    f"| {label} | {policy[name].get('params', '-'):,} | {_fmt(policy[name].get('pass_at_1'))} |"
                )
        lines.append("")
    if "prm" in report:
        prm = report["prm"]
        # The gold eval-prm compared against: the built-in task's exact checker, or the data's labels.
        gold = {"checker": "the exact step checker", None: "the exact step checker"}.get(
            prm.get("gold"), f"the data's {prm.get('gold')}"
        )
        agreement = (
            f"MC step labels agree with the checker on {_fmt(prm['label_agreement'])} of steps; "
            if prm["label_agreement"] is not None
            else ""
        )
        lines += [
            "## Verifier (PRM)",
            "",
            f"First-error F1 (ProcessBench-style, vs {gold}): {_fmt(prm['first_error_f1'])}; "
            f"{agreement}step ROC-AUC {_fmt(prm.get('step_roc_auc'))}.",
            "",
        ]
    lines += _verifier_lines(report)
    if "search" in report:
        budgets = sorted({b for curve in report["search"].values() for b in curve}, key=int)
        lines += ["## Accuracy vs budget (all problems; best setting of each method)", ""]
        if "accuracy_vs_budget" in images:
            lines += [f"![accuracy vs budget]({images['accuracy_vs_budget']})", ""]
        lines += ["| method | " + " | ".join(budgets) + " |", "|---|" + "---:|" * len(budgets)]
        for family in sorted(report["search"], key=FAMILIES.index):
            curve = report["search"][family]
            lines.append(f"| {family} | " + " | ".join(_fmt(curve.get(b)) for b in budgets) + " |")
        lines.append("")
    if "reviser" in report:
        steps = report["reviser"]["pass_at_1_by_step"][:9]
        lines += [
            "## Revisions",
            "",
            "| step | " + " | ".join(str(i) for i in range(len(steps))) + " |",
            "|---|" + "---:|" * len(steps),
            "| pass@1 | " + " | ".join(_fmt(v) for v in steps) + " |",
            "",
            f"A revision turns {_fmt(report['reviser']['correct_to_incorrect'])} of correct answers incorrect "
            f"and {_fmt(report['reviser']['incorrect_to_correct'])} of incorrect ones correct.",
            "",
        ]
        if "revision_ratio" in images:
            lines += [f"![revision ratio sweep]({images['revision_ratio']})", ""]
    lines += adaptive_lines(report, images)
    if "compute_optimal" in report:
        co = report["compute_optimal"]
        lines += [
            "## Compute-optimal scaling (the paper's: static strategies, per bin)",
            "",
            f"Efficiency vs weighted best-of-N: **{_fmt(co['efficiency_vs_best_of_n'])}x** fewer generations "
            f"(at budget {co.get('efficiency_at_budget')}); **{_fmt(co['efficiency_vs_best_of_n_with_difficulty_cost'])}x** "
            f"when the difficulty estimate ({_fmt(co.get('difficulty_cost_generations'))} generations per problem) "
            "is charged too.",
            "",
            *_interval_lines(co.get("intervals") or {}),
        ]
        lines += _predictor_lines(report)
        lines += _allocation_report_lines(co)
        if "compute_optimal" in images:
            lines += [f"![compute-optimal]({images['compute_optimal']})", ""]
        if "compute_optimal" in tables:
            lines += [tables["compute_optimal"], ""]
    if "flops_matched" in report:
        lines += ["## FLOPs-matched: small + test-time compute vs a larger model", ""]
        if "flops_matched" in images:
            lines += [f"![FLOPs-matched]({images['flops_matched']})", ""]
        if "flops_matched" in tables:
            lines += [tables["flops_matched"], ""]
    lines += _profile_lines(report)
    cost = report["cost"]
    lines += [
        "## Cost",
        "",
        f"Total compute of the stages reported: {cost['total_flops']:.3e} FLOPs"
        + (f"; wall time {report['wall_seconds']:.0f} s." if report.get("wall_seconds") else "."),
        "",
    ]
    return "\n".join(lines)


def _revision_ratio_curves(accuracy: dict[str, dict[str, float]]) -> dict[int, dict[int, float]]:
    """``{budget: {L: accuracy}}`` of the weighted revision rule (the verifier picks among attempts)."""
    curves: dict[int, dict[int, float]] = {}
    for strategy, curve in accuracy.items():
        match = re.fullmatch(r"revisions L=(\d+) weighted", strategy)
        if match:
            for budget, value in curve.items():
                curves.setdefault(int(budget), {})[int(match.group(1))] = value
    return dict(sorted(curves.items()))


def run_report(config: ReportConfig) -> dict[str, Any]:
    """The ``ttc report`` stage."""
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = build_report(config)
    images: dict[str, str] = {}
    tables: dict[str, str] = {}
    if config.select_dirs:
        accuracy, problems, _ = _merge_accuracy(config.select_dirs)
        # Per bin, the best setting of each family reads better than forty lines.
        groups = sorted(accuracy, key=lambda g: (g != "all", len(g), g))  # "all" first
        by_family = {group: search_by_family(accuracy[group])[0] for group in groups}
        by_family = {
            g: {f: {int(b): a for b, a in c.items()} for f, c in t.items()} for g, t in by_family.items()
        }
        images["accuracy_vs_budget"] = plot_accuracy_vs_budget(
            by_family, problems, out / "accuracy_vs_budget.png"
        ).name
        sweep = _revision_ratio_curves(accuracy.get("all", {}))
        if sweep:
            images["revision_ratio"] = plot_revision_ratio(sweep, out / "revision_ratio.png").name
    for key, directory, png, md in (
        (
            "compute_optimal",
            config.compute_optimal_dir,
            "compute_optimal_vs_best_of_n.png",
            "compute_optimal.md",
        ),
        ("flops_matched", config.flops_matched_dir, "flops_matched.png", "flops_matched.md"),
    ):
        if directory:
            if (Path(directory) / png).is_file():
                shutil.copyfile(Path(directory) / png, out / png)
                images[key] = png
            if (Path(directory) / md).is_file():
                text = (Path(directory) / md).read_text()
                tables[key] = re.sub(r"^# .*\n", "", text, count=1).replace("\n## ", "\n### ")
    headline = (report.get("adaptive") or {}).get(report.get("adaptive_headline") or "")
    for key in ("spend", "spend_by_bin"):
        source = Path(headline["dir"]) / f"{key}.png" if headline else None
        if source is not None and source.is_file():
            shutil.copyfile(source, out / f"{key}.png")
            images[key] = f"{key}.png"
    save_resolved_config(out, "report", config)
    write_json(out / "report.json", report)
    (out / "report.md").write_text(markdown_report(report, images, tables))
    if config.report_to == "wandb":
        log_to_wandb(report, out, images)
    logger.info("Report -> %s", out / "report.md")
    return {"output_dir": str(out), "report": str(out / "report.md"), **report}


def flatten(report: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys of the nested report (lists stay lists).

    >>> flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None})
    {'a.b': 1, 'a.c.d': [1, 2], 'e': None}
    """
    flat: dict[str, Any] = {}
    for key, value in report.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def log_to_wandb(report: dict[str, Any], out: Path, images: dict[str, str]) -> None:
    """The report's numbers as a summary, its plots as images, the search table as a W&B table."""
    import wandb

    run = wandb.run or wandb.init(project="ttcompute", job_type="report", dir=str(out))
    numbers = {k: v for k, v in flatten(report).items() if isinstance(v, (int, float)) and v is not None}
    run.summary.update(numbers)
    run.log({f"plots/{name}": wandb.Image(str(out / file)) for name, file in images.items()})
    if "search" in report:
        rows = [[family, int(b), a] for family, curve in report["search"].items() for b, a in curve.items()]
        run.log({"search_accuracy": wandb.Table(columns=["method", "budget", "accuracy"], data=rows)})
    if wandb.run is run and run.job_type == "report":
        run.finish()


ALLOCATION_KEYS = ("accuracy", "generations", "total_allowed", "budgets_used", "vs_per_bin", "vs_baseline")


def _compute_optimal_entry(summary: dict[str, Any]) -> dict[str, Any]:
    """What the report keeps of one ``compute_optimal.json``."""
    return {
        **summary["all"],
        "bins_from": summary.get("bins_from"),
        "efficiency_vs_best_of_n": summary["efficiency_vs_best_of_n"],
        "efficiency_vs_best_of_n_with_difficulty_cost": summary[
            "efficiency_vs_best_of_n_with_difficulty_cost"
        ],
        "efficiency_at_budget": summary.get("efficiency_at_budget"),
        "iso_accuracy_efficiency": summary.get("iso_accuracy_efficiency"),
        "iso_accuracy_efficiency_with_difficulty_cost": summary.get(
            "iso_accuracy_efficiency_with_difficulty_cost"
        ),
        "difficulty_cost_generations": summary.get("difficulty_cost_generations"),
        "difficulty_cost_generations_charged": summary.get("difficulty_cost_generations_charged"),
        "difficulty_samples_reused": summary.get("difficulty_samples_reused", False),
        "agreement_with_oracle": _difficulty_stats(summary).get("agreement_with_oracle"),
        "intervals": summary.get("intervals", {}),
        "per_problem_allocation": {
            b: {k: v for k, v in entry.items() if k in ALLOCATION_KEYS}
            for b, entry in (summary.get("per_problem_allocation") or {}).items()
        },
    }


def adaptive_entries(directories: list[str]) -> dict[str, dict[str, Any]]:
    """The spend-axis analyses of compute-optimal runs, by predictor: each run's own bins (its predictor
    charged) and, once, its analysis with one bin (``none``: no predictor)."""
    out: dict[str, dict[str, Any]] = {}
    for directory in directories:
        summary = _read_json(Path(directory) / "compute_optimal.json")
        if "spend" not in summary:
            continue
        name = _difficulty_stats(summary).get("predictor", summary.get("bins_from"))
        out.setdefault("none", {**_spend_entry(summary["spend_one_bin"]), "dir": directory})
        out[name] = {**_spend_entry(summary["spend"]), "dir": directory}
    return out


def _spend_entry(spend: dict[str, Any]) -> dict[str, Any]:
    return {
        "predictor_generations": spend["predictor_generations"],
        "curve": spend["curve"],
        "baseline_curve": spend["baseline_curve"],
        "strongest_fixed_curve": spend["strongest_fixed_curve"],
        "strongest_fixed_strategy": spend["strongest_fixed_strategy"],
        "intervals": spend["intervals"],
        "by_bin": spend["at_target"]["by_bin"],
    }


def _difficulty_stats(summary: dict[str, Any]) -> dict[str, Any]:
    """The ``stats.json`` of the difficulty output behind a compute-optimal run's bins ({} if none)."""
    stats_file = Path(summary.get("bins_from") or "") / "stats.json"
    return json.loads(stats_file.read_text()) if stats_file.is_file() else {}


def _predictor_lines(report: dict[str, Any]) -> list[str]:
    """One row per difficulty predictor: its agreement with the oracle, its cost, and the headline."""
    by_predictor = report.get("compute_optimal_by_predictor")
    if not by_predictor:
        return []
    lines = [
        "### The headline by difficulty predictor",
        "",
        "Each row is `ttc compute-optimal` over that predictor's bins (the oracle's need ground truth;",
        "the others do not). Cost: the estimate's compute per problem in generations, and what is",
        "charged at the matching budget when the search reuses the estimate's samples. 95% paired",
        "bootstrap intervals over problems. At the largest budget: the paper's ratio, B' / b at the",
        "largest baseline budget; averaged: the geometric mean over the accuracy levels both curves",
        "reach of the ratio of the budgets each needs (interpolated in log budget), which a plateau",
        "does not swing.",
        "",
        "| predictor | Spearman vs oracle | same bin | within one | cost (generations) | efficiency at the largest budget | with the cost | averaged over accuracies | with the cost |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, entry in by_predictor.items():
        agreement = entry.get("agreement_with_oracle") or {}
        intervals = entry.get("intervals") or {}
        cost = _fmt(entry.get("difficulty_cost_generations"))
        charged = entry.get("difficulty_cost_generations_charged") or {}
        if entry.get("difficulty_samples_reused") and charged:
            cost += (
                " (charged " + ", ".join(f"{_fmt(charged[b])} at {b}" for b in sorted(charged, key=int)) + ")"
            )
        lines.append(
            f"| {name} | {_fmt(agreement.get('spearman'))} | {_fmt(agreement.get('same_bin'))} | "
            f"{_fmt(agreement.get('within_one_bin'))} | {cost} | "
            f"{format_interval(intervals.get('efficiency_vs_best_of_n'), 2)} | "
            f"{format_interval(intervals.get('efficiency_vs_best_of_n_with_difficulty_cost'), 2)} | "
            f"{format_interval(intervals.get('iso_accuracy_efficiency'), 2)} | "
            f"{format_interval(intervals.get('iso_accuracy_efficiency_with_difficulty_cost'), 2)} |"
        )
    return [*lines, ""]


def _allocation_report_lines(co: dict[str, Any]) -> list[str]:
    allocation = co.get("per_problem_allocation") or {}
    if not allocation:
        return []
    title = "### Per-problem allocation at the same total generations (differences: 95% paired intervals)"
    return [title, "", *allocation_table(allocation), ""]


def _profile_lines(report: dict[str, Any]) -> list[str]:
    profile = report.get("profile_seconds")
    if not profile:
        return []
    total = sum(profile.values())
    lines = ["## Where the time went", "", "| stage | seconds | share |", "|---|---:|---:|"]
    lines += [f"| {stage} | {seconds:.0f} | {seconds / total:.0%} |" for stage, seconds in profile.items()]
    return [*lines, f"| total | {total:.0f} | |", ""]


def _interval_lines(intervals: dict[str, Any]) -> list[str]:
    """The 95% intervals of the headline ratios (paired bootstrap over problems), when computed."""
    if "efficiency_vs_best_of_n" not in intervals:
        return []
    return [
        f"95% intervals (paired bootstrap over {intervals['num_problems']} problems, "
        f"{intervals['efficiency_vs_best_of_n']['resamples']} resamples): "
        f"{format_interval(intervals['efficiency_vs_best_of_n'], 2)}x, and "
        f"{format_interval(intervals['efficiency_vs_best_of_n_with_difficulty_cost'], 2)}x with the cost.",
        "",
    ]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
