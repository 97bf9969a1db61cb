"""Sequential revisions (Snell et al., sec. 6): chains of attempts, each conditioned on the last ones.

A budget of N generations is split into N / L parallel chains of L sequential attempts (L = 1: N
independent samples; L = N: one chain). Attempt t of a chain is written by the reviser given the
chain's most recent attempts (at most 4, oldest dropped first when the prompt would not fit the
context, see :mod:`ttcompute.models.reviser`); attempt 0 has none. Every step is one call to the
backend for every chain of every problem. Every attempt is kept, with its chain and position, so any
selection -- majority or verifier-weighted over all attempts, or hierarchical (within each chain,
then across) -- is recomputed later; the verifier scores every attempt in one call at the end.

Attempt t of chain c of a problem is drawn from a random stream of its own (:func:`attempt_seed`),
so a chain does not depend on the other chains and problems of its calls: ``ttc route`` stops chains
online (``stops``: at the first attempt the verifier accepts, or whose answer repeats the one before)
and the attempts it makes are the ones ``ttc search`` saved.

Budgets nest as best-of-N's do: chains are independent, so the first ``b / L`` chains of a run at
budget N are a run at budget b (:func:`~ttcompute.eval.search.best_of_n.first_candidates` takes them
with their exact cost: each attempt's reviser tokens, its verifier tokens, the attempts its prompt
left out). ``ttc search`` runs each chain length once, at its largest budget.

The prompts follow the search's prompt contract (``contract``, which a trained reviser records and
``ttc search`` checks; with a chat template the attempts are inside the user turn). The verifier sees
either the bare question (a PRM trained on the policy's samples) or, with
``verifier_context="history"``, the reviser's turn for that attempt (an ORM trained on reviser
samples with the previous attempts in context, by ``ttc orm-data``): its question is then
:func:`~ttcompute.models.reviser.verifier_question`, which the ORM's recorded contract renders back
into exactly the reviser's prompt.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from ttcompute.core.errors import InputError
from ttcompute.core.grading import extract_answer, is_equivalent
from ttcompute.core.outputs import distinct_revision_rows, revision_chains_of
from ttcompute.core.prompts import DEFAULT_CONTRACT, PromptContract
from ttcompute.core.selection import has_answer
from ttcompute.core.steps import aggregate
from ttcompute.eval.search.step_search import (
    Candidate,
    SearchOutcome,
    round_seed,
    split_into_steps,
    start_fresh,
)
from ttcompute.models.generation import GenerationBackend, SamplingParams, prompt_token_ids
from ttcompute.models.prm import PRM
from ttcompute.models.reviser import fit_attempts, recent_attempts, verifier_question

logger = logging.getLogger(__name__)

VERIFIER_CONTEXTS = ("question", "history")


@dataclass(frozen=True)
class ChainStop:
    """When a problem's chains stop early: ``accept`` -- at the first attempt whose verifier score
    (``aggregation`` of its step scores) reaches ``tau``; ``repeat`` -- at the first attempt whose
    answer (read with ``answer_extraction``) is the one of the attempt before."""

    stop: str
    tau: float = 1.0
    aggregation: str = "last"
    answer_extraction: str = "strict"


def attempt_seed(seed: int, problem_id: str, chain: int, position: int) -> int:
    """The seed of one attempt: the run's seed, the problem, the chain and the position alone.

    >>> attempt_seed(0, "p", 1, 2) == attempt_seed(0, "p", 1, 2) != attempt_seed(0, "p", 2, 1)
    True
    """
    return zlib.crc32(f"{seed}:{problem_id}:{chain}:{position}".encode()) & 0x7FFFFFFF


def revision_chains(
    questions: Sequence[str],
    reviser: GenerationBackend,
    prm: PRM | None,
    *,
    num_chains: int,
    chain_length: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_tokens: int = 512,
    contract: PromptContract = DEFAULT_CONTRACT,
    step_separator: str = "\n\n",
    seed: int = 0,
    verifier_context: str = "question",
    problem_ids: Sequence[str] | None = None,
    revision_temperature: float | None = None,
    stops: Sequence[ChainStop | None] | None = None,
) -> list[SearchOutcome]:
    """``num_chains`` chains of ``chain_length`` attempts per problem; one outcome per problem.

    The first attempt of a chain is sampled at ``temperature``, the revisions after it at
    ``revision_temperature`` (``None``: ``temperature`` too). ``stops``: per problem, when its chains
    stop early (None: never); an ``accept`` rule has each attempt scored as soon as it is made.

    Candidates are ordered by chain, then position. Prompts are fitted to the reviser's context
    (``reviser.max_context`` when it has one) with ``max_tokens`` left for the answer; the attempts
    that had to be left out are counted in ``attempts_dropped``. An empty attempt is kept as a
    candidate (it has no answer) but not shown to later attempts.

    Raises:
        InputError: the verifier returned NaN or failed; or even the question alone does not fit.
    """
    if num_chains < 1 or chain_length < 1:
        raise ValueError(f"need num_chains >= 1 and chain_length >= 1, got {num_chains}, {chain_length}")
    if verifier_context not in VERIFIER_CONTEXTS:
        raise ValueError(f"verifier_context must be one of {VERIFIER_CONTEXTS}, got {verifier_context!r}")
    ids = list(problem_ids) if problem_ids is not None else [str(i) for i in range(len(questions))]
    stops = list(stops) if stops is not None else [None] * len(questions)
    if any(s is not None and s.stop == "accept" for s in stops) and prm is None:
        raise ValueError("chains that stop on the verifier's acceptance need a verifier")
    start_fresh(reviser, prm)
    tokenizer = getattr(reviser, "tokenizer", None)
    context = getattr(reviser, "max_context", None) if tokenizer is not None else None

    def count_tokens(text: str) -> int:
        return len(prompt_token_ids(tokenizer, text))

    outcomes = [
        SearchOutcome(
            candidates=[],
            prm_tokens_by_candidate=[],
            prm_tokens_requested_by_candidate=[],
            attempts_dropped_by_candidate=[],
        )
        for _ in questions
    ]
    shown: list[list[list[str]]] = [[[] for _ in range(num_chains)] for _ in questions]  # context per chain
    # What a history verifier reads for each candidate, in order (the reviser's turn, see
    # models/reviser.verifier_question).
    histories: list[list[str]] = [[] for _ in questions]
    stopped = [[False] * num_chains for _ in questions]
    last_answer: list[list[str | None]] = [[None] * num_chains for _ in questions]
    for position in range(chain_length):
        prompts, owners, seen, left_out, seeds = [], [], [], [], []
        for p, question in enumerate(questions):
            for chain in range(num_chains):
                if stopped[p][chain]:
                    continue
                prompt, dropped = fit_attempts(
                    question, shown[p][chain], context, count_tokens, contract, tokenizer, reserve=max_tokens
                )
                seen.append(verifier_question(question, recent_attempts(shown[p][chain])[dropped:], contract))
                if (
                    context is not None
                    and count_tokens(prompt) + max_tokens > context
                    and not shown[p][chain]
                ):
                    raise InputError(
                        f"problem {ids[p]!r}: the question alone ({count_tokens(prompt)} tokens) plus "
                        f"max_tokens {max_tokens} exceeds the reviser's context of {context} tokens"
                    )
                outcomes[p].attempts_dropped += dropped
                left_out.append(dropped)
                prompts.append(prompt)
                owners.append((p, chain))
                seeds.append([attempt_seed(seed, ids[p], chain, position)])
        if not prompts:
            break
        params = SamplingParams(
            n=1,
            temperature=temperature
            if position == 0 or revision_temperature is None
            else revision_temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            seed=round_seed(seed, position, "revision"),
            sample_seeds=seeds,
        )
        outputs = reviser.generate(prompts, params)
        made = []
        for (p, chain), history, dropped, (completion,) in zip(owners, seen, left_out, outputs):
            text = completion.text
            outcomes[p].candidates.append(
                Candidate(
                    text,
                    split_into_steps(text, step_separator),
                    [],
                    completion.num_tokens,
                    completion.finish_reason,
                    subtree=chain,
                    position=position,
                )
            )
            histories[p].append(history)
            outcomes[p].attempts_dropped_by_candidate.append(dropped)
            outcomes[p].policy_tokens += completion.num_tokens
            outcomes[p].capped_steps += completion.finish_reason == "length"
            if text.strip():
                shown[p][chain].append(text)
            made.append((p, chain, len(outcomes[p].candidates) - 1))
        _stop_chains(
            made, stops, outcomes, histories, stopped, last_answer, prm, verifier_context, questions, ids
        )
        for outcome in outcomes:
            outcome.rounds = position + 1
    dropped = sum(o.attempts_dropped for o in outcomes)
    if dropped:
        logger.info(
            "Revisions: %d earlier attempts left out of prompts to fit the context (oldest first)", dropped
        )
    for p, outcome in enumerate(outcomes):  # chain-major order: chain 0's attempts, then chain 1's ...
        order = sorted(
            range(len(outcome.candidates)),
            key=lambda k: (outcome.candidates[k].subtree, outcome.candidates[k].position),
        )
        outcome.candidates = [outcome.candidates[k] for k in order]
        outcome.attempts_dropped_by_candidate = [outcome.attempts_dropped_by_candidate[k] for k in order]
        histories[p] = [histories[p][k] for k in order]
        charged = outcome.prm_tokens_by_candidate + [0] * (len(order) - len(outcome.prm_tokens_by_candidate))
        asked = outcome.prm_tokens_requested_by_candidate
        asked = asked + [0] * (len(order) - len(asked))
        outcome.prm_tokens_by_candidate = [charged[k] for k in order]
        outcome.prm_tokens_requested_by_candidate = [asked[k] for k in order]
    if prm is not None:
        # What an accept rule has not scored yet, in candidate order.
        pending = [[k for k, c in enumerate(o.candidates) if c.steps and not c.step_scores] for o in outcomes]
        _score_attempts(questions, outcomes, histories, prm, verifier_context, ids, pending)
    return outcomes


def _stop_chains(
    made, stops, outcomes, histories, stopped, last_answer, prm, verifier_context, questions, ids
):
    """After one position: score the new attempts of problems that stop on acceptance, read the answers
    of those that stop on a repeat, and mark the chains that stop."""
    accept = [(p, chain, k) for p, chain, k in made if stops[p] is not None and stops[p].stop == "accept"]
    if accept:
        pending = [[] for _ in outcomes]
        for p, _, k in accept:
            pending[p].append(k)
        _score_attempts(questions, outcomes, histories, prm, verifier_context, ids, pending)
    for p, chain, k in made:
        rule = stops[p]
        if rule is None:
            continue
        candidate = outcomes[p].candidates[k]
        if rule.stop == "accept":
            score = aggregate(candidate.step_scores, rule.aggregation) if candidate.step_scores else 0.0
            stopped[p][chain] = score >= rule.tau
        else:
            answer = extract_answer(candidate.text, rule.answer_extraction)
            before = last_answer[p][chain]
            repeats = (
                before is not None and answer is not None and has_answer(answer) and has_answer(before)
                and is_equivalent(answer, before)
            )  # fmt: skip
            stopped[p][chain] = repeats
            last_answer[p][chain] = answer


def _score_attempts(questions, outcomes, histories, prm: PRM, verifier_context: str, ids, pending) -> None:
    # In candidate order, so that prefixes the verifier reuses are charged to the first attempt
    # that needed them: the first b attempts' charges are what scoring only those costs.
    # ``pending``: per problem, the candidates to score.
    pairs = [(p, k) for p, ks in enumerate(pending) for k in ks if outcomes[p].candidates[k].steps]
    if not pairs:
        return
    if verifier_context == "history":
        contexts = [histories[p][k] for p, k in pairs]
    else:
        contexts = [questions[p] for p, _ in pairs]
    try:
        scores = prm.score(contexts, [outcomes[p].candidates[k].steps for p, k in pairs])
    except ValueError as err:
        raise InputError(f"the verifier failed scoring revision attempts: {err}") from None
    for (p, k), step_scores, encoded, requested in zip(
        pairs, scores, prm.last_tokens_encoded, prm.last_tokens_requested
    ):
        if any(math.isnan(s) for s in step_scores):
            raise InputError(f"the verifier returned NaN for problem {ids[p]!r}, attempt {k}")
        outcomes[p].candidates[k].step_scores = [float(s) for s in step_scores]
        _grow(outcomes[p].prm_tokens_by_candidate, k)[k] = encoded
        _grow(outcomes[p].prm_tokens_requested_by_candidate, k)[k] = requested
        outcomes[p].prm_tokens += encoded
        outcomes[p].prm_tokens_requested += requested


def _grow(values: list[int], index: int) -> list[int]:
    """``values`` with room for ``index`` (zeros added): attempts scored while chains still grow."""
    values.extend([0] * (index + 1 - len(values)))
    return values


def revision_step_metrics(rows: list[dict]) -> dict:
    """Pass@1 at each revision step and how often a revision flips correctness (Snell et al., fig. 6).

    ``rows`` are ``ttc search`` rows of method ``revisions`` (``correct``, ``subtrees`` = chain,
    ``positions``); of a problem's nested rows only the largest budget's counts, so that each attempt
    is counted once. Pass@1 at step t is the mean correctness of every chain's t-th attempt; a flip
    is counted between consecutive attempts of a chain.

    >>> rows = [{"correct": [False, True, False, True, True, True], "subtrees": [0, 0, 0, 1, 1, 1],
    ...          "positions": [0, 1, 2, 0, 1, 2]}]
    >>> metrics = revision_step_metrics(rows)
    >>> metrics["pass_at_1_by_step"], metrics["correct_to_incorrect"], metrics["incorrect_to_correct"]
    ([0.5, 1.0, 0.5], 0.3333, 1.0)
    """
    by_step: dict[int, list[bool]] = {}
    stays = {True: [0, 0], False: [0, 0]}  # previous verdict -> [transitions, flips]
    for row in distinct_revision_rows(rows):
        for correct, position in zip(row["correct"], row["positions"]):
            by_step.setdefault(position, []).append(bool(correct))
        for chain in revision_chains_of(row):
            verdicts = [bool(row["correct"][i]) for i in chain]
            for before, after in zip(verdicts, verdicts[1:]):
                stays[before][0] += 1
                stays[before][1] += before != after
    return {
        "pass_at_1_by_step": [round(sum(v) / len(v), 4) for _, v in sorted(by_step.items())],
        "attempts_by_step": [len(v) for _, v in sorted(by_step.items())],
        "correct_to_incorrect": round(stays[True][1] / stays[True][0], 4) if stays[True][0] else None,
        "incorrect_to_correct": round(stays[False][1] / stays[False][0], 4) if stays[False][0] else None,
    }
