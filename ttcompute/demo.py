"""``ttc demo``: the whole pipeline on the built-in arithmetic task, on a CPU laptop.

Policies (shipped checkpoints, or ``--retrain``) -> samples of the evaluation problems and their
oracle difficulty -> MC step labels -> two PRMs on them (the likelihood PRM, which drives the search, and
the paper's token-classification PRM, searched with beside it) -> revision trajectories -> a reviser ->
search (best-of-N, beam search, revision chains; lookahead and DVTS on request) at budgets up to 64 -> selection ->
difficulty predictors -> compute-optimal selection -> the large policy greedy -> FLOPs-matched comparison ->
``report.md``. Every stage is a ``ttc`` stage writing under ``output_dir``: sampling, labelling and
search resume shard by shard, trained models are reused once their ``training_log.json`` exists, and
the analysis stages are cheap to redo -- so a rerun after an interruption picks up where it stopped.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from ttcompute.cli import run_stage
from ttcompute.core.config import save_resolved_config
from ttcompute.core.errors import InputError
from ttcompute.core.recipes import resolve_config
from ttcompute.core.shards import write_json
from ttcompute.demo_config import DemoConfig
from ttcompute.eval.efficiency import format_interval
from ttcompute.models.shipped import CHECKPOINTS

logger = logging.getLogger(__name__)

TOKEN_PRM_LOG = "prm/prm_token/training_log.json"


def reviser_dir(config: DemoConfig) -> str:
    """The reviser the demo searches with: the paper's one round, or the ReST^EM round trained on
    the first one's own chains (``reviser_rounds: 2``)."""
    return "reviser/reviser_restem" if config.reviser_rounds == 2 else "reviser/reviser"


DEMO_CONFIGS = ("configs/sample.yaml", "configs/label.yaml", "configs/prm.yaml", "configs/revisions.yaml",
                "configs/reviser.yaml", "configs/search.yaml")  # fmt: skip


def _policy(config: DemoConfig, name: str, recipe: str) -> Path:
    """A trained policy: the shipped checkpoint, or one trained (once, then cached) from its recipe."""
    if not config.retrain:
        path = CHECKPOINTS / name
        if not (path / "model.safetensors").is_file():
            raise InputError(f"{path}: shipped checkpoint missing; run `ttc demo --retrain` to train it")
        return path

    path = Path(config.output_dir) / name
    if (path / "training_log.json").is_file():
        logger.info("Using the %s trained earlier in %s", name, path)
        return path
    recipe = str(resolve_config(recipe))
    logger.info("Training %s from %s (this takes a while on a CPU)", name, recipe)
    run_stage("train-policy", ["--config", recipe, "--output_dir", str(path)])
    return path


