"""The reviser's prompt format, shared by trajectory building, training and inference.

A reviser (Snell et al., sec. 6) is the policy finetuned to write a better answer given its own
earlier attempts in context. Without a chat template its prompt is::

    Attempt:
    {attempt 1}                     <- oldest first, each a whole solution (steps and all)
    Attempt:
    {attempt 2}
    Revision:
    {question}                      <- the policy's own prompt (its template applied to the question)
    {the new solution}

The attempts come *before* the question, so the prompt always ends with the policy's own prompt and
without attempts *is* the policy's prompt: the first attempt of a chain is in the policy's own
distribution, and the question stays right next to the answer that reads it (a small model finetuned
with the attempts between question and answer lost much of its arithmetic: pass@1 0.43 -> 0.25 on
the built-in task, before any revision). The markers are plain ASCII lines (a character-level
tokenizer has them); an attempt's own blank lines (step separators) never collide with them.

**With a chat template** (the prompt contract's ``use_chat_template``, :mod:`ttcompute.core.prompts`)
the same text -- attempts, ``Revision:``, the templated question -- is the *user turn* of one
conversation (after the contract's system turn), and the revision is the assistant's answer. Why
inside the user turn and not as earlier assistant turns: (1) without attempts the prompt is then
exactly the policy's chat prompt, so the first attempt of a chain stays in the policy's distribution,
as without the chat template; (2) earlier attempts as assistant turns would need a user turn between
them ("try again"), words the policy never saw and the reviser would learn to wait for; (3) the question stays right next to the answer that reads it, the
property the raw format was built for. Any chat API expresses it: a system message and one user
message.

A prompt never holds more than ``MAX_ATTEMPTS_IN_CONTEXT`` attempts (the paper's 4); when even that
does not fit the context, the *oldest* attempts are dropped first, and the caller counts how many were.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from ttcompute.core.errors import InputError
from ttcompute.core.prompts import DEFAULT_CONTRACT, PromptContract, recorded_contract
from ttcompute.models.generation import render_turn

ATTEMPT_MARKER = "Attempt:\n"
REVISION_MARKER = "Revision:\n"
MAX_ATTEMPTS_IN_CONTEXT = 4
# Part of the identity of every output rendered in this format (a rerun never mixes formats), and
# recorded in every reviser checkpoint (config.ttc_reviser.reviser_format): 3 = the attempts inside
# the user turn with a chat template (2 rendered the raw text only; without a chat template 2 and 3
# are the same text).
FORMAT_VERSION = 3

logger = logging.getLogger(__name__)


def reviser_turn(question: str, attempts: Sequence[str], prompt_template: str = "{question}\n") -> str:
    """The reviser's text before any chat template: the attempts (oldest first), then ``Revision:``
    and the templated question; without attempts, the templated question alone.

    >>> print(reviser_turn("Start at 3. Add 4.", ["3 + 4 = 8\\n\\nThe answer is \\\\boxed{8}"]))
    Attempt:
    3 + 4 = 8
    <BLANKLINE>
    The answer is \\boxed{8}
    Revision:
    Start at 3. Add 4.
    <BLANKLINE>
    >>> reviser_turn("Start at 3. Add 4.", [])  # no attempts: the policy's own prompt
    'Start at 3. Add 4.\\n'
    """
    text = prompt_template.format(question=question)
    if not attempts:
        return text
    history = "".join(ATTEMPT_MARKER + attempt.strip("\n") + "\n" for attempt in attempts)
    return history + REVISION_MARKER + text


def format_reviser_prompt(
    question: str, attempts: Sequence[str], contract: PromptContract = DEFAULT_CONTRACT, tokenizer=None
) -> str:
    """The reviser's prompt for a question and its previous attempts (oldest first) under a prompt
    contract: :func:`reviser_turn`, as the user turn of the chat template when the contract has it
    (``tokenizer``: the reviser's). Without attempts it is the policy's prompt for the question."""
    return render_turn(reviser_turn(question, attempts, contract.prompt_template), contract, tokenizer)


def verifier_question(question: str, attempts: Sequence[str], contract: PromptContract) -> str:
    """The "question" a history-conditioned verifier reads for an attempt written after ``attempts``:
    the reviser's turn, so that the verifier's own contract (:func:`history_verifier_contract`)
    renders it back into exactly the reviser's prompt.

    >>> verifier_question("Q", ["a"], PromptContract())
    'Attempt:\\na\\nRevision:\\nQ'
    """
    turn = reviser_turn(question, attempts, contract.prompt_template)
    return turn.rstrip() if contract.use_chat_template else turn.removesuffix("\n")


def history_verifier_contract(contract: PromptContract) -> PromptContract:
    """The prompt contract of a verifier that reads :func:`verifier_question` under a reviser's
    ``contract``: ``"{question}\\n"``, the reviser's chat template and system prompt.

    >>> q = verifier_question("Q", ["a"], PromptContract())
    >>> history_verifier_contract(PromptContract()).prompt_template.format(question=q)
    'Attempt:\\na\\nRevision:\\nQ\\n'
    """
    return PromptContract("{question}\n", contract.use_chat_template, contract.system_prompt)


def reviser_contract(
    name: str, config_dict: dict[str, Any], search_contract: PromptContract
) -> PromptContract:
    """The prompt contract a reviser checkpoint records (``config.ttc_reviser``), which must be the
    one the search builds its question prompts with (every method sees one question prompt).

    ``config_dict``: the checkpoint's ``config.json``. A checkpoint that records nothing (not trained
    here) takes ``search_contract``, and a log line says so.

    Raises:
        InputError: it records another contract, no reviser format, or another format (one line).
    """
    record = config_dict.get("ttc_reviser")
    where = f"{name}: config.ttc_reviser"
    if not isinstance(record, dict):
        logger.warning(
            "%s records no prompt contract (no config.ttc_reviser): its prompts follow this search's (%s)",
            name,
            search_contract.describe(),
        )
        return search_contract
    if record.get("reviser_format") != FORMAT_VERSION:
        raise InputError(
            f"{where} records reviser format {record.get('reviser_format')!r}; this version writes "
            f"format {FORMAT_VERSION} prompts (retrain it on trajectories of this version)"
        )
    recorded = recorded_contract(record, None, where, "retrain it: ttc train-reviser records it")
    if recorded != search_contract:
        raise InputError(
            f"{where} was trained on prompts with {recorded.describe()}, this search builds "
            f"{search_contract.describe()}; pass the reviser's --prompt_template / --use_chat_template "
            "/ --system_prompt (every method sees the same question prompt)"
        )
    return recorded


def recent_attempts(attempts: Sequence[str]) -> list[str]:
    """The attempts a prompt may show: the :data:`MAX_ATTEMPTS_IN_CONTEXT` most recent."""
    return list(attempts[-MAX_ATTEMPTS_IN_CONTEXT:]) if attempts else []


def fit_attempts(
    question: str,
    attempts: Sequence[str],
    max_tokens: int | None,
    count_tokens: Callable[[str], int],
    contract: PromptContract = DEFAULT_CONTRACT,
    tokenizer=None,
    reserve: int = 0,
) -> tuple[str, int]:
    """The prompt with the most recent attempts that fit, and how many attempts were dropped.

    At most :data:`MAX_ATTEMPTS_IN_CONTEXT` of the most recent attempts are used (older ones are not
    "dropped": the format never shows them). Of those, the oldest go first until
    ``count_tokens(prompt) + reserve <= max_tokens`` (``reserve``: room for the completion). If even
    the question alone does not fit, the prompt without attempts is returned and the caller decides.

    >>> prompt, dropped = fit_attempts("Q", ["a" * 10, "b" * 10, "c" * 10], 40, len)
    >>> dropped, prompt.count("Attempt:")  # an attempt costs 20 characters, "Revision:\\nQ\\n" 12
    (2, 1)
    """
    recent = recent_attempts(attempts)
    for dropped in range(len(recent) + 1):
        prompt = format_reviser_prompt(question, recent[dropped:], contract, tokenizer)
        if max_tokens is None or count_tokens(prompt) + reserve <= max_tokens:
            return prompt, dropped
    return prompt, len(recent)


def attempt_prompts(
    question: str,
    chain: Sequence[str],
    context: int | None,
    count_tokens,
    contract: PromptContract = DEFAULT_CONTRACT,
    tokenizer=None,
    max_tokens: int = 512,
) -> list[tuple[str, list[str]]]:
    """The reviser prompt each attempt of a chain was written from, and the attempts it showed.

    The same rule :func:`~ttcompute.eval.search.revision_chains.revision_chains` follows: attempt t sees the chain's earlier non-empty
    attempts, the most recent that fit. Used to rebuild the history of saved attempts (an ORM's
    training data) exactly.
    """
    shown: list[str] = []
    out = []
    for text in chain:
        prompt, dropped = fit_attempts(
            question, shown, context, count_tokens, contract, tokenizer, reserve=max_tokens
        )
        out.append((prompt, recent_attempts(shown)[dropped:]))
        if text.strip():
            shown.append(text)
    return out
