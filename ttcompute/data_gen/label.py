"""``ttc label``: the Monte Carlo step labels of ``ttc sample`` output, sharded and resumable.

The labellers themselves (exhaustive and binary search, their rules and costs) are in
:mod:`ttcompute.data_gen.mc_labels`; this is the stage around them: the samples read a shard at a
time, malformed rows skipped and counted, the policy that wrote them rolling out, stats at the end.

Output columns (one row per labelled solution; TRL's stepwise-supervision shape plus provenance)::

    prompt: str, completions: list[str] (the steps, without separators), labels: list[float],
    problem_id, question, sample_index: int, answer, correct: bool,
    soft_labels: list[float], hard_labels: list[float], first_bad_step: int (-1: none),
    rollout_outcomes: list[list[bool]] (per step, whether each rollout drawn from it was correct, in
    order; empty where none was drawn), num_rollouts: int, rollout_tokens: int, labeller: str
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from ttcompute.core.budget import inference_flops
from ttcompute.core.errors import InputError
from ttcompute.core.outputs import malformed_rows
from ttcompute.core.prompts import read_contract
from ttcompute.core.sharded_stage import is_complete, run_sharded_stage
from ttcompute.core.shards import MANIFEST, ShardReader, parse_shard_spec, read_resolved_config
from ttcompute.core.tracking import push_dataset
from ttcompute.data_gen.label_config import LabelConfig
from ttcompute.data_gen.mc_labels import LABEL_RULES_VERSION, label_rows
from ttcompute.data_gen.stage_stats import label_output_stats
from ttcompute.models.backends import load_backend
from ttcompute.models.generation_config import GeneratorConfig

logger = logging.getLogger(__name__)

# Fixed, so that a shard without labellable solutions (still written: its problems are done) reads
# back together with the others.
LABEL_SCHEMA = pa.schema(
    [
        ("prompt", pa.string()),
        ("completions", pa.list_(pa.string())),
        ("labels", pa.list_(pa.float64())),
        ("problem_id", pa.string()),
        ("question", pa.string()),
        ("sample_index", pa.int64()),
        ("answer", pa.string()),
        ("correct", pa.bool_()),
        ("soft_labels", pa.list_(pa.float64())),
        ("hard_labels", pa.list_(pa.float64())),
        ("first_bad_step", pa.int64()),
        ("rollout_outcomes", pa.list_(pa.list_(pa.bool_()))),
        ("num_rollouts", pa.int64()),
        ("rollout_tokens", pa.int64()),
        ("labeller", pa.string()),
    ]
)


def _check_sample_columns(dataset, samples_dir: str) -> None:
    needed = {"problem_id", "question", "prompt", "gold_answer", "completions", "answers", "correct"}
    missing = needed - set(dataset.column_names)
    if missing:
        raise InputError(f"{samples_dir}: not `ttc sample` output, missing column(s) {sorted(missing)}")


def _contract_record(samples_dir: str) -> dict[str, Any] | None:
    contract = read_contract(samples_dir)
    return contract.to_dict() if contract is not None else None


def _shard_compute(rows: list[dict[str, Any]], policy_parameters: int) -> dict[str, Any]:
    """What one shard's rollouts spent, for the W&B progress log."""
    tokens = sum(row["rollout_tokens"] for row in rows)
    return {
        "solutions": len(rows),
        "rollout_tokens": tokens,
        "rollout_flops": inference_flops(policy_parameters, tokens),
    }


def _push(config: LabelConfig, gen_args: GeneratorConfig, stats: dict[str, Any]) -> None:
    contract = read_contract(config.output_dir)
    facts = {
        "policy (rollouts)": gen_args.model_name_or_path,
        "samples": config.samples_dir,
        "labeller": config.labeller,
        "rollouts per step": config.num_rollouts,
        "label type (the labels column)": config.label_type,
        "step separator": config.step_separator,
        "prompt contract": contract.describe() if contract else "not recorded",
        "columns": "prompt, completions (steps), labels (per step, in [0, 1]) -- TRL's stepwise shape",
    }
    push_dataset("label", config.output_dir, config, facts)


