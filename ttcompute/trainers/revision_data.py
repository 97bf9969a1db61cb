"""Revision trajectories for ``ttc train-reviser``: validation of the rows ``ttc revisions`` writes
(``question``, ``previous_attempts`` oldest first, ``completion`` = the correct solution), then each
row's reviser prompt rebuilt so that prompt + revision + EOS fit ``max_length`` (the oldest attempts
dropped first, examples that cannot fit skipped; both counted)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
from transformers import PreTrainedTokenizerBase

from ttcompute.core.errors import InputError
from ttcompute.core.prompts import DEFAULT_CONTRACT, PromptContract, contract_options
from ttcompute.core.shards import read_manifest
from ttcompute.models.generation import prompt_token_ids
from ttcompute.models.reviser import (
    FORMAT_VERSION,
    MAX_ATTEMPTS_IN_CONTEXT,
    fit_attempts,
    format_reviser_prompt,
    recent_attempts,
)

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("problem_id", "question", "previous_attempts", "completion")


def validate_revision_rows(
    dataset: datasets.Dataset, where: str, contract: PromptContract, tokenizer=None
) -> None:
    """Reject rows a reviser cannot learn from, naming the data, row and field; nothing is written.

    Checks: the columns of ``ttc revisions`` are there, with rows; ``question`` and ``completion``
    are non-empty text; ``previous_attempts`` is a list of non-empty texts; where present,
    ``num_previous`` counts the attempts and ``prompt`` is the reviser prompt under ``contract``
    (rendered with the base model's ``tokenizer`` for the chat template; else training would not see
    the format the trajectories were built with).
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in dataset.column_names]
    if missing:
        raise InputError(
            f"{where}: missing column(s) {missing}; reviser data needs {', '.join(REQUIRED_COLUMNS)} "
            "(the output of ttc revisions)"
        )
    n = len(dataset)
    if n == 0:
        raise InputError(f"{where}: no rows; a reviser needs at least one trajectory (ttc revisions output)")
    optional = {
        c: dataset[c] if c in dataset.column_names else [None] * n for c in ("num_previous", "prompt")
    }
    rows = zip(
        dataset["problem_id"],
        dataset["question"],
        dataset["previous_attempts"],
        dataset["completion"],
        optional["num_previous"],
        optional["prompt"],
    )
    for i, (problem_id, question, attempts, completion, num_previous, prompt) in enumerate(rows):
        at = f"{where}: row {i}"
        if problem_id is None:
            raise InputError(f"{at}, field problem_id: missing")
        if not isinstance(question, str) or not question.strip():
            raise InputError(f"{at}, field question: expected non-empty text, got {question!r}")
        if not isinstance(completion, str) or not completion.strip():
            raise InputError(f"{at}, field completion: empty completion (the correct solution to learn)")
        if isinstance(attempts, str) or not isinstance(attempts, Sequence):
            raise InputError(
                f"{at}, field previous_attempts: expected a list of solutions, got {type(attempts).__name__}"
            )
        for j, attempt in enumerate(attempts):
            if not isinstance(attempt, str) or not attempt.strip():
                raise InputError(f"{at}, field previous_attempts[{j}]: empty attempt")
        if num_previous is not None and num_previous != len(attempts):
            raise InputError(
                f"{at}, field num_previous: {num_previous} but previous_attempts holds {len(attempts)}"
            )
        if prompt is not None:
            expected = format_reviser_prompt(question, recent_attempts(attempts), contract, tokenizer)
            if prompt != expected:
                raise InputError(
                    f"{at}, field prompt: {prompt[:60]!r}... is not the reviser prompt under the prompt "
                    f"contract ({contract.describe()}); pass the contract the trajectories were built with ({contract_options()})"
                )


def check_reviser_format(data: str) -> None:
    """Trajectories that ``ttc revisions`` wrote in another reviser format cannot train this one.

    Raises:
        InputError: a ttc output among ``data`` (comma-separated) records another format (or none:
            written before the format was recorded).
    """
    for part in (p.strip() for p in data.split(",")):
        if not part or not (Path(part) / "manifest.json").is_file():
            continue  # a file or a Hub dataset: its prompt column is checked row by row
        recorded = read_manifest(part)["info"].get("reviser_format")
        if recorded != FORMAT_VERSION:
            raise InputError(
                f"{part}: trajectories in reviser format {recorded}, this version trains format "
                f"{FORMAT_VERSION}; rebuild them with ttc revisions"
            )


