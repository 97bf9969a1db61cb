"""``ttc label``: MC step labels checked against a deterministic toy policy, by hand, and end to end."""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import shutil
from collections import Counter
from pathlib import Path

import datasets
import pytest

from ttcompute.cli import run_stage
from ttcompute.core.errors import InputError
from ttcompute.core.grading import extract_answer
from ttcompute.core.shards import load_sharded, prepare_output, read_resolved_config, write_shard
from ttcompute.core.steps import split_into_steps
from ttcompute.data_gen.label import run_label
from ttcompute.data_gen.label_config import LabelConfig
from ttcompute.data_gen.mc_labels import collect_solutions, label_rows, replay_binary_search
from ttcompute.models.generation import Completion, SamplingParams
from ttcompute.models.generation_config import GeneratorConfig
from ttcompute.tasks.arithmetic import (
    ArithmeticConfig,
    apply_op,
    first_wrong_step,
    generate_problems,
    parse_question,
    reference_steps,
)

SEP = "\n\n"
_LAST_NUMBER = re.compile(r"(-?\d+)\D*$")


def _continue(prompt: str, slip: bool) -> str:
    """The rest of the solution from the last value the prompt states; a slip makes one result 1 too big."""
    question, _, written = prompt.partition("\n")
    start, ops = parse_question(question)
    steps = [s for s in written.split(SEP) if s.strip()]
    value = int(_LAST_NUMBER.search(steps[-1]).group(1)) if steps else start
    lines = []
    for op, b in ops[len(steps) :]:
        result = apply_op(value, op, b) + int(slip)
        slip = False
        lines.append(f"{value} {op} {b} = {result}")
        value = result
    value += int(slip)  # no operation left: the slip hits the answer
    lines.append(f"The answer is \\boxed{{{value}}}")
    return SEP.join(lines)


class ToyPolicy:
    """A deterministic :class:`GenerationBackend` for the arithmetic task.

    Rollout ``j`` from a prompt (``j`` = rollouts already drawn from that prompt) computes correctly when
    ``succeeds(prompt, j)``, else slips (+1 on one result). Values that are too big stay too big (+ and -
    keep a difference, * by >= 2 scales it), so once a prefix holds a too-big value no rollout from it
    reaches the gold answer.
    """

    num_parameters = 1000

    def __init__(self, p: float = 1.0) -> None:
        self.p = p
        self.calls = 0
        self.seeds: list[int] = []
        self.served: Counter[str] = Counter()  # prompt -> rollouts drawn from it
        self.prompt_tokens: Counter[str] = Counter()
        self.tokens = 0

    def succeeds(self, prompt: str, j: int) -> bool:
        digest = hashlib.sha256(f"{j}|{prompt}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.p

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Completion]]:
        self.calls += 1
        self.seeds.append(params.seed)
        outputs = []
        for prompt in prompts:
            completions = []
            for _ in range(params.n):
                j = self.served[prompt]
                self.served[prompt] += 1
                text = _continue(prompt, slip=not self.succeeds(prompt, j))
                completions.append(Completion(text, len(text) + 1, "eos"))
                self.prompt_tokens[prompt] += len(text) + 1
                self.tokens += len(text) + 1
            outputs.append(completions)
        return outputs


def _solution(question: str, wrong_at: int | None, delta: int = 1) -> list[str]:
    """Steps that follow the reference but make step ``wrong_at``'s result ``delta`` too big, then carry on."""
    start, ops = parse_question(question)
    steps, value = [], start
    for i, (op, b) in enumerate(ops):
        value_after = apply_op(value, op, b) + (delta if i == wrong_at else 0)
        steps.append(f"{value} {op} {b} = {value_after}")
        value = value_after
    steps.append(f"The answer is \\boxed{{{value + (delta if wrong_at == len(ops) else 0)}}}")
    return steps


def _row(problem, solutions: list[list[str]]) -> dict:
    """A row shaped like ``ttc sample`` output."""
    texts = [SEP.join(steps) for steps in solutions]
    answers = [extract_answer(text) for text in texts]
    return {
        "problem_id": problem.problem_id,
        "question": problem.question,
        "prompt": problem.question + "\n",
        "gold_answer": problem.answer,
        "metadata": json.dumps(problem.metadata, sort_keys=True),
        "completions": texts,
        "answers": answers,
        "correct": [a == problem.answer for a in answers],
        "num_tokens": [len(t) for t in texts],
        "finish_reasons": ["eos"] * len(texts),
    }


