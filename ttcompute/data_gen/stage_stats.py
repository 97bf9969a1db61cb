"""The stats of ``ttc sample`` and ``ttc label`` outputs, computed from their shards and manifests.

Apart from the stages (which load models, and with them torch) so that ``ttc merge`` computes them in
a process that stays small: it streams a million completions within a few hundred MiB.
"""

from __future__ import annotations

from typing import Any

import pyarrow.compute as pc

from ttcompute.core.budget import ComputeSpent
from ttcompute.core.errors import InputError
from ttcompute.core.shards import load_sharded, read_manifest


def sample_stats(output_dir: str) -> dict[str, Any]:
    """Counts, pass@1 and compute of a finished ``ttc sample`` output, from its shards and manifest.

    Sums run in Arrow a batch at a time, so memory does not grow with the number of samples.
    """
    info = read_manifest(output_dir)["info"]
    if "policy_parameters" not in info:
        raise InputError(f"{output_dir}: its manifest does not record the policy's size; rerun ttc sample")
    dataset = load_sharded(output_dir)
    tokens = num_samples = num_correct = 0
    for batch in dataset.select_columns(["num_tokens", "correct"]).with_format("arrow").iter(10_000):
        tokens += pc.sum(pc.list_flatten(batch.column("num_tokens"))).as_py() or 0
        verdicts = pc.list_flatten(batch.column("correct"))
        num_samples += len(verdicts)
        num_correct += pc.sum(verdicts.cast("int64")).as_py() or 0
    spent = ComputeSpent(policy_parameters=info["policy_parameters"], policy_tokens=tokens)
    return {
        "stage": "sample",
        "num_problems": len(dataset),
        "num_samples": num_samples,
        "pass_at_1": round(num_correct / max(num_samples, 1), 4),
        "malformed_rows_skipped": info.get("malformed_rows_skipped", 0),
        "compute": spent.to_dict(),
    }


def label_output_stats(output_dir: str) -> dict[str, Any]:
    """`label_stats` of a finished ``ttc label`` output with its compute (the policy's size comes from
    the manifest), whichever workers and runs wrote the shards."""
    info = read_manifest(output_dir)["info"]
    if "policy_parameters" not in info:
        raise InputError(f"{output_dir}: its manifest does not record the policy's size; rerun ttc label")
    stats = label_stats(load_sharded(output_dir))
    spent = ComputeSpent(policy_parameters=info["policy_parameters"], policy_tokens=stats["rollout_tokens"])
    return {**stats, "compute": spent.to_dict()}


def label_stats(dataset) -> dict[str, Any]:
    """Counts, rollout cost and label distribution of a labelled dataset."""
    num = len(dataset)
    steps = [len(c) for c in dataset["completions"]]
    hard = [v for row in dataset["hard_labels"] for v in row]
    rollouts = int(sum(dataset["num_rollouts"]))
    return {
        "stage": "label",
        "num_solutions": num,
        "num_problems": len(set(dataset["problem_id"])),
        "num_steps": int(sum(steps)),
        "fraction_correct": round(sum(dataset["correct"]) / max(num, 1), 4),
        "fraction_steps_hard_positive": round(sum(hard) / max(len(hard), 1), 4),
        "num_rollouts": rollouts,
        "rollouts_per_solution": round(rollouts / max(num, 1), 2),
        "rollout_tokens": int(sum(dataset["rollout_tokens"])),
    }
