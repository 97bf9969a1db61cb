"""``ttc revisions``: revision trajectories from samples (Snell et al., sec. 6.1).

For every correct sample of a problem, draw k uniformly from 0..4, capped by the distinct incorrect
solutions available. Identical correct samples each get their own draw: on the arithmetic task every
correct solution of a problem is the same text, and merging them left under two trajectories per
problem (a reviser trained on that many did not learn to revise); the paper, too, builds one per
correct sample. With k > 0 the trajectory shows k incorrect attempts and
then the correct one: the *last* attempt in context is the incorrect solution closest to the correct
one by character edit distance (so the trajectory reads as a correction of a near miss), the other
k - 1 are drawn at random from the rest. Edit distances come from ``rapidfuzz`` (C++, bit-parallel):
one matrix per problem, correct x incorrect.

Output columns (one row per trajectory):
    problem_id, question, gold_answer, prompt (the reviser prompt: question + attempts, see
    ttcompute/models/reviser.py), completion (the correct solution), num_previous (k),
    previous_attempts (list[str], oldest first; the closest incorrect one last), edit_distance (of the
    closest incorrect attempt to the completion; -1 when k = 0)

Deterministic for a seed (each problem draws from its own generator seeded by seed and problem id,
so the rows do not depend on sharding). Problems without a correct sample are skipped and counted;
empty completions are dropped and counted; duplicate *incorrect* solutions are merged (counted), so no
attempt shows twice in one prompt.
"""

from __future__ import annotations

import json
import logging
import random
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ttcompute.errors import InputError
from ttcompute.models.reviser import FORMAT_VERSION, MAX_ATTEMPTS_IN_CONTEXT, format_reviser_prompt

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("problem_id", "question", "completions", "correct")


@dataclass
class RevisionsConfig:
    """Options of ``ttc revisions``.

    Attributes:
        samples_dir: Output directory of ``ttc sample`` (64 samples per problem in the paper).
        output_dir: Where the trajectory shards, manifest, stats and resolved config go.
        max_previous: Most incorrect attempts in a trajectory (k is drawn from 0..max_previous).
        prompt_template: The policy's prompt template; default: the one in the samples' config.
        seed: Seeds every draw.
        problems_per_shard: Problems per output shard (the unit of resumption).
        overwrite: Replace an output directory written with a different config.
    """

    samples_dir: str = field(default="runs/samples", metadata={"help": "output directory of ttc sample"})
    output_dir: str = field(default="runs/revisions", metadata={"help": "output directory"})
    max_previous: int = field(
        default=MAX_ATTEMPTS_IN_CONTEXT, metadata={"help": "most incorrect attempts per trajectory"}
    )
    prompt_template: str | None = field(default=None, metadata={"help": "default: the samples' template"})
    seed: int = field(default=0, metadata={"help": "seed of every draw"})
    problems_per_shard: int = field(default=256, metadata={"help": "problems per output shard"})
    overwrite: bool = field(default=False, metadata={"help": "replace output of a different config"})

    def __post_init__(self) -> None:
        if not 0 <= self.max_previous <= MAX_ATTEMPTS_IN_CONTEXT:
            raise ValueError(
                f"max_previous must be in [0, {MAX_ATTEMPTS_IN_CONTEXT}], got {self.max_previous}"
            )
        if self.problems_per_shard < 1:
            raise ValueError("problems_per_shard must be >= 1")
        if self.prompt_template is not None and "{question}" not in self.prompt_template:
            raise ValueError("prompt_template must contain {question}")


def problem_trajectories(
    problem_id: str,
    correct_solutions: list[str],
    incorrect_solutions: list[str],
    max_previous: int,
    seed: int,
) -> list[tuple[str, list[str], int]]:
    """``(completion, previous attempts oldest first, edit distance)`` per correct solution.

    ``correct_solutions`` may repeat a text (one trajectory each); ``incorrect_solutions`` should be
    distinct. Draws come from a generator seeded by ``seed`` and ``problem_id`` only.
    """
    from rapidfuzz.distance import Levenshtein
    from rapidfuzz.process import cdist

    rng = random.Random(zlib.crc32(f"{seed}:{problem_id}".encode()))
    ks = [min(rng.randint(0, max_previous), len(incorrect_solutions)) for _ in correct_solutions]
    distinct = list(dict.fromkeys(correct_solutions))
    row_of = {text: row for row, text in enumerate(distinct)}
    distances = None
    if incorrect_solutions and any(ks):
        # One C++ call for the whole (distinct) correct x incorrect matrix of the problem.
        distances = cdist(distinct, incorrect_solutions, scorer=Levenshtein.distance, workers=1)
    out = []
    for completion, k in zip(correct_solutions, ks):
        if k == 0:
            out.append((completion, [], -1))
            continue
        row = row_of[completion]
        closest = int(distances[row].argmin())
        others = [i for i in range(len(incorrect_solutions)) if i != closest]
        chosen = rng.sample(others, k - 1)
        attempts = [incorrect_solutions[i] for i in chosen] + [incorrect_solutions[closest]]
        out.append((completion, attempts, int(distances[row][closest])))
    return out


def split_solutions(sample: dict[str, Any]) -> tuple[list[str], list[str], int, int]:
    """A sample row's correct solutions (every one, repeats included), its distinct incorrect ones,
    and how many empty completions and duplicate incorrect ones were left out.

    >>> split_solutions({"completions": ["a", "", "b", "a", "b"], "correct": [True, False, False, True, False]})
    (['a', 'a'], ['b'], 1, 1)
    """
    kept = [(text, ok) for text, ok in zip(sample["completions"], sample["correct"]) if text.strip()]
    right = [text for text, ok in kept if ok]
    wrong = list(dict.fromkeys(text for text, ok in kept if not ok))
    return right, wrong, len(sample["completions"]) - len(kept), len(kept) - len(right) - len(wrong)


