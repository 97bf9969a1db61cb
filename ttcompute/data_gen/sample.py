"""``ttc sample``: N graded solutions per problem, written in shards as it goes, resumable.

Output columns (one row per problem):
    problem_id, question, prompt, gold_answer, metadata (JSON text),
    completions: list[str], answers: list[str | None] (extracted final answers),
    correct: list[bool], num_tokens: list[int], finish_reasons: list[str]
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa

from ttcompute.core.budget import inference_flops
from ttcompute.core.errors import InputError
from ttcompute.core.sharded_stage import is_complete, run_sharded_stage
from ttcompute.core.shards import parse_shard_spec
from ttcompute.data_gen.sample_config import SampleConfig
from ttcompute.data_gen.stage_stats import sample_stats
from ttcompute.models.backends import load_backend
from ttcompute.models.generation import build_prompt
from ttcompute.models.generation_config import GeneratorConfig
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


def run_sample(
    problem_args: ProblemConfig, gen_args: GeneratorConfig, config: SampleConfig
) -> dict[str, Any]:
    """The ``ttc sample`` stage: sample every unfinished shard of this worker, then write stats."""
    if not gen_args.model_name_or_path:
        raise InputError("ttc sample: --model_name_or_path is required")
    parse_shard_spec(config.shard)  # a malformed --shard fails before the model loads
    problems = problem_args.load()
    if not problems:
        raise InputError("ttc sample: the problem set is empty")
    shards = [
        problems[i : i + config.problems_per_shard]
        for i in range(0, len(problems), config.problems_per_shard)
    ]
    backend = load_backend(gen_args.backend, gen_args.model_name_or_path, **gen_args.backend_kwargs())
    # A prompt that cannot be built (no chat template) is refused before anything is written.
    contract = gen_args.prompt_contract()
    build_prompt(problems[0].question, contract, getattr(backend, "tokenizer", None))

    def build_shard(j: int) -> list[dict[str, Any]]:
        return sample_rows(
            backend, shards[j], gen_args, n=config.num_samples, seed=config.seed * 1_000_003 + j
        )

    result = run_sharded_stage(
        "sample",
        (problem_args, gen_args, config),
        output_dir=config.output_dir,
        shard=config.shard,
        overwrite=config.overwrite,
        num_shards=len(shards),
        schema=SAMPLE_SCHEMA,
        build_shard=build_shard,
        stats=sample_stats,
        info={
            "policy_parameters": backend.num_parameters,
            "malformed_rows_skipped": len(getattr(problems, "skipped", [])),
            # What every later stage builds its prompts from (ttcompute/core/prompts.py).
            "prompt_contract": contract.to_dict(),
        },
        progress="Sampling",
        progress_unit="problem",
        units_per_shard=lambda j: len(shards[j]),
        tracking=config,
        shard_metrics=lambda rows: _shard_compute(rows, backend.num_parameters),
    )
    if is_complete(result):
        logger.info(
            "Sampled %d solutions for %d problems: pass@1 %.3f, %d tokens generated (%.3g FLOPs) -> %s",
            result["num_samples"],
            result["num_problems"],
            result["pass_at_1"],
            result["compute"]["policy_tokens"],
            result["compute"]["policy_flops"],
            config.output_dir,
        )
    return result


def _shard_compute(rows: list[dict[str, Any]], policy_parameters: int) -> dict[str, Any]:
    """What one shard spent, for the W&B progress log."""
    tokens = sum(sum(row["num_tokens"]) for row in rows)
    return {"policy_tokens": tokens, "policy_flops": inference_flops(policy_parameters, tokens)}
