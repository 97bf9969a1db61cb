"""``ttc demo``: the whole pipeline on the built-in arithmetic task, on a CPU laptop.

Policies (shipped checkpoints, or ``--retrain``) -> samples of the evaluation problems and their
oracle difficulty -> MC step labels -> a PRM -> revision trajectories -> a reviser -> search (best-of-N,
beam search, lookahead, DVTS, revision chains) at budgets up to 64 -> selection -> a cheap difficulty
predictor -> compute-optimal selection -> the large policy greedy -> FLOPs-matched comparison ->
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
from ttcompute.demo_config import DemoConfig

logger = logging.getLogger(__name__)

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
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
    if not Path(recipe).is_file():
        raise InputError(f"{recipe}: no such recipe (run the demo from the repository root)")
    logger.info("Training %s from %s (this takes a while on a CPU)", name, recipe)
    run_stage("train-policy", ["--config", recipe, "--output_dir", str(path)])
    return path


class _Stages:
    """Runs ``ttc`` stages for the demo, logging each and timing the whole."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.start = time.time()

    def dir(self, name: str) -> str:
        return str(self.out / name)

    def run(self, stage: str, *args: Any, done_if: str | None = None) -> Any:
        """``ttc <stage> args``; skipped when ``done_if`` (a file under output_dir) exists."""
        if done_if and (self.out / done_if).is_file():
            logger.info("[demo %5.0fs] %s: reusing %s", time.time() - self.start, stage, done_if)
            return None
        logger.info("[demo %5.0fs] ttc %s", time.time() - self.start, stage)
        return run_stage(stage, [str(a) for a in args])


def run_demo(config: DemoConfig) -> dict[str, Any]:
    """Run the pipeline, then print where the report is and its headline numbers."""
    missing = [c for c in DEMO_CONFIGS if not Path(c).is_file()]
    if missing:
        raise InputError(f"{missing[0]}: not found; run the demo from the repository root (it uses configs/)")
    out = Path(config.output_dir)
    save_resolved_config(out, "demo", config)
    small = _policy(config, "policy_small", config.policy_small_config)
    large = _policy(config, "policy_large", config.policy_large_config)
    s = _Stages(out)
    fast = config.fast
    budgets = [str(b) for b in config.budgets]
    max_budget = max(config.budgets)
    sample = ["--config", "configs/sample.yaml", "--model_name_or_path", small, "--seed", config.seed]

    # 1. The evaluation problems: samples, pass@1, oracle difficulty bins.
    evaluation = ["--num_problems", config.num_problems, "--problem_seed", config.problem_seed]
    s.run(
        "sample", *sample, *evaluation, "--num_samples", config.num_samples, "--output_dir", s.dir("samples")
    )
    s.run("difficulty", "--samples_dir", s.dir("samples"), "--output_dir", s.dir("difficulty"))

    # 2. The PRM: MC labels of the small policy's own samples (on-policy), then the likelihood PRM.
    s.run("sample", *sample, "--num_problems", config.prm_problems, "--problem_seed", 5000, "--num_samples",
          4 if fast else 8, "--output_dir", s.dir("prm/train_samples"))  # fmt: skip
    label = [
        "--config",
        "configs/label.yaml",
        "--model_name_or_path",
        small,
        "--num_rollouts",
        4 if fast else 16,
    ]
    s.run("label", *label, "--samples_dir", s.dir("prm/train_samples"), "--max_solutions_per_problem", 4,
          "--output_dir", s.dir("prm/train_labels"))  # fmt: skip
    s.run("train-prm", "--config", "configs/prm.yaml", "--prm_kind", "likelihood", "--model_name_or_path", small,
          "--dataset_name", s.dir("prm/train_labels"), "--output_dir", s.dir("prm/prm"),
          done_if="prm/prm/training_log.json")  # fmt: skip
    s.run("sample", *sample, "--num_problems", 12 if fast else 48, "--problem_seed", 6000, "--num_samples", 4,
          "--output_dir", s.dir("prm/heldout_samples"))  # fmt: skip
    s.run(
        "label",
        *label,
        "--samples_dir",
        s.dir("prm/heldout_samples"),
        "--output_dir",
        s.dir("prm/heldout_labels"),
    )
    # The first-error threshold is calibrated on the training problems, scored on held-out ones.
    s.run("eval-prm", "--prm", s.dir("prm/prm"), "--dataset", s.dir("prm/heldout_labels"), "--gold", "checker",
          "--calibration_dataset", s.dir("prm/train_labels"), "--output_dir", s.dir("prm/eval"))  # fmt: skip

    # 3. The reviser: trajectories from many samples per problem, SFT on the revision only.
    s.run("sample", *sample, "--num_problems", config.reviser_problems, "--problem_seed", 12000, "--num_samples",
          config.reviser_samples, "--output_dir", s.dir("reviser/train_samples"))  # fmt: skip
    s.run("revisions", "--config", "configs/revisions.yaml", "--samples_dir", s.dir("reviser/train_samples"),
          "--output_dir", s.dir("reviser/trajectories"))  # fmt: skip
    s.run("train-reviser", "--config", "configs/reviser.yaml", "--model_name_or_path", small, "--dataset_name",
          s.dir("reviser/trajectories"), "--num_train_epochs", 1, "--output_dir", s.dir("reviser/reviser"),
          "--disable_tqdm", "true", done_if="reviser/reviser/training_log.json")  # fmt: skip

    # 4. Search on the evaluation problems, every method under the same budgets; selection per bin.
    methods = ["best_of_n", "beam_search", "revisions"] + ([] if fast else ["lookahead", "dvts"])
    lengths = [b for b in ("1", "4", "16") if int(b) <= max_budget]
    s.run("search", "--config", "configs/search.yaml", "--model_name_or_path", small, *evaluation, "--prm",
          s.dir("prm/prm"), "--reviser", s.dir("reviser/reviser"), "--methods", *methods, "--budgets", *budgets,
          "--beam_widths", "4", "--revision_lengths", *lengths, "--seed", config.seed,
          "--output_dir", s.dir("search"))  # fmt: skip
    s.run("select", "--search_dir", s.dir("search"), "--difficulty_dir", s.dir("difficulty"),
          "--output_dir", s.dir("select"))  # fmt: skip

    # 5. Difficulty without ground truth: the PRM on the first 4 samples (cheap) -- and the analyses.
    s.run("difficulty", "--samples_dir", s.dir("samples"), "--predictor", "prm_probe", "--prm", s.dir("prm/prm"),
          "--probe_samples", min(4, config.num_samples), "--output_dir", s.dir("difficulty_probe"))  # fmt: skip
    for name, bins in (("compute_optimal", "difficulty"), ("compute_optimal_probe", "difficulty_probe")):
        s.run("compute-optimal", "--select_dirs", s.dir("select"), "--difficulty_dir", s.dir(bins),
              "--output_dir", s.dir(name))  # fmt: skip
    s.run("sample", *sample, *evaluation, "--model_name_or_path", large, "--temperature", 0, "--num_samples", 1,
          "--output_dir", s.dir("large_greedy"))  # fmt: skip
    s.run("flops-matched", "--compute_optimal_dir", s.dir("compute_optimal"), "--large_samples_dir",
          s.dir("large_greedy"), "--small_model", small, "--large_model", large, "--output_dir",
          s.dir("flops_matched"))  # fmt: skip
    cost_dirs = ["samples", "prm/train_samples", "prm/train_labels", "prm/prm", "reviser/train_samples",
                 "reviser/reviser", "search", "difficulty_probe", "large_greedy"]  # fmt: skip
    report = s.run(
        "report", "--output_dir", s.dir("report"), "--policy_small", small, "--policy_large", large,
        "--small_samples_dir", s.dir("samples"), "--large_samples_dir", s.dir("large_greedy"),
        "--prm_eval_dir", s.dir("prm/eval"), "--select_dirs", s.dir("select"),
        "--compute_optimal_dir", s.dir("compute_optimal"),
        "--compute_optimal_predicted_dir", s.dir("compute_optimal_probe"),
        "--flops_matched_dir", s.dir("flops_matched"), "--cost_dirs", *[s.dir(d) for d in cost_dirs],
        "--wall_seconds", round(time.time() - s.start, 1), "--report_to", config.report_to,
    )  # fmt: skip
    _print_headline(report, out)
    return report


