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
    problem_id, question, gold_answer, prompt (the reviser prompt: question + attempts under the
    samples' prompt contract, see ttcompute/models/reviser.py), completion (the correct solution), num_previous (k),
    previous_attempts (list[str], oldest first; the closest incorrect one last), edit_distance (of the
    closest incorrect attempt to the completion; -1 when k = 0)

``--context_attempts any`` draws the attempts shown from all of a problem's other samples instead
(right and wrong, repeats included): the mix the reviser's own chains show it.

``--copy_attempts N`` builds a copying stage instead (a first training stage, not revisions): each of
a problem's first N distinct samples, right or wrong, as the one attempt and as the completion.

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
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa
from rapidfuzz.distance import Levenshtein
from rapidfuzz.process import cdist
from transformers import PreTrainedTokenizerFast

from ttcompute.core.errors import InputError
from ttcompute.core.outputs import (
    distinct_revision_rows,
    length_mismatches,
    malformed_rows,
    revision_chains_of,
)
from ttcompute.core.prompts import DEFAULT_CONTRACT, PromptContract
from ttcompute.core.sharded_stage import is_complete, run_sharded_stage
from ttcompute.core.shards import ShardReader, parse_shard_spec, read_manifest, read_resolved_config
from ttcompute.core.tracking import push_dataset
from ttcompute.data_gen.trajectories_config import ATTEMPT_ORDERS, TrajectoryConfig
from ttcompute.models.generation import render_turn
from ttcompute.models.reviser import FORMAT_VERSION, format_reviser_prompt
from ttcompute.models.weights import load_error

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("problem_id", "question", "completions", "correct")
CHAIN_COLUMNS = (
    "problem_id",
    "question",
    "method",
    "completions",
    "correct",
    "subtrees",
    "positions",
    "chain_length",
)
TRAJECTORY_SCHEMA = pa.schema(
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


def problem_trajectories(
    problem_id: str,
    correct_solutions: list[str],
    incorrect_solutions: list[str],
    max_previous: int,
    seed: int,
    *,
    attempt_order: str = "closest_last",
    correct_context_fraction: float = 0.0,
) -> list[tuple[str, list[str], int]]:
    """``(completion, previous attempts oldest first, edit distance)`` per correct solution.

    ``correct_solutions`` may repeat a text (one trajectory each); ``incorrect_solutions`` should be
    distinct. Draws come from a generator seeded by ``seed`` and ``problem_id`` only.

    ``attempt_order``: ``closest_last`` (the paper's: the incorrect attempt closest to the completion
    last, the others in random order) or ``progressive`` (every attempt in order of decreasing edit
    distance, so each reads as a step closer to the completion). ``correct_context_fraction``: the
    share of trajectories with attempts whose most recent attempt is a *correct* solution (drawn from
    the problem's correct ones), preceded by k - 1 incorrect ones; the completion is then a correct
    solution too. The edit distance is that of the most recent attempt.

    >>> problem_trajectories("p", ["1234"], ["1235", "9999", "1299"], 3, seed=2, attempt_order="progressive")
    [('1234', ['9999', '1299', '1235'], 1)]
    """
    if attempt_order not in ATTEMPT_ORDERS:
        raise ValueError(f"attempt_order must be one of {ATTEMPT_ORDERS}, got {attempt_order!r}")
    rng = random.Random(zlib.crc32(f"{seed}:{problem_id}".encode()))
    drawn = [rng.randint(0, max_previous) for _ in correct_solutions]
    ks = [min(k, len(incorrect_solutions)) for k in drawn]
    distinct = list(dict.fromkeys(correct_solutions))
    keep = [False] * len(correct_solutions)
    if correct_context_fraction > 0:
        # Drawn after the ks, so that the other trajectories of a seed do not change with the option.
        keep = [k > 0 and rng.random() < correct_context_fraction for k in drawn]
        ks = [min(d, len(incorrect_solutions) + 1) if kept else min(d, len(incorrect_solutions))
              for d, kept in zip(drawn, keep)]  # fmt: skip
    row_of = {text: row for row, text in enumerate(distinct)}
    distances = None
    if incorrect_solutions and any(ks):
        # One C++ call for the whole (distinct) correct x incorrect matrix of the problem.
        distances = cdist(distinct, incorrect_solutions, scorer=Levenshtein.distance, workers=1)
    out = []
    for completion, k, kept in zip(correct_solutions, ks, keep):
        if k == 0:
            out.append((completion, [], -1))
            continue
        row = row_of[completion]
        if kept:
            last = rng.choice(distinct)
            chosen = rng.sample(range(len(incorrect_solutions)), k - 1)
            if attempt_order == "progressive":
                chosen.sort(key=lambda i: -int(distances[row][i]))
            attempts = [incorrect_solutions[i] for i in chosen] + [last]
            out.append((completion, attempts, Levenshtein.distance(last, completion)))
            continue
        closest = int(distances[row].argmin())
        others = [i for i in range(len(incorrect_solutions)) if i != closest]
        chosen = rng.sample(others, k - 1)
        if attempt_order == "progressive":
            # Stable sort: ties keep their random order; the closest stays last.
            chosen.sort(key=lambda i: -int(distances[row][i]))
        attempts = [incorrect_solutions[i] for i in chosen] + [incorrect_solutions[closest]]
        out.append((completion, attempts, int(distances[row][closest])))
    return out


def sampled_context_trajectories(
    problem_id: str,
    completions: Sequence[str],
    correct: Sequence[bool],
    max_previous: int,
    seed: int,
    correct_rate: float | None = None,
) -> list[tuple[str, list[str], int]]:
    """``(completion, previous attempts oldest first, edit distance of the most recent one)`` per
    correct non-empty sample, its k attempts (k uniform in 0..max_previous, capped by the other
    non-empty samples) drawn without replacement from the problem's *other* non-empty samples, right
    or wrong, repeats included, in random order (``--context_attempts any``). ``correct_rate``: each
    attempt is drawn from the other correct samples with this probability, else from the incorrect
    ones (from the pool that has any left when the chosen one has none); ``None``: uniformly.

    >>> sampled_context_trajectories("p", ["12", "13", "12", ""], [True, False, True, False], 2, seed=3)
    [('12', ['13', '12'], 0), ('12', ['13', '12'], 0)]
    """
    rng = random.Random(zlib.crc32(f"{seed}:{problem_id}".encode()))
    kept = [i for i, text in enumerate(completions) if text.strip()]
    out = []
    for i in kept:
        if not correct[i]:
            continue
        others = [j for j in kept if j != i]
        k = min(rng.randint(0, max_previous), len(others))
        if correct_rate is None:
            chosen = rng.sample(others, k)
        else:
            pools = ([j for j in others if correct[j]], [j for j in others if not correct[j]])
            chosen = []
            for _ in range(k):
                pool = pools[0] if rng.random() < correct_rate else pools[1]
                pool = pool or pools[0] or pools[1]
                chosen.append(pool.pop(rng.randrange(len(pool))))
        attempts = [completions[j] for j in chosen]
        distance = Levenshtein.distance(attempts[-1], completions[i]) if attempts else -1
        out.append((completions[i], attempts, distance))
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


def copy_texts(completions: Sequence[str], per_problem: int) -> list[str]:
    """The copying stage's texts of one problem: its first ``per_problem`` distinct non-empty samples,
    in sample order, right or wrong alike.

    >>> copy_texts(["a", "", "b", "a", "c"], 2)
    ['a', 'b']
    """
    return [text for text in dict.fromkeys(completions) if text.strip()][:per_problem]


def trajectory_rows(
    sample_rows: Iterable[dict[str, Any]],
    config: TrajectoryConfig,
    contract: PromptContract = DEFAULT_CONTRACT,
    tokenizer=None,
) -> list[dict]:
    """The trajectory rows of some ``ttc sample`` rows (problems without a correct sample give none;
    with ``copy_attempts``, the copying stage's rows: every problem gives some)."""
    rows = []
    for sample in sample_rows:
        right, wrong, _, _ = split_solutions(sample)
        if config.copy_attempts:
            drawn = [(text, [text], 0) for text in copy_texts(sample["completions"], config.copy_attempts)]
        elif config.context_attempts == "any":
            drawn = sampled_context_trajectories(
                sample["problem_id"],
                sample["completions"],
                sample["correct"],
                config.max_previous,
                config.seed,
                config.correct_attempt_rate,
            )
        else:
            drawn = problem_trajectories(
                sample["problem_id"],
                right,
                wrong,
                config.max_previous,
                config.seed,
                attempt_order=config.attempt_order,
                correct_context_fraction=config.correct_context_fraction,
            )
        for completion, attempts, distance in drawn:
            rows.append(
                {
                    "problem_id": sample["problem_id"],
                    "question": sample["question"],
                    "gold_answer": sample.get("gold_answer"),
                    "prompt": format_reviser_prompt(sample["question"], attempts, contract, tokenizer),
                    "completion": completion,
                    "num_previous": len(attempts),
                    "previous_attempts": attempts,
                    "edit_distance": distance,
                }
            )
    return rows


def chain_trajectories(chain: Sequence[tuple[str, bool]], max_previous: int) -> list[tuple[str, list[str]]]:
    """``(completion, previous attempts oldest first)`` for every correct attempt of one revision chain
    (its attempts in order): the chain's ``max_previous`` attempts before it are its context, exactly
    what the reviser saw when it wrote it (repeats included; an empty attempt is never shown, as in
    the chains themselves). ReST^EM's filter with a 0/1 reward.

    >>> chain_trajectories([("a", False), ("b", True), ("b", True)], max_previous=1)
    [('b', ['a']), ('b', ['b'])]
    >>> chain_trajectories([("a", False), ("", False), ("b", True)], max_previous=2)
    [('b', ['a'])]
    """
    out = []
    shown: list[str] = []
    for text, correct in chain:
        if correct and text.strip():
            out.append((text, shown[max(0, len(shown) - max_previous) :]))
        if text.strip():
            shown.append(text)
    return out


def read_chains(chains_dir: str) -> list[dict[str, Any]]:
    """Per problem of a ``ttc search`` output with ``revisions`` rows (in problem order): its question,
    gold answer and chains (each attempt's ``(text, correct)`` in order), each attempt once."""
    reader = ShardReader(chains_dir)
    missing = [c for c in CHAIN_COLUMNS if c not in reader.column_names]
    if missing:
        raise InputError(f"{chains_dir}: missing column(s) {missing} (not a ttc search output?)")
    columns = [*CHAIN_COLUMNS, "budget", *(["gold_answer"] if "gold_answer" in reader.column_names else [])]
    rows = distinct_revision_rows(list(reader.iter_rows(0, len(reader), columns)))
    if not rows:
        raise InputError(f"{chains_dir}: no revisions rows (run ttc search --methods revisions)")
    problems: dict[str, dict[str, Any]] = {}
    for row in rows:
        problem = problems.setdefault(
            row["problem_id"],
            {"problem_id": row["problem_id"], "question": row["question"], "gold_answer": row.get("gold_answer"),
             "chains": {}},
        )  # fmt: skip
        for chain in revision_chains_of(row):
            problem["chains"][len(problem["chains"])] = [
                (row["completions"][i], bool(row["correct"][i])) for i in chain
            ]
    return list(problems.values())


def chain_trajectory_rows(
    problems: Iterable[dict[str, Any]], config: TrajectoryConfig, contract: PromptContract, tokenizer=None
) -> list[dict]:
    """The trajectory rows of some problems' revision chains (:func:`read_chains`)."""
    rows = []
    for problem in problems:
        for chain in problem["chains"].values():
            for completion, attempts in chain_trajectories(chain, config.max_previous):
                rows.append(
                    {
                        "problem_id": problem["problem_id"],
                        "question": problem["question"],
                        "gold_answer": problem["gold_answer"],
                        "prompt": format_reviser_prompt(problem["question"], attempts, contract, tokenizer),
                        "completion": completion,
                        "num_previous": len(attempts),
                        "previous_attempts": attempts,
                        "edit_distance": Levenshtein.distance(attempts[-1], completion) if attempts else -1,
                    }
                )
    return rows


def run_revisions(config: TrajectoryConfig) -> dict[str, Any]:
    """The ``ttc revisions`` stage: build every unfinished shard of this worker, then write stats."""
    parse_shard_spec(config.shard)  # a malformed --shard fails before anything is read
    samples = ShardReader(config.samples_dir)  # streamed: a million completions must not fill memory
    missing = [c for c in REQUIRED_COLUMNS if c not in samples.column_names]
    if missing:
        raise InputError(f"{config.samples_dir}: missing column(s) {missing} (not ttc sample output?)")
    if len(samples) == 0:
        raise InputError(f"{config.samples_dir}: no problems")
    contract, tokenizer = _prompt_contract(config)
    if config.chains_dir:
        malformed: set[int] = set()
        chain_problems = read_chains(config.chains_dir)
        num_problems = len(chain_problems)

        def build_shard(j: int) -> list[dict[str, Any]]:
            start = j * config.problems_per_shard
            return chain_trajectory_rows(
                chain_problems[start : start + config.problems_per_shard], config, contract, tokenizer
            )
    else:
        malformed = malformed_rows(samples, ["completions", "correct"], config.strict)
        _check_something_to_write(samples, config)
        columns = [c for c in (*REQUIRED_COLUMNS, "gold_answer") if c in samples.column_names]
        num_problems = len(samples)

        def build_shard(j: int) -> list[dict[str, Any]]:
            start = j * config.problems_per_shard
            rows = samples.iter_rows(start, start + config.problems_per_shard, columns)
            kept = (row for i, row in enumerate(rows, start) if i not in malformed)
            return trajectory_rows(kept, config, contract, tokenizer)

    result = run_sharded_stage(
        "revisions",
        (config,),
        output_dir=config.output_dir,
        shard=config.shard,
        overwrite=config.overwrite,
        num_shards=(num_problems + config.problems_per_shard - 1) // config.problems_per_shard,
        schema=TRAJECTORY_SCHEMA,
        build_shard=build_shard,
        stats=lambda output_dir: revisions_stats(output_dir, malformed),
        info={
            "samples_dir": config.samples_dir,
            "chains_dir": config.chains_dir,
            "max_previous": config.max_previous,
            "prompt_contract": contract.to_dict(),
            "reviser_format": FORMAT_VERSION,
        },
        hash_extra={"prompt_contract": contract.to_dict(), "reviser_format": FORMAT_VERSION},
        # Where the chat template came from is not what it renders (the prompts are, via the hash).
        hash_ignore=("tokenizer_name_or_path",),
        progress="Building trajectories",
        tracking=config,
        shard_metrics=lambda rows: {"trajectories": len(rows)},
        on_complete=lambda stats: _push(config, contract) if config.push_to_hub else None,
    )
    if not is_complete(result):
        return result
    logger.info(
        "%d trajectories for %d of %d problems (%s per problem, min %d, max %d); k histogram %s; "
        "%d problems without a correct sample %s; %d empty completions dropped; %d malformed rows "
        "skipped -> %s",
        result["num_trajectories"],
        result["problems_with_trajectories"],
        result["num_problems"],
        result["trajectories_per_problem"]["mean"],
        result["trajectories_per_problem"]["min"],
        result["trajectories_per_problem"]["max"],
        json.dumps(result["num_previous_histogram"]),
        result["problems_without_correct_sample"],
        "(copied all the same)" if config.copy_attempts else "skipped",
        result["empty_completions_dropped"],
        result["malformed_rows_skipped"],
        config.output_dir,
    )
    return result


def _check_something_to_write(samples: ShardReader, config: TrajectoryConfig) -> None:
    """Refuse samples that give no trajectory at all, before the output exists: every trajectory ends
    in a correct non-empty completion (the copying stage: any non-empty one), so all-wrong or all-empty
    samples would leave a manifest over empty shards that train-reviser then refuses."""
    for batch in samples.iter_batches(["completions", "correct"]):
        for texts, verdicts in zip(
            batch.column("completions").to_pylist(), batch.column("correct").to_pylist()
        ):
            pairs = zip(texts or [], verdicts or [])
            if any(text and text.strip() and (ok or config.copy_attempts) for text, ok in pairs):
                return
    if config.copy_attempts:
        raise InputError(
            f"{config.samples_dir}: field completions: every completion is empty; nothing to copy"
        )
    raise InputError(
        f"{config.samples_dir}: fields correct, completions: no problem has a correct non-empty completion, "
        "which every revision trajectory ends in; nothing to write"
    )


def _prompt_contract(config: TrajectoryConfig) -> tuple[PromptContract, Any]:
    """The samples' prompt contract (the flags checked against it, then set to it for the resolved
    config), and the tokenizer that renders it (None without the chat template).

    """
    # Chains of a search must have been prompted as the samples were: one contract for both, or refused.
    data = f"{config.samples_dir},{config.chains_dir}" if config.chains_dir else config.samples_dir
    contract = config.resolve_prompt_contract(data, "ttc revisions")
    samples_options = read_resolved_config(config.samples_dir)
    if not contract.use_chat_template:
        return contract, None
    name = config.tokenizer_name_or_path or samples_options.get("model_name_or_path")
    if not name:
        raise InputError(
            f"ttc revisions: {config.samples_dir} does not name its policy; pass --tokenizer_name_or_path "
            "(its chat template renders the reviser prompts)"
        )
    trust = bool(samples_options.get("trust_remote_code", False))
    try:
        # Only the chat template is needed (rendered to text, never tokenized): the fast tokenizer
        # class reads it from tokenizer_config.json / chat_template.jinja without importing torch,
        # which AutoTokenizer does (+190 MiB; this stage streams millions of completions in 400 MiB).
        tokenizer = PreTrainedTokenizerFast.from_pretrained(name, trust_remote_code=trust)
    except (OSError, ValueError) as err:
        raise InputError(f"ttc revisions: {load_error(name, 'the tokenizer', err)}") from None
    render_turn("{question}", contract, tokenizer)  # no chat template: refused before anything is written
    return contract, tokenizer


def _attempts_description(config: TrajectoryConfig) -> str:
    """What the dataset card says of the attempts in each trajectory."""
    if config.chains_dir:
        return (
            f"the correct attempts of {config.chains_dir}'s revision chains, the chain's last "
            f"{config.max_previous} attempts before each as its context"
        )
    if config.copy_attempts:
        return f"a copying stage: {config.copy_attempts} distinct samples per problem, each the one attempt and the completion"
    if config.context_attempts == "any":
        rate = config.correct_attempt_rate
        return f"0-{config.max_previous} drawn from all the problem's other samples, right or wrong" + (
            f", each correct with probability {rate}" if rate is not None else " as they came"
        )
    return (
        f"0-{config.max_previous} incorrect, order {config.attempt_order}; "
        f"{config.correct_context_fraction:.0%} ending on a correct one"
    )


def _push(config: TrajectoryConfig, contract: PromptContract) -> None:
    facts = {
        "samples": config.samples_dir,
        "attempts per trajectory": _attempts_description(config),
        "reviser format": f"{FORMAT_VERSION} (ttcompute/models/reviser.py)",
        "prompt contract": contract.describe(),
        "seed": config.seed,
        "columns": "prompt (the reviser prompt), completion (a correct solution), previous_attempts, ...",
    }
    push_dataset("revisions", config.output_dir, config, facts)


def revisions_stats(output_dir: str, malformed: set[int] | None = None) -> dict[str, Any]:
    """Statistics of a finished ``ttc revisions`` output (read from its shards, its manifest and the
    samples it was built from), whichever workers and runs wrote the shards."""
    info = read_manifest(output_dir)["info"]
    if "samples_dir" not in info:
        raise InputError(f"{output_dir}: its manifest does not name its samples; rerun ttc revisions")
    samples = ShardReader(info["samples_dir"])
    if malformed is None and not info.get(
        "chains_dir"
    ):  # `ttc merge`: the stage that found them is gone, find them again
        malformed = set(length_mismatches(samples, ["completions", "correct"]))
    per_problem: Counter = Counter()
    k_histogram: Counter = Counter()
    distances = []
    for batch in ShardReader(output_dir).iter_batches(["problem_id", "num_previous", "edit_distance"], 4096):
        per_problem.update(batch.column("problem_id").to_pylist())
        k_histogram.update(batch.column("num_previous").to_pylist())
        distances += [d for d in batch.column("edit_distance").to_pylist() if d >= 0]
    all_counts: Counter = Counter()
    if info.get("chains_dir"):
        chains = read_chains(info["chains_dir"])
        all_counts["problems_without_correct_sample"] = sum(
            not any(correct for chain in p["chains"].values() for _, correct in chain) for p in chains
        )
        num_problems = len(chains)
    else:
        num_problems = len(samples)
        index = 0
        for batch in samples.iter_batches(["completions", "correct"]):
            for sample in batch.to_pylist():
                if index not in malformed:
                    right, _, empty, duplicates = split_solutions(sample)
                    all_counts["problems_without_correct_sample"] += not right
                    all_counts["empty_completions_dropped"] += empty
                    all_counts["duplicate_incorrect_merged"] += duplicates
                index += 1
    num_trajectories = sum(per_problem.values())
    return {
        "stage": "revisions",
        "num_problems": num_problems,
        "num_trajectories": num_trajectories,
        "problems_with_trajectories": len(per_problem),
        "problems_without_correct_sample": all_counts["problems_without_correct_sample"],
        "malformed_rows_skipped": len(malformed),
        "empty_completions_dropped": all_counts["empty_completions_dropped"],
        "duplicate_incorrect_merged": all_counts["duplicate_incorrect_merged"],
        "trajectories_per_problem": {
            "mean": round(num_trajectories / max(len(per_problem), 1), 2),
            "min": min(per_problem.values(), default=0),
            "max": max(per_problem.values(), default=0),
        },
        "num_previous_histogram": {str(k): k_histogram.get(k, 0) for k in range(info["max_previous"] + 1)},
        "mean_edit_distance_of_closest": _mean(distances),
        "prompt_contract": info.get("prompt_contract"),
        "reviser_format": info.get("reviser_format"),
    }


def _mean(values: list[int]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None
