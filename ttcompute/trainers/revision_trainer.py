"""``ttc train-reviser``: SFT of a reviser on revision trajectories (Snell et al., sec. 6.1).

Read top to bottom: trajectory rows (``question``, ``previous_attempts`` oldest first, ``completion``
= the correct solution) -> :func:`validate_revision_rows` -> :func:`fit_trajectory` (the reviser
prompt of ``ttcompute/models/reviser.py`` rebuilt so that prompt + revision + EOS fit ``max_length``:
the oldest attempts are dropped first, examples that cannot fit are skipped; both are counted) ->
TRL's ``SFTTrainer`` on plain ``prompt``/``completion`` rows, whose completion-only loss masks every
prompt token (-100) and trains on the revision and its EOS alone.

The saved checkpoint is a plain ``AutoModelForCausalLM`` (LoRA merged) whose ``config.ttc_reviser``
and model card state the prompt format, so any tool can generate revisions with it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase, set_seed
from trl import SFTTrainer

from ttcompute.core.errors import InputError
from ttcompute.models.reviser import (
    ATTEMPT_MARKER,
    MAX_ATTEMPTS_IN_CONTEXT,
    REVISION_MARKER,
    fit_attempts,
    format_reviser_prompt,
)
from ttcompute.trainers.data import load_stepwise_dataset, split_by_problem
from ttcompute.trainers.hub import push_folder
from ttcompute.trainers.launch import (
    check_deepspeed_active,
    init_deepspeed_comm,
    training_summary,
    without_zero3_init,
)
from ttcompute.trainers.lora import lora_config, merge_lora_checkpoint
from ttcompute.trainers.resume import last_complete_checkpoint
from ttcompute.trainers.revision_config import RevisionConfig

logger = logging.getLogger(__name__)

TRAINING_LOG = "training_log.json"
REQUIRED_COLUMNS = ("problem_id", "question", "previous_attempts", "completion")
# A model config without max_position_embeddings: the tiny policies' context.
DEFAULT_MAX_LENGTH = 512


def validate_revision_rows(dataset: datasets.Dataset, where: str, prompt_template: str) -> None:
    """Reject rows a reviser cannot learn from, naming the data, row and field; nothing is written.

    Checks: the columns of ``ttc revisions`` are there; ``question`` and ``completion`` are non-empty
    text; ``previous_attempts`` is a list of non-empty texts; where present, ``num_previous`` counts
    the attempts and ``prompt`` is the reviser prompt of ``prompt_template`` (else training would
    not see the format the trajectories were built with).
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in dataset.column_names]
    if missing:
        raise InputError(
            f"{where}: missing column(s) {missing}; reviser data needs {', '.join(REQUIRED_COLUMNS)} "
            "(the output of ttc revisions)"
        )
    n = len(dataset)
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
            expected = format_reviser_prompt(question, attempts[-MAX_ATTEMPTS_IN_CONTEXT:], prompt_template)
            if prompt != expected:
                raise InputError(
                    f"{at}, field prompt: {prompt[:60]!r}... is not the reviser prompt of --prompt_template "
                    f"{prompt_template!r}; pass the template the trajectories were built with"
                )