def _print_headline(report: dict[str, Any], out: Path) -> None:
    # The demo's product is this summary on the terminal, so it is printed rather than logged.
    policy, co = report.get("policy", {}), report.get("compute_optimal", {})
    print("\n== ttc demo ==")
    print(f"report:  {out / 'report' / 'report.md'}")
    print(
        f"policies: small pass@1 {policy.get('small', {}).get('pass_at_1')} "
        f"({policy.get('small', {}).get('params')} params); large greedy {policy.get('large', {}).get('pass_at_1')} "
        f"({policy.get('large', {}).get('params')} params)"
    )
    if "prm" in report:
        print(f"PRM:      first-error F1 {report['prm']['first_error_f1']}")
    if "reviser" in report:
        print(f"reviser:  pass@1 by revision step {report['reviser']['pass_at_1_by_step'][:5]}")
    for method, curve in report.get("search", {}).items():
        print(f"search:   {method:<20} " + "  ".join(f"N={b}: {a:.2f}" for b, a in curve.items()))
    if co:
        budgets = [k for k in co if k.isdigit()]
        print("compute-optimal: " + "  ".join(f"N={b}: {co[b]:.2f}" for b in sorted(budgets, key=int)))
        print(
            f"efficiency vs weighted best-of-N: {co.get('efficiency_vs_best_of_n')}x "
            f"({co.get('efficiency_vs_best_of_n_with_difficulty_cost')}x counting the difficulty estimate)"
        )
    for ratio, bins in report.get("flops_matched", {}).items():
        row = bins.get("all", {})
        print(f"FLOPs-matched R={ratio}: small+TTC {row.get('small_ttc')} vs large {row.get('large')}")
    print(f"cost:     {report['cost']['total_flops']:.3g} FLOPs, {report.get('wall_seconds')} s")
