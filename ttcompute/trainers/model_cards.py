"""The model cards (README.md) of the trainers' checkpoints: everything a user needs to use the model
without ttcompute, and how it was trained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ttcompute.core.checkpoint_identity import checkpoint_identity
from ttcompute.core.prompts import PromptContract
from ttcompute.core.recorded_paths import comma_parts, is_local_path, record, record_options
from ttcompute.models.reviser import (
    ATTEMPT_MARKER,
    MAX_ATTEMPTS_IN_CONTEXT,
    REVISION_MARKER,
    format_reviser_prompt,
)
from ttcompute.trainers.prm_config import PRMConfig
from ttcompute.trainers.revision_config import RevisionConfig


def recorded_provenance(out: str | Path, base_model: str, dataset: str | None) -> dict[str, Any]:
    """``base_model`` and ``dataset`` as a checkpoint in ``out`` records them (``config.ttc_prm`` /
    ``config.ttc_reviser``): local paths relative to the checkpoint (core/recorded_paths.py), Hub ids as
    they are, and a local base's content identity -- what it was trained from, wherever the files go."""
    values = record_options({"base_model": base_model, "dataset": dataset}, out)
    if is_local_path(base_model):
        values["base_model_identity"] = checkpoint_identity(base_model)
    return values


def _header(header: dict[str, Any], hub_base: str | None, data: str | None) -> dict[str, Any]:
    """The card's YAML header: ``base_model`` and ``datasets`` only where they are Hub ids."""
    if hub_base:
        header["base_model"] = hub_base
    if data and not is_local_path(data) and not comma_parts("dataset", data):
        header["datasets"] = [data]
    return header


def _base_model(base: str, out: str | Path) -> tuple[str | None, str]:
    """The card's YAML ``base_model`` (a Hub id; None for a local checkpoint, which the Hub would refuse
    as metadata) and how its text names the base."""
    if not is_local_path(base):
        return base, f"`{base}`"
    local = (
        f"`{record(base, out)}` (a local checkpoint, relative to this folder; {checkpoint_identity(base)})"
    )
    return None, local


def _data(data: str | None, out: str | Path) -> str:
    """How a card names its training data: local paths relative to the card's folder."""
    local = comma_parts("dataset", data) or ([data] if is_local_path(data) else None)
    if not local:
        return f"`{data}`"
    return ", ".join(f"`{record(part, out)}`" for part in local) + " (local, relative to this folder)"


def prm_model_card(args: PRMConfig, metadata: dict[str, Any], model_name: str) -> str:
    """A Hub model card (YAML header + usage) for a PRM trained here."""
    separator = metadata.get("step_separator", args.step_separator)
    contract = PromptContract.from_record(metadata, "ttc_prm")
    template = contract.prompt_template
    hub_base, base = _base_model(args.model_name_or_path, args.output_dir)
    data = _data(args.dataset_name, args.output_dir)
    header = _header(
        {"library_name": "transformers", "pipeline_tag": "token-classification",
         "tags": ["process-reward-model", "prm", "ttcompute"]},
        hub_base, args.dataset_name,
    )  # fmt: skip
    lines = ["---", yaml.safe_dump(header, sort_keys=False).strip(), "---"]
    kind = "outcome reward model (last step only)" if args.train_on_last_step_only else "process reward model"
    return "\n".join(
        lines
        + [
            "",
            f"# {model_name}",
            "",
            f"A {kind} trained with ttcompute (`ttc train-prm`) on Monte Carlo step",
            "labels (soft targets, binary cross-entropy, as in Snell et al. 2024).",
            "",
            "## How to score a solution (no ttcompute needed)",
            "",
            f"- **Base policy / base model:** {base}",
            f"- **Training data:** {data}",
            f"- **Prompt:** the question formatted with `{template!r}` (Python `str.format`, field `question`)"
            + _chat_sentence(contract),
            f"- **Step separator:** `{separator!r}`, appended after *every* step, the last one included.",
            "- **Label token position:** the *last token of each step separator*. Tokenize the prompt with",
            "  special tokens, then each `step + separator` piece on its own, as it tokenizes after the",
            "  piece before it (the ids of `previous + piece` past those of `previous`, without special",
            "  tokens; the piece alone if those are no prefix), and concatenate: pieces never merge across",
            "  a step boundary, and a SentencePiece tokenizer adds no prefix space to a step.",
            "- **Score of step i:** `sigmoid(logits[label_position_i, 0])`: the estimated probability that",
            "  the solution so far leads to a correct answer. Aggregate over steps with the last step's",
            "  score (the paper's choice), or min / product.",
            "",
            "```python",
            "import torch",
            "from transformers import AutoModelForTokenClassification, AutoTokenizer",
            "",
            f'tok = AutoTokenizer.from_pretrained("{model_name}")',
            f'model = AutoModelForTokenClassification.from_pretrained("{model_name}")',
            f"sep = {separator!r}",
            f"previous = {template!r}.format(question=question)",
            *_chat_lines(contract, "previous"),
            *(
                # A chat template that writes the BOS itself (Llama, Mistral) must not get a second.
                [
                    "ids = tok(previous, add_special_tokens=not (tok.bos_token and previous.startswith(tok.bos_token))).input_ids"
                ]
                if contract.use_chat_template
                else ["ids = tok(previous).input_ids"]
            ),
            "positions = []",
            "for step in steps:",
            "    before = tok(previous, add_special_tokens=False).input_ids",
            "    joined = tok(previous + step + sep, add_special_tokens=False).input_ids",
            "    fits = len(joined) > len(before) and joined[: len(before)] == before",
            "    ids += joined[len(before) :] if fits else tok(step + sep, add_special_tokens=False).input_ids",
            "    positions.append(len(ids) - 1)",
            "    previous = step + sep",
            "logits = model(torch.tensor([ids])).logits[0, :, 0]",
            "step_scores = torch.sigmoid(logits[positions]).tolist()",
            "```",
            "",
            "The same facts are in `config.json` under `ttc_prm`.",
            "",
        ]
        + _training_section(args)
    )


