"""``ttc <stage> --config X.yaml [--key value ...]``: parse the stage's config, run the stage.

Stages are listed in one dict; each entry names its config dataclasses and its function, imported only
when that stage runs so that ``ttc --help`` stays instant.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
from pathlib import Path

import yaml

from ttcompute.core.argv import did_you_mean, launcher_rank_args
from ttcompute.core.errors import InputError, command_line

# stage -> (summary, [(module, config class) ...], (module, function)), in pipeline order. Config classes
# live in light ``*_config`` modules; a stage's own module (models, torch ...) is imported only when it runs.
PROBLEMS = ("ttcompute.tasks.problem_config", "ProblemConfig")
GENERATOR = ("ttcompute.models.generation_config", "GeneratorConfig")
STAGES: dict[str, tuple[str, list[tuple[str, str]], tuple[str, str]]] = {
    "train-policy": (
        "pretrain the built-in task's tiny base policy on reference solutions",
        [PROBLEMS, ("ttcompute.trainers.policy_config", "PolicyConfig")],
        ("ttcompute.trainers.policy_trainer", "train_policy"),
    ),
    "sample": (
        "sample N graded solutions per problem (sharded, resumable)",
        [PROBLEMS, GENERATOR, ("ttcompute.data_gen.sample_config", "SampleConfig")],
        ("ttcompute.data_gen.sample", "run_sample"),
    ),
    "difficulty": (
        "per-problem pass@1 and 5 quantile difficulty bins from samples",
        [("ttcompute.data_gen.difficulty_config", "DifficultyConfig")],
        ("ttcompute.data_gen.difficulty", "run_difficulty"),
    ),
    "label": (
        "Monte Carlo step labels (soft/hard) for samples; exhaustive or binary search",
        [GENERATOR, ("ttcompute.data_gen.label_config", "LabelConfig")],
        ("ttcompute.data_gen.label", "run_label"),
    ),
    "convert-labels": (
        "PRM800K or Math-Shepherd step labels as train-prm's stepwise rows (sharded, resumable)",
        [("ttcompute.data_gen.convert_labels_config", "ConvertLabelsConfig")],
        ("ttcompute.data_gen.convert_labels", "run_convert_labels"),
    ),
    "train-prm": (
        "train a process reward model on (soft) step labels; LoRA, DeepSpeed, W&B, Hub",
        [("ttcompute.trainers.prm_config", "PRMConfig")],
        ("ttcompute.trainers.prm_trainer", "train_prm"),
    ),
    "eval-prm": (
        "ProcessBench F1, step ROC-AUC and best-of-N of a PRM",
        [("ttcompute.eval.prm_eval_config", "EvalPRMConfig")],
        ("ttcompute.eval.prm_eval", "run_eval_prm"),
    ),
    "revisions": (
        "revision trajectories from samples: 0-4 incorrect attempts (edit-distance paired), then a correct one",
        [("ttcompute.data_gen.trajectories_config", "TrajectoryConfig")],
        ("ttcompute.data_gen.trajectories", "run_revisions"),
    ),
    "train-reviser": (
        "SFT a reviser on revision trajectories (loss on the final attempt); LoRA, DeepSpeed, W&B, Hub",
        [("ttcompute.trainers.revision_config", "RevisionConfig")],
        ("ttcompute.trainers.revision_trainer", "train_reviser"),
    ),
    "search": (
        "best-of-N, beam search, lookahead, DVTS under a budget; every candidate saved (resumable)",
        [PROBLEMS, GENERATOR, ("ttcompute.eval.search.search_config", "SearchConfig")],
        ("ttcompute.eval.search.stage", "run_search"),
    ),
    "orm-data": (
        "ORM training rows from a reviser's attempts in ttc search output, revision history in context",
        [("ttcompute.data_gen.orm_data_config", "OrmDataConfig")],
        ("ttcompute.data_gen.orm_data", "run_orm_data"),
    ),
    "select": (
        "selection rules over saved search candidates: accuracy vs budget per bin, table and plot",
        [("ttcompute.eval.select_config", "SelectConfig")],
        ("ttcompute.eval.select", "run_select"),
    ),
    "compute-optimal": (
        "the best strategy per difficulty bin and budget (cross-validated); efficiency vs best-of-N",
        [("ttcompute.eval.compute_optimal_config", "ComputeOptimalConfig")],
        ("ttcompute.eval.compute_optimal", "run_compute_optimal"),
    ),
    "route": (
        "run a compute-optimal routing policy on new problems: predict difficulty, search, select (resumable)",
        [PROBLEMS, ("ttcompute.route_config", "RouteConfig")],
        ("ttcompute.route", "run_route"),
    ),
    "flops-matched": (
        "small policy + compute-optimal test-time compute vs a larger policy at matched FLOPs",
        [("ttcompute.eval.flops_matched_config", "FlopsMatchedConfig")],
        ("ttcompute.eval.flops_matched", "run_flops_matched"),
    ),
    "report": (
        "report.md + report.json (+ W&B): policies, PRM, search, revisions, compute-optimal, FLOPs-matched",
        [("ttcompute.eval.report_config", "ReportConfig")],
        ("ttcompute.eval.report", "run_report"),
    ),
    "view": (
        "one self-contained HTML page to read a search by: trees, votes, revision flips, PRM verdicts",
        [("ttcompute.view_config", "ViewConfig")],
        ("ttcompute.view", "run_view"),
    ),
    "merge": (
        "join the shards of --shard i/n workers that wrote separate directories; write the stats",
        [("ttcompute.merge_config", "MergeConfig")],
        ("ttcompute.merge", "run_merge"),
    ),
    "demo": (
        "run the pipeline end to end on the built-in arithmetic task",
        [("ttcompute.demo_config", "DemoConfig")],
        ("ttcompute.demo", "run_demo"),
    ),
}


def _usage() -> str:
    width = max(len(name) for name in STAGES)
    lines = ["usage: ttc <stage> [--config FILE.yaml] [--option value ...]", "", "stages:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (summary, _, _) in STAGES.items()]
    lines += [
        f"  {'recipes':<{width}}  list the shipped recipes (stage configs), show one, copy them out to edit"
    ]
    lines += ["", "`ttc <stage> --help` lists every option of a stage with its default; `ttc --version`."]
    return "\n".join(lines)


def _setup_logging() -> None:
    level = os.environ.get("TTC_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    # Keep library chatter (datasets caching, httpx) at warnings unless asked for.
    for noisy in ("datasets", "httpx", "urllib3", "filelock", "fsspec", "matplotlib"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    if getattr(sys.stderr, "isatty", lambda: False)():
        return
    # stderr is a file or a pipe: no terminal escapes in it. tqdm draws a second open bar (label's
    # rollouts under its shards) one line down and climbs back with ESC[A; on one line it only
    # rewrites with \r. tqdm reads TQDM_* defaults when first imported: here, before any stage (torch
    # imports it; only a launcher's CPU check imports torch before this).
    os.environ.setdefault("TQDM_POSITION", "0")
    # transformers bolds the title of its weight-loading report whatever the stream; records are
    # made plain before any handler (ours, or transformers' own) writes them.
    make_record = logging.getLogRecordFactory()
    if getattr(make_record, "strips_ansi", False):
        return
    ansi = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

    def plain_record(*args, **kwargs) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        if isinstance(record.msg, str):
            record.msg = ansi.sub("", record.msg)
        return record

    plain_record.strips_ansi = True  # type: ignore[attr-defined]  # main() may run more than once
    logging.setLogRecordFactory(plain_record)


def run_stage(stage: str, args: list[str]):
    """Parse ``args`` for ``stage`` and run it; returns what the stage returns. Errors raised inside
    name options as flags (``--prm_format``), not as Python arguments."""
    if stage not in STAGES:
        hint = did_you_mean(stage, STAGES)
        raise InputError(f"unknown stage {stage!r}{hint} (stages: {', '.join(STAGES)})")
    _, config_specs, (module_name, function_name) = STAGES[stage]
    config_types = tuple(getattr(importlib.import_module(m), c) for m, c in config_specs)
    with command_line():
        return _run_parsed(stage, config_types, args, module_name, function_name)


def _run_parsed(stage: str, config_types: tuple, args: list[str], module_name: str, function_name: str):
    # Here, not at the top: transformers (HfArgumentParser), datasets and torch take seconds to
    # import, and `ttc --help` or a launcher's argv handling must not wait for them.
    from ttcompute.core.config import parse_stage_args

    configs = parse_stage_args(config_types, args, prog=f"ttc {stage}")
    # Per-file "Loading weights" bars are noise for our stages; stages draw their own progress bars.
    import datasets  # see parse_stage_args above: imported once a stage really runs
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()  # "Generating train split" for every shard read back
    function = getattr(importlib.import_module(module_name), function_name)
    return function(*configs)


def deepspeed_requested_by(argv: list[str]) -> bool:
    """Whether a stage's arguments ask for DeepSpeed: a non-empty ``--deepspeed`` flag (it wins), else
    a ``deepspeed`` key in the ``--config`` YAML (the MATH recipe's trainers say it there; reading
    only the flags turned a recipe's ZeRO-2 run on CPU processes into plain DDP, refused later)."""
    config = None
    for i, arg in enumerate(argv):
        if arg.startswith("--deepspeed="):
            return bool(arg.split("=", 1)[1])
        if arg == "--deepspeed":
            return i + 1 < len(argv) and bool(argv[i + 1])
        if arg.startswith("--config="):
            config = arg.split("=", 1)[1]
        elif arg == "--config" and i + 1 < len(argv):
            config = argv[i + 1]
    if config is None:
        return False
    try:
        values = yaml.safe_load(Path(config).read_text())
    except (OSError, yaml.YAMLError):
        return False  # the stage's own parser reports it, with the file and line
    return isinstance(values, dict) and bool(values.get("deepspeed"))


def _cpu_only_launch_defaults(argv: list[str]) -> None:
    """Under a multi-process launcher on a machine without GPUs, train on CPU processes with gloo.

    Plain data parallelism needs accelerate's ``cpu`` mode for that; DeepSpeed must not get it (it
    would silently turn into DDP) and is handled by `ttcompute.trainers.launch` instead. An explicit
    ``ACCELERATE_USE_CPU`` wins.
    """
    if "LOCAL_RANK" not in os.environ or "ACCELERATE_USE_CPU" in os.environ:
        return
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        return
    if deepspeed_requested_by(argv):
        return
    import torch  # only under a launcher (LOCAL_RANK set): `ttc --help` stays instant

    if not torch.cuda.is_available():
        os.environ["ACCELERATE_USE_CPU"] = "true"


def main(argv: list[str] | None = None) -> int:
    argv, rank = launcher_rank_args(list(sys.argv[1:] if argv is None else argv))
    if rank is not None:
        os.environ.setdefault("LOCAL_RANK", rank)
    _cpu_only_launch_defaults(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from ttcompute._version import __version__

        print(f"ttcompute {__version__}")
        return 0
    _setup_logging()
    try:
        if argv[0] == "recipes":
            from ttcompute.core.recipes import main as recipes_main

            return recipes_main(argv[1:])
        run_stage(argv[0], argv[1:])
    except InputError as err:
        print(f"ttc: error: {err}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:
        print(f"ttc: error: {err.filename or err}: no such file or directory", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ttc: interrupted; finished shards are kept, rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
