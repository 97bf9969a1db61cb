"""Monte Carlo step labels for sampled solutions (Snell et al., Sec. 5.1; Math-Shepherd): the labellers
behind ``ttc label`` (the stage itself: :mod:`ttcompute.data_gen.label`).

Each solution is split into steps. The value of step ``i`` is estimated by rolling out ``k``
completions from the prefix ``prompt + steps[:i+1]`` with the same policy: the fraction that reach the
correct answer is the *soft* label (what the paper trains on), "any of them did" the *hard* label
(Math-Shepherd). The last step needs no rollouts: it holds the answer, so its label is the solution's
own correctness.

Two labellers write the same columns:

``exhaustive``
    ``k`` rollouts at every step prefix. Soft and hard labels everywhere.

Hard labels use all the evidence that a prefix's value is above zero, not only its own rollouts:
a correct solution is itself a successful rollout from each of its prefixes (and from every prefix
it shares with a sibling sample) -- a *witness* -- and a success from a later prefix of the same
solution proves the earlier ones too (the solution's own steps are one path the policy took). So
the exhaustive labeller's hard labels are 1 up to the last step with such evidence and 0 after it:
fewer Monte Carlo false negatives, and exactly the "first step whose value is zero" that the binary
search looks for. Soft labels stay the rollouts' fraction, the paper's estimator.
``binary_search``
    OmegaPRM-style: only incorrect solutions are searched (a correct solution witnesses every one of
    its prefixes, so every step is hard-positive), and a witnessed prefix needs no rollouts. The first step whose value
    drops to zero is found by binary search over prefixes, and each probe draws rollouts in chunks and
    stops at the first correct one -- so rollouts go only where the answer is still open. Labels are
    hard (1 before the first bad step, 0 from it on); ``soft_labels`` repeats them.

Identical prefixes (the same opening steps shared by several samples of a problem) are rolled out
once and their estimate is shared; the rollouts are charged to the first solution that asked for them,
so per-row costs add up to the stage's total.

Both write one row per labelled solution, in the columns :mod:`ttcompute.data_gen.label` lists.

``rollout_outcomes`` lets :func:`replay_binary_search` run the binary search on an exhaustive run's
own rollouts: the two labellers then compared on the same random draws, so their disagreement is
the search's, not Monte Carlo noise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from ttcompute.core.grading import extract_answer, is_equivalent
from ttcompute.core.steps import split_into_steps
from ttcompute.data_gen.label_config import LabelConfig
from ttcompute.models.generation import GenerationBackend
from ttcompute.models.generation_config import GeneratorConfig

logger = logging.getLogger(__name__)

# 2: hard labels count witnesses and later successes (see the module docstring).
LABEL_RULES_VERSION = 2


@dataclass
class _Solution:
    row: dict[str, Any]  # the sample row it comes from
    sample_index: int
    steps: list[str]
    answer: str
    correct: bool
    num_rollouts: int = 0
    rollout_tokens: int = 0


@dataclass
class _Prefix:
    """Rollout statistics of one step prefix, shared by every solution that starts with it."""

    @property
    def drawn(self) -> int:
        return len(self.outcomes)

    @property
    def num_correct(self) -> int:
        return sum(self.outcomes)

    prompt: str
    outcomes: list[bool] = field(default_factory=list)  # each rollout reached the answer, in order
    tokens: int = 0
    owner: _Solution | None = None  # pays for the rollouts
    witnessed: bool = False  # a correct labelled solution continues from it: its value is > 0


class _Grader:
    """Grades rollout answers against one problem's gold answer, each distinct answer once."""

    def __init__(self, gold: str, answer_extraction: str = "strict") -> None:
        self.gold, self.answer_extraction = gold, answer_extraction
        self.verdicts: dict[str, bool] = {}

    def __call__(self, text: str) -> bool:
        answer = extract_answer(text, self.answer_extraction)
        if answer is None:
            return False
        if answer not in self.verdicts:
            self.verdicts[answer] = is_equivalent(answer, self.gold)
        return self.verdicts[answer]


def collect_solutions(
    rows: list[dict[str, Any]], separator: str, max_per_problem: int | None, counts: dict[str, int]
) -> list[_Solution]:
    """Solutions worth labelling: parseable answer, at least one step, one copy of each distinct text.

    ``counts`` gains how many were dropped and why.
    """
    solutions = []
    for row in rows:
        seen: set[str] = set()
        kept = 0
        for j, (text, answer, correct) in enumerate(zip(row["completions"], row["answers"], row["correct"])):
            if max_per_problem is not None and kept >= max_per_problem:
                break
            if answer is None:
                counts["dropped_unparseable"] += 1
                continue
            steps = split_into_steps(text, separator)
            if not steps:
                counts["dropped_empty"] += 1
                continue
            if text in seen:
                counts["dropped_duplicate"] += 1
                continue
            seen.add(text)
            solutions.append(_Solution(row, j, steps, answer, bool(correct)))
            kept += 1
    return solutions