def _prefix_text(row: dict, steps: list[str], num_steps: int) -> str:
    return row["prompt"] + "".join(step + SEP for step in steps[:num_steps])


def _label(rows, backend, seed: int = 0, counts: dict | None = None, **options) -> list[dict]:
    counts = (
        {"dropped_unparseable": 0, "dropped_empty": 0, "dropped_duplicate": 0} if counts is None else counts
    )
    config = LabelConfig(**options)
    return label_rows(rows, backend, GeneratorConfig(model_name_or_path="toy"), config, seed, counts)


def _problems(n: int, seed: int = 7, min_ops: int = 2, max_ops: int = 6):
    return generate_problems(n, seed=seed, cfg=ArithmeticConfig(min_ops=min_ops, max_ops=max_ops))


def _mixed_rows(num_problems: int = 6, one_per_problem: bool = False) -> list[dict]:
    """Reference solutions and solutions corrupted at the first, a middle and the answer step."""
    rows = []
    for n, problem in enumerate(_problems(num_problems)):
        num_ops = len(parse_question(problem.question)[1])
        wrong = list(dict.fromkeys([None, 0, num_ops // 2, num_ops, num_ops - 1]))
        if one_per_problem:
            wrong = [wrong[n % len(wrong)]]
        rows.append(_row(problem, [_solution(problem.question, w, delta=1 + n % 3) for w in wrong]))
    return rows


def _first_wrong(row: dict) -> int:
    wrong = first_wrong_step(row["question"], row["completions"])
    return -1 if wrong is None else wrong


def test_toy_solutions_match_the_task_checker():
    problem = _problems(1, min_ops=4, max_ops=4)[0]
    start, ops = parse_question(problem.question)
    assert _solution(problem.question, None) == reference_steps(start, ops)
    for wrong_at in range(len(ops) + 1):
        assert first_wrong_step(problem.question, _solution(problem.question, wrong_at)) == wrong_at
    prompt = problem.question + "\n" + "".join(s + SEP for s in reference_steps(start, ops)[:2])
    assert _continue(prompt, slip=False).split(SEP) == reference_steps(start, ops)[2:]
    slipped = reference_steps(start, ops)[:2] + _continue(prompt, slip=True).split(SEP)
    assert first_wrong_step(problem.question, slipped) == 2
    assert extract_answer(slipped[-1]) != problem.answer


def test_exhaustive_first_bad_step_is_the_first_wrong_step():
    rows = _mixed_rows()
    toy = ToyPolicy(p=1.0)
    labelled = _label(rows, toy, num_rollouts=3, rollout_chunk=1)
    assert len(labelled) == sum(len(r["completions"]) for r in rows)  # all distinct and parseable
    assert any(r["first_bad_step"] == -1 for r in labelled) and any(r["first_bad_step"] > 0 for r in labelled)
    for row in labelled:
        first_wrong = _first_wrong(row)
        assert row["first_bad_step"] == first_wrong
        assert row["correct"] == (first_wrong == -1)
        bad = len(row["completions"]) if first_wrong == -1 else first_wrong
        expected = [float(i < bad) for i in range(len(row["completions"]))]
        assert row["soft_labels"] == row["hard_labels"] == row["labels"] == expected
        assert row["labeller"] == "exhaustive"


def test_exhaustive_soft_labels_are_the_fraction_of_correct_rollouts():
    rows, k = _mixed_rows(), 5
    toy = ToyPolicy(p=0.6)
    labelled = _label(rows, toy, num_rollouts=k, rollout_chunk=2)
    by_key = {(r["problem_id"], r["sample_index"]): r for r in labelled}
    fractions = set()
    # A correct solution witnesses each of its prefixes (and those it shares with siblings).
    witnessed = {
        (row["problem_id"], tuple(split_into_steps(text, SEP)[:i]))
        for row in rows
        for text, correct in zip(row["completions"], row["correct"])
        if correct
        for i in range(1, len(split_into_steps(text, SEP)))
    }
    for row in rows:
        for index, text in enumerate(row["completions"]):
            steps = split_into_steps(text, SEP)
            got = by_key[(row["problem_id"], index)]
            expected_outcomes = []
            for i in range(1, len(steps)):
                right_so_far = first_wrong_step(row["question"], steps[:i]) is None
                prompt = _prefix_text(row, steps, i)
                expected_outcomes.append([right_so_far and toy.succeeds(prompt, j) for j in range(k)])
            expected_soft = [sum(o) / k for o in expected_outcomes] + [float(row["correct"][index])]
            fractions.update(expected_soft)
            assert got["rollout_outcomes"] == expected_outcomes + [[]]
            assert got["soft_labels"] == pytest.approx(expected_soft)
            assert got["labels"] == got["soft_labels"]
            evidence = [
                v > 0 or (row["problem_id"], tuple(steps[: i + 1])) in witnessed
                for i, v in enumerate(expected_soft[:-1])
            ]
            last = max((i for i, ok in enumerate(evidence) if ok), default=-1)
            expected_hard = [float(i <= last) for i in range(len(evidence))] + [expected_soft[-1]]
            assert got["hard_labels"] == expected_hard
            expected_bad = next((i for i, v in enumerate(expected_hard) if v == 0), -1)
            assert got["first_bad_step"] == expected_bad
    assert {0.2, 0.4, 0.6, 0.8} & fractions  # the toy's draws really are mixed


def test_a_later_success_makes_earlier_hard_labels_positive():
    # A weak toy policy: from right prefixes, most of k=2 rollouts slip, so zero-hit prefixes are often
    # followed by prefixes with a hit. The solution's own steps lead from the first to the second, so
    # the first's value is > 0 too: hard labels are 1 up to the last step with a hit.
    rows = _mixed_rows(8)
    for row in rows:  # incorrect solutions only: no witnesses, the rule alone is at work
        keep = [j for j, ok in enumerate(row["correct"]) if not ok]
        for name in ("completions", "answers", "correct"):
            row[name] = [row[name][j] for j in keep]
    labelled = _label([r for r in rows if r["completions"]], ToyPolicy(p=0.3), num_rollouts=2)
    gaps = 0
    for row in labelled:
        hits = [v > 0 for v in row["soft_labels"][:-1]]
        last = max((i for i, hit in enumerate(hits) if hit), default=-1)
        assert row["hard_labels"] == [float(i <= last) for i in range(len(hits))] + [0.0]
        assert row["first_bad_step"] == last + 1
        gaps += any(not hit for hit in hits[: last + 1])
    assert gaps >= 2  # the case this rule is for really happened


def test_hard_label_type_puts_hard_labels_in_labels():
    labelled = _label(_mixed_rows(3), ToyPolicy(p=0.5), num_rollouts=4, label_type="hard")
    assert any(0 < v < 1 for r in labelled for v in r["soft_labels"])
    for row in labelled:
        assert row["labels"] == row["hard_labels"]
        # Hard is "some rollout from here or later succeeded", or a correct solution continues from here.
        assert all(h >= float(v > 0) for h, v in zip(row["hard_labels"], row["soft_labels"]))
        assert row["hard_labels"] == sorted(row["hard_labels"], reverse=True)
        if row["correct"]:
            assert row["hard_labels"] == [1.0] * len(row["completions"])


def test_binary_search_by_hand():
    problem = _problems(1, min_ops=4, max_ops=4)[0]
    wrong = _solution(problem.question, 2)
    row = _row(problem, [wrong])
    toy = ToyPolicy(p=1.0)
    (incorrect,) = _label([row], toy, num_rollouts=4, rollout_chunk=2, labeller="binary_search")
    # lo=-1, hi=4: probe after step 1 -> first chunk of 2 succeeds (lo=1); probe after step 2 -> two
    # chunks of 2 fail (hi=2). 2 + 4 rollouts in 3 backend calls.
    assert incorrect["first_bad_step"] == 2
    assert incorrect["hard_labels"] == incorrect["soft_labels"] == incorrect["labels"] == [1, 1, 0, 0, 0]
    assert incorrect["num_rollouts"] == 6
    assert incorrect["rollout_outcomes"] == [[], [True, True], [False] * 4, [], []]
    assert toy.served == {_prefix_text(row, wrong, 2): 2, _prefix_text(row, wrong, 3): 4}
    assert toy.calls == 3
    assert sum(toy.prompt_tokens.values()) == incorrect["rollout_tokens"] == toy.tokens

    exhaustive = _label([row], ToyPolicy(p=1.0), num_rollouts=4)[0]
    assert exhaustive["first_bad_step"] == 2 and exhaustive["num_rollouts"] == 16


def test_binary_search_skips_prefixes_a_correct_sibling_witnesses():
    problem = _problems(1, min_ops=4, max_ops=4)[0]
    wrong, right = _solution(problem.question, 2), _solution(problem.question, None)
    row = _row(problem, [wrong, right])  # the first two steps are the same text in both
    toy = ToyPolicy(p=1.0)
    incorrect, correct = _label([row], toy, num_rollouts=4, rollout_chunk=2, labeller="binary_search")
    # The probe after step 1 is decided by the correct sibling (no rollouts); after step 2: 4 fail.
    assert incorrect["first_bad_step"] == 2 and incorrect["labels"] == [1, 1, 0, 0, 0]
    assert incorrect["num_rollouts"] == 4 and toy.served == {_prefix_text(row, wrong, 3): 4}
    assert correct["first_bad_step"] == -1 and correct["num_rollouts"] == correct["rollout_tokens"] == 0
    assert correct["hard_labels"] == [1.0] * 5 and correct["labeller"] == "binary_search"


def test_binary_search_agrees_with_exhaustive_using_fewer_rollouts():
    rows = _mixed_rows(8)
    exhaustive = _label(rows, ToyPolicy(p=1.0), num_rollouts=4, rollout_chunk=2)
    toy = ToyPolicy(p=1.0)
    searched = _label(rows, toy, num_rollouts=4, rollout_chunk=2, labeller="binary_search")
    assert [r["first_bad_step"] for r in searched] == [r["first_bad_step"] for r in exhaustive]
    assert [r["first_bad_step"] for r in searched] == [_first_wrong(r) for r in searched]
    assert sum(r["num_rollouts"] for r in searched) == sum(toy.served.values())
    assert sum(r["num_rollouts"] for r in searched) < sum(r["num_rollouts"] for r in exhaustive)
    for row in searched:
        bad = len(row["completions"]) if row["first_bad_step"] == -1 else row["first_bad_step"]
        assert row["labels"] == [float(i < bad) for i in range(len(row["completions"]))]


@pytest.mark.parametrize("labeller", ["exhaustive", "binary_search"])
def test_rollout_costs_add_up_to_what_the_backend_served(labeller):
    rows, k = _mixed_rows(), 4
    toy = ToyPolicy(p=0.5)
    labelled = _label(rows, toy, num_rollouts=k, rollout_chunk=3, labeller=labeller)
    assert sum(r["num_rollouts"] for r in labelled) == sum(toy.served.values())
    assert sum(r["rollout_tokens"] for r in labelled) == toy.tokens
    assert sum(len(o) for r in labelled for o in r["rollout_outcomes"]) >= sum(toy.served.values())
    assert max(toy.served.values()) <= k  # each distinct prefix is drawn from at most k times
    if labeller == "exhaustive":
        assert set(toy.served.values()) == {k}
        distinct = {
            (r["problem_id"], tuple(r["completions"][:i]))
            for r in labelled
            for i in range(1, len(r["completions"]))
        }
        assert len(toy.served) == len(distinct)


@pytest.mark.parametrize("right_first", [True, False])
def test_shared_prefixes_are_rolled_out_once_and_charged_to_the_first_solution(right_first):
    problem = _problems(1, min_ops=5, max_ops=5)[0]
    right, wrong = _solution(problem.question, None), _solution(problem.question, 3)
    row = _row(problem, [right, wrong] if right_first else [wrong, right])
    toy, k = ToyPolicy(p=0.5), 3
    first, second = _label([row], toy, num_rollouts=k, rollout_chunk=1)
    # Six steps each, five prefixes each; the first three are the same text.
    assert first["num_rollouts"] == 5 * k and second["num_rollouts"] == 2 * k
    assert set(toy.served.values()) == {k} and len(toy.served) == 7
    first_steps = right if right_first else wrong
    assert first["rollout_tokens"] == sum(
        toy.prompt_tokens[_prefix_text(row, first_steps, i)] for i in range(1, 6)
    )
    assert first["rollout_tokens"] + second["rollout_tokens"] == toy.tokens
    assert first["rollout_outcomes"][:3] == second["rollout_outcomes"][:3]
    assert first["soft_labels"][:3] == second["soft_labels"][:3]


def test_same_seed_same_rows_and_seeds_differ_per_call():
    rows = _mixed_rows(4)
    toy_a, toy_b, toy_c = ToyPolicy(0.5), ToyPolicy(0.5), ToyPolicy(0.5)
    options = {"num_rollouts": 4, "rollout_chunk": 1, "labeller": "binary_search"}
    first = _label(rows, toy_a, seed=3, **options)
    assert _label(rows, toy_b, seed=3, **options) == first
    assert toy_a.seeds == toy_b.seeds and len(set(toy_a.seeds)) == len(toy_a.seeds) > 1
    _label(rows, toy_c, seed=4, **options)
    assert not set(toy_c.seeds) & set(toy_a.seeds)


@pytest.mark.parametrize("labeller", ["exhaustive", "binary_search"])
def test_last_step_label_is_correctness_without_rollouts(labeller):
    rows = _mixed_rows(4)
    toy = ToyPolicy(p=0.0)  # every rollout slips: only the solution's own answer can be right
    labelled = _label(rows, toy, num_rollouts=2, rollout_chunk=1, labeller=labeller)
    assert {r["correct"] for r in labelled} == {True, False}
    for row in labelled:
        assert row["labels"][-1] == row["hard_labels"][-1] == float(row["correct"])
        assert row["rollout_outcomes"][-1] == []
        whole = _prefix_text(row, row["completions"], len(row["completions"]))
        assert whole not in toy.served
        if labeller == "exhaustive":
            assert row["labels"][:-1] == [0.0] * (len(row["completions"]) - 1)


def test_replay_reproduces_live_binary_search_on_the_same_draws():
    rows, k, chunk = _mixed_rows(24, one_per_problem=True), 5, 2
    exhaustive = _label(rows, ToyPolicy(p=0.45), num_rollouts=k, rollout_chunk=chunk)
    searched = _label(rows, ToyPolicy(p=0.45), num_rollouts=k, rollout_chunk=chunk, labeller="binary_search")
    assert [r["problem_id"] for r in exhaustive] == [r["problem_id"] for r in searched]
    partial_probes = 0
    for ex, live in zip(exhaustive, searched):
        replayed = replay_binary_search(ex["rollout_outcomes"], ex["correct"], k, chunk)
        assert replayed == (live["first_bad_step"], live["num_rollouts"])
        for drawn, recorded in zip(live["rollout_outcomes"], ex["rollout_outcomes"]):
            assert drawn == recorded[: len(drawn)]
            partial_probes += 0 < len(drawn) < k
    assert partial_probes > 0  # some probes stopped early at a correct rollout
    assert sum(r["num_rollouts"] for r in searched) < sum(r["num_rollouts"] for r in exhaustive)


class _ReadLog(list):
    """A list that records which indices are read."""

    def __init__(self, items):
        super().__init__(items)
        self.read: list[int] = []

    def __getitem__(self, index):
        self.read.append(index)
        return super().__getitem__(index)


def _probe_cost(drawn: list[bool], k: int, chunk: int) -> int:
    """Rollouts a probe draws: whole chunks until one holds a correct rollout, at most k."""
    n = 0
    while n < k:
        n += min(chunk, k - n)
        if any(drawn[:n]):
            return n
    return k


def test_replay_binary_search_against_brute_force():
    rng = random.Random(0)
    assert replay_binary_search([[True] * 4, [], []], correct=True, k=4, chunk=2) == (-1, 0)
    assert replay_binary_search([[False, True, False, False], [False] * 4, []], False, k=4, chunk=2) == (1, 6)
    for _ in range(600):
        num_steps, k = rng.randint(1, 8), rng.randint(1, 6)
        chunk, monotone = rng.randint(1, k), rng.random() < 0.6
        boundary = rng.randint(0, num_steps - 1)  # first step whose prefix has no correct rollout
        table = []
        for i in range(num_steps - 1):
            first_k = [rng.random() < 0.3 for _ in range(k)]
            if monotone and i < boundary and not any(first_k):
                first_k[rng.randrange(k)] = True
            if monotone and i >= boundary:
                first_k = [False] * k
            table.append(first_k + [rng.random() < 0.5 for _ in range(rng.randint(0, 2))])  # extras unused
        table.append([])
        outcomes = _ReadLog(table)
        first_bad, used = replay_binary_search(outcomes, correct=False, k=k, chunk=chunk)
        hard = [any(o[:k]) for o in table[:-1]]
        if monotone:
            assert first_bad == boundary == next((i for i, ok in enumerate(hard) if not ok), num_steps - 1)
        # The search's invariant holds for any table: a solvable prefix just before an unsolvable one.
        assert first_bad == num_steps - 1 or not hard[first_bad]
        assert first_bad == 0 or hard[first_bad - 1]
        probes = outcomes.read
        assert len(set(probes)) == len(probes) <= math.ceil(math.log2(num_steps))
        assert used == sum(_probe_cost(table[i], k, chunk) for i in probes) <= len(probes) * k


def test_collect_solutions_drops_and_counts():
    problems = _problems(2)
    a, b = (_solution(problems[0].question, w) for w in (None, 0))
    row = _row(
        problems[0], [a, ["no answer here", "still none"], a, b, [SEP], _solution(problems[0].question, 1)]
    )
    row["answers"][4] = "5"  # parseable but empty: split gives no step
    other = _row(problems[1], [a, a])  # the same text in another problem is not a duplicate of it
    counts = {"dropped_unparseable": 0, "dropped_empty": 0, "dropped_duplicate": 0}
    solutions = collect_solutions([row, other], SEP, None, counts)
    assert [(s.row["problem_id"], s.sample_index) for s in solutions] == [
        (problems[0].problem_id, 0),
        (problems[0].problem_id, 3),
        (problems[0].problem_id, 5),
        (problems[1].problem_id, 0),
    ]
    assert counts == {"dropped_unparseable": 1, "dropped_empty": 1, "dropped_duplicate": 2}
    assert solutions[0].steps == a and solutions[0].correct and not solutions[1].correct
    assert solutions[1].answer == extract_answer(SEP.join(b))

    counts = dict.fromkeys(counts, 0)
    capped = collect_solutions([row, other], SEP, 2, counts)
    assert [s.sample_index for s in capped] == [0, 3, 0]
    assert counts == {"dropped_unparseable": 1, "dropped_empty": 0, "dropped_duplicate": 2}


@pytest.mark.parametrize(
    "options, message",
    [
        ({"labeller": "beam"}, "labeller"),
        ({"label_type": "fuzzy"}, "label_type"),
        ({"num_rollouts": 0, "rollout_chunk": 1}, "num_rollouts"),
        ({"num_rollouts": 4, "rollout_chunk": 5, "labeller": "binary_search"}, "rollout_chunk"),
        ({"num_rollouts": 4, "rollout_chunk": 0, "labeller": "binary_search"}, "rollout_chunk"),
        ({"max_solutions_per_problem": 0}, "max_solutions_per_problem"),
        ({"step_separator": ""}, "step_separator"),
        ({"problems_per_shard": 0}, "problems_per_shard"),
    ],
)
def test_label_config_validation(options, message):
    with pytest.raises(ValueError, match=message):
        LabelConfig(**options)


def test_exhaustive_labeller_ignores_the_binary_search_chunk():
    # `--num_rollouts 2` alone must work: the chunk only matters to the binary search.
    assert LabelConfig(num_rollouts=2).rollout_chunk == 4


# --- The stage ---------------------------------------------------------------------------------------


def _write_samples(path: Path, rows: list[dict], rows_per_shard: int = 2) -> Path:
    shards = [rows[i : i + rows_per_shard] for i in range(0, len(rows), rows_per_shard)]
    prepare_output(path, "sample", "feedc0de", len(shards), overwrite=False)
    for j, shard in enumerate(shards):
        write_shard(path, j, shard)
    return path


def _toy_stage(tmp_path, monkeypatch, rows: list[dict], **options) -> tuple[ToyPolicy, dict]:
    samples = _write_samples(tmp_path / "samples", rows, rows_per_shard=1)
    toy = ToyPolicy(p=1.0)
    monkeypatch.setattr("ttcompute.data_gen.label.load_backend", lambda *args, **kwargs: toy)
    config = LabelConfig(
        samples_dir=str(samples), output_dir=str(tmp_path / "labels"), problems_per_shard=1, **options
    )
    return toy, run_label(GeneratorConfig(model_name_or_path="toy"), config)


def test_stage_with_toy_backend_and_binary_search(tmp_path, monkeypatch):
    rows = _mixed_rows(3)
    options = {"labeller": "binary_search", "num_rollouts": 2, "rollout_chunk": 1}
    toy, result = _toy_stage(tmp_path, monkeypatch, rows, **options)
    data = load_sharded(tmp_path / "labels")
    assert len(data) == sum(len(r["completions"]) for r in rows)
    assert data["first_bad_step"] == [_first_wrong(r) for r in data]
    stats = json.loads((tmp_path / "labels" / "stats.json").read_text())
    assert stats["num_rollouts"] == result["num_rollouts"] == sum(toy.served.values()) > 0
    assert stats["compute"]["policy_tokens"] == toy.tokens
    assert stats["compute"]["policy_flops"] == 2 * toy.num_parameters * toy.tokens


def test_stage_reads_back_a_shard_without_labellable_solutions(tmp_path, monkeypatch):
    rows = _mixed_rows(2)
    unparseable = _row(_problems(3)[2], [["1 + 1 = 2", "no box"]])
    _toy_stage(tmp_path, monkeypatch, rows + [unparseable], num_rollouts=2, rollout_chunk=1)
    assert (tmp_path / "labels" / "shard-00002.parquet").is_file()
    data = load_sharded(tmp_path / "labels")  # the module promises the empty shard reads back
    assert len(data) == sum(len(r["completions"]) for r in rows)
    stats = json.loads((tmp_path / "labels" / "stats.json").read_text())
    assert stats["dropped_this_run"]["dropped_unparseable"] == 1


def test_stage_rejects_samples_missing_a_column(tmp_path):
    rows = _mixed_rows(2)
    for row in rows:
        del row["gold_answer"]
    samples = _write_samples(tmp_path / "samples", rows)
    config = LabelConfig(samples_dir=str(samples), output_dir=str(tmp_path / "labels"))
    with pytest.raises(InputError, match="gold_answer"):
        run_label(GeneratorConfig(model_name_or_path="unused"), config)
    assert not (tmp_path / "labels").exists()


def test_stage_rejects_samples_without_the_separator(tmp_path):
    rows = _mixed_rows(2)
    for row in rows:
        row["completions"] = [text.replace(SEP, " ") for text in row["completions"]]
    samples = _write_samples(tmp_path / "samples", rows)
    config = LabelConfig(samples_dir=str(samples), output_dir=str(tmp_path / "labels"))
    with pytest.raises(InputError, match="separator"):
        run_label(GeneratorConfig(model_name_or_path="unused"), config)
    with pytest.raises(InputError, match="model_name_or_path"):  # no model given, none in the samples dir
        run_label(GeneratorConfig(), config)


@pytest.fixture(scope="module")
def sampled(small_policy_dir, tmp_path_factory):
    import torch

    # Two cores shared with other jobs: torch's thread per core oversubscribes them (~20x slower).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("label_stage") / "samples"
    run_stage("sample", [
        "--model_name_or_path", str(small_policy_dir), "--task", "arithmetic", "--num_problems", "4",
        "--num_samples", "2", "--max_new_tokens", "100", "--problems_per_shard", "2", "--device", "cpu",
        "--output_dir", str(out),
    ])  # fmt: skip
    yield out
    torch.set_num_threads(threads)


def _label_args(samples: Path, out: Path, k: int = 2) -> list[str]:
    return [
        "--samples_dir", str(samples), "--num_rollouts", str(k), "--rollout_chunk", "1",
        "--max_new_tokens", "100", "--problems_per_shard", "2", "--device", "cpu", "--output_dir", str(out),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def labelled(sampled):
    out = sampled.parent / "labels"
    run_stage("label", _label_args(sampled, out))
    return out


def test_stage_output_columns_and_labels(small_policy_dir, sampled, labelled):
    data = load_sharded(labelled)
    assert isinstance(data, datasets.Dataset) and len(data) > 0
    samples = {row["problem_id"]: row for row in load_sharded(sampled)}
    for row in data:
        assert isinstance(row["prompt"], str) and all(isinstance(c, str) for c in row["completions"])
        assert len(row["labels"]) == len(row["completions"]) == len(row["rollout_outcomes"])
        assert all(isinstance(v, float) and 0 <= v <= 1 for v in row["labels"])
        sample = samples[row["problem_id"]]
        assert row["prompt"] == sample["prompt"]
        assert row["completions"] == split_into_steps(sample["completions"][row["sample_index"]], SEP)
        assert row["answer"] == sample["answers"][row["sample_index"]]
        assert row["correct"] == sample["correct"][row["sample_index"]]
        assert row["labels"][-1] == float(row["correct"]) and row["rollout_outcomes"][-1] == []
        assert row["labels"][:-1] == [sum(o) / 2 for o in row["rollout_outcomes"][:-1]]
        assert all(len(o) == 2 for o in row["rollout_outcomes"][:-1])
    stats = json.loads((labelled / "stats.json").read_text())
    distinct = {
        (r["problem_id"], tuple(r["completions"][:i])) for r in data for i in range(1, len(r["completions"]))
    }
    assert stats["num_rollouts"] == sum(data["num_rollouts"]) == 2 * len(distinct)
    assert stats["rollout_tokens"] == sum(data["rollout_tokens"]) == stats["compute"]["policy_tokens"] > 0
    assert stats["num_solutions"] == len(data)
    resolved = (labelled / "ttc_config.yaml").read_text()
    assert read_resolved_config(labelled)["model_name_or_path"] == str(small_policy_dir)
    assert "model_name_or_path: " in resolved  # taken from the samples' config (relative to the file)


def test_stage_resumes_byte_identically(sampled, labelled, tmp_path):
    out = tmp_path / "labels"
    shutil.copytree(labelled, out)
    shards = sorted(out.glob("shard-*.parquet"))
    assert len(shards) == 2
    before = shards[1].read_bytes()
    shards[1].unlink()
    run_stage("label", _label_args(sampled, out))
    assert shards[1].read_bytes() == before
    assert shards[0].read_bytes() == (labelled / shards[0].name).read_bytes()


def test_stage_refuses_a_different_config_unless_overwrite(sampled, labelled, tmp_path):
    out = tmp_path / "labels"
    shutil.copytree(labelled, out)
    before = (out / "shard-00000.parquet").read_bytes()
    with pytest.raises(InputError, match="different run"):
        run_stage("label", _label_args(sampled, out, k=1))
    assert (out / "shard-00000.parquet").read_bytes() == before
    result = run_stage("label", _label_args(sampled, out, k=1) + ["--overwrite", "true"])
    data = load_sharded(out)
    assert all(len(o) == 1 for row in data["rollout_outcomes"] for o in row[:-1])
    distinct = {
        (r["problem_id"], tuple(r["completions"][:i])) for r in data for i in range(1, len(r["completions"]))
    }
    assert result["num_rollouts"] == sum(data["num_rollouts"]) == len(distinct)


def test_output_of_older_label_rules_is_not_resumed(sampled, labelled, tmp_path, monkeypatch):
    import ttcompute.data_gen.label as label_stage

    out = tmp_path / "labels"
    shutil.copytree(labelled, out)
    before = (out / "shard-00000.parquet").read_bytes()
    # The same options, but labels written under other rules: resuming would mix two definitions.
    monkeypatch.setattr(label_stage, "LABEL_RULES_VERSION", label_stage.LABEL_RULES_VERSION + 1)
    with pytest.raises(InputError, match="different run"):
        run_stage("label", _label_args(sampled, out))
    assert (out / "shard-00000.parquet").read_bytes() == before


# Slow (~17 s): see tests/test_sampling.py's SIGKILL test; the search stage's stays in the default suite.
@pytest.mark.slow
def test_sigkill_mid_stage_then_rerun_gives_the_uninterrupted_output(sampled, labelled, tmp_path):
    from killing import kill_after_shards, run_ttc, shard_bytes

    out = tmp_path / "killed"
    args = ["label", *_label_args(sampled, out)]
    done_at_kill = kill_after_shards(args, out, shards=1)
    assert done_at_kill == {0}  # shard 1 was in progress: nothing of it may be left behind as a shard
    kept = shard_bytes(out)
    # What a kill inside write_shard leaves: a half-written temporary file. It must never be read.
    (out / ".shard-00001.parquet.99999.tmp").write_bytes(b"PAR1 half a shard")
    run_ttc(args)
    assert shard_bytes(out)["shard-00000.parquet"] == kept["shard-00000.parquet"]  # not redone
    assert shard_bytes(out) == shard_bytes(labelled)  # byte for byte what an uninterrupted run wrote
    stats, whole = (json.loads((d / "stats.json").read_text()) for d in (out, labelled))
    assert {k: v for k, v in stats.items() if k != "dropped_this_run"} == {
        k: v for k, v in whole.items() if k != "dropped_this_run"
    }
