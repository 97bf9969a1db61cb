"""Beam search against a PRM (Snell et al., sec. 5.1; search-and-learn's ``beam_search``).

Sample N first steps, score them with the PRM, keep the best N / M, expand each into M next steps,
and repeat -- step by step, up to 40 rounds -- until every beam has finished; then pick an answer
among the N final candidates with weighted best-of-N (:mod:`ttcompute.eval.search.best_of_n`).
Beams that finish early are kept as final candidates and their slots are not refilled, so the search
ends with exactly N candidates. The engine, shared with lookahead search and DVTS, is
:mod:`ttcompute.eval.search.step_search`.
"""

from __future__ import annotations

from collections.abc import Sequence

from ttcompute.eval.search.step_search import SearchOutcome, StepSearchConfig, step_search
from ttcompute.models.generation import GenerationBackend
from ttcompute.models.prm import PRM


def beam_search(
    questions: Sequence[str],
    prompts: Sequence[str],
    policy: GenerationBackend,
    prm: PRM,
    *,
    num_beams: int,
    beam_width: int = 4,
    problem_ids: Sequence[str] | None = None,
    **options,
) -> list[SearchOutcome]:
    """N-beam, width-M beam search for every problem at once; one :class:`SearchOutcome` each.

    ``options`` are the other fields of :class:`StepSearchConfig` (``aggregation``, ``max_rounds``,
    ``max_step_tokens``, ``seed`` ...). ``beam_width`` must divide ``num_beams``
    (:func:`ttcompute.core.budget.resolve_beam_width` rounds a setting down to one that does).
    """
    config = StepSearchConfig(num_beams=num_beams, beam_width=beam_width, lookahead=0, **options)
    return step_search(questions, prompts, policy, prm, config, problem_ids)