def fit_trajectory(
    row: dict[str, Any],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    prompt_template: str,
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
    >>> out = fit_trajectory(row, build_char_tokenizer(), max_length=40, prompt_template="{question}\\n")
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
        return len(tokenizer(prompt + target).input_ids)

    attempts = list(row["previous_attempts"])
    shown = min(len(attempts), MAX_ATTEMPTS_IN_CONTEXT)
    prompt, dropped = fit_attempts(row["question"], attempts, max_length, count_tokens, prompt_template)
    # fit_attempts stops at the first prompt that fits; only the one without any attempt is unchecked.
    fits = dropped < shown or count_tokens(prompt) <= max_length
    return {
        "prompt": prompt,
        "completion": completion,
        "num_dropped": dropped,
        "num_beyond_context": len(attempts) - shown,
        "fits": fits,
    }


FITTED_FEATURES = datasets.Features(
    {
        "prompt": datasets.Value("string"),
        "completion": datasets.Value("string"),
        "num_dropped": datasets.Value("int64"),
        "num_beyond_context": datasets.Value("int64"),
        "fits": datasets.Value("bool"),
    }
)


def fit_trajectories(
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    prompt_template: str,
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
            "prompt_template": prompt_template,
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
    return fitted.select_columns(["prompt", "completion"]), stats


class RevisionTrainer(SFTTrainer):
    """TRL's ``SFTTrainer`` on fitted reviser rows (``prompt``, ``completion``).

    The loss is TRL's completion-only loss: prompt tokens are labelled -100, the revision and its EOS
    are trained. The only addition is the model card, which states the reviser's prompt format.

    Args:
        fit_stats: The counts of :func:`fit_trajectories` for the model card.
        Everything else is ``SFTTrainer``'s.
    """

    _tag_names = ["trl", "sft", "reviser", "ttcompute"]

    def __init__(self, *args, fit_stats: dict[str, int] | None = None, **kwargs) -> None:
        self.fit_stats = dict(fit_stats or {})
        super().__init__(*args, **kwargs)
        if not self.completion_only_loss:
            raise ValueError("a reviser trains on the revision only: completion_only_loss must be true")

    def create_model_card(self, model_name: str | None = None, **kwargs) -> None:
        """Write README.md stating everything a user needs to generate revisions without our code."""
        if not self.is_world_process_zero():
            return
        # The usage snippet loads the model by the id it will have on the Hub; TRL passes only the
        # last part of it as model_name.
        model_id = self.args.hub_model_id or model_name or Path(self.args.output_dir).name
        card = reviser_model_card(self.args, model_id, self.fit_stats)
        (Path(self.args.output_dir) / "README.md").write_text(card)


def reviser_metadata(config: RevisionConfig) -> dict[str, Any]:
    """The ``ttc_reviser`` dict stored on the checkpoint's config: how to build its prompts."""
    return {
        "format": "ttcompute",
        "prompt_template": config.prompt_template,
        "attempt_marker": ATTEMPT_MARKER,
        "revision_marker": REVISION_MARKER,
        "max_attempts_in_context": MAX_ATTEMPTS_IN_CONTEXT,
        "drop_rule": "oldest attempts first",
        "max_length": config.max_length,
        "base_model": config.model_name_or_path,
        "dataset": config.dataset_name,
    }


# A worked example for the card, in the built-in arithmetic task's format.
_EXAMPLE_QUESTION = "Start at 3. Add 4. Multiply by 2."
_EXAMPLE_ATTEMPTS = [
    "3 + 4 = 8\n\n8 * 2 = 16\n\nThe answer is \\boxed{16}",
    "3 + 4 = 7\n\n7 * 2 = 15\n\nThe answer is \\boxed{15}",
]
_EXAMPLE_REVISION = "3 + 4 = 7\n\n7 * 2 = 14\n\nThe answer is \\boxed{14}"


def reviser_model_card(args: RevisionConfig, model_id: str, fit_stats: dict[str, int]) -> str:
    """A Hub model card (YAML header + prompt format + usage) for a reviser trained here; ``model_id``
    is what the usage snippet loads (the Hub id, or the folder's name)."""
    template, base, data = args.prompt_template, args.model_name_or_path, args.dataset_name
    header = {
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["reviser", "ttcompute", "trl", "sft"],
        "base_model": base,
    }
    if data and not Path(data).exists():
        header["datasets"] = [data]
    example = format_reviser_prompt(_EXAMPLE_QUESTION, _EXAMPLE_ATTEMPTS, template) + _EXAMPLE_REVISION
    stats = ""
    if fit_stats:
        stats = (
            f"In training, {fit_stats.get('num_dropped_attempts', 0)} attempts were dropped this way and "
            f"{fit_stats.get('num_skipped_examples', 0)} trajectories whose question and revision alone "
            f"exceed {args.max_length} tokens were skipped ({fit_stats.get('num_examples', 0)} trained on)."
        )
    lines = ["---", yaml.safe_dump(header, sort_keys=False).strip(), "---"]
    return "\n".join(
        lines
        + [
            "",
            f"# {model_id.split('/')[-1]}",
            "",
            "A *reviser* trained with ttcompute (`ttc train-reviser`, TRL's SFTTrainer): the policy",
            "finetuned to write a correct solution given its own earlier incorrect attempts in context",
            "(Snell et al. 2024, sec. 6).",
            "",
            f"- **Base policy / base model:** `{base}`",
            f"- **Training data:** `{data}` (revision trajectories: 0-{MAX_ATTEMPTS_IN_CONTEXT} incorrect "
            "attempts, then a correct solution)",
            "- **Loss:** on the revision only (the tokens after the revision marker, and the EOS token);",
            "  the question and the previous attempts are context, never trained on.",
            "",
            "## Prompt format",
            "",
            "Each previous attempt, **oldest first**, after an "
            f"`{ATTEMPT_MARKER!r}` line, then `{REVISION_MARKER!r}`, then the question formatted with "
            f"`{template!r}` (Python `str.format`, field `question`: the policy's own prompt); the model",
            "writes the revision and stops with EOS. Without previous attempts the prompt is the policy's",
            "own prompt alone (no markers):",
            "",
            "```text",
            ATTEMPT_MARKER + "{attempt 1}",
            ATTEMPT_MARKER + "{attempt 2}",
            REVISION_MARKER + template.replace("{question}", "{question}").rstrip("\n"),
            "{revision}",
            "```",
            "",
            f"At most **{MAX_ATTEMPTS_IN_CONTEXT} attempts** are in context (the most recent ones). When the",
            f"prompt and the revision do not fit the context ({args.max_length} tokens in training), the",
            f"**oldest attempts are dropped first**. {stats}".rstrip(),
            "",
            "A worked example (two incorrect attempts, then the revision the model learns to write):",
            "",
            "```text",
            example,
            "```",
            "",
            "## How to generate a revision (no ttcompute needed)",
            "",
            "```python",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            f'model_id = "{model_id}"',
            "tok = AutoTokenizer.from_pretrained(model_id)",
            "model = AutoModelForCausalLM.from_pretrained(model_id)",
            "",
            "",
            f"def reviser_prompt(question, attempts, max_attempts={MAX_ATTEMPTS_IN_CONTEXT}):",
            f"    text = {template!r}.format(question=question)",
            "    if not attempts:",
            "        return text",
            "    history = ''.join(  # oldest first; drop the oldest if too long",
            f'        {ATTEMPT_MARKER!r} + attempt.strip("\\n") + "\\n" for attempt in attempts[-max_attempts:]',
            "    )",
            f"    return history + {REVISION_MARKER!r} + text",
            "",
            "",
            f"question = {_EXAMPLE_QUESTION!r}",
            f"attempts = {_EXAMPLE_ATTEMPTS!r}",
            'inputs = tok(reviser_prompt(question, attempts), return_tensors="pt")',
            "output = model.generate(**inputs, max_new_tokens=256, do_sample=False)",
            'revision = tok.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)',
            "```",
            "",
            "The same facts are in `config.json` under `ttc_reviser`.",
            "",
            "## Training",
            "",
            f"- learning rate {args.learning_rate}, epochs {args.num_train_epochs}, batch size per device "
            f"{args.per_device_train_batch_size}, max length {args.max_length}, LoRA: {args.use_peft}",
            "",
        ]
    )


def model_context(config: RevisionConfig) -> int:
    """The base model's context (``max_position_embeddings``), or :data:`DEFAULT_MAX_LENGTH`."""
    from transformers import AutoConfig

    model_config = AutoConfig.from_pretrained(
        config.model_name_or_path, trust_remote_code=config.trust_remote_code
    )
    context = getattr(model_config.get_text_config(), "max_position_embeddings", None)
    return int(context) if context else DEFAULT_MAX_LENGTH


def train_reviser(config: RevisionConfig) -> dict[str, Any]:
    """Train (or resume) a reviser and save a plain causal-LM checkpoint with its model card."""
    from ttcompute.core.config import save_resolved_config
    from ttcompute.models.tiny import count_parameters

    if not config.model_name_or_path:
        raise InputError("ttc train-reviser: --model_name_or_path (the policy to finetune) is required")
    if not config.dataset_name:
        raise InputError("ttc train-reviser: --dataset_name (ttc revisions output) is required")
    # Validate and fit everything before the first file is written.
    train_rows = load_stepwise_dataset(config.dataset_name, config.dataset_split)
    validate_revision_rows(train_rows, config.dataset_name, config.prompt_template)
    eval_rows = None
    if config.eval_dataset_name:
        eval_rows = load_stepwise_dataset(config.eval_dataset_name, config.dataset_split)
        validate_revision_rows(eval_rows, config.eval_dataset_name, config.prompt_template)
    elif config.eval_fraction > 0:
        train_rows, eval_rows = split_by_problem(train_rows, config.eval_fraction, config.seed)

    tokenizer = AutoTokenizer.from_pretrained(
        config.model_name_or_path, trust_remote_code=config.trust_remote_code
    )
    context = model_context(config)
    if config.max_length is None:
        config.max_length = context
    elif config.max_length > context:
        logger.warning(
            "max_length=%d exceeds the model's context of %d tokens: prompts are fitted to max_length, "
            "so longer ones reach positions the model was never trained on",
            config.max_length,
            context,
        )
    fit_args = (tokenizer, config.max_length, config.prompt_template, config.eos_token)
    train_dataset, fit_stats = fit_trajectories(train_rows, *fit_args, name="train")
    if not len(train_dataset):
        raise InputError(
            f"{config.dataset_name}: no trajectory fits max_length={config.max_length} tokens even without "
            "previous attempts; raise --max_length"
        )
    eval_dataset, eval_fit_stats = None, {}
    if eval_rows is not None:
        eval_dataset, eval_fit_stats = fit_trajectories(eval_rows, *fit_args, name="eval")
        if not len(eval_dataset):
            logger.warning("No evaluation trajectory fits max_length=%d: not evaluating", config.max_length)
            eval_dataset = None
    if eval_dataset is not None and config.eval_strategy == "no":
        config.eval_strategy = "steps" if config.save_strategy == "steps" else "epoch"
        config.eval_steps = config.eval_steps or config.save_steps
    elif eval_dataset is None and config.eval_strategy != "no":
        # A recipe's eval_strategy with --eval_fraction 0: the Trainer would refuse to start.
        logger.info("No evaluation data: not evaluating (eval_strategy %s ignored)", config.eval_strategy)
        config.eval_strategy = "no"

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_resolved_config(out, "train-reviser", config)
    last_checkpoint = None if config.overwrite_output_dir else last_complete_checkpoint(out)
    if last_checkpoint:
        logger.info("Resuming from %s", last_checkpoint)

    def load_base():
        return AutoModelForCausalLM.from_pretrained(
            config.model_name_or_path, trust_remote_code=config.trust_remote_code, use_safetensors=True
        )

    init_deepspeed_comm()
    set_seed(config.seed)  # LoRA adapters are drawn from torch's global RNG before the Trainer seeds it
    with without_zero3_init(config):
        model = load_base()
    metadata = reviser_metadata(config)
    model.config.ttc_reviser = metadata
    num_params = count_parameters(model)
    # We push once, at the end, the merged checkpoint and its card; the Trainer's own pushes would
    # upload every intermediate checkpoint (and, with LoRA, only the unmerged adapter).
    push_to_hub, config.push_to_hub = config.push_to_hub, False
    # Checkpoints pickle their arguments (training_args.bin): keep the token out of them.
    hub_token, config.hub_token = config.hub_token, None
    trainer = RevisionTrainer(
        model=model,
        args=config,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=lora_config(config, "CAUSAL_LM") if config.use_peft else None,
        fit_stats=fit_stats,
    )
    check_deepspeed_active(trainer)
    logger.info(
        "Training a %d-parameter reviser on %d trajectories (%d held out), max_length %d",
        num_params,
        len(trainer.train_dataset),
        0 if trainer.eval_dataset is None else len(trainer.eval_dataset),
        config.max_length,
    )
    start = time.time()
    result = trainer.train(resume_from_checkpoint=last_checkpoint)
    metrics = trainer.evaluate() if trainer.eval_dataset is not None else {}
    trainer.save_model(str(out))  # gathers ZeRO-3 partitions; with LoRA it writes the adapter
    if trainer.is_world_process_zero():
        if config.use_peft:
            with without_zero3_init(config, always=True):
                merge_lora_checkpoint(out, load_base, {"ttc_reviser": metadata})
        trainer.create_model_card()
        (out / "training_args.bin").unlink(missing_ok=True)
    log = {
        **training_summary("train-reviser", trainer, result, num_params, start),
        "max_length": config.max_length,
        "num_train_examples": fit_stats["num_examples"],
        "num_skipped_examples": fit_stats["num_skipped_examples"],
        "num_dropped_attempts": fit_stats["num_dropped_attempts"],
        "num_attempts_beyond_context": fit_stats["num_attempts_beyond_context"],
        "eval_fit": eval_fit_stats,
        "eval": metrics,
    }
    if trainer.is_world_process_zero():
        (out / TRAINING_LOG).write_text(json.dumps(log, indent=2))
        if push_to_hub:
            config.hub_token = hub_token
            push_folder(out, config, "ttc train-reviser")
        logger.info("Reviser saved to %s (train loss %.4f, eval %s)", out, result.training_loss, metrics)
    return log
