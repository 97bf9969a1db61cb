"""Training throughput of our PRM trainer vs TRL 1.13.0's PRMTrainer, side by side in one process.

Same base model (the shipped small policy as a token-classification model), same stepwise rows
(arithmetic reference solutions; TRL gets the labels rounded to bools, the only kind it takes), same
batch size, learning rate, steps and precision; dropout and gradient checkpointing off on both.
Ours runs twice: with its default length-grouped batches (the headline ratio) and with TRL's random
sampler (the same work step for step: parity expected). Runs alternate so machine load hits all
alike; ratios of median samples/s are printed.

TRL 1.13.0 is never a dependency of ttcompute: install it next to the repo first with

    .venv/bin/pip install --no-deps --target .bench_deps/trl113 trl==1.13.0

Usage: python bench/prm_trainer_throughput.py [--rows 512] [--steps 40] [--batch 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
TRL_DIR = REPO / ".bench_deps" / "trl113"
POLICY = REPO / "ttcompute" / "checkpoints" / "policy_small"


def build_rows(num_rows: int, seed: int) -> list[dict]:
    """Arithmetic reference solutions with one wrong step injected in half of them; the soft label of
    a step is 1 before the first wrong step and a small value after it (as MC labels look)."""
    from ttcompute.tasks.arithmetic import STEP_SEPARATOR, generate_problems, split_steps

    rng = random.Random(seed)
    rows = []
    for problem in generate_problems(num_rows, seed=seed):
        steps = split_steps(problem.solution)
        labels = [1.0] * len(steps)
        if rng.random() < 0.5:
            bad = rng.randrange(len(steps))
            steps[bad] = steps[bad] + "1"
            labels[bad:] = [rng.choice([0.0, 0.0625, 0.125])] * (len(steps) - bad)
        assert all(STEP_SEPARATOR not in s for s in steps)
        rows.append({"prompt": problem.question + "\n", "completions": steps, "labels": labels})
    return rows


def common_args(out: str, steps: int, batch: int) -> dict:
    return {
        "output_dir": out,
        "max_steps": steps,
        "per_device_train_batch_size": batch,
        "learning_rate": 1e-4,
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "logging_steps": steps,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "bf16": False,
        "fp16": False,
        "gradient_checkpointing": False,
        "dataloader_num_workers": 0,
        "seed": 0,
        "max_length": 512,
        "step_separator": "\n\n",
        "disable_tqdm": True,
    }


def run_ours(rows, steps: int, batch: int, sampler: str = "group_by_length") -> float:
    import datasets
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from ttcompute.trainers.prm_config import PRMConfig
    from ttcompute.trainers.prm_trainer import PRMTrainer

    with tempfile.TemporaryDirectory() as out:
        args = PRMConfig(**common_args(out, steps, batch), eval_fraction=0.0, train_sampling_strategy=sampler)
        tokenizer = AutoTokenizer.from_pretrained(POLICY)
        model = AutoModelForTokenClassification.from_pretrained(POLICY, num_labels=1)
        model.config.pad_token_id = tokenizer.pad_token_id
        _disable_dropout(model)
        trainer = PRMTrainer(
            model=model,
            args=args,
            train_dataset=datasets.Dataset.from_list(rows),
            processing_class=tokenizer,
        )
        return trainer.train().metrics["train_samples_per_second"]


def run_trl(rows, steps: int, batch: int) -> float:
    import datasets
    from transformers import AutoModelForTokenClassification, AutoTokenizer
    from trl.experimental.prm import PRMConfig, PRMTrainer

    hard = [{**row, "labels": [label > 0.5 for label in row["labels"]]} for row in rows]
    with tempfile.TemporaryDirectory() as out:
        args = PRMConfig(**common_args(out, steps, batch), disable_dropout=True)
        tokenizer = AutoTokenizer.from_pretrained(POLICY)
        model = AutoModelForTokenClassification.from_pretrained(POLICY, num_labels=2)
        model.config.pad_token_id = tokenizer.pad_token_id
        trainer = PRMTrainer(
            model=model,
            args=args,
            train_dataset=datasets.Dataset.from_list(hard),
            processing_class=tokenizer,
        )
        return trainer.train().metrics["train_samples_per_second"]


def _disable_dropout(model) -> None:
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps runs comparable)")
    opts = parser.parse_args()

    if not (TRL_DIR / "trl").is_dir():
        print(
            f"TRL 1.13.0 not found in {TRL_DIR}; install it with\n"
            f"  {sys.executable} -m pip install --no-deps --target {TRL_DIR} trl==1.13.0",
            file=sys.stderr,
        )
        return 2
    sys.path.insert(0, str(TRL_DIR))
    import torch
    import trl
    from transformers.utils import logging as hf_logging

    if trl.__version__ != "1.13.0":
        print(f"expected trl 1.13.0 in {TRL_DIR}, found {trl.__version__}", file=sys.stderr)
        return 2
    torch.set_num_threads(opts.threads)
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore")

    rows = build_rows(opts.rows, seed=0)
    run_ours(rows, 3, opts.batch)  # warm-up: first-call costs (allocator, kernels) hit nobody's timing
    ours, ours_random, theirs = [], [], []
    for i in range(opts.repeats):
        ours.append(run_ours(rows, opts.steps, opts.batch))
        theirs.append(run_trl(rows, opts.steps, opts.batch))
        ours_random.append(run_ours(rows, opts.steps, opts.batch, sampler="random"))
        print(
            f"repeat {i + 1}/{opts.repeats}: ours {ours[-1]:.1f}, TRL 1.13.0 {theirs[-1]:.1f}, "
            f"ours with random batches {ours_random[-1]:.1f} samples/s"
        )
    trl_median = statistics.median(theirs)
    print(
        f"PRM trainer throughput ({opts.steps} steps x batch {opts.batch}, {opts.rows} rows, small policy, "
        f"{opts.threads} thread(s)):\n"
        f"  ours (default: length-grouped batches) {statistics.median(ours):.1f} vs TRL 1.13.0 "
        f"{trl_median:.1f} samples/s -> ratio {statistics.median(ours) / trl_median:.2f}x (target >= 1.0)\n"
        f"  ours with TRL's random batches         {statistics.median(ours_random):.1f} samples/s "
        f"-> ratio {statistics.median(ours_random) / trl_median:.2f}x (same work step for step: parity expected)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