def likelihood_prm_card(args: PRMConfig, spec: dict[str, Any], model_id: str) -> str:
    """A Hub model card for a likelihood PRM (``likelihood_prm.json`` over its base causal LM)."""
    contract = PromptContract.from_record(spec, "likelihood_prm.json")
    hub_base, base = _base_model(spec["base_model"], args.output_dir)
    raw_data = spec.get("dataset", args.dataset_name)
    data = _data(raw_data, args.output_dir)
    header = _header(
        {"library_name": "ttcompute", "tags": ["process-reward-model", "prm", "ttcompute"]},
        hub_base,
        raw_data,
    )
    return "\n".join(
        [
            "---",
            yaml.safe_dump(header, sort_keys=False).strip(),
            "---",
            "",
            f"# {model_id.split('/')[-1]}",
            "",
            "A *likelihood* process reward model trained with ttcompute (`ttc train-prm --prm_kind likelihood`):",
            "no weights of its own, two numbers calibrated on Monte Carlo step labels over the token",
            f"log-probabilities of its base causal LM {base} (loaded from there).",
            "",
            f"- **Score of step i:** `sigmoid({spec['weight']:.6g} * x_i + {spec['bias']:.6g})`, where `x_i` is the",
            "  lowest log-probability the base LM gives any token of steps 0..i (a running minimum; the",
            "  separator's own tokens excluded), each step read after the prompt and the steps before it.",
            f"- **Step separator:** `{spec['step_separator']!r}`, after every step.",
            f"- **Prompt:** the question formatted with `{contract.prompt_template!r}`"
            + _chat_sentence(contract),
            f"- **Training data:** {data}",
            "",
            "## How to use it",
            "",
            "```python",
            "from ttcompute.models.prm_formats import load_prm",
            "",
            f'prm = load_prm("{model_id}")  # reads likelihood_prm.json, loads the base model',
            "step_scores = prm.score([question], [steps])[0]",
            "```",
            "",
            f"or as the verifier of a search: `ttc search --prm {model_id} ...`. The same facts are in",
            "`likelihood_prm.json`.",
            "",
        ]
        + _training_section(args)
    )


# A worked example for the card, in the built-in arithmetic task's format.
_EXAMPLE_QUESTION = "Start at 3. Add 4. Multiply by 2."
_EXAMPLE_ATTEMPTS = [
    "3 + 4 = 8\n\n8 * 2 = 16\n\nThe answer is \\boxed{16}",
    "3 + 4 = 7\n\n7 * 2 = 15\n\nThe answer is \\boxed{15}",
]
_EXAMPLE_REVISION = "3 + 4 = 7\n\n7 * 2 = 14\n\nThe answer is \\boxed{14}"


