"""Lookahead search (Snell et al., sec. 5.1): beam search whose candidates are judged by their future.

Each candidate step is rolled out greedily (temperature 0) for up to k more steps, stopping early at
the end of a solution, and ranked by the PRM's aggregated score at the end of that rollout; the
rollout is then dropped and only the sampled step is kept, so the next round samples afresh. It costs
N x (k + 1) generations (:func:`ttcompute.core.budget.search_generations`); k = 0 is beam search,
exactly. Unlike search-and-learn, where the rollout text was generated but never reached the PRM,
the rollout is what gets scored here.
"""

from __future__ import annotations

from collections.abc import Sequence

from ttcompute.eval.search.step_search import SearchOutcome, StepSearchConfig, step_search
from ttcompute.models.generation import GenerationBackend
from ttcompute.models.prm import PRM


def lookahead_search(
    questions: Sequence[str],
    prompts: Sequence[str],
    policy: GenerationBackend,
    prm: PRM,
    *,
    num_beams: int,
    lookahead: int,
    beam_width: int = 4,
    problem_ids: Sequence[str] | None = None,
    **options,
) -> list[SearchOutcome]:
    """Beam search with k = ``lookahead`` greedy rollout steps scoring each candidate.

    ``options`` are the other fields of :class:`StepSearchConfig`.
    """
    config = StepSearchConfig(num_beams=num_beams, beam_width=beam_width, lookahead=lookahead, **options)
    return step_search(questions, prompts, policy, prm, config, problem_ids)
