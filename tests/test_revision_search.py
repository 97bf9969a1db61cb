"""Revision chains against a toy reviser whose answers depend on what it sees in context."""

from __future__ import annotations

import pytest

from ttcompute.core.errors import InputError
from ttcompute.core.selection import hierarchical_best_of_n
from ttcompute.eval.search.revision_chains import revision_chains
from ttcompute.models.generation import Completion
from ttcompute.models.reviser import ATTEMPT_MARKER, REVISION_MARKER


class CharTokenizer:
    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [0] * (len(text) + int(add_special_tokens))}


class ToyReviser:
    """Attempt text: ``"try <position> of <question>"`` where position = attempts seen in context + 1,
    except that ``empty_at`` positions write nothing. One character = one token."""

    num_parameters = 10

    def __init__(self, max_context=None, empty_at=()):
        self.tokenizer = CharTokenizer()
        self.max_context = max_context
        self.empty_at = set(empty_at)
        self.calls = []

    def generate(self, prompts, params):
        self.calls.append(list(prompts))
        out = []
        for prompt in prompts:
            seen = prompt.count(ATTEMPT_MARKER)
            question = prompt.rstrip("\n").split("\n")[-1]  # the question ends the prompt
            text = (
                ""
                if seen in self.empty_at
                else f"try {seen} of {question}\n\nThe answer is \\boxed{{{seen}}}"
            )
            out.append([Completion(text, len(text) + 1, "eos")])
        return out


class RecordingPRM:
    num_parameters = 5

    def __init__(self):
        self.seen = []
        self.num_tokens_encoded = self.num_tokens_requested = 0
        self.last_tokens_encoded, self.last_tokens_requested = [], []

    def score(self, questions, steps):
        self.seen.append(list(questions))
        self.last_tokens_encoded = self.last_tokens_requested = [1] * len(questions)
        return [[0.5] * len(s) for s in steps]


def test_chains_order_positions_and_one_call_per_step():
    reviser = ToyReviser()
    outcomes = revision_chains(["Q0", "Q1"], reviser, None, num_chains=3, chain_length=6)
    assert len(reviser.calls) == 6 and all(len(call) == 2 * 3 for call in reviser.calls)
    for outcome in outcomes:
        assert [(c.subtree, c.position) for c in outcome.candidates] == [
            (k, t) for k in range(3) for t in range(6)
        ]
        # Attempt t saw min(t, 4) attempts: the most recent ones, at most 4.
        assert [c.text.split(" ")[1] for c in outcome.candidates[:6]] == ["0", "1", "2", "3", "4", "4"]
        assert outcome.policy_tokens == sum(c.num_tokens for c in outcome.candidates)
        assert outcome.attempts_dropped == 0
    last_prompt = reviser.calls[-1][0]
    assert (
        last_prompt.count(ATTEMPT_MARKER) == 4
        and "try 0 of" not in last_prompt
        and last_prompt.endswith(REVISION_MARKER + "Q0\n")
    )


def test_oldest_attempts_are_dropped_to_fit_the_context_and_counted():
    # An attempt costs ~45 characters in the prompt; the question ~4; 64 tokens are kept for the answer.
    reviser = ToyReviser(max_context=200)
    outcome = revision_chains(["Q0"], reviser, None, num_chains=1, chain_length=5, max_tokens=64)[0]
    seen = [int(c.text.split(" ")[1]) for c in outcome.candidates]
    assert seen == [0, 1, 2, 2, 2]  # at most 2 attempts fit beside the answer's 64 tokens
    assert outcome.attempts_dropped == 0 + 0 + 0 + 1 + 2
    for prompt in (call[0] for call in reviser.calls):
        assert len(prompt) + 1 + 64 <= 200
    with pytest.raises(InputError, match="question alone"):
        revision_chains(["Q" * 300], ToyReviser(max_context=200), None, num_chains=1, chain_length=1)