def sft_example(tokenizer: PreTrainedTokenizerBase, prompt: str, target: str) -> tuple[list[int], list[int]]:
    """``input_ids`` and ``completion_mask`` of a prompt-completion pair, as TRL's SFTTrainer tokenizes
    one (the pair jointly; the completion from where the prompt's own ids stop agreeing) -- but with
    :func:`~ttcompute.models.generation.prompt_token_ids`: a BOS that a chat template wrote as text
    (Llama-2/3, Mistral) is not doubled, so training sees the ids the reviser sees at inference. TRL
    adds the special tokens to a plain-text prompt whatever it holds.

    >>> from ttcompute.models.tiny import build_char_tokenizer
    >>> sft_example(build_char_tokenizer(), "Q\\n", "d</s>")  # <s> Q \\n | d </s>
    ([1, 54, 4, 73, 2], [0, 0, 0, 1, 1])
    """
    prompt_ids = prompt_token_ids(tokenizer, prompt)
    ids = prompt_token_ids(tokenizer, prompt + target)
    start = 0
    while start < min(len(ids), len(prompt_ids)) and ids[start] == prompt_ids[start]:
        start += 1
    return ids, [0] * start + [1] * (len(ids) - start)


def fit_trajectory(
    row: dict[str, Any],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    contract: PromptContract = DEFAULT_CONTRACT,
    eos_token: str | None = None,
) -> dict[str, Any]:
    """The row's reviser prompt rebuilt so that prompt + completion + EOS fit ``max_length`` tokens.

    Tokens are counted on the text SFTTrainer will tokenize (prompt and completion joined, EOS
    appended unless there, special tokens added), so nothing is truncated later. The oldest attempts
    go first (:func:`~ttcompute.models.reviser.fit_attempts`); ``fits`` is False when even the
    question and completion alone are too long. ``num_beyond_context``: attempts older than the
    format's last :data:`MAX_ATTEMPTS_IN_CONTEXT`, never shown.

    >>> from ttcompute.models.tiny import build_char_tokenizer
    >>> row = {"question": "Q", "previous_attempts": ["a" * 8, "b" * 8, "c" * 8], "completion": "d"}
    >>> out = fit_trajectory(row, build_char_tokenizer(), max_length=40)
    >>> print(out["prompt"] + out["completion"])   # <s> (18 per attempt) Revision:\\n Q\\n d </s>: 33 tokens
    Attempt:
    cccccccc
    Revision:
    Q
    d
    >>> out["num_dropped"], out["fits"]
    (2, True)
    """
    eos = eos_token if eos_token is not None else tokenizer.eos_token
    completion = row["completion"]
    target = completion if not eos or completion.endswith(eos) else completion + eos

    def count_tokens(prompt: str) -> int:
        return len(sft_example(tokenizer, prompt, target)[0])

    attempts = list(row["previous_attempts"])
    shown = min(len(attempts), MAX_ATTEMPTS_IN_CONTEXT)
    prompt, dropped = fit_attempts(row["question"], attempts, max_length, count_tokens, contract, tokenizer)
    # fit_attempts stops at the first prompt that fits; only the one without any attempt is unchecked.
    fits = dropped < shown or count_tokens(prompt) <= max_length
    # The most recent attempt is the last one dropped: shown at all, it is shown.
    last = attempts[-1] if attempts and dropped < shown else ""
    return {
        "prompt": prompt,
        "completion": completion,
        "copied_chars": len(os.path.commonprefix([last, completion])),
        "num_dropped": dropped,
        "num_beyond_context": len(attempts) - shown,
        "fits": fits,
    }


FITTED_FEATURES = datasets.Features(
    {
        "prompt": datasets.Value("string"),
        "completion": datasets.Value("string"),
        "copied_chars": datasets.Value("int64"),
        "num_dropped": datasets.Value("int64"),
        "num_beyond_context": datasets.Value("int64"),
        "fits": datasets.Value("bool"),
    }
)


