"""Search methods against a deterministic toy world whose best paths are known, and on real tiny models.

The toy policy writes one letter per step. Which letter a row gets is fixed by how many rows of the
same call had the same prompt before it (the k-th copy of a prefix gets option ``k % len(options)``),
so a search's behaviour can be recomputed by hand -- or by the straightforward reference
implementation below, written from the paper's description without batching, subtrees in dicts or
cost accounting.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter

import pytest

from ttcompute.core.budget import beams_for_budget, resolve_beam_width, search_generations
from ttcompute.core.errors import InputError
from ttcompute.core.selection import weighted_best_of_n
from ttcompute.core.steps import aggregate, split_into_steps
from ttcompute.eval.search.beam_search import beam_search
from ttcompute.eval.search.best_of_n import first_candidates, sample_best_of_n
from ttcompute.eval.search.dvts import dvts
from ttcompute.eval.search.lookahead import lookahead_search
from ttcompute.eval.search.step_search import StepSearchConfig
from ttcompute.models.generation import Completion, SamplingParams

SEP = "\n\n"


def answer_step(path: str) -> str:
    return f"The answer is \\boxed{{{path}}}"


class TreePolicy:
    """Prompt ``"Q<i>\\n" + steps``; a step is one letter. At depth ``depth`` it writes the answer (the
    letters so far) and ends. ``greedy`` maps a path to the letter temperature 0 picks (default:
    the first option). A path in ``ends_early`` is answered at once. Every character is one token."""

    num_parameters = 1000

    def __init__(self, options="abcd", depth=3, greedy=None, ends_early=(), separator=SEP):
        self.options, self.depth, self.greedy = options, depth, greedy or {}
        self.ends_early, self.separator = set(ends_early), separator
        self.calls: list[tuple[list[str], SamplingParams]] = []
        self.tokens_generated = 0

    def generate(self, prompts, params):
        self.calls.append((list(prompts), params))
        seen: Counter = Counter()
        out = []
        for prompt in prompts:
            path = "".join(split_into_steps(prompt.split("\n", 1)[1], SEP))
            row = []
            for _ in range(params.n):
                k = seen[prompt]
                seen[prompt] += 1
                if len(path) >= self.depth or path in self.ends_early:
                    text, reason = answer_step(path), "eos"
                    tokens = len(text) + 1  # the end-of-sequence token counts
                else:
                    letter = self.greedy.get(path, self.options[0]) if params.temperature == 0 else None
                    letter = letter or self.options[k % len(self.options)]
                    text, reason = letter + self.separator, "stop"
                    tokens = len(text)
                    if self.separator != SEP:  # never writes the separator: runs into the cap
                        text, reason, tokens = letter * params.max_tokens, "length", params.max_tokens
                self.tokens_generated += tokens
                row.append(Completion(text, tokens, reason))
            out.append(row)
        return out


class PathPRM:
    """Step i's score is ``value(path of the first i + 1 steps)``; the answer step scores like its path.
    Charges every pair its full length (no reuse)."""

    num_parameters = 100

    def __init__(self, value):
        self.value = value
        self.num_tokens_encoded = self.num_tokens_requested = 0
        self.last_tokens_encoded: list[int] = []
        self.last_tokens_requested: list[int] = []
        self.calls = 0

    def score(self, questions, steps):
        self.calls += 1
        out = []
        for pair_steps in steps:
            path = ""
            scores = []
            for step in pair_steps:
                path += step if len(step) == 1 else ""
                scores.append(self.value(path))
            out.append(scores)
        self.last_tokens_encoded = [sum(len(s) for s in pair) for pair in steps]
        self.last_tokens_requested = list(self.last_tokens_encoded)
        self.num_tokens_encoded += sum(self.last_tokens_encoded)
        self.num_tokens_requested += sum(self.last_tokens_requested)
        return out


def hashed_value(path: str) -> float:
    """A fixed but arbitrary score per path (ties impossible in practice)."""
    return (zlib.crc32(path.encode()) % 100_000) / 100_000


def reference_search(policy, value, n, m, subtree_size, depth_limit=40):
    """Beam search / DVTS written from the paper's description, one problem, no batching tricks.

    Returns the final paths (with finish reasons) in the engine's order: by subtree, then in the
    order they finished.
    """
    subtrees = [[""] * subtree_size for _ in range(n // subtree_size)]
    finals = [[] for _ in subtrees]
    for _ in range(depth_limit):
        if not any(subtrees):
            break
        # The engine sends every live beam of every subtree in one call, in subtree order.
        rows = [path for beams in subtrees for path in beams]
        outputs = policy.generate(
            ["Q0\n" + "".join(p + SEP for p in path) for path in rows], SamplingParams()
        )
        position = 0
        for t, beams in enumerate(subtrees):
            grown = []
            for path in beams:
                completion = outputs[position][0]
                position += 1
                if completion.finish_reason == "eos":
                    finals[t].append(path)
                else:
                    grown.append(path + completion.text.strip())
            ranked = sorted(grown, key=lambda p: -value(p))  # stable: earlier first on ties
            kept = ranked[: math.ceil(len(grown) / m)]
            subtrees[t] = [p for p in kept for _ in range(m)][: len(grown)]
    return [path for group in finals for path in group]


def candidate_paths(outcome):
    return ["".join(s for s in c.steps if len(s) == 1) for c in outcome.candidates]


# --------------------------------------------------------------------------------------------------
# Budget units and beam widths


def test_budget_units_and_width_rounding():
    assert search_generations(16, lookahead=3) == 64
    assert [beams_for_budget(b, 3) for b in (1, 4, 8, 64, 256)] == [0, 1, 2, 16, 64]
    assert [resolve_beam_width(n, 4) for n in (1, 2, 4, 16, 12, 10)] == [1, 2, 4, 4, 4, 2]
    for n in range(1, 300):
        m = resolve_beam_width(n, "sqrt")
        assert n % m == 0 and m * m <= n and not any(n % d == 0 for d in range(m + 1, math.isqrt(n) + 1))
    with pytest.raises(ValueError, match="sqrt"):
        resolve_beam_width(8, "wide")
    with pytest.raises(ValueError, match="does not divide"):
        StepSearchConfig(num_beams=6, beam_width=4)


# --------------------------------------------------------------------------------------------------
# Beam search, DVTS, lookahead against the reference and against hand-known answers


@pytest.mark.parametrize(
    ("n", "m", "ends_early"), [(16, 4, ()), (8, 2, ("b", "ca")), (16, 4, ("a", "dd")), (4, 1, ())]
)
def test_beam_search_matches_the_reference(n, m, ends_early):
    engine = beam_search(
        ["Q0"], ["Q0\n"], TreePolicy(ends_early=ends_early), PathPRM(hashed_value), num_beams=n, beam_width=m
    )[0]
    expected = reference_search(TreePolicy(ends_early=ends_early), hashed_value, n, m, subtree_size=n)
    assert candidate_paths(engine) == expected
    assert len(engine.candidates) == n  # finished beams are kept: N final candidates


@pytest.mark.parametrize(("n", "m"), [(16, 4), (8, 2), (6, 3)])
def test_dvts_matches_the_reference(n, m):
    policy = TreePolicy(ends_early=("b",))
    engine = dvts(["Q0"], ["Q0\n"], policy, PathPRM(hashed_value), num_beams=n, beam_width=m)[0]
    expected = reference_search(TreePolicy(ends_early=("b",)), hashed_value, n, m, subtree_size=m)
    assert candidate_paths(engine) == expected
    assert [c.subtree for c in engine.candidates] == sorted(t for t in range(n // m) for _ in range(m))


def test_beam_search_finds_the_known_best_path_that_sampling_misses():
    """Scores reward agreeing with the target path step by step: beam search must end on it; 16
    samples of a uniform 4-way policy hit a 3-step path with probability 1 - (63/64)^16 ~ 22%."""
    target = "cad"

    def value(path):
        return sum(a == b for a, b in zip(path, target)) / len(target) - 0.01 * len(path)

    prm = PathPRM(value)
    outcome = beam_search(["Q0"], ["Q0\n"], TreePolicy(), prm, num_beams=16, beam_width=4)[0]
    answers = [c.steps[-1] for c in outcome.candidates]
    scores = [aggregate(c.step_scores, "last") for c in outcome.candidates]
    assert answers[weighted_best_of_n(answers, scores)] == answer_step(target)
    # Round 1 samples a, b, c, d 4 times each; the copies of "c" are kept and expanded; and so on.
    assert outcome.rounds == 4 and all(c.finish_reason == "eos" for c in outcome.candidates)


def test_lookahead_zero_is_beam_search_exactly():
    kwargs = dict(num_beams=16, beam_width=4, seed=5, aggregation="min")
    plain = beam_search(
        ["Q0", "Q1"], ["Q0\n", "Q1\n"], TreePolicy(ends_early=("b",)), PathPRM(hashed_value), **kwargs
    )
    look = lookahead_search(
        ["Q0", "Q1"],
        ["Q0\n", "Q1\n"],
        TreePolicy(ends_early=("b",)),
        PathPRM(hashed_value),
        lookahead=0,
        **kwargs,
    )
    assert plain == look


def test_lookahead_scores_the_end_of_the_rollout_and_counts_it():
    """ "a" looks better than "b" now, but a's greedy future is bad and b's is good: k = 1 must keep
    b, k = 0 keeps a. Every rollout token is charged, and each distinct prefix rolls out once."""

    def value(path):
        return {"a": 0.9, "b": 0.6, "aa": 0.1, "ba": 0.95, "bb": 0.95}.get(path, 0.5)

    greedy = {"a": "a", "b": "a"}
    kwargs = dict(num_beams=4, beam_width=4, max_rounds=2)
    policy0, policy1 = TreePolicy("ab", depth=2, greedy=greedy), TreePolicy("ab", depth=2, greedy=greedy)
    k0 = beam_search(["Q0"], ["Q0\n"], policy0, PathPRM(value), **kwargs)[0]
    k1 = lookahead_search(["Q0"], ["Q0\n"], policy1, PathPRM(value), lookahead=1, **kwargs)[0]
    # Round 1 samples a, b, a, b; the best prefix is kept and expanded into a, b, a, b again; the
    # rounds run out with those four beams unfinished.
    assert candidate_paths(k0) == ["aa", "ab", "aa", "ab"]
    assert candidate_paths(k1) == ["ba", "bb", "ba", "bb"]
    assert {c.finish_reason for c in k1.candidates} == {"max_rounds"}
    assert [c.step_scores for c in k1.candidates] == [[0.6, 0.95]] * 4  # own steps only, no rollout's
    # Tokens: "a\n\n" is 3. Round 1: 4 samples (12) + greedy rollouts of the 2 distinct prefixes
    # (6); round 2: 4 samples (12) + rollouts of "ba" and "bb", each the answer and its end (2 x 25).
    answer_tokens = len(answer_step("ba")) + 1
    assert k1.lookahead_tokens == 6 + 2 * answer_tokens == policy1.tokens_generated - 24
    assert k1.policy_tokens == policy1.tokens_generated
    assert k0.lookahead_tokens == 0 and k0.policy_tokens == 24


def test_lookahead_rollout_stops_at_the_end_and_budget_is_n_times_k_plus_one():
    """A rollout that reaches the answer stops early; with depth 2, k = 5 rolls one step + the answer."""
    policy = TreePolicy("ab", depth=2)
    outcome = lookahead_search(
        ["Q0"], ["Q0\n"], policy, PathPRM(hashed_value), num_beams=2, beam_width=2, lookahead=5
    )[0]
    rollout_calls = [params for _, params in policy.calls if params.temperature == 0]
    # Round 1 (one letter written): the rollout writes the second letter, then the answer, and stops
    # there rather than running 5 steps; round 2 (two letters): the answer at once; round 3 ends.
    assert len(rollout_calls) == 2 + 1 and outcome.rounds == 3
    assert len(outcome.candidates) == 2 and search_generations(2, 5) == 12


def test_weighted_selection_over_search_candidates_hand_computed():
    """Weighted best-of-N over final candidates: answers x, y, x with last-step scores .3 .5 .3."""
    answers, scores = ["x", "y", "x"], [0.3, 0.5, 0.3]
    assert weighted_best_of_n(answers, scores) == 0  # x: 0.6 > y: 0.5


# --------------------------------------------------------------------------------------------------
# Batching, cost accounting, reproducibility


def test_one_policy_call_per_round_for_all_problems_and_beams():
    policy = TreePolicy(depth=3)
    outcomes = beam_search(
        [f"Q{i}" for i in range(5)],
        [f"Q{i}\n" for i in range(5)],
        policy,
        PathPRM(hashed_value),
        num_beams=8,
        beam_width=2,
    )
    assert len(policy.calls) == 4  # 3 letter rounds + the answer round, every problem in each call
    assert [len(prompts) for prompts, _ in policy.calls] == [40] * 4
    assert sum(o.policy_tokens for o in outcomes) == policy.tokens_generated
    assert all(o.prm_tokens == o.prm_tokens_requested > 0 for o in outcomes)


def test_prm_cost_is_charged_to_each_problem_exactly():
    prm = PathPRM(hashed_value)
    outcomes = dvts(["Q0", "Q1"], ["Q0\n", "Q1\n"], TreePolicy(), prm, num_beams=8, beam_width=4)
    assert sum(o.prm_tokens for o in outcomes) == prm.num_tokens_encoded
    # Each round scores every live beam's whole path (letters + separators are not scored text):
    # rounds 1-3 score 8 paths of 1, 2, 3 letters; the answer round scores 3 letters + the answer.
    per_problem = 8 * (1 + 2 + 3) + 8 * (3 + len(answer_step("abc")))
    assert [o.prm_tokens for o in outcomes] == [per_problem] * 2


def test_same_seed_same_candidates_real_models(small_policy_dir):
    from ttcompute.models.hf_backend import TransformersBackend
    from ttcompute.models.likelihood_prm import LikelihoodPRM

    policy = TransformersBackend(str(small_policy_dir), device="cpu")
    prm = LikelihoodPRM(policy.model, policy.tokenizer, step_separator=SEP)
    # The second problem is hard enough for the policy that two seeds search it differently.
    questions = ["Start at 12. Add 7. Multiply by 3.", "Start at 87. Multiply by 6. Subtract 95. Add 48."]
    prompts = [q + "\n" for q in questions]

    def run(seed, **kw):
        policy.clear_prefix_cache()
        return beam_search(
            questions, prompts, policy, prm, num_beams=8, beam_width=4, seed=seed, max_step_tokens=48, **kw
        )

    first, again, other = run(0), run(0), run(1)
    assert first == again
    assert [c.text for o in first for c in o.candidates] != [c.text for o in other for c in o.candidates]
    for outcome in first:
        assert len(outcome.candidates) == 8 and outcome.rounds >= 3
        assert all(
            c.finish_reason == "eos" and split_into_steps(c.text, SEP) == c.steps for c in outcome.candidates
        )
        assert outcome.prm_tokens < outcome.prm_tokens_requested  # prefixes reused round after round
        assert outcome.policy_tokens >= sum(c.num_tokens for c in outcome.candidates) // 4
    # Prefix reuse in the PRM changes no score.
    fresh = LikelihoodPRM(policy.model, policy.tokenizer, step_separator=SEP, reuse_prefixes=False)
    for question, outcome in zip(questions, first):
        rescored = fresh.score([question] * 8, [c.steps for c in outcome.candidates])
        for candidate, scores in zip(outcome.candidates, rescored):
            assert candidate.step_scores == pytest.approx(scores, abs=1e-5)


def test_best_of_n_nested_budgets_cost_exactly_what_they_would_alone(small_policy_dir):
    from ttcompute.models.hf_backend import TransformersBackend
    from ttcompute.models.likelihood_prm import LikelihoodPRM

    policy = TransformersBackend(str(small_policy_dir), device="cpu")
    questions = ["Start at 3. Add 4.", "Start at 20. Multiply by 2. Subtract 7."]
    prompts = [q + "\n" for q in questions]
    prm = LikelihoodPRM(policy.model, policy.tokenizer, step_separator=SEP)
    outcomes = sample_best_of_n(questions, prompts, policy, prm, n=8, max_tokens=120, seed=2)
    for question, outcome in zip(questions, outcomes):
        assert len(outcome.candidates) == 8
        assert outcome.policy_tokens == sum(c.num_tokens for c in outcome.candidates)
        for b in (1, 3, 8):
            alone = LikelihoodPRM(policy.model, policy.tokenizer, step_separator=SEP)
            alone.score([question] * b, [c.steps for c in outcome.candidates[:b]])
            subset = first_candidates(outcome, b)
            assert subset.prm_tokens == alone.num_tokens_encoded
            assert subset.prm_tokens_requested == alone.num_tokens_requested
            assert subset.candidates == outcome.candidates[:b]


# --------------------------------------------------------------------------------------------------
# Bad input


def test_nan_from_the_prm_names_the_problem_and_round():
    prm = PathPRM(lambda path: float("nan") if path == "b" else 0.5)
    with pytest.raises(InputError, match=r"NaN for problem 'p-7' in round 0"):
        beam_search(["Q0"], ["Q0\n"], TreePolicy(), prm, num_beams=4, beam_width=2, problem_ids=["p-7"])
    with pytest.raises(InputError, match="p-7"):
        sample_best_of_n(["Q0"], ["Q0\n"], TreePolicy(depth=1), prm, n=4, problem_ids=["p-7"])


def test_policy_that_never_writes_the_separator_is_capped_and_counted():
    policy = TreePolicy(separator="")
    outcome = beam_search(
        ["Q0"], ["Q0\n"], policy, PathPRM(hashed_value), num_beams=4, beam_width=2, max_step_tokens=7
    )[0]
    assert outcome.rounds == 1 and outcome.capped_steps == 4
    assert [c.finish_reason for c in outcome.candidates] == ["length"] * 4
    assert all(c.num_tokens == 7 for c in outcome.candidates)


def test_rounds_are_capped():
    outcome = beam_search(
        ["Q0"],
        ["Q0\n"],
        TreePolicy(depth=100),
        PathPRM(hashed_value),
        num_beams=4,
        beam_width=2,
        max_rounds=5,
    )[0]
    assert outcome.rounds == 5 and [c.finish_reason for c in outcome.candidates] == ["max_rounds"] * 4
    assert all(len(c.steps) == 5 for c in outcome.candidates)


def test_no_problems_no_calls():
    policy = TreePolicy()
    assert beam_search([], [], policy, PathPRM(hashed_value), num_beams=4) == []
    assert policy.calls == []
