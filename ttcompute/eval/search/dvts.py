"""Diverse verifier tree search (DVTS; Beeching et al. 2024, search-and-learn).

Beam search at large N tends to spend its beams on a few high-scoring prefixes. DVTS splits the N
beams into N / M independent subtrees; each is a greedy beam of width M: it samples M next steps,
keeps the best one by PRM score and expands it again. Each subtree ends with M final candidates
(beams finishing early are kept, as in beam search), N in all, and weighted best-of-N picks the answer.
"""

from __future__ import annotations

from collections.abc import Sequence

from ttcompute.eval.search.step_search import SearchOutcome, StepSearchConfig, step_search
from ttcompute.models.generation import GenerationBackend
from ttcompute.models.prm import PRM


def dvts(
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
    """N / M greedy subtrees of width M for every problem at once; one :class:`SearchOutcome` each.

    ``options`` are the other fields of :class:`StepSearchConfig` (lookahead included: DVTS with
    lookahead is allowed, if not in the paper).
    """
    config = StepSearchConfig(num_beams=num_beams, beam_width=beam_width, subtree_size=beam_width, **options)
    return step_search(questions, prompts, policy, prm, config, problem_ids)