class _RolloutPool:
    """Draws rollouts for many prefixes in batched backend calls and tallies them per prefix."""

    def __init__(self, backend: GenerationBackend, gen_args: GeneratorConfig, separator: str, seed: int):
        self.backend = backend
        self.gen_args = gen_args
        self.separator = separator
        self.seed = seed
        self.calls = 0
        self.prefixes: dict[tuple[str, tuple[str, ...]], _Prefix] = {}
        self.graders: dict[str, _Grader] = {}
        self.witnessed: set[tuple[str, tuple[str, ...]]] = set()

    @staticmethod
    def key(solution: _Solution, num_steps: int) -> tuple[str, tuple[str, ...]]:
        return (solution.row["problem_id"], tuple(solution.steps[:num_steps]))

    def prefix(self, solution: _Solution, num_steps: int) -> _Prefix:
        """The shared statistics of ``solution``'s first ``num_steps`` steps."""
        row = solution.row
        key = self.key(solution, num_steps)
        if key not in self.prefixes:
            text = row["prompt"] + self.separator.join(solution.steps[:num_steps]) + self.separator
            self.prefixes[key] = _Prefix(text, owner=solution, witnessed=key in self.witnessed)
            self.graders.setdefault(
                row["problem_id"], _Grader(row["gold_answer"], self.gen_args.answer_extraction)
            )
        return self.prefixes[key]

    def add_witnesses(self, solutions: list[_Solution]) -> None:
        """Mark every prefix of a correct solution: it has at least one successful continuation."""
        for solution in solutions:
            if solution.correct:
                for i in range(1, len(solution.steps)):
                    key = self.key(solution, i)
                    self.witnessed.add(key)
                    if key in self.prefixes:
                        self.prefixes[key].witnessed = True

    def draw(self, requests: list[tuple[_Prefix, str]], n: int, progress: tqdm | None = None) -> None:
        """``n`` more rollouts for each (prefix, problem_id), batched ``chunk`` prefixes per call."""
        chunk = 256  # prefixes per backend call: big enough to batch well, small enough to show progress
        for start in range(0, len(requests), chunk):
            part = requests[start : start + chunk]
            params = self.gen_args.sampling_params(n=n, seed=self.seed * 1009 + self.calls)
            self.calls += 1
            outputs = self.backend.generate([p.prompt for p, _ in part], params)
            for (prefix, problem_id), completions in zip(part, outputs):
                grader = self.graders[problem_id]
                tokens = sum(c.num_tokens for c in completions)
                prefix.outcomes.extend(grader(c.text) for c in completions)
                prefix.tokens += tokens
                prefix.owner.num_rollouts += len(completions)
                prefix.owner.rollout_tokens += tokens
            if progress is not None:
                progress.update(len(part) * n)


def label_exhaustive(solutions: list[_Solution], pool: _RolloutPool, k: int, progress=None) -> list[dict]:
    """k rollouts from every step prefix but the last; soft and hard labels at every step."""
    todo, seen = [], set()
    for solution in solutions:
        for i in range(1, len(solution.steps)):
            prefix = pool.prefix(solution, i)
            if id(prefix) not in seen:
                seen.add(id(prefix))
                todo.append((prefix, solution.row["problem_id"]))
    pool.draw(todo, k, progress)
    results = []
    for solution in solutions:
        soft = [
            pool.prefix(solution, i).num_correct / pool.prefix(solution, i).drawn
            for i in range(1, len(solution.steps))
        ]
        soft.append(float(solution.correct))
        outcomes = [pool.prefix(solution, i).outcomes for i in range(1, len(solution.steps))] + [[]]
        # Evidence of a value > 0 at step j is evidence at every earlier step too: the solution's own
        # steps up to j are one path the policy took from there. So a hard label is 1 up to the last
        # step with a successful rollout (or witness), which removes Monte Carlo false negatives.
        evidence = [v > 0 or pool.prefix(solution, i + 1).witnessed for i, v in enumerate(soft[:-1])]
        last_positive = max((i for i, ok in enumerate(evidence) if ok), default=-1)
        hard = [float(i <= last_positive) for i in range(len(evidence))] + [soft[-1]]
        results.append(_labelled_row(solution, soft, hard, "exhaustive", outcomes))
    return results