def test_empty_attempts_are_kept_but_not_shown_again():
    reviser = ToyReviser(empty_at={1})
    outcome = revision_chains(["Q0"], reviser, None, num_chains=1, chain_length=4)[0]
    assert [c.text for c in outcome.candidates][1] == ""
    assert outcome.candidates[1].steps == []
    # After the empty attempt the context still holds one attempt, so the reviser writes nothing again.
    assert [c.text == "" for c in outcome.candidates] == [False, True, True, True]


def test_verifier_sees_question_or_history():
    for context in ("question", "history"):
        prm = RecordingPRM()
        outcome = revision_chains(
            ["Q0"], ToyReviser(), prm, num_chains=2, chain_length=2, verifier_context=context
        )[0]
        assert all(c.step_scores == [0.5, 0.5] for c in outcome.candidates)
        (questions,) = prm.seen
        if context == "question":
            assert questions == ["Q0"] * 4
        else:  # the reviser's prompt of each attempt, chain-major, without its final newline
            assert questions[0] == "Q0" and questions[1].count(ATTEMPT_MARKER) == 1
            assert questions[1].startswith("Attempt:\ntry 0 of Q0") and questions[1].endswith("Revision:\nQ0")


def test_hierarchical_selection_hand_computed():
    # chain 0: a(.2) b(.5) b(.4) -> b with .9; chain 1: a(.6) a(.3) -> a with .9; chain 2: c(.95).
    answers = ["a", "b", "b", "a", "a", "c"]
    scores = [0.2, 0.5, 0.4, 0.6, 0.3, 0.95]
    chains = [0, 0, 0, 1, 1, 2]
    # Across chains the winners are b(.5), a(.6), c(.95): c wins on its own score.
    assert hierarchical_best_of_n(answers, scores, chains) == 5
    # Without chain 2, a (.6) beats b (.5).
    assert hierarchical_best_of_n(answers[:5], scores[:5], chains[:5]) == 3


def test_attempt_prompts_rebuild_the_prompts_chains_used():
    from ttcompute.models.reviser import attempt_prompts

    reviser = ToyReviser(max_context=200, empty_at={3})
    outcome = revision_chains(["Q0"], reviser, None, num_chains=2, chain_length=6, max_tokens=64)[0]
    tokens = CharTokenizer()
    for chain in (0, 1):
        texts = [c.text for c in outcome.candidates if c.subtree == chain]
        rebuilt = attempt_prompts("Q0", texts, 200, lambda t: len(tokens(t)["input_ids"]), max_tokens=64)
        assert [prompt for prompt, _ in rebuilt] == [call[chain] for call in reviser.calls]
        # Each prompt shows the most recent of the chain's earlier non-empty attempts (at most 4).
        earlier = [[t for t in texts[:k] if t.strip()][-4:] for k in range(len(texts))]
        assert all(kept == before[len(before) - len(kept) :] for (_, kept), before in zip(rebuilt, earlier))
        dropped = [len(before) - len(kept) for (_, kept), before in zip(rebuilt, earlier)]
        assert sum(dropped) * 2 == outcome.attempts_dropped


class TemperatureRecorder(ToyReviser):
    def generate(self, prompts, params):
        self.temperatures = [*getattr(self, "temperatures", []), params.temperature]
        return super().generate(prompts, params)


def test_first_attempt_at_the_temperature_revisions_at_the_revision_temperature():
    reviser = TemperatureRecorder()
    revision_chains(["Q0", "Q1"], reviser, None, num_chains=2, chain_length=4, temperature=0.9,
                    revision_temperature=0.3)  # fmt: skip
    assert reviser.temperatures == [0.9, 0.3, 0.3, 0.3]
    reviser = TemperatureRecorder()
    revision_chains(["Q0"], reviser, None, num_chains=1, chain_length=3, temperature=0.7)
    assert reviser.temperatures == [0.7, 0.7, 0.7]
