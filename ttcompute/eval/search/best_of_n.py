"""Best-of-N's candidates: N full solutions per problem in one batched policy call, every step
scored by the PRM in one more (:func:`sample_best_of_n`). Budgets are nested
(:func:`first_candidates`): the candidates of budget b are the first b of budget N, as
search-and-learn and the paper subsample. The selection rules are ``ttcompute.core.selection``'s.

Candidate k of a problem is drawn from a random stream of its own (:func:`candidate_seeds`): it is the
same whether the problem's candidates come in one call or a round at a time, as an adaptive strategy
draws them (:mod:`ttcompute.eval.search.adaptive_sampling`), and whatever other problems share the call.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

from ttcompute.core.errors import InputError
from ttcompute.core.steps import split_into_steps
from ttcompute.eval.search.step_search import Candidate, SearchOutcome, start_fresh
from ttcompute.models.generation import Completion, GenerationBackend, SamplingParams
from ttcompute.models.prm import PRM


def candidate_seeds(seed: int, problem_id: str, start: int, count: int) -> list[int]:
    """The seeds of a problem's candidates ``start`` .. ``start + count - 1``: candidate k's depends on
    the seed, the problem and k alone.

    >>> candidate_seeds(0, "p1", 2, 2) == candidate_seeds(0, "p1", 0, 4)[2:]
    True
    """
    return [zlib.crc32(f"{seed}:{problem_id}:{k}".encode()) & 0x7FFFFFFF for k in range(start, start + count)]


def draw_candidates(
    prompts: Sequence[str],
    policy: GenerationBackend,
    problem_ids: Sequence[str],
    first: Sequence[int],
    count: int,
    *,
    temperature: float,
    top_p: float,
    max_tokens: int,
    seed: int,
) -> list[list[Completion]]:
    """Candidates ``first[i]`` .. ``first[i] + count - 1`` of each problem, each from its own seed."""
    params = SamplingParams(
        n=count,
        temperature=temperature,
        top_p=top_p,
        max_tokens=max_tokens,
        seed=seed,
        sample_seeds=[candidate_seeds(seed, p, start, count) for p, start in zip(problem_ids, first)],
    )
    return policy.generate(list(prompts), params)


def sample_best_of_n(
    questions: Sequence[str],
    prompts: Sequence[str],
    policy: GenerationBackend,
    prm: PRM | None,
    *,
    n: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_tokens: int = 512,
    step_separator: str = "\n\n",
    seed: int = 0,
    problem_ids: Sequence[str] | None = None,
    initial: Sequence[Sequence[Completion]] | None = None,
) -> list[SearchOutcome]:
    """N sampled solutions per problem with the PRM's score of every step; one outcome per problem.

    Candidate k of problem ``problem_ids[i]`` is seeded by :func:`candidate_seeds` from ``seed``. With ``prm=None`` the candidates carry no step scores (majority vote needs none). ``initial``:
    per problem, solutions already sampled from this policy with these options (the same number for
    every problem, at most ``n``): they are the first candidates, and only the rest are generated
    (what a ``prm_probe`` difficulty estimate drew is not drawn again).

    Raises:
        InputError: the PRM returned NaN or failed (the message names the problem).
    """
    if len(questions) != len(prompts):
        raise ValueError(f"{len(questions)} questions but {len(prompts)} prompts")
    ids = list(problem_ids) if problem_ids is not None else [str(i) for i in range(len(questions))]
    given = [list(c) for c in initial] if initial is not None else [[] for _ in questions]
    if len(given) != len(questions) or len({len(c) for c in given}) > 1 or len(given[0]) > n:
        raise ValueError(
            f"initial: the same number (<= {n}) of solutions for each of {len(questions)} problems"
        )
    start_fresh(policy, prm)
    fresh = n - len(given[0])
    drawn: list[list[Completion]] = [[] for _ in prompts]
    if fresh:
        drawn = draw_candidates(
            prompts, policy, ids, [len(g) for g in given], fresh,
            temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed,
        )  # fmt: skip
    outcomes = [SearchOutcome([], rounds=1, prm_tokens_by_candidate=[], prm_tokens_requested_by_candidate=[])
                for _ in prompts]  # fmt: skip
    for outcome, first, rest in zip(outcomes, given, drawn):
        add_candidates(outcome, [*first, *rest], step_separator)
    if prm is not None:
        score_candidates(questions, outcomes, [0] * len(outcomes), prm, ids)
    return outcomes


def add_candidates(outcome: SearchOutcome, completions: Sequence[Completion], step_separator: str) -> None:
    """Append completions to a problem's outcome as unscored candidates, with their policy cost."""
    for c in completions:
        outcome.candidates.append(
            Candidate(c.text, split_into_steps(c.text, step_separator), [], c.num_tokens, c.finish_reason)
        )
        outcome.policy_tokens += c.num_tokens
        outcome.capped_steps += c.finish_reason == "length"
        outcome.prm_tokens_by_candidate.append(0)
        outcome.prm_tokens_requested_by_candidate.append(0)