def reviser_model_card(args: RevisionConfig, model_id: str, fit_stats: dict[str, int], tokenizer=None) -> str:
    """A Hub model card (YAML header + prompt format + usage) for a reviser trained here; ``model_id``
    is what the usage snippet loads (the Hub id, or the folder's name); ``tokenizer`` renders the
    worked example's chat template when the prompt contract has one."""
    contract = PromptContract(args.prompt_template, args.use_chat_template, args.system_prompt)
    template = contract.prompt_template
    hub_base, base = _base_model(args.model_name_or_path, args.output_dir)
    data = _data(args.dataset_name, args.output_dir)
    header = _header(
        {"library_name": "transformers", "pipeline_tag": "text-generation", "tags": ["reviser", "ttcompute", "trl", "sft"]},
        hub_base, args.dataset_name,
    )  # fmt: skip
    example = (
        format_reviser_prompt(_EXAMPLE_QUESTION, _EXAMPLE_ATTEMPTS, contract, tokenizer) + _EXAMPLE_REVISION
    )
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
            f"- **Base policy / base model:** {base}"
            + (
                f", deepened by {args.expand_blocks} identity-initialised decoder block"
                f"{'s' if args.expand_blocks != 1 else ''} (LLaMA Pro block "
                "expansion) before training"
                if args.expand_blocks
                else ""
            )
            + (
                f"; its context raised to {args.context_length} tokens (plain RoPE: relative positions)"
                if args.context_length
                else ""
            ),
            f"- **Training data:** {data} (revision trajectories: 0-{MAX_ATTEMPTS_IN_CONTEXT} incorrect "
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
            "own prompt alone (no markers)"
            + (
                ". This whole text is the *user turn* of one conversation"
                + _chat_sentence(contract).removeprefix(",").rstrip(".")
                + " (the attempts inside the user turn, not as earlier assistant turns: without attempts it is"
                " then exactly the policy's chat prompt):"
                if contract.use_chat_template
                else ":"
            ),
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
            "    if attempts:",
            "        history = ''.join(  # oldest first; drop the oldest if too long",
            f'            {ATTEMPT_MARKER!r} + attempt.strip("\\n") + "\\n" for attempt in attempts[-max_attempts:]',
            "        )",
            f"        text = history + {REVISION_MARKER!r} + text",
            *_chat_lines(contract, "text", indent="    "),
            "    return text",
            "",
            "",
            f"question = {_EXAMPLE_QUESTION!r}",
            f"attempts = {_EXAMPLE_ATTEMPTS!r}",
            "prompt = reviser_prompt(question, attempts)",
            *(
                [
                    "add_bos = not (tok.bos_token and prompt.startswith(tok.bos_token))  # unless the template wrote it",
                    'inputs = tok(prompt, return_tensors="pt", add_special_tokens=add_bos)',
                ]
                if contract.use_chat_template
                else ['inputs = tok(prompt, return_tensors="pt")']
            ),
            "output = model.generate(**inputs, max_new_tokens=256, do_sample=False)",
            'revision = tok.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)',
            "```",
            "",
            "The same facts are in `config.json` under `ttc_reviser`.",
            "",
        ]
        + _training_section(args)
    )


def _chat_sentence(contract: PromptContract) -> str:
    """How the card says the chat template is applied (``"."`` without one)."""
    if not contract.use_chat_template:
        return "."
    system = (
        f" after the system turn {contract.system_prompt!r}"
        if contract.system_prompt is not None
        else " (no system turn given: the template's default)"
    )
    return (
        ", trailing whitespace stripped, as the user turn of the tokenizer's chat template"
        f"{system}, generation prompt added (`apply_chat_template(..., add_generation_prompt=True)`)."
    )


def _chat_lines(contract: PromptContract, name: str, indent: str = "") -> list[str]:
    """Card code that turns the text in variable ``name`` into the chat prompt (none without one)."""
    if not contract.use_chat_template:
        return []
    lines = [f'turn = [{{"role": "user", "content": {name}.rstrip()}}]']
    if contract.system_prompt is not None:
        lines.append(f'turn.insert(0, {{"role": "system", "content": {contract.system_prompt!r}}})')
    lines.append(f"{name} = tok.apply_chat_template(turn, tokenize=False, add_generation_prompt=True)")
    return [indent + line for line in lines]


def _training_section(args: PRMConfig | RevisionConfig) -> list[str]:
    """The lines of a card's "Training" section: the settings a reader needs to reproduce the run."""
    return [
        "## Training",
        "",
        f"- learning rate {args.learning_rate}, epochs {args.num_train_epochs}, batch size per device "
        f"{args.per_device_train_batch_size}, max length {args.max_length}, LoRA: {args.use_peft}",
        "",
    ]
