"""The reviser's prompt format, shared by trajectory building, training and inference.

A reviser (Snell et al., sec. 6) is the policy finetuned to write a better answer given its own
earlier attempts in context::

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
tokenizer has them); an attempt's own blank lines (step separators) never collide with them. A
prompt never holds more than ``MAX_ATTEMPTS_IN_CONTEXT`` attempts (the paper's 4); when even that
does not fit the context, the *oldest* attempts are dropped first, and the caller counts how many were.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

ATTEMPT_MARKER = "Attempt:\n"
REVISION_MARKER = "Revision:\n"
MAX_ATTEMPTS_IN_CONTEXT = 4
# Part of the identity of every output rendered in this format (a rerun never mixes formats).
FORMAT_VERSION = 2


def format_reviser_prompt(
    question: str, attempts: Sequence[str], prompt_template: str = "{question}\n"
) -> str:
    """The reviser's prompt for a question and its previous attempts (oldest first).

    >>> print(format_reviser_prompt("Start at 3. Add 4.", ["3 + 4 = 8\\n\\nThe answer is \\\\boxed{8}"]))
    Attempt:
    3 + 4 = 8
    <BLANKLINE>
    The answer is \\boxed{8}
    Revision:
    Start at 3. Add 4.
    <BLANKLINE>
    >>> format_reviser_prompt("Start at 3. Add 4.", [])  # no attempts: the policy's own prompt
    'Start at 3. Add 4.\\n'
    """
    text = prompt_template.format(question=question)
    if not attempts:
        return text
    history = "".join(ATTEMPT_MARKER + attempt.strip("\n") + "\n" for attempt in attempts)
    return history + REVISION_MARKER + text


def fit_attempts(
    question: str,
    attempts: Sequence[str],
    max_tokens: int | None,
    count_tokens: Callable[[str], int],
    prompt_template: str = "{question}\n",
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
    recent = list(attempts[-MAX_ATTEMPTS_IN_CONTEXT:]) if attempts else []
    for dropped in range(len(recent) + 1):
        prompt = format_reviser_prompt(question, recent[dropped:], prompt_template)
        if max_tokens is None or count_tokens(prompt) + reserve <= max_tokens:
            return prompt, dropped
    return prompt, len(recent)


def attempt_prompts(
    question: str,
    chain: Sequence[str],
    context: int | None,
    count_tokens,
    prompt_template: str = "{question}\n",
    max_tokens: int = 512,
) -> list[tuple[str, int]]:
    """The reviser prompt each attempt of a chain was written from, and the attempts it left out.

    The same rule :func:`~ttcompute.eval.search.revision_chains.revision_chains` follows: attempt t sees the chain's earlier non-empty
    attempts, the most recent that fit. Used to rebuild the history of saved attempts (an ORM's
    training data) exactly.
    """
    shown: list[str] = []
    out = []
    for text in chain:
        out.append(fit_attempts(question, shown, context, count_tokens, prompt_template, reserve=max_tokens))
        if text.strip():
            shown.append(text)
    return out