def score_candidates(
    questions: Sequence[str], outcomes: Sequence[SearchOutcome], first: Sequence[int], prm: PRM, ids
) -> None:
    """Score every candidate from ``first[p]`` on of each outcome in one PRM call (in candidate order,
    so a prefix the PRM reuses is charged to the first candidate that needed it: the first ``b``
    charges are what scoring only those costs); a candidate without steps keeps no scores.

    Raises:
        InputError: the PRM failed, or returned NaN or a wrong number of scores.
    """
    pairs = [
        (p, k)
        for p, outcome in enumerate(outcomes)
        for k in range(first[p], len(outcome.candidates))
        if outcome.candidates[k].steps
    ]
    if not pairs:
        return
    try:
        scores = prm.score(
            [questions[p] for p, _ in pairs], [outcomes[p].candidates[k].steps for p, k in pairs]
        )
    except ValueError as err:
        raise InputError(f"the PRM failed scoring best-of-N candidates: {err}") from None
    for (p, k), step_scores, encoded, requested in zip(
        pairs, scores, prm.last_tokens_encoded, prm.last_tokens_requested
    ):
        candidate = outcomes[p].candidates[k]
        if len(step_scores) != len(candidate.steps) or any(math.isnan(s) for s in step_scores):
            raise InputError(
                f"the PRM returned NaN or a wrong number of scores for problem {ids[p]!r}, candidate {k}"
            )
        candidate.step_scores = [float(s) for s in step_scores]
        outcomes[p].prm_tokens_by_candidate[k] = encoded
        outcomes[p].prm_tokens_requested_by_candidate[k] = requested
        outcomes[p].prm_tokens += encoded
        outcomes[p].prm_tokens_requested += requested


def first_candidates(outcome: SearchOutcome, b: int) -> SearchOutcome:
    """The budget-``b`` outcome inside a larger nested one (best-of-N, or revision chains in
    chain-major order with ``b`` a multiple of the chain length): its first ``b`` candidates and
    their exact cost.

    Each candidate's PRM tokens were charged to the first candidate that needed them, so the first
    ``b`` charges are what scoring only those ``b`` costs.
    """
    if not 1 <= b <= len(outcome.candidates):
        raise ValueError(f"b must be in [1, {len(outcome.candidates)}], got {b}")
    kept = outcome.candidates[:b]
    if outcome.prm_tokens_by_candidate is None:
        raise ValueError("not a nested outcome: no per-candidate PRM cost to take the first b of")
    charged = outcome.prm_tokens_by_candidate[:b]
    requested = (outcome.prm_tokens_requested_by_candidate or [0] * len(outcome.candidates))[:b]
    dropped = (outcome.attempts_dropped_by_candidate or [0] * len(outcome.candidates))[:b]
    return SearchOutcome(
        kept,
        policy_tokens=sum(c.num_tokens for c in kept),
        prm_tokens=sum(charged),
        prm_tokens_requested=sum(requested),
        rounds=outcome.rounds,
        capped_steps=sum(c.finish_reason == "length" for c in kept),
        attempts_dropped=sum(dropped),
        prm_tokens_by_candidate=list(charged),
        prm_tokens_requested_by_candidate=list(requested),
        attempts_dropped_by_candidate=list(dropped) if outcome.attempts_dropped_by_candidate else None,
    )