def run_label(gen_args: GeneratorConfig, config: LabelConfig) -> dict[str, Any]:
    """The ``ttc label`` stage: label every unfinished shard of this worker, then write stats."""
    parse_shard_spec(config.shard)  # a malformed --shard fails before the model loads
    samples = ShardReader(config.samples_dir)  # streamed: memory stays at one shard
    _check_sample_columns(samples, config.samples_dir)
    if len(samples) == 0:
        raise InputError(f"{config.samples_dir}: no problems; nothing to label")
    if not gen_args.model_name_or_path:
        gen_args.model_name_or_path = read_resolved_config(config.samples_dir).get("model_name_or_path")
        if not gen_args.model_name_or_path:
            raise InputError(
                f"ttc label: --model_name_or_path is required ({config.samples_dir} does not name its policy)"
            )
        logger.info("Rolling out with the samples' policy %s", gen_args.model_name_or_path)
    malformed = malformed_rows(samples, ["completions", "answers", "correct"], config.strict)
    if not _any_completion_contains(samples, config.step_separator):
        raise InputError(
            f"{config.samples_dir}: no completion contains the step separator {config.step_separator!r}; "
            "every solution would be a single step (set --step_separator)"
        )
    num_shards = -(-len(samples) // config.problems_per_shard)
    backend = load_backend(gen_args.backend, gen_args.model_name_or_path, **gen_args.backend_kwargs())
    samples_manifest = json.loads((Path(config.samples_dir) / MANIFEST).read_text())
    counts = {"dropped_unparseable": 0, "dropped_empty": 0, "dropped_duplicate": 0}
    rollouts = tqdm(desc=f"Rollouts ({config.labeller})", unit="rollout")

    def build_shard(j: int) -> list[dict[str, Any]]:
        start = j * config.problems_per_shard
        rows = samples.rows(start, start + config.problems_per_shard)
        rows = [row for i, row in enumerate(rows, start) if i not in malformed]
        labelled = label_rows(rows, backend, gen_args, config, config.seed * 1_000_003 + j, counts, rollouts)
        if not labelled:
            logger.warning("Shard %d: no labellable solutions", j)
        return labelled

    def stats(output_dir: str) -> dict[str, Any]:
        return {
            **label_output_stats(output_dir),
            "dropped_this_run": {**counts, "malformed_rows": len(malformed)},
        }

    result = run_sharded_stage(
        "label",
        (gen_args, config),
        output_dir=config.output_dir,
        shard=config.shard,
        overwrite=config.overwrite,
        num_shards=num_shards,
        schema=LABEL_SCHEMA,
        build_shard=build_shard,
        stats=stats,
        # The samples' prompt contract, passed on to train-prm (ttcompute/core/prompts.py).
        info={
            "policy_parameters": backend.num_parameters,
            "prompt_contract": _contract_record(config.samples_dir),
        },
        hash_extra={
            "samples_config_hash": samples_manifest["config_hash"],
            # Bumped when the meaning of a column changes, so a resumed run never mixes two definitions.
            "label_rules": LABEL_RULES_VERSION,
        },
        hash_ignore=("samples_dir",),
        progress="Label shards",
        tracking=config,
        shard_metrics=lambda rows: _shard_compute(rows, backend.num_parameters),
        on_complete=lambda stats: _push(config, gen_args, stats) if config.push_to_hub else None,
    )
    rollouts.close()
    if not is_complete(result):
        return result
    logger.info(
        "Labelled %d solutions (%d steps) with %s: %d rollouts (%.1f per solution), %d tokens -> %s",
        result["num_solutions"],
        result["num_steps"],
        config.labeller,
        result["num_rollouts"],
        result["rollouts_per_solution"],
        result["rollout_tokens"],
        config.output_dir,
    )
    return result


def _any_completion_contains(samples, separator: str) -> bool:
    """Whether any completion holds ``separator``, reading a batch of rows at a time."""
    for batch in samples.iter_batches(["completions"]):
        texts = pc.list_flatten(batch.column("completions"))
        if pc.any(pc.match_substring(texts, separator)).as_py():
            return True
    return False
