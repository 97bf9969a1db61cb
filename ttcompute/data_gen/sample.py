"""``ttc sample``: N graded solutions per problem, written in shards as it goes, resumable.

Output columns (one row per problem):
    problem_id, question, prompt, gold_answer, metadata (JSON text),
    completions: list[str], answers: list[str | None] (extracted final answers),
    correct: list[bool], num_tokens: list[int], finish_reasons: list[str]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from tqdm.auto import tqdm

from ttcompute.core.errors import InputError
from ttcompute.models.generation import GeneratorConfig
from ttcompute.models.sampling import sample_rows
from ttcompute.tasks.problem_config import ProblemConfig

logger = logging.getLogger(__name__)


# Fixed: inferred, a shard whose answers are all None (no sample reached a final answer) became
# list<null> and could not be read back beside the others.
SAMPLE_SCHEMA = pa.schema(
    [
        ("problem_id", pa.string()),
        ("question", pa.string()),
        ("prompt", pa.string()),
        ("gold_answer", pa.string()),
        ("metadata", pa.string()),
        ("completions", pa.list_(pa.string())),
        ("answers", pa.list_(pa.string())),
        ("correct", pa.list_(pa.bool_())),
        ("num_tokens", pa.list_(pa.int64())),
        ("finish_reasons", pa.list_(pa.string())),
    ]
)


@dataclass
class SampleConfig:
    """Options of ``ttc sample`` (besides the problem and generation options).

    Attributes:
        output_dir: Where shards, manifest, resolved config and stats go.
        num_samples: Solutions per problem (N; up to 2048).
        seed: Base seed; shard ``j`` samples with seed ``seed * 1_000_003 + j``, so the output does not
            depend on how shards are spread over workers.
        problems_per_shard: Problems per shard file: the unit of resumption.
        shard: ``i/n``: this worker takes every shard ``j`` with ``j % n == i``.
        overwrite: Replace an output directory written with a different config.
    """

    output_dir: str = field(default="runs/samples", metadata={"help": "output directory"})
    num_samples: int = field(default=16, metadata={"help": "solutions per problem (N)"})
    seed: int = field(default=0, metadata={"help": "base sampling seed"})
    problems_per_shard: int = field(default=64, metadata={"help": "problems per shard file"})
    shard: str = field(default="0/1", metadata={"help": "i/n: this worker's part of the shards"})
    overwrite: bool = field(default=False, metadata={"help": "replace output of a different config"})

    def __post_init__(self) -> None:
        if not 1 <= self.num_samples <= 1 << 16:
            raise ValueError(f"num_samples must be in [1, 65536], got {self.num_samples}")
        if self.problems_per_shard < 1:
            raise ValueError("problems_per_shard must be >= 1")


def run_sample(
    problem_args: ProblemConfig, gen_args: GeneratorConfig, config: SampleConfig
) -> dict[str, Any]:
    """The ``ttc sample`` stage: sample every unfinished shard of this worker, then write stats."""
    from ttcompute.core.config import config_hash, config_to_dict, save_resolved_config
    from ttcompute.core.shards import (
        finished_shards,
        left_for_other_workers,
        parse_shard_spec,
        prepare_output,
        write_json,
        write_shard,
    )
    from ttcompute.models.generation import load_backend

    if not gen_args.model_name_or_path:
        raise InputError("ttc sample: --model_name_or_path is required")
    worker, num_workers = parse_shard_spec(config.shard)
    problems = problem_args.load()
    if not problems:
        raise InputError("ttc sample: the problem set is empty")
    shards = [
        problems[i : i + config.problems_per_shard]
        for i in range(0, len(problems), config.problems_per_shard)
    ]
    # Load the model before touching output_dir: a typo in the path must not leave a manifest behind.
    backend = load_backend(gen_args.backend, gen_args.model_name_or_path, **gen_args.backend_kwargs())
    values = config_to_dict(problem_args, gen_args, config)
    digest = config_hash(values, ignore={"output_dir", "overwrite", "shard", "strict"})
    info = {
        "policy_parameters": backend.num_parameters,
        "malformed_rows_skipped": len(getattr(problems, "skipped", [])),
    }
    prepare_output(config.output_dir, "sample", digest, len(shards), config.overwrite, info)
    save_resolved_config(config.output_dir, "sample", problem_args, gen_args, config)

    done = finished_shards(config.output_dir)
    todo = [j for j in range(len(shards)) if j % num_workers == worker and j not in done]
    if done:
        logger.info(
            "Resuming: %d of %d shards already finished in %s", len(done), len(shards), config.output_dir
        )
    progress = tqdm(total=sum(len(shards[j]) for j in todo), desc="Sampling", unit="problem")
    for j in todo:
        rows = sample_rows(
            backend, shards[j], gen_args, n=config.num_samples, seed=config.seed * 1_000_003 + j
        )
        write_shard(config.output_dir, j, rows, SAMPLE_SCHEMA)
        progress.update(len(shards[j]))
    progress.close()

    pending = left_for_other_workers(config.output_dir, worker, num_workers)
    if pending is not None:
        return pending
    stats = sample_stats(config.output_dir)
    write_json(f"{config.output_dir}/stats.json", stats)
    logger.info(
        "Sampled %d solutions for %d problems: pass@1 %.3f, %d tokens generated (%.3g FLOPs) -> %s",
        stats["num_samples"],
        stats["num_problems"],
        stats["pass_at_1"],
        stats["compute"]["policy_tokens"],
        stats["compute"]["policy_flops"],
        config.output_dir,
    )
    return {"output_dir": config.output_dir, **stats}


def sample_stats(output_dir: str) -> dict[str, Any]:
    """Counts, pass@1 and compute of a finished ``ttc sample`` output, from its shards and manifest.

    Sums run in Arrow a batch at a time, so memory does not grow with the number of samples.
    """
    import pyarrow.compute as pc

    from ttcompute.core.budget import ComputeSpent
    from ttcompute.core.shards import load_sharded, read_manifest

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
