"""The step-level tree search behind beam search, lookahead search and DVTS (Snell et al., sec. 5).

One engine, three settings. N beams per problem are split into subtrees of ``subtree_size`` beams
(beam search: one subtree of N; DVTS: N / M subtrees of M). Every round:

1. one call to the policy samples the next step (up to the step separator) for every live beam of
   every subtree of every problem in the batch;
2. with lookahead k > 0, every still-unfinished candidate is rolled out greedily for up to k more steps
   (one batched temperature-0 call per rollout step; stops early at the end of a solution), and the
   rollout's text is what the PRM scores -- the candidate's rank is its aggregated score *at the end
   of the rollout*, and the rollout is then dropped (only the sampled step is kept);
3. one call to the PRM scores every new candidate (its engine batches by tokens and reuses the KV
   cache of the prefixes it scored in earlier rounds);
4. candidates that finished (end of sequence, or a token cap) leave their subtree as final
   candidates; of the ``s`` unfinished ones, the best ``ceil(s / M)`` by aggregated PRM score are
   kept and expanded into ``s`` copies (M each, the last one fewer) for the next round.

So a subtree always ends with exactly ``subtree_size`` final candidates (finished beams are kept, as in
the paper: "we conclude with N final answer candidates"), and a problem with N; beams still
unfinished after ``max_rounds`` rounds become final as they are (finish reason ``"max_rounds"``).
With ``subtree_size == M`` a subtree keeps one prefix per round: DVTS's greedy beam of width M.

Every beam of every round is recorded as a :class:`TreeNode` (its step, score, rank and whether it was
kept, pruned or final), so the pruned branches -- where a search's choices are made -- can be read
back (``ttc view``): the final candidates alone show only what survived.

Nothing here imports an inference engine: the policy is a
:class:`~ttcompute.models.generation.GenerationBackend`, the verifier a :class:`~ttcompute.models.prm.PRM`.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from ttcompute.core.errors import InputError
from ttcompute.core.steps import AGGREGATIONS, aggregate, split_into_steps
from ttcompute.models.generation import GenerationBackend, SamplingParams
from ttcompute.models.prm import PRM

logger = logging.getLogger(__name__)

FINISH_REASONS = ("eos", "length", "max_rounds")


@dataclass
class StepSearchConfig:
    """How a step-level search runs.

    Attributes:
        num_beams: N, the beams per problem (the search's budget in generations, before lookahead).
        beam_width: M: each kept prefix is expanded into M next steps. Must divide ``subtree_size``.
        subtree_size: Beams per independent subtree; ``None`` means N (beam search); M gives DVTS.
        lookahead: k greedy steps rolled out to score each candidate (0: plain beam search).
        max_rounds: Most step rounds (the paper: 40).
        max_step_tokens: Most tokens of one step; a step that reaches it without the separator ends
            its beam (finish reason ``"length"``) and is counted in ``capped_steps``.
        max_tokens: Most tokens of one solution; a beam that reaches it ends (``"length"``).
        temperature / top_p: How steps are sampled (rollouts are always greedy).
        step_separator: The text that ends a step.
        aggregation: How a prefix's step scores become its rank (last / min / prod / mean).
        seed: Seeds every sampling call (a different one per round), so a run is reproducible.
        filter_duplicates: Rank each distinct prefix once (search-and-learn's option): identical
            unfinished candidates of a subtree are merged before the best are kept.
    """

    num_beams: int
    beam_width: int
    subtree_size: int | None = None
    lookahead: int = 0
    max_rounds: int = 40
    max_step_tokens: int = 128
    max_tokens: int = 512
    temperature: float = 1.0
    top_p: float = 1.0
    step_separator: str = "\n\n"
    aggregation: str = "last"
    seed: int = 0
    filter_duplicates: bool = False

    def __post_init__(self) -> None:
        if self.subtree_size is None:
            self.subtree_size = self.num_beams
        if self.num_beams < 1 or self.beam_width < 1:
            raise ValueError(
                f"need num_beams >= 1 and beam_width >= 1, got {self.num_beams}, {self.beam_width}"
            )
        if self.num_beams % self.subtree_size:
            raise ValueError(f"subtree_size {self.subtree_size} does not divide num_beams {self.num_beams}")
        if self.subtree_size % self.beam_width:
            raise ValueError(
                f"beam width {self.beam_width} does not divide {self.subtree_size} beams: keeping N/M "
                "prefixes needs M | N (resolve_beam_width rounds a width down to a divisor)"
            )
        if self.lookahead < 0 or self.max_rounds < 1:
            raise ValueError(
                f"need lookahead >= 0 and max_rounds >= 1, got {self.lookahead}, {self.max_rounds}"
            )
        if self.max_step_tokens < 1 or self.max_tokens < 1:
            raise ValueError("max_step_tokens and max_tokens must be >= 1")
        if not self.step_separator:
            raise ValueError("step_separator must not be empty")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {self.aggregation!r}; choose one of {AGGREGATIONS}")


@dataclass
class Candidate:
    """One final candidate solution.

    Attributes:
        text: The solution as generated (steps with their separators).
        steps: Its non-empty steps (what the PRM scored).
        step_scores: The PRM's score of each of its own steps (never of lookahead text).
        num_tokens: Policy tokens of this solution's text.
        finish_reason: ``"eos"``, ``"length"`` (a step or the solution reached its token cap) or
            ``"max_rounds"`` (still unfinished when the rounds ran out).
        subtree: Which subtree it came from (always 0 for beam search); for revisions, its chain.
        position: Revisions only: its place in its chain (0 = the first attempt).
    """

    text: str
    steps: list[str]
    step_scores: list[float]
    num_tokens: int
    finish_reason: str
    subtree: int = 0
    position: int = 0


@dataclass
class TreeNode:
    """One beam in one round of a tree search: the step it sampled and what the search did with it.

    Attributes:
        parent: The node it was expanded from (-1: a first step).
        round: The round that sampled it (from 0).
        text: The text it sampled that round (a step, as the policy wrote it).
        score: The PRM's score of the beam's last step after that round (None: no step to score).
        rank: What the beam was ranked by: its aggregated step scores (with lookahead, at the end of
            the rollout); None where it had nothing to score (ranked last).
        status: ``kept`` (expanded into the next round), ``pruned`` (ranked out), or ``final`` (it
            finished that round, or the rounds ran out: one of the final candidates).
        candidate: Its index among the outcome's candidates when final, else -1.
    """

    parent: int
    round: int
    text: str
    score: float | None
    rank: float | None
    status: str
    candidate: int = -1


@dataclass
class SearchOutcome:
    """The final candidates of one problem and everything spent finding them.

    Attributes:
        candidates: The final candidates, in a fixed order.
        policy_tokens: Tokens the policy generated for this problem, pruned beams and lookahead
            rollouts included.
        lookahead_tokens: The part of ``policy_tokens`` spent on rollouts.
        prm_tokens: Tokens the PRM ran for this problem (after reusing cached prefixes).
        prm_tokens_requested: Tokens the PRM was asked to score (what it would run without reuse).
        rounds: Step rounds run (1 for best-of-N).
        capped_steps: Generations that hit their token cap before a step separator or the end.
        attempts_dropped: Revisions only: earlier attempts left out of a prompt to fit the context.
        prm_tokens_by_candidate / prm_tokens_requested_by_candidate: Best-of-N and revisions only:
            the PRM tokens charged to (and asked for by) each candidate, so the first ``b``
            candidates' cost is known exactly (nested budgets).
        attempts_dropped_by_candidate: Revisions only: ``attempts_dropped`` per candidate.
        tree: Tree searches only: every beam of every round, in the order sampled (a node's parent
            comes before it).
    """

    candidates: list[Candidate]
    policy_tokens: int = 0
    lookahead_tokens: int = 0
    prm_tokens: int = 0
    prm_tokens_requested: int = 0
    rounds: int = 0
    capped_steps: int = 0
    attempts_dropped: int = 0
    prm_tokens_by_candidate: list[int] | None = None
    prm_tokens_requested_by_candidate: list[int] | None = None
    attempts_dropped_by_candidate: list[int] | None = None
    tree: list[TreeNode] = field(default_factory=list)


@dataclass
class _Beam:
    problem: int
    subtree: int
    text: str = ""
    num_tokens: int = 0
    steps: list[str] = field(default_factory=list)
    step_scores: list[float] = field(default_factory=list)
    rank: float = 0.0
    finish_reason: str | None = None
    step_text: str = ""  # what this round sampled
    parent: int = -1  # the tree node this beam was expanded from
    node: int = -1  # this beam's tree node once this round is recorded

    def child(self) -> _Beam:
        return _Beam(
            self.problem,
            self.subtree,
            self.text,
            self.num_tokens,
            list(self.steps),
            list(self.step_scores),
            parent=self.node,
        )


def start_fresh(*engines) -> None:
    """Empty the prefix caches of the policy and the PRM: a search's cost and (float for float) its
    candidates must not depend on what ran before it."""
    for engine in engines:
        clear = getattr(engine, "clear_prefix_cache", None)
        if clear is not None:
            clear()


def beam_seed(seed: int, problem_id: str, round_index: int, slot: int) -> int:
    """The seed of one beam's step: the run's seed, the problem, the round and the beam's place among
    the problem's beams that round -- so a problem's search does not depend on what shares its batch.

    >>> beam_seed(0, "p", 1, 0) == beam_seed(0, "p", 1, 0) != beam_seed(0, "p", 1, 1)
    True
    """
    return zlib.crc32(f"{seed}:{problem_id}:{round_index}:{slot}".encode()) & 0x7FFFFFFF


def round_seed(seed: int, round_index: int, purpose: str) -> int:
    """A seed per (run seed, round, call), stable across processes (no salted ``hash``).

    >>> round_seed(0, 1, "step") == round_seed(0, 1, "step") != round_seed(0, 2, "step")
    True
    """
    return zlib.crc32(f"{seed}:{round_index}:{purpose}".encode())


def step_search(
    questions: Sequence[str],
    prompts: Sequence[str],
    policy: GenerationBackend,
    prm: PRM,
    config: StepSearchConfig,
    problem_ids: Sequence[str] | None = None,
) -> list[SearchOutcome]:
    """Run the search for every problem at once; one :class:`SearchOutcome` per problem.

    Args:
        questions: What the PRM sees as the question of each problem.
        prompts: The policy's prompt of each problem (the solution so far is appended to it).
        policy / prm: The generation backend and the verifier.
        config: See :class:`StepSearchConfig`.
        problem_ids: Named in error messages.

    Raises:
        InputError: the PRM returned NaN (or failed) for a candidate; the message names the problem
            and the round.
    """
    if len(questions) != len(prompts):
        raise ValueError(f"{len(questions)} questions but {len(prompts)} prompts")
    ids = list(problem_ids) if problem_ids is not None else [str(i) for i in range(len(questions))]
    start_fresh(policy, prm)
    outcomes = [SearchOutcome(candidates=[]) for _ in questions]
    finals: list[list[_Beam]] = [[] for _ in questions]
    num_subtrees = config.num_beams // config.subtree_size
    # live[(problem, subtree)] = the beams to extend this round
    live: dict[tuple[int, int], list[_Beam]] = {
        (p, t): [_Beam(p, t) for _ in range(config.subtree_size)]
        for p in range(len(questions))
        for t in range(num_subtrees)
    }

    for round_index in range(config.max_rounds):
        beams = [beam for group in live.values() for beam in group]
        if not beams:
            break
        for beam in beams:
            outcomes[beam.problem].rounds = round_index + 1
        _extend_one_step(beams, prompts, policy, config, round_index, outcomes, ids)
        unfinished = [beam for beam in beams if beam.finish_reason is None]
        rollouts = _lookahead(unfinished, prompts, policy, config, outcomes) if config.lookahead else {}
        _score(beams, rollouts, questions, prm, config, outcomes, ids, round_index)

        last_round = round_index == config.max_rounds - 1
        for key, group in live.items():
            tree = outcomes[key[0]].tree
            if last_round:  # out of rounds: the unfinished beams are final as they are
                for beam in group:
                    beam.finish_reason = beam.finish_reason or "max_rounds"
            for beam in group:
                beam.node = len(tree)
                tree.append(_tree_node(beam, round_index))
            finals[key[0]].extend(beam for beam in group if beam.finish_reason is not None)
            live[key] = _select_and_expand([beam for beam in group if beam.finish_reason is None], config)
            for child in live[key]:
                tree[child.parent].status = "kept"
        live = {key: group for key, group in live.items() if group}
        logger.debug(
            "round %d: %d beams extended, %d live", round_index, len(beams), sum(map(len, live.values()))
        )

    for problem, beams in enumerate(finals):
        # Fixed order: by subtree, then in the order beams finished.
        beams.sort(key=lambda beam: beam.subtree)
        outcomes[problem].candidates = [
            Candidate(
                beam.text, beam.steps, beam.step_scores, beam.num_tokens, beam.finish_reason, beam.subtree
            )
            for beam in beams
        ]
        for index, beam in enumerate(beams):
            outcomes[problem].tree[beam.node].candidate = index
    return outcomes


def _tree_node(beam: _Beam, round_index: int) -> TreeNode:
    """The record of a beam this round; ``pruned`` until a child of it is kept (finished: ``final``)."""
    return TreeNode(
        parent=beam.parent,
        round=round_index,
        text=beam.step_text,
        score=beam.step_scores[-1] if beam.step_scores else None,
        rank=beam.rank if math.isfinite(beam.rank) else None,
        status="final" if beam.finish_reason is not None else "pruned",
    )


def _extend_one_step(
    beams: list[_Beam],
    prompts: Sequence[str],
    policy: GenerationBackend,
    config: StepSearchConfig,
    round_index: int,
    outcomes: list[SearchOutcome],
    ids: Sequence[str],
) -> None:
    slots: dict[int, int] = {}
    seeds = []
    for beam in beams:  # each beam's step from its own stream (beam_seed)
        slot = slots.get(beam.problem, 0)
        slots[beam.problem] = slot + 1
        seeds.append([beam_seed(config.seed, ids[beam.problem], round_index, slot)])
    params = SamplingParams(
        n=1,
        temperature=config.temperature,
        top_p=config.top_p,
        max_tokens=config.max_step_tokens,
        stop=[config.step_separator],
        seed=round_seed(config.seed, round_index, "step"),
        sample_seeds=seeds,
    )
    outputs = policy.generate([prompts[beam.problem] + beam.text for beam in beams], params)
    for beam, (completion,) in zip(beams, outputs):
        beam.step_text = completion.text
        beam.text += completion.text
        beam.num_tokens += completion.num_tokens
        beam.steps = split_into_steps(beam.text, config.step_separator)
        outcomes[beam.problem].policy_tokens += completion.num_tokens
        if completion.finish_reason == "length":
            outcomes[beam.problem].capped_steps += 1
        if completion.finish_reason in ("eos", "length"):
            beam.finish_reason = completion.finish_reason
        elif beam.num_tokens >= config.max_tokens:
            beam.finish_reason = "length"


def _lookahead(
    beams: list[_Beam],
    prompts: Sequence[str],
    policy: GenerationBackend,
    config: StepSearchConfig,
    outcomes: list[SearchOutcome],
) -> dict[int, str]:
    """Greedy rollouts of up to k steps after each beam's new step: ``id(beam) -> rollout text``.

    Identical prefixes (copies of one kept beam that sampled the same step) roll out once: greedy
    decoding gives them the same continuation, so running it again would only burn compute.
    """
    rollout_of: dict[str, str] = {}  # policy prompt -> rollout text so far
    ended: set[str] = set()
    owner: dict[str, int] = {}  # the problem a distinct rollout is charged to
    for beam in beams:
        prompt = prompts[beam.problem] + beam.text
        if prompt not in rollout_of:
            rollout_of[prompt] = ""
            owner[prompt] = beam.problem
    for step in range(config.lookahead):
        active = [p for p in rollout_of if p not in ended]
        if not active:
            break
        params = SamplingParams(
            n=1,
            temperature=0.0,
            max_tokens=config.max_step_tokens,
            stop=[config.step_separator],
            seed=round_seed(config.seed, step, "lookahead"),
        )
        outputs = policy.generate([p + rollout_of[p] for p in active], params)
        for prompt, (completion,) in zip(active, outputs):
            rollout_of[prompt] += completion.text
            outcome = outcomes[owner[prompt]]
            outcome.policy_tokens += completion.num_tokens
            outcome.lookahead_tokens += completion.num_tokens
            if completion.finish_reason == "length":
                outcome.capped_steps += 1
            if completion.finish_reason != "stop":
                ended.add(prompt)
    return {id(beam): rollout_of[prompts[beam.problem] + beam.text] for beam in beams}


def _score(
    beams: list[_Beam],
    rollouts: dict[int, str],
    questions: Sequence[str],
    prm: PRM,
    config: StepSearchConfig,
    outcomes: list[SearchOutcome],
    problem_ids: list[str],
    round_index: int,
) -> None:
    """Score each beam's steps (plus its rollout's) in one PRM call; set its step scores and rank."""
    requests = []  # (beam, steps to score)
    for beam in beams:
        steps = beam.steps
        rollout = rollouts.get(id(beam), "")
        if rollout:
            steps = split_into_steps(beam.text + rollout, config.step_separator)
        if steps:
            requests.append((beam, steps))
        else:  # nothing but whitespace so far: nothing to score, ranked last
            beam.step_scores, beam.rank = [], -math.inf
    if not requests:
        return
    try:
        scores = prm.score(
            [questions[beam.problem] for beam, _ in requests], [steps for _, steps in requests]
        )
    except ValueError as err:
        problems = sorted({problem_ids[beam.problem] for beam, _ in requests})
        raise InputError(f"the PRM failed in round {round_index} on problems {problems[:5]}: {err}") from None
    for (beam, steps), step_scores, encoded, requested in zip(
        requests, scores, prm.last_tokens_encoded, prm.last_tokens_requested
    ):
        if len(step_scores) != len(steps) or any(math.isnan(s) for s in step_scores):
            what = (
                "NaN"
                if len(step_scores) == len(steps)
                else f"{len(step_scores)} scores for {len(steps)} steps"
            )
            raise InputError(
                f"the PRM returned {what} for problem {problem_ids[beam.problem]!r} in round {round_index}; "
                "a search cannot rank candidates on that"
            )
        beam.step_scores = [float(s) for s in step_scores[: len(beam.steps)]]
        beam.rank = aggregate(step_scores, config.aggregation)
        outcomes[beam.problem].prm_tokens += encoded
        outcomes[beam.problem].prm_tokens_requested += requested


def _select_and_expand(unfinished: list[_Beam], config: StepSearchConfig) -> list[_Beam]:
    """Keep the best ``ceil(s / M)`` of ``s`` unfinished beams; expand them into ``s`` copies.

    Ties keep the earlier beam (a stable sort), so the search is deterministic given its samples.
    """
    slots = len(unfinished)
    if not slots:
        return []
    ranked = sorted(unfinished, key=lambda beam: -beam.rank)
    if config.filter_duplicates:
        seen: set[str] = set()
        ranked = [beam for beam in ranked if not (beam.text in seen or seen.add(beam.text))]
    kept = ranked[: math.ceil(slots / config.beam_width)]
    children = []
    for beam in kept:
        for _ in range(min(config.beam_width, slots - len(children))):
            children.append(beam.child())
    # Fewer distinct prefixes than needed (duplicates filtered): the best ones take the rest.
    index = 0
    while len(children) < slots:
        children.append(kept[index % len(kept)].child())
        index += 1
    return children
