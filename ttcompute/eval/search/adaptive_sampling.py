"""Best-of-N with a stopping rule, online: each problem is sampled a round at a time and stops when its
rule is satisfied or its cap reached (:mod:`ttcompute.core.stopping`).

Every round draws the next candidates of the problems still going, in one batched call per round size
(:func:`~ttcompute.eval.search.best_of_n.draw_candidates`: candidate k of a problem is seeded on its own,
so it is the candidate ``ttc search`` saved as the problem's k-th, and the rule reads what ``ttc select``
read offline), reads their answers, scores them with the PRM when the rule reads the verifier (one call
per round, the PRM's prefix cache kept across rounds), and asks each problem's rule whether to stop. The
outcome holds exactly the candidates drawn and what they cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ttcompute.core.grading import extract_answer
from ttcompute.core.selection import group_equivalent_answers
from ttcompute.core.steps import aggregate
from ttcompute.core.stopping import StoppingRule, answered, confidences
from ttcompute.eval.search.best_of_n import add_candidates, draw_candidates, score_candidates
from ttcompute.eval.search.step_search import SearchOutcome, start_fresh
from ttcompute.models.generation import GenerationBackend
from ttcompute.models.prm import PRM


@dataclass(frozen=True)
class StopPlan:
    """One problem's rule and cap."""

    rule: StoppingRule
    cap: int


@dataclass
class AdaptiveOutcome:
    """What one problem's adaptive sampling drew (``outcome``), its answers, its candidates' scores
    (under ``aggregation``; empty without the verifier) and whether its rule stopped it before the cap."""

    outcome: SearchOutcome
    answers: list[str | None]
    scores: list[float]
    settled: bool


def adaptive_best_of_n(
    questions: Sequence[str],
    prompts: Sequence[str],
    policy: GenerationBackend,
    prm: PRM | None,
    problem_ids: Sequence[str],
    plans: Sequence[StopPlan],
    *,
    temperature: float,
    top_p: float,
    max_tokens: int,
    step_separator: str,
    seed: int,
    aggregation: str,
    answer_extraction: str,
) -> list[AdaptiveOutcome]:
    """Sample every problem round by round until its plan stops it; one result per problem.

    ``seed``: the search's best-of-N seed (:func:`~ttcompute.eval.search.stage.best_of_n_seed`).

    Raises:
        ValueError: a plan whose rule reads the verifier with no PRM given.
        InputError: the PRM failed.
    """
    if any(plan.rule.needs_verifier for plan in plans) and prm is None:
        raise ValueError("a verifier rule needs the PRM")
    start_fresh(policy, prm)
    results = [
        AdaptiveOutcome(
            SearchOutcome([], rounds=0, prm_tokens_by_candidate=[], prm_tokens_requested_by_candidate=[]),
            [],
            [],
            False,
        )
        for _ in questions
    ]
    going = [i for i, plan in enumerate(plans) if plan.cap >= 1]
    while going:
        # This round's draws, one call per round size (the last round of a problem may be cut at its cap).
        sizes: dict[int, list[int]] = {}
        for i in going:
            drawn = len(results[i].answers)
            sizes.setdefault(min(plans[i].rule.round_size, plans[i].cap - drawn), []).append(i)
        for count, members in sorted(sizes.items()):
            before = [len(results[i].answers) for i in members]
            completions = draw_candidates(
                [prompts[i] for i in members], policy, [problem_ids[i] for i in members], before, count,
                temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed,
            )  # fmt: skip
            for i, drawn in zip(members, completions):
                add_candidates(results[i].outcome, drawn, step_separator)
                results[i].outcome.rounds += 1
                results[i].answers += [extract_answer(c.text, answer_extraction) for c in drawn]
            scored = [(i, b) for i, b in zip(members, before) if plans[i].rule.needs_verifier]
            if scored:
                score_candidates(
                    [questions[i] for i, _ in scored],
                    [results[i].outcome for i, _ in scored],
                    [b for _, b in scored],
                    prm,
                    [problem_ids[i] for i, _ in scored],
                )
                for i, b in scored:
                    results[i].scores += [
                        aggregate(c.step_scores, aggregation) if c.step_scores else 0.0
                        for c in results[i].outcome.candidates[b:]
                    ]
        still = []
        for i in going:
            result, plan = results[i], plans[i]
            answers = result.answers
            reading = confidences(
                plan.rule,
                group_equivalent_answers(answers),
                answered(answers),
                result.scores if plan.rule.needs_verifier else None,
            )[-1]
            if reading >= plan.rule.tau:
                result.settled = True
            elif len(answers) < plan.cap:
                still.append(i)
        going = still
    return results