def fit_trajectories(
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    contract: PromptContract = DEFAULT_CONTRACT,
    eos_token: str | None = None,
    name: str = "train",
) -> tuple[datasets.Dataset, dict[str, int]]:
    """``prompt``/``completion`` rows for SFTTrainer (see :func:`fit_trajectory`) and the counts:
    examples kept, examples skipped (question + completion alone too long), attempts dropped from
    kept examples to fit, attempts beyond the format's limit."""
    fitted = dataset.map(
        fit_trajectory,
        fn_kwargs={
            "tokenizer": tokenizer,
            "max_length": max_length,
            "contract": contract,
            "eos_token": eos_token,
        },
        remove_columns=dataset.column_names,
        # Fixed, or `map` keeps the type an input column of the same name had (a user's `prompt`).
        features=FITTED_FEATURES,
        desc=f"Fitting {name} prompts to {max_length} tokens",
    )
    fits = fitted["fits"]
    stats = {
        "num_examples": int(sum(fits)),
        "num_skipped_examples": len(fits) - int(sum(fits)),
        "num_dropped_attempts": int(sum(d for d, ok in zip(fitted["num_dropped"], fits) if ok)),
        "num_attempts_beyond_context": int(sum(fitted["num_beyond_context"])),
    }
    if stats["num_skipped_examples"]:
        logger.warning(
            "%s: %d of %d trajectories skipped: question + revision alone exceed max_length=%d",
            name,
            stats["num_skipped_examples"],
            len(fits),
            max_length,
        )
    if stats["num_dropped_attempts"]:
        logger.info(
            "%s: %d previous attempts dropped (oldest first) to fit max_length=%d",
            name,
            stats["num_dropped_attempts"],
            max_length,
        )
    if stats["num_examples"] < len(fits):
        fitted = fitted.filter(lambda fit: fit, input_columns="fits")
    return fitted.select_columns(["prompt", "completion", "copied_chars"]), stats


def copied_token_weights(
    tokenizer: PreTrainedTokenizerBase,
    prompt: str,
    target: str,
    example: tuple[list[int], list[int]],
    copied_chars: int,
    weight: float,
) -> list[float]:
    """Per token of ``example`` (:func:`sft_example` of ``prompt`` and ``target``): ``weight`` for the
    completion tokens inside its first ``copied_chars`` characters (what repeats the most recent
    attempt), 1 for the other completion tokens, 0 for the prompt. A token that straddles the end of
    the copied part counts as changed.

    >>> from ttcompute.models.tiny import build_char_tokenizer
    >>> tokenizer = build_char_tokenizer()
    >>> copied_token_weights(tokenizer, "Q\\n", "ab</s>", sft_example(tokenizer, "Q\\n", "ab</s>"), 1, 0.25)
    [0.0, 0.0, 0.0, 0.25, 1.0, 1.0]
    """
    ids, mask = example
    start = mask.index(1) if 1 in mask else len(ids)
    copied = 0
    if copied_chars:
        part = sft_example(tokenizer, prompt, target[:copied_chars])[0]
        # Tokens the whole and the copied part share from the completion's start lie inside the part;
        # the first that differs straddles its end (or follows it).
        while start + copied < min(len(ids), len(part)) and ids[start + copied] == part[start + copied]:
            copied += 1
    return [0.0] * start + [weight] * copied + [1.0] * (len(ids) - start - copied)


def tokenize_trajectories(
    fitted: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    eos_token: str | None = None,
    name: str = "train",
    copied_token_weight: float = 1.0,
) -> datasets.Dataset:
    """The fitted ``prompt``/``completion`` rows as SFTTrainer's pre-tokenized ``input_ids`` and
    ``completion_mask`` (:func:`sft_example`; EOS appended to the completion, as TRL does), and with
    ``copied_token_weight`` < 1 the ``loss_weights`` of :func:`copied_token_weights`."""
    eos = eos_token if eos_token is not None else tokenizer.eos_token

    def tokenize(row: dict[str, Any]) -> dict[str, list]:
        completion = row["completion"]
        target = completion if not eos or completion.endswith(eos) else completion + eos
        ids, mask = sft_example(tokenizer, row["prompt"], target)
        out = {"input_ids": ids, "completion_mask": mask}
        if copied_token_weight != 1.0:
            copied = min(row.get("copied_chars") or 0, len(completion))
            out["loss_weights"] = copied_token_weights(
                tokenizer, row["prompt"], target, (ids, mask), copied, copied_token_weight
            )
        return out

    return fitted.map(tokenize, remove_columns=fitted.column_names, desc=f"Tokenizing {name} trajectories")