def trajectory_rows(sample_rows: list[dict[str, Any]], config: RevisionsConfig, template: str) -> list[dict]:
    """The trajectory rows of some ``ttc sample`` rows (problems without a correct sample give none)."""
    rows = []
    for sample in sample_rows:
        right, wrong, _, _ = split_solutions(sample)
        for completion, attempts, distance in problem_trajectories(
            sample["problem_id"], right, wrong, config.max_previous, config.seed
        ):
            rows.append(
                {
                    "problem_id": sample["problem_id"],
                    "question": sample["question"],
                    "gold_answer": sample.get("gold_answer"),
                    "prompt": format_reviser_prompt(sample["question"], attempts, template),
                    "completion": completion,
                    "num_previous": len(attempts),
                    "previous_attempts": attempts,
                    "edit_distance": distance,
                }
            )
    return rows


def _samples_template(samples_dir: str) -> str | None:
    import yaml

    path = Path(samples_dir) / "ttc_config.yaml"
    if not path.is_file():
        return None
    return (yaml.safe_load(path.read_text()) or {}).get("prompt_template")


def run_revisions(config: RevisionsConfig) -> dict[str, Any]:
    """The ``ttc revisions`` stage."""
    import pyarrow as pa

    from ttcompute.config import config_hash, config_to_dict, save_resolved_config
    from ttcompute.data_gen.shards import (
        finished_shards,
        load_sharded,
        prepare_output,
        write_json,
        write_shard,
    )

    samples = load_sharded(config.samples_dir)
    missing = [c for c in REQUIRED_COLUMNS if c not in samples.column_names]
    if missing:
        raise InputError(f"{config.samples_dir}: missing column(s) {missing} (not ttc sample output?)")
    for index, (completions, correct) in enumerate(zip(samples["completions"], samples["correct"])):
        if len(completions) != len(correct):
            raise InputError(
                f"{config.samples_dir}: row {index}: {len(completions)} completions but {len(correct)} "
                "'correct' verdicts"
            )
    if len(samples) == 0:
        raise InputError(f"{config.samples_dir}: no problems")
    template = config.prompt_template or _samples_template(config.samples_dir) or "{question}\n"
    num_shards = (len(samples) + config.problems_per_shard - 1) // config.problems_per_shard
    values = {**config_to_dict(config), "prompt_template": template, "reviser_format": FORMAT_VERSION}
    digest = config_hash(values, ignore={"output_dir", "overwrite"})
    prepare_output(config.output_dir, "revisions", digest, num_shards, config.overwrite)
    save_resolved_config(config.output_dir, "revisions", config)

    schema = pa.schema(
        [
            ("problem_id", pa.string()),
            ("question", pa.string()),
            ("gold_answer", pa.string()),
            ("prompt", pa.string()),
            ("completion", pa.string()),
            ("num_previous", pa.int64()),
            ("previous_attempts", pa.list_(pa.string())),
            ("edit_distance", pa.int64()),
        ]
    )
    done = finished_shards(config.output_dir)
    for j in tqdm(range(num_shards), desc="Building trajectories", unit="shard"):
        if j in done:
            continue
        start = j * config.problems_per_shard
        chunk = samples.select(range(start, min(start + config.problems_per_shard, len(samples))))
        write_shard(config.output_dir, j, trajectory_rows(list(chunk), config, template), schema)

    # Statistics over the whole output, shards of an earlier (interrupted) run included.
    trajectories = load_sharded(config.output_dir)
    per_problem = Counter(trajectories["problem_id"])
    k_histogram = Counter(trajectories["num_previous"])
    all_counts: Counter = Counter()
    for sample in samples.select_columns(["completions", "correct"]):
        right, _, empty, duplicates = split_solutions(sample)
        all_counts["problems_without_correct_sample"] += not right
        all_counts["empty_completions_dropped"] += empty
        all_counts["duplicate_incorrect_merged"] += duplicates
    stats = {
        "stage": "revisions",
        "num_problems": len(samples),
        "num_trajectories": len(trajectories),
        "problems_with_trajectories": len(per_problem),
        "problems_without_correct_sample": all_counts["problems_without_correct_sample"],
        "empty_completions_dropped": all_counts["empty_completions_dropped"],
        "duplicate_incorrect_merged": all_counts["duplicate_incorrect_merged"],
        "trajectories_per_problem": {
            "mean": round(len(trajectories) / max(len(per_problem), 1), 2),
            "min": min(per_problem.values(), default=0),
            "max": max(per_problem.values(), default=0),
        },
        "num_previous_histogram": {str(k): k_histogram.get(k, 0) for k in range(config.max_previous + 1)},
        "mean_edit_distance_of_closest": _mean([d for d in trajectories["edit_distance"] if d >= 0]),
        "prompt_template": template,
    }
    write_json(Path(config.output_dir) / "stats.json", stats)
    logger.info(
        "%d trajectories for %d of %d problems (%s per problem, min %d, max %d); k histogram %s; "
        "%d problems without a correct sample skipped; %d empty completions dropped -> %s",
        stats["num_trajectories"],
        stats["problems_with_trajectories"],
        stats["num_problems"],
        stats["trajectories_per_problem"]["mean"],
        stats["trajectories_per_problem"]["min"],
        stats["trajectories_per_problem"]["max"],
        json.dumps(stats["num_previous_histogram"]),
        stats["problems_without_correct_sample"],
        stats["empty_completions_dropped"],
        config.output_dir,
    )
    return {"output_dir": config.output_dir, **stats}


def _mean(values: list[int]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None