class _Stages:
    """Runs ``ttc`` stages for the demo, logging each and timing each (``profile.json``: seconds per
    step of the demo, in order; a step reused from an earlier run counts what it took now)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.start = time.time()
        self.profile: dict[str, float] = {}

    def dir(self, name: str) -> str:
        return str(self.out / name)

    def run(self, stage: str, *args: Any, done_if: str | None = None, step: str | None = None) -> Any:
        """``ttc <stage> args``; skipped when ``done_if`` (a file under output_dir) exists. ``step``:
        the name it is timed under (default: the stage)."""
        if done_if and (self.out / done_if).is_file():
            logger.info("[demo %5.0fs] %s: reusing %s", time.time() - self.start, stage, done_if)
            return None
        logger.info("[demo %5.0fs] ttc %s", time.time() - self.start, stage)
        began = time.time()
        try:
            return run_stage(stage, [str(a) for a in args])
        finally:
            name = step or stage
            self.profile[name] = round(self.profile.get(name, 0.0) + time.time() - began, 1)
            write_json(self.out / "profile.json", self.profile)


def run_demo(config: DemoConfig) -> dict[str, Any]:
    """Run the pipeline, then print where the report is and its headline numbers."""
    for recipe in DEMO_CONFIGS:  # a clone's configs/, else the recipes installed with the package
        resolve_config(recipe)
    out = Path(config.output_dir)
    save_resolved_config(out, "demo", config)
    small = _policy(config, "policy_small", config.policy_small_config)
    large = _policy(config, "policy_large", config.policy_large_config)
    s = _Stages(out)
    budgets = [str(b) for b in config.budgets]
    max_budget = max(config.budgets)
    sample = ["--config", "configs/sample.yaml", "--model_name_or_path", small, "--seed", config.seed]

    # 1. The evaluation problems: samples, pass@1, oracle difficulty bins.
    evaluation = ["--num_problems", config.num_problems, "--problem_seed", config.problem_seed]
    s.run("sample", *sample, *evaluation, "--num_samples", config.num_samples, "--output_dir", s.dir("samples"),
          step="sample: evaluation")  # fmt: skip
    s.run("difficulty", "--samples_dir", s.dir("samples"), "--output_dir", s.dir("difficulty"),
          step="difficulty: oracle")  # fmt: skip

    # 2-3. The PRM and the reviser, trained here -- or those of an earlier demo (``--trained_from``:
    # they never saw the evaluation problems, so other draws of those can reuse them).
    t = _Stages(Path(config.trained_from)) if config.trained_from else s
    if config.trained_from:
        for done in (
            "prm/prm/training_log.json",
            f"{reviser_dir(config)}/training_log.json",
            "prm/eval/prm_eval.json",
        ):
            if not (Path(config.trained_from) / done).is_file():
                raise InputError(
                    f"{Path(config.trained_from) / done}: missing (--trained_from takes a finished demo)"
                )
        logger.info("Using the PRM and reviser of %s", config.trained_from)
    else:
        _train_verifier_and_reviser(s, config, small, sample)
    # The paper's PRM, on the same labels. A --trained_from demo from before it has none: it is
    # trained here on that demo's labels (a minute) rather than refusing the demo.
    token_prm = t if (t.out / TOKEN_PRM_LOG).is_file() else s
    if token_prm is s:
        if config.trained_from:
            logger.info("%s has no token-classification PRM: training one here on its labels", t.out)
        _train_token_prm(s, t, config, small)

    # 4. Difficulty without ground truth. question: a probe on the policy's hidden states of the
    # prompt, trained on the reviser data's problems (64 samples each: their pass@1 is precise),
    # before any sample of the evaluation problems; prm: the PRM's mean score of the 16 samples;
    # prm_probe: of 4 samples, the first of best-of-N's candidates (drawn once, below).
    oracle = ["--oracle_dir", s.dir("difficulty")]
    s.run("difficulty", "--samples_dir", s.dir("samples"), "--predictor", "question", "--probe_train_samples_dir",
          t.dir("reviser/train_samples"), "--output_dir", s.dir("difficulty_question"),
          step="difficulty: question")  # fmt: skip
    s.run("difficulty", "--samples_dir", s.dir("samples"), "--predictor", "prm", "--prm", t.dir("prm/prm"),
          "--output_dir", s.dir("difficulty_prm"), step="difficulty: prm")  # fmt: skip
    # Best-of-N's candidates are the same whichever PRM ranks them, so they are drawn once, here, for
    # both searches; prm_probe reads only the first 4 and is charged for those (compute-optimal
    # charges what the search did not reuse of them).
    probe_samples = min(4, config.num_samples)
    candidates = max(probe_samples, max_budget)
    s.run("sample", *sample, *evaluation, "--num_samples", candidates, "--seed", config.seed + 1,
          "--output_dir", s.dir("probe_samples"), step="sample: best-of-N (prm_probe: first 4)")  # fmt: skip
    s.run("difficulty", "--samples_dir", s.dir("probe_samples"), "--predictor", "prm_probe", "--prm",
          t.dir("prm/prm"), "--probe_samples", probe_samples, *oracle, "--output_dir", s.dir("difficulty_probe"),
          step="difficulty: prm_probe")  # fmt: skip

    # 5. Search on the evaluation problems, every method under the same budgets; selection per bin.
    methods = config.methods
    reuse = [
        "--initial_samples_dir",
        s.dir("probe_samples"),
        "--initial_samples",
        min(candidates, max_budget),
    ]
    lengths = [length for length in config.revision_lengths if length <= max_budget]
    s.run("search", "--config", "configs/search.yaml", "--model_name_or_path", small, *evaluation, "--prm",
          t.dir("prm/prm"), "--reviser", t.dir(reviser_dir(config)), "--methods", *methods, "--budgets", *budgets,
          "--beam_widths", "4", "--revision_lengths", *lengths, "--seed", config.seed,
          *reuse, "--problems_per_shard", config.problems_per_shard, "--output_dir", s.dir("search"))  # fmt: skip
    s.run("select", "--search_dir", s.dir("search"), "--difficulty_dir", s.dir("difficulty"),
          "--output_dir", s.dir("select"))  # fmt: skip
    # The token-classification PRM on the same problems and budgets: best-of-N scores the same
    # candidates (no generation of its own), beam search is its own (the PRM steers it).
    token_methods = [m for m in config.token_prm_methods if m in methods]
    if token_methods:
        s.run("search", "--config", "configs/search.yaml", "--model_name_or_path", small, *evaluation, "--prm",
              token_prm.dir("prm/prm_token"), "--methods", *token_methods, "--budgets", *budgets, "--beam_widths",
              "4", "--seed", config.seed, *(reuse if "best_of_n" in token_methods else []), "--problems_per_shard",
              config.problems_per_shard, "--output_dir", s.dir("search_token"), step="search: token PRM")  # fmt: skip
        # Its static strategies, beside the likelihood PRM's: which verifier ranks better (no stopping rules).
        s.run("select", "--search_dir", s.dir("search_token"), "--difficulty_dir", s.dir("difficulty"),
              "--adaptive", "false", "--output_dir", s.dir("select_token"), step="select: token PRM")  # fmt: skip
    predicted = {"question": "difficulty_question", "prm": "difficulty_prm", "prm_probe": "difficulty_probe"}
    s.run("compute-optimal", "--select_dirs", s.dir("select"), "--difficulty_dir", s.dir("difficulty"),
          "--output_dir", s.dir("compute_optimal"), step="compute-optimal")  # fmt: skip
    for predictor, bins in predicted.items():
        s.run("compute-optimal", "--select_dirs", s.dir("select"), "--difficulty_dir", s.dir(bins),
              "--output_dir", s.dir(f"compute_optimal_{predictor}"), step="compute-optimal")  # fmt: skip
    s.run("sample", *sample, *evaluation, "--model_name_or_path", large, "--temperature", 0, "--num_samples", 1,
          "--output_dir", s.dir("large_greedy"), step="sample: large greedy")  # fmt: skip
    s.run("flops-matched", "--compute_optimal_dir", s.dir("compute_optimal"), "--large_samples_dir",
          s.dir("large_greedy"), "--small_model", small, "--large_model", large, "--output_dir",
          s.dir("flops_matched"))  # fmt: skip
    trained_dirs = [
        "prm/train_samples",
        "prm/train_labels",
        "prm/prm",
        "reviser/train_samples",
        "reviser/reviser",
        *(["reviser/train_chains", reviser_dir(config)] if config.reviser_rounds == 2 else []),
    ]
    cost_dirs = [s.dir(d) for d in ("samples", "search", "probe_samples", "difficulty_probe", "difficulty_prm",
                                     "difficulty_question", "large_greedy")]  # fmt: skip
    cost_dirs += [t.dir(d) for d in trained_dirs] + [token_prm.dir("prm/prm_token")]
    token_search = ["--compare_prm_select_dir", s.dir("select_token")] if token_methods else []
    cost_dirs += [s.dir("search_token")] if token_methods else []
    report = s.run(
        "report", "--output_dir", s.dir("report"), "--policy_small", small, "--policy_large", large,
        "--small_samples_dir", s.dir("samples"), "--large_samples_dir", s.dir("large_greedy"),
        "--prm_eval_dir", t.dir("prm/eval"), "--select_dirs", s.dir("select"),
        "--compare_prm_eval_dir", token_prm.dir("prm/eval_token"), *token_search,
        "--compute_optimal_dir", s.dir("compute_optimal"),
        "--compute_optimal_predicted_dirs", *[s.dir(f"compute_optimal_{p}") for p in predicted],
        "--flops_matched_dir", s.dir("flops_matched"), "--cost_dirs", *cost_dirs,
        "--profile_file", s.dir("profile.json"),
        "--wall_seconds", round(time.time() - s.start, 1), "--report_to", config.report_to,
    )  # fmt: skip
    _print_headline(report, out)
    return report


def _train_verifier_and_reviser(s: _Stages, config: DemoConfig, small: Path, sample: list) -> None:
    """The demo's PRM (MC labels of the small policy's samples, the likelihood PRM, its evaluation)
    and reviser (trajectories, SFT)."""
    fast = config.fast
    # 2. The PRM: MC labels of the small policy's own samples (on-policy), then the likelihood PRM.
    s.run("sample", *sample, "--num_problems", config.prm_problems, "--problem_seed", 5000, "--num_samples",
          4 if fast else 8, "--output_dir", s.dir("prm/train_samples"), step="sample: PRM data")  # fmt: skip
    label = [
        "--config",
        "configs/label.yaml",
        "--model_name_or_path",
        small,
        "--num_rollouts",
        4 if fast else 16,
    ]
    s.run("label", *label, "--samples_dir", s.dir("prm/train_samples"), "--max_solutions_per_problem", 4,
          "--output_dir", s.dir("prm/train_labels"), step="label: PRM data")  # fmt: skip
    s.run("train-prm", "--config", "configs/prm.yaml", "--prm_kind", "likelihood", "--model_name_or_path", small,
          "--dataset_name", s.dir("prm/train_labels"), "--output_dir", s.dir("prm/prm"),
          done_if="prm/prm/training_log.json")  # fmt: skip
    s.run("sample", *sample, "--num_problems", 12 if fast else 48, "--problem_seed", 6000, "--num_samples", 4,
          "--output_dir", s.dir("prm/heldout_samples"), step="sample: PRM held-out")  # fmt: skip
    s.run("label", *label, "--samples_dir", s.dir("prm/heldout_samples"), "--output_dir",
          s.dir("prm/heldout_labels"), step="label: PRM held-out")  # fmt: skip
    # The first-error threshold is calibrated on the training problems, scored on held-out ones.
    s.run("eval-prm", "--prm", s.dir("prm/prm"), "--dataset", s.dir("prm/heldout_labels"), "--gold", "checker",
          "--calibration_dataset", s.dir("prm/train_labels"), "--output_dir", s.dir("prm/eval"))  # fmt: skip

    # 3. The reviser: trajectories from many samples per problem, SFT on the revision only.
    s.run("sample", *sample, "--num_problems", config.reviser_problems, "--problem_seed", 12000, "--num_samples",
          config.reviser_samples, "--output_dir", s.dir("reviser/train_samples"),
          step="sample: reviser data")  # fmt: skip
    s.run("revisions", "--config", "configs/revisions.yaml", "--samples_dir", s.dir("reviser/train_samples"),
          "--output_dir", s.dir("reviser/trajectories"))  # fmt: skip
    s.run("train-reviser", "--config", "configs/reviser.yaml", "--model_name_or_path", small, "--dataset_name",
          s.dir("reviser/trajectories"), "--num_train_epochs", 1, "--output_dir", s.dir("reviser/reviser"),
          "--disable_tqdm", "true", done_if="reviser/reviser/training_log.json")  # fmt: skip
    if config.reviser_rounds == 2:
        # ReST^EM: the first reviser's own chains on its training problems (4 chains of 8), every
        # correct attempt with what the reviser saw before it, added to the paper's trajectories;
        # trained from the policy again (bench/reviser_options.py measured it against the others).
        s.run("search", "--config", "configs/search.yaml", "--model_name_or_path", small, "--methods", "revisions",
              "--reviser", s.dir("reviser/reviser"), "--budgets", 4 if fast else 32, "--revision_lengths",
              2 if fast else 8, "--num_problems",
              config.reviser_problems, "--problem_seed", 12000, "--seed", config.seed, "--problems_per_shard",
              config.problems_per_shard, "--output_dir", s.dir("reviser/train_chains"),
              step="search: reviser's own chains")  # fmt: skip
        s.run("revisions", "--config", "configs/revisions.yaml", "--samples_dir", s.dir("reviser/train_samples"),
              "--chains_dir", s.dir("reviser/train_chains"), "--output_dir", s.dir("reviser/trajectories_restem"),
              step="revisions: own chains")  # fmt: skip
        s.run("train-reviser", "--config", "configs/reviser.yaml", "--model_name_or_path", small, "--dataset_name",
              f"{s.dir('reviser/trajectories')},{s.dir('reviser/trajectories_restem')}", "--num_train_epochs", 1,
              "--output_dir", s.dir("reviser/reviser_restem"), "--disable_tqdm", "true",
              done_if="reviser/reviser_restem/training_log.json", step="train-reviser: ReST^EM")  # fmt: skip


def _train_token_prm(s: _Stages, labels: _Stages, config: DemoConfig, small: Path) -> None:
    """The token-classification PRM (``configs/prm.yaml``, the paper's) on the MC labels of ``labels``
    and its evaluation exactly as the likelihood PRM's: the same held-out labels and calibration."""
    schedule = ["--max_steps", config.token_prm_max_steps]
    if config.token_prm_learning_rate is not None:
        schedule += ["--learning_rate", config.token_prm_learning_rate]
    s.run("train-prm", "--config", "configs/prm.yaml", "--model_name_or_path", small, "--dataset_name",
          labels.dir("prm/train_labels"), *schedule, "--disable_tqdm", "true", "--output_dir",
          s.dir("prm/prm_token"), done_if=TOKEN_PRM_LOG, step="train-prm: token classification")  # fmt: skip
    s.run("eval-prm", "--prm", s.dir("prm/prm_token"), "--dataset", labels.dir("prm/heldout_labels"), "--gold",
          "checker", "--calibration_dataset", labels.dir("prm/train_labels"), "--output_dir",
          s.dir("prm/eval_token"), step="eval-prm: token classification")  # fmt: skip


def _print_adaptive(report: dict[str, Any]) -> None:
    """The headline: compute-optimal over static and adaptive strategies, every cost counted, with its
    intervals; the other predictors' rows; the verifier's ceiling."""
    adaptive, name = report.get("adaptive") or {}, report.get("adaptive_headline")
    if name in adaptive and adaptive[name]["baseline_curve"]:
        entry = adaptive[name]
        intervals, top = entry["intervals"], max(entry["baseline_curve"], key=int)
        print(
            f"HEADLINE adaptive compute-optimal ({name} bins, every cost counted): "
            f"{format_interval(intervals['averaged/best_of_n'], 2)}x fewer generations than weighted best-of-N "
            f"(averaged over accuracies); {format_interval(intervals['spend_at_target/best_of_n'], 2)} generations "
            f"per problem at its N={top} accuracy ({entry['baseline_curve'][top]:.3f})"
        )
        print(
            f"  vs the strongest fixed strategy ({entry['strongest_fixed_strategy'][top]} at {top}): "
            f"{format_interval(intervals['averaged/strongest_fixed'], 2)}x averaged, "
            f"{format_interval(intervals['spend_at_target/strongest_fixed'], 2)} generations at its accuracy"
        )
        for other, row in adaptive.items():
            if other != name:
                print(
                    f"  with {other} bins: {format_interval(row['intervals']['averaged/best_of_n'], 2)}x, "
                    f"{format_interval(row['intervals']['spend_at_target/best_of_n'], 2)} generations"
                )
    ceiling = (report.get("ceiling") or {}).get("all", {}).get("pass_at_n") or {}
    weighted = (report.get("search") or {}).get("best_of_n_weighted") or {}
    if ceiling:
        n = max(ceiling, key=int)
        gap = (
            f"; weighted best-of-N {weighted[n]:.3f}: selection gap {ceiling[n] - weighted[n]:.3f}"
            if n in weighted
            else ""
        )
        print(f"verifier ceiling: pass@{n} with oracle selection {ceiling[n]:.3f}{gap}")


def _print_headline(report: dict[str, Any], out: Path) -> None:
    # The demo's product is this summary on the terminal, so it is printed rather than logged.
    policy, co = report.get("policy", {}), report.get("compute_optimal", {})
    smoke = report.get("smoke_test")
    print("\n== ttc demo --fast: a smoke test ==" if smoke else "\n== ttc demo ==")
    if smoke:
        print(f"It shows {smoke['shows']}.\nIts numbers are not {smoke['does_not_show']}.")
        if smoke.get("reviser"):
            print(f"Revisions: {smoke['reviser']}.")
    print(f"report:  {out / 'report' / 'report.md'}")
    print(
        f"policies: small pass@1 {policy.get('small', {}).get('pass_at_1')} "
        f"({policy.get('small', {}).get('params')} params); large greedy {policy.get('large', {}).get('pass_at_1')} "
        f"({policy.get('large', {}).get('params')} params)"
    )
    verifiers = report.get("verifiers", {})
    for name, entry in verifiers.get("by_prm", {}).items():
        curves = [(label, entry.get(family) or {}) for label, family in (("best-of-N weighted", "best_of_n_weighted"),
                                                                          ("beam", "beam_search"))]  # fmt: skip
        top = "; ".join(f"{label} N={max(c, key=int)}: {c[max(c, key=int)]:.2f}" for label, c in curves if c)
        print(
            f"PRM {name}{' (headline)' if entry.get('drove_headline') else ''}: first-error F1 "
            f"{entry.get('first_error_f1')}, step AUC {entry.get('step_roc_auc')}"
            + (f"; {top}" if top else "")
        )
    if "prm" in report and not verifiers:
        print(f"PRM:      first-error F1 {report['prm']['first_error_f1']}")
    if "reviser" in report:
        print(f"reviser:  pass@1 by revision step {report['reviser']['pass_at_1_by_step'][:5]}")
    for method, curve in report.get("search", {}).items():
        print(f"search:   {method:<20} " + "  ".join(f"N={b}: {a:.2f}" for b, a in curve.items()))
    _print_adaptive(report)
    if co:
        budgets = [k for k in co if k.isdigit()]
        print("static compute-optimal (the paper's, oracle bins): " + "  ".join(
            f"N={b}: {co[b]:.2f}" for b in sorted(budgets, key=int)))  # fmt: skip
        paper = (co.get("intervals") or {}).get("efficiency_vs_best_of_n")
        print(
            f"  the paper's ratio at the largest budget (not the headline: read where two flat curves first "
            f"cross): {format_interval(paper, 2)}x vs weighted best-of-N"
        )
    for ratio, bins in report.get("flops_matched", {}).items():
        row = bins.get("all", {})
        print(f"FLOPs-matched R={ratio}: small+TTC {row.get('small_ttc')} vs large {row.get('large')}")
    print(f"cost:     {report['cost']['total_flops']:.3g} FLOPs, {report.get('wall_seconds')} s")