def label_binary_search(
    solutions: list[_Solution], pool: _RolloutPool, k: int, chunk: int, progress=None
) -> list[dict]:
    """First step whose value is zero, by binary search over the prefixes of incorrect solutions.

    Invariant: the prefix ending at step ``lo`` reaches the answer (``lo = -1``: the empty prefix is
    assumed solvable) and the one ending at step ``hi`` does not (``hi`` starts at the last step,
    whose answer is wrong). A probe is decided as soon as one rollout is correct, or after ``k``
    rollouts without one.
    """
    searches = {id(s): [-1, len(s.steps) - 1] for s in solutions if not s.correct}
    by_id = {id(s): s for s in solutions}

    def probe(sid: int) -> _Prefix:
        lo, hi = searches[sid]
        return pool.prefix(by_id[sid], (lo + hi) // 2 + 1)

    while True:
        active = [sid for sid, (lo, hi) in searches.items() if hi - lo > 1]
        if not active:
            break
        # Undecided probes, grouped by how many rollouts they still may draw this round.
        requests: dict[int, list[tuple[_Prefix, str]]] = {}
        seen = set()
        for sid in active:
            prefix = probe(sid)
            if (
                prefix.num_correct == 0
                and not prefix.witnessed
                and prefix.drawn < k
                and id(prefix) not in seen
            ):
                seen.add(id(prefix))
                n = min(chunk, k - prefix.drawn)
                requests.setdefault(n, []).append((prefix, by_id[sid].row["problem_id"]))
        for n in sorted(requests):
            pool.draw(requests[n], n, progress)
        for sid in active:
            prefix = probe(sid)
            lo, hi = searches[sid]
            mid = (lo + hi) // 2
            if prefix.num_correct > 0 or prefix.witnessed:
                searches[sid] = [mid, hi]
            elif prefix.drawn >= k:
                searches[sid] = [lo, mid]
    results = []
    for solution in solutions:
        first_bad = searches[id(solution)][1] if id(solution) in searches else len(solution.steps)
        hard = [float(i < first_bad) for i in range(len(solution.steps))]
        outcomes = [
            list(pool.prefixes[key].outcomes) if (key := pool.key(solution, i)) in pool.prefixes else []
            for i in range(1, len(solution.steps))
        ]
        results.append(_labelled_row(solution, hard, hard, "binary_search", outcomes + [[]]))
    return results


def replay_binary_search(
    outcomes: list[list[bool]], correct: bool, k: int, chunk: int, witnessed: list[bool] | None = None
) -> tuple[int, int]:
    """The binary-search labeller run on recorded rollouts: (first bad step or -1, rollouts it used).

    ``outcomes[i]`` are the rollouts drawn after step ``i`` in order (at least ``k`` for every step but
    the last, as an exhaustive run records); ``witnessed[i]``: a correct sibling solution continues
    from step ``i`` (no rollouts needed there). Same invariant and probe rule as
    :func:`label_binary_search`; prefixes are not shared here, so the count is per solution.

    >>> replay_binary_search([[False, True, False, False], [False] * 4, []], correct=False, k=4, chunk=2)
    (1, 6)
    >>> replay_binary_search([[False] * 4, [False] * 4, []], False, k=4, chunk=2, witnessed=[True, False, False])
    (1, 4)
    """
    if correct:
        return -1, 0
    lo, hi, used = -1, len(outcomes) - 1, 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if witnessed is not None and witnessed[mid]:
            lo = mid
            continue
        drawn = outcomes[mid][:k]
        first_hit = next((i for i, ok in enumerate(drawn) if ok), None)
        if first_hit is None:
            used += len(drawn)
            hi = mid
        else:
            used += min(-(-(first_hit + 1) // chunk) * chunk, k)  # whole chunks up to the hit
            lo = mid
    return hi, used


def _labelled_row(
    solution: _Solution, soft: list[float], hard: list[float], labeller: str, outcomes: list[list[bool]]
) -> dict:
    row = solution.row
    first_bad = next((i for i, v in enumerate(hard) if v == 0), -1)
    return {
        "prompt": row["prompt"],
        "completions": solution.steps,
        "labels": soft,  # replaced by hard labels when label_type is "hard"
        "problem_id": row["problem_id"],
        "question": row["question"],
        "sample_index": solution.sample_index,
        "answer": solution.answer,
        "correct": solution.correct,
        "soft_labels": soft,
        "hard_labels": hard,
        "first_bad_step": first_bad,
        "rollout_outcomes": outcomes,
        "num_rollouts": solution.num_rollouts,
        "rollout_tokens": solution.rollout_tokens,
        "labeller": labeller,
    }


def label_rows(
    rows: list[dict[str, Any]],
    backend: GenerationBackend,
    gen_args: GeneratorConfig,
    config: LabelConfig,
    seed: int,
    counts: dict[str, int],
    progress: tqdm | None = None,
) -> list[dict[str, Any]]:
    """Label the solutions of some sample rows (one shard) with the configured labeller."""
    solutions = collect_solutions(rows, config.step_separator, config.max_solutions_per_problem, counts)
    pool = _RolloutPool(backend, gen_args, config.step_separator, seed)
    pool.add_witnesses(solutions)
    if config.labeller == "exhaustive":
        labelled = label_exhaustive(solutions, pool, config.num_rollouts, progress)
    else:
        labelled = label_binary_search(solutions, pool, config.num_rollouts, config.rollout_chunk, progress)
    if config.label_type == "hard":
        for row in labelled:
            row["labels"] = row["hard_labels"]
    return labelled
