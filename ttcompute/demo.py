"""``ttc demo``: the pipeline end to end on the built-in arithmetic task, on a CPU laptop.

Stages so far: base policy (shipped checkpoint, or ``--retrain``) -> ``sample`` -> ``difficulty``.
Every stage caches its output under ``output_dir``, so a rerun after an interruption resumes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ttcompute.errors import InputError

logger = logging.getLogger(__name__)

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"


@dataclass
class DemoConfig:
    """Options of ``ttc demo``.

    Attributes:
        output_dir: Where every stage writes (reruns resume from what is there).
        retrain: Train the base policies from their recipes instead of using the shipped checkpoints.
        fast: A smoke-test run (fewer problems and samples).
        policy_small_config / policy_large_config: Recipes used by ``--retrain``.
        num_problems / num_samples: Held-out problems and samples per problem (``--fast`` shrinks them).
        problem_seed: Seed of the held-out problems (differs from the policies' training seed).
        seed: Sampling seed.
    """

    output_dir: str = field(default="runs/demo", metadata={"help": "output directory (cached, resumable)"})
    retrain: bool = field(default=False, metadata={"help": "train the base policies from scratch"})
    fast: bool = field(default=False, metadata={"help": "smoke-test size"})
    policy_small_config: str = field(
        default="configs/policy_small.yaml", metadata={"help": "recipe for --retrain"}
    )
    policy_large_config: str = field(
        default="configs/policy_large.yaml", metadata={"help": "recipe for --retrain"}
    )
    num_problems: int = field(default=320, metadata={"help": "held-out problems"})
    num_samples: int = field(default=16, metadata={"help": "samples per problem"})
    problem_seed: int = field(default=2024, metadata={"help": "seed of the held-out problems"})
    seed: int = field(default=0, metadata={"help": "sampling seed"})

    def __post_init__(self) -> None:
        if self.fast:
            self.num_problems = min(self.num_problems, 48)
            self.num_samples = min(self.num_samples, 4)


def _policy(config: DemoConfig, name: str, recipe: str) -> Path:
    """A trained policy: the shipped checkpoint, or one trained (once, then cached) from its recipe."""
    if not config.retrain:
        path = CHECKPOINTS / name
        if not (path / "model.safetensors").is_file():
            raise InputError(f"{path}: shipped checkpoint missing; run `ttc demo --retrain` to train it")
        return path
    from ttcompute.cli import run_stage

    path = Path(config.output_dir) / name
    if (path / "training_log.json").is_file():
        logger.info("Using the %s trained earlier in %s", name, path)
        return path
    if not Path(recipe).is_file():
        raise InputError(f"{recipe}: no such recipe (run the demo from the repository root)")
    logger.info("Training %s from %s (this takes a while on a CPU)", name, recipe)
    run_stage("train-policy", ["--config", recipe, "--output_dir", str(path)])
    return path


def run_demo(config: DemoConfig) -> dict[str, Any]:
    """Run every stage that exists so far and print where the outputs are."""
    from ttcompute.config import save_resolved_config
    from ttcompute.data_gen.difficulty import DifficultyConfig, run_difficulty
    from ttcompute.data_gen.sampling import SampleConfig, pass_at_1_by, run_sample
    from ttcompute.data_gen.shards import load_sharded
    from ttcompute.models.generation import GenerationArgs
    from ttcompute.tasks.source_args import ProblemArgs

    out = Path(config.output_dir)
    save_resolved_config(out, "demo", config)
    small = _policy(config, "policy_small", config.policy_small_config)
    # The large policy is only needed by the FLOPs-matched comparison; train it now so --retrain
    # leaves both recipes' checkpoints behind.
    if config.retrain and not config.fast:
        _policy(config, "policy_large", config.policy_large_config)

    problems = ProblemArgs(
        task="arithmetic", num_problems=config.num_problems, problem_seed=config.problem_seed
    )
    gen_args = GenerationArgs(model_name_or_path=str(small), max_new_tokens=160)
    sample_config = SampleConfig(
        output_dir=str(out / "samples"),
        num_samples=config.num_samples,
        seed=config.seed,
        problems_per_shard=32,
    )
    sample_stats = run_sample(problems, gen_args, sample_config)
    difficulty_stats = run_difficulty(
        DifficultyConfig(samples_dir=str(out / "samples"), output_dir=str(out / "difficulty"))
    )

    rows = load_sharded(out / "samples").to_list()
    overall, by_ops = pass_at_1_by(rows, key="num_ops")
    summary = {
        "policy": str(small),
        "samples": str(out / "samples"),
        "difficulty": str(out / "difficulty"),
        "pass_at_1": overall,
        "pass_at_1_by_num_ops": by_ops,
        "difficulty_bin_sizes": difficulty_stats["bin_sizes"],
        "mean_pass_at_1_by_bin": difficulty_stats["mean_pass_at_1_by_bin"],
        "policy_tokens_generated": sample_stats["compute"]["policy_tokens"],
        "policy_flops": sample_stats["compute"]["policy_flops"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _print_summary(summary, out)
    return summary


def _print_summary(summary: dict[str, Any], out: Path) -> None:
    # The demo's product is this summary on the terminal, so it is printed rather than logged.
    print("\n== ttc demo ==")
    print(f"policy:      {summary['policy']}")
    print(f"samples:     {summary['samples']}  (pass@1 {summary['pass_at_1']:.3f})")
    print(
        "pass@1 by number of operations: "
        + ", ".join(f"{k}: {v:.2f}" for k, v in summary["pass_at_1_by_num_ops"].items())
    )
    print(f"difficulty:  {summary['difficulty']}  (bin sizes {summary['difficulty_bin_sizes']})")
    print(
        "mean pass@1 by bin (1 = easiest): "
        + ", ".join(f"{k}: {v}" for k, v in summary["mean_pass_at_1_by_bin"].items())
    )
    print(
        f"compute:     {summary['policy_tokens_generated']} tokens generated, {summary['policy_flops']:.3g} FLOPs"
    )
    print(f"summary:     {out / 'summary.json'}")
