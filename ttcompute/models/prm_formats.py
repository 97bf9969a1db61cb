"""Loading a PRM checkpoint in any format we read: detect the format, build backbone + encoder + head.

The formats (see :mod:`ttcompute.models.prm` for the one engine behind them), each as its published
reference code scores it:

- ``"ttcompute"``: our own PRMs (``*ForTokenClassification`` with ``ttc_prm`` metadata in the config).
- ``"math-shepherd"``: causal LMs scored by P("+") vs P("-") at a step tag ``ки``
  (peiyi9979/math-shepherd-mistral-7b-prm).
- ``"qwen-prm"``: ``Qwen2ForProcessRewardModel`` (Qwen/Qwen2.5-Math-PRM-7B), loaded without its custom
  code.
- ``"rlhflow"``: causal LMs that judge each step in a chat (RLHFlow/Llama3.1-8B-PRM-Deepseek-Data,
  -Mistral-Data; ``math-rm/prm_evaluate.py`` of RLHFlow/RLHF-Reward-Modeling): the first user turn
  is the question, a space and the first step, every later step a user turn of its own, every
  assistant turn ``"+"``; a step's score is the softmax over the two tokens ``"+"`` and ``"-"`` of
  the logits that predict its assistant turn's ``"+"`` (the reference's ``logits[:, -3]`` under
  Llama-3.1's template, where a turn ends ``+<|eot_id|>``). One forward pass scores every step.
- ``"skywork"``: ``Qwen2ForPrmModel`` (Skywork/Skywork-o1-Open-PRM-Qwen-2.5-1.5B / -7B;
  ``model_utils/io_utils.py`` of SkyworkAI/skywork-o1-prm-inference), loaded without its custom code:
  the prompt is ``bos_token + question + "\\n"``, each step is tokenized on its own and followed by
  the ``"\\n"`` token, and the score at that token is ``sigmoid(v_head.summary(hidden))``.
- ``"ttcompute-likelihood"``: a causal LM's token log-probabilities calibrated on MC labels
  (:mod:`ttcompute.models.likelihood_prm`), for a directory holding ``likelihood_prm.json``.

Detection (``prm_format="auto"``) uses only what a checkpoint itself says it is, so that an ordinary
model is never taken for a PRM:

- ``likelihood_prm.json`` in the directory: ``ttcompute-likelihood``;
- ``ttc_prm`` metadata in ``config.json``: ``ttcompute``;
- ``architectures`` ``["Qwen2ForProcessRewardModel"]``: ``qwen-prm``; ``["Qwen2ForPrmModel"]``:
  ``skywork`` (their head weights are then required: a missing one is an error, never a guess);
- a plain causal LM is a Math-Shepherd or RLHFlow PRM only when named by its published Hub id
  (:data:`PUBLISHED_CAUSAL_LM_PRMS`). Nothing inside those checkpoints marks them as PRMs: Math-Shepherd
  is a ``MistralForCausalLM`` on Mistral's own tokenizer (which has ``ки`` as any tokenizer trained on
  Russian text may), RLHFlow's a ``LlamaForCausalLM`` on Llama-3.1-Instruct's tokenizer. A copy under
  another name or path needs ``--prm_format`` (``prm_format=``), as does anything else undetected.

A new public format goes here: an ``encode`` (question, steps -> token ids, positions to score) and a
``head`` (hidden states -> scores) for the engine, and a rule in :func:`_detect_format`.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForTokenClassification,
    AutoTokenizer,
    PretrainedConfig,
)
from transformers.utils import cached_file
from transformers.utils import logging as hf_logging

from ttcompute.core.errors import InputError, option
from ttcompute.core.prm_format_names import PRM_FORMATS
from ttcompute.core.prompts import PromptContract, recorded_contract
from ttcompute.models.generation import build_prompt
from ttcompute.models.likelihood_prm import LIKELIHOOD_PRM_FILE, load_likelihood_prm
from ttcompute.models.prm import PRM, TransformersPRM, encode_steps
from ttcompute.models.weights import holds_only_pickled_weights, load_error

logger = logging.getLogger(__name__)


# Math-Shepherd's conventions, from its model card: each step is followed by " ки" and the PRM's
# verdict at the tag is the LM's choice between "+" and "-".
SHEPHERD_STEP_TAG = "ки"
SHEPHERD_GOOD, SHEPHERD_BAD = "+", "-"
# Qwen2.5-Math-PRM's conventions, from its model card: this system prompt, steps joined and ended by
# "<extra_0>", the score is the positive class's probability at each "<extra_0>".
QWEN_PRM_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
QWEN_PRM_STEP_TOKEN = "<extra_0>"
# RLHFlow's conventions (math-rm/prm_evaluate.py): every assistant turn is "+", the verdict is the
# choice between the tokens of "+" and "-" (`tokenizer.encode("+")[-1]`, `tokenizer.encode("-")[-1]`).
RLHFLOW_GOOD, RLHFLOW_BAD = "+", "-"
# Skywork's conventions (model_utils/io_utils.py, README): the step token "\n" ends every step; the
# value head `v_head.summary` is Linear(hidden, 1), its sigmoid the score (`return_probs=True`).
SKYWORK_STEP_TOKEN = "\n"
SKYWORK_HEAD_WEIGHTS = ("v_head.summary.weight", "v_head.summary.bias")
QWEN_PRM_HEAD_WEIGHTS = ("score.0.weight", "score.0.bias", "score.2.weight", "score.2.bias")
# Causal-LM PRMs carry nothing that tells them from the LM they were fine-tuned from: only their
# published Hub ids are recognised ("auto"); a copy elsewhere needs prm_format.
PUBLISHED_CAUSAL_LM_PRMS = {
    "peiyi9979/math-shepherd-mistral-7b-prm": "math-shepherd",
    "RLHFlow/Llama3.1-8B-PRM-Deepseek-Data": "rlhflow",
    "RLHFlow/Llama3.1-8B-PRM-Mistral-Data": "rlhflow",
}


# --------------------------------------------------------------------------------------------------
# Loading: detect the format, build backbone + encoder + head


def load_prm(
    model_name_or_path: str,
    prm_format: str = "auto",
    *,
    device: str | None = None,
    dtype: str = "auto",
    max_batch_tokens: int = 32768,
    reuse_prefixes: bool = True,
    max_cache_tokens: int | None = None,
    trust_remote_code: bool = False,
    step_separator: str | None = None,
    prompt_contract: PromptContract | None = None,
) -> PRM:
    """Load a PRM checkpoint (Hub id or local directory) as a :class:`TransformersPRM`.

    Args:
        model_name_or_path: Hub id or local checkpoint directory (safetensors only).
        prm_format: One of :data:`PRM_FORMATS`, or ``"auto"``: what the checkpoint says it is (see the
            module docstring); math-shepherd and rlhflow checkpoints say nothing, so they need it
            unless named by their published Hub id.
        device / dtype: Placement, as for generation; ``dtype`` is a torch dtype name or ``"auto"``.
        max_batch_tokens / reuse_prefixes / max_cache_tokens: See :class:`TransformersPRM`.
        trust_remote_code: Off unless asked; no supported format needs it.
        step_separator: ``ttcompute`` format only: overrides the separator stored in the metadata (and
            lets a token-classification checkpoint without metadata load).
        prompt_contract: ``ttcompute`` formats only: how a question becomes the prompt the PRM reads,
            for a checkpoint that does not record it (``ttc_prm`` / ``likelihood_prm.json`` without a
            ``prompt_template``); one that records it must agree. The public formats fix their own.
    """
    if prm_format != "auto" and prm_format not in PRM_FORMATS:
        raise InputError(f"unknown PRM format {prm_format!r}; choose 'auto' or one of {PRM_FORMATS}")
    if step_separator == "":
        raise InputError("the PRM's step separator must not be empty")
    if not Path(model_name_or_path).exists() and model_name_or_path.startswith((".", "/")):
        raise InputError(f"{model_name_or_path}: no such model directory")
    if prm_format == "ttcompute-likelihood" or (
        prm_format == "auto" and (Path(model_name_or_path) / LIKELIHOOD_PRM_FILE).is_file()
    ):
        return load_likelihood_prm(
            model_name_or_path,
            prompt_contract=prompt_contract,
            device=device,
            max_batch_tokens=max_batch_tokens,
            max_cache_tokens=max_cache_tokens,
            trust_remote_code=trust_remote_code,
        )
    if dtype != "auto" and not isinstance(getattr(torch, dtype, None), torch.dtype):
        raise InputError(f"unknown dtype {dtype!r}; use 'auto', 'float32', 'bfloat16' or 'float16'")
    # Whatever its format, a checkpoint with only pickled weights is refused: say so first.
    if holds_only_pickled_weights(model_name_or_path):
        raise InputError(load_error(model_name_or_path, "the PRM", OSError("no model.safetensors")))

    try:
        config_dict, _ = PretrainedConfig.get_config_dict(model_name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise InputError(load_error(model_name_or_path, "the PRM", err)) from None
    architectures = config_dict.get("architectures") or []
    if prm_format == "auto":
        prm_format = _detect_format(model_name_or_path, config_dict)
        if prm_format is None:
            raise InputError(
                f"{model_name_or_path}: cannot tell the PRM format (architectures {architectures}, no "
                f"ttc_prm metadata): pass {option('prm_format')}, one of {', '.join(PRM_FORMATS)} (math-shepherd "
                "and rlhflow checkpoints are plain causal LMs: only their published Hub ids are known)"
            )
    if step_separator is not None and prm_format != "ttcompute":
        logger.warning("step_separator is ignored for the %s format (it fixes its own)", prm_format)
    if prompt_contract is not None and prm_format != "ttcompute":
        logger.warning("the prompt contract is ignored for the %s format (it fixes its own)", prm_format)

    load_kwargs = {
        "dtype": dtype if dtype == "auto" else getattr(torch, dtype),
        "use_safetensors": True,
        "trust_remote_code": trust_remote_code,
    }
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    builders = {
        "ttcompute": functools.partial(_ttcompute_parts, prompt_contract=prompt_contract),
        "math-shepherd": _shepherd_parts,
        "qwen-prm": _qwen_prm_parts,
        "rlhflow": _rlhflow_parts,
        "skywork": _skywork_parts,
    }
    try:
        backbone, encode, head, num_parameters = builders[prm_format](
            model_name_or_path, config_dict, tokenizer, load_kwargs, target, step_separator
        )
    except InputError:
        raise
    except (OSError, ValueError) as err:
        raise InputError(load_error(model_name_or_path, "the PRM", err)) from None
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    logger.info("PRM %s: format %s, %.1fM parameters", model_name_or_path, prm_format, num_parameters / 1e6)
    return TransformersPRM(
        backbone,
        encode,
        head,
        num_parameters=num_parameters,
        pad_token_id=pad_token_id,
        max_batch_tokens=max_batch_tokens,
        reuse_prefixes=reuse_prefixes,
        max_cache_tokens=max_cache_tokens,
    )


def _detect_format(model_name_or_path: str, config_dict: dict) -> str | None:
    """The format a checkpoint declares (see the module docstring), or None."""
    architectures = config_dict.get("architectures") or []
    if isinstance(config_dict.get("ttc_prm"), dict):
        return "ttcompute"
    if architectures == ["Qwen2ForProcessRewardModel"]:
        return "qwen-prm"
    if architectures == ["Qwen2ForPrmModel"]:
        return "skywork"
    return PUBLISHED_CAUSAL_LM_PRMS.get(model_name_or_path.rstrip("/"))


def _shepherd_tag_id(tokenizer) -> int | None:
    """The id of the ``ки`` tag if the tokenizer has it as a token of its own (not unknown, not bytes)."""
    ids = tokenizer.encode(SHEPHERD_STEP_TAG, add_special_tokens=False)
    if not ids or ids[-1] == tokenizer.unk_token_id:
        return None
    return ids[-1] if SHEPHERD_STEP_TAG in tokenizer.decode([ids[-1]]) else None


def _choice_token_ids(name: str, prm_format: str, tokenizer, good: str, bad: str) -> tuple[int, int]:
    """The ids of the verdict tokens, as the reference code takes them (``tokenizer.encode("+")[-1]``)."""
    candidates = [tokenizer.encode(t, add_special_tokens=False)[-1:] for t in (good, bad)]
    if not all(candidates) or candidates[0] == candidates[1] or tokenizer.unk_token_id in sum(candidates, []):
        raise InputError(
            f"{name}: the {prm_format} format needs {good!r} and {bad!r} as distinct known tokens"
        )
    return candidates[0][0], candidates[1][0]


def _lm_choice_head(name: str, load_kwargs: dict, device: torch.device, good_id: int, bad_id: int):
    """A causal LM's base model and a head: the softmax over the LM's logits of ``good_id`` and
    ``bad_id``, its first entry (P(good) against the pair, not against the whole vocabulary)."""
    model = AutoModelForCausalLM.from_pretrained(name, **load_kwargs).to(device)
    lm_head = model.get_output_embeddings()
    # Only the two candidate rows of the LM head: no need for logits over the whole vocabulary.
    rows = torch.tensor([good_id, bad_id])
    weight = lm_head.weight[rows].detach().clone()  # (2, hidden)
    bias = lm_head.bias[rows].detach().clone() if getattr(lm_head, "bias", None) is not None else None
    backbone = model.base_model
    del model, lm_head

    def head(hidden: torch.Tensor) -> torch.Tensor:
        logits = nn.functional.linear(hidden, weight, bias)
        return torch.softmax(logits.float(), dim=-1)[:, 0]

    num_parameters = sum(p.numel() for p in backbone.parameters()) + weight.numel()
    return backbone, head, num_parameters


def _ttcompute_parts(
    name: str,
    config_dict: dict,
    tokenizer,
    load_kwargs: dict,
    device: torch.device,
    step_separator: str | None,
    prompt_contract: PromptContract | None = None,
):
    architectures = config_dict.get("architectures") or []
    # Loading a causal LM as token classification would "work" with a random head: refuse instead.
    if not any(a.endswith("ForTokenClassification") for a in architectures):
        raise InputError(
            f"{name}: the ttcompute format needs a *ForTokenClassification checkpoint, "
            f"found architectures {architectures}"
        )
    metadata = config_dict.get("ttc_prm") or {}
    separator = step_separator if step_separator is not None else metadata.get("step_separator")
    if separator is None:
        raise InputError(
            f"{name}: no ttc_prm.step_separator in config.json; pass {option('step_separator', 'prm_step_separator')}"
        )
    contract = recorded_contract(metadata, prompt_contract, f"{name}: config.ttc_prm")
    model = AutoModelForTokenClassification.from_pretrained(name, **load_kwargs).to(device)
    num_labels = model.config.num_labels
    if num_labels not in (1, 2):
        raise InputError(f"{name}: a ttcompute PRM has 1 or 2 labels, this one has {num_labels}")
    # The head is whatever the token-classification model adds to its base model: `score` for the
    # Llama/Qwen family, `classifier` for others.
    head_module = getattr(model, "score", None)
    if not isinstance(head_module, nn.Module):
        head_module = getattr(model, "classifier", None)
    if not isinstance(head_module, nn.Module):
        raise InputError(f"{name}: found no `score` or `classifier` head on {type(model).__name__}")

    def encode(question: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
        return encode_steps(tokenizer, build_prompt(question, contract, tokenizer), steps, separator)

    def head(hidden: torch.Tensor) -> torch.Tensor:
        logits = head_module(hidden).float()
        # One logit: trained with BCE (soft MC labels); two: TRL-style classes, 1 = good.
        return torch.sigmoid(logits[:, 0]) if num_labels == 1 else torch.softmax(logits, dim=-1)[:, 1]

    num_parameters = sum(p.numel() for p in model.parameters())
    return model.base_model, encode, head, num_parameters


def _shepherd_parts(
    name: str,
    config_dict: dict,
    tokenizer,
    load_kwargs: dict,
    device: torch.device,
    step_separator: str | None,
):
    tag_id = _shepherd_tag_id(tokenizer)
    if tag_id is None:
        raise InputError(f"{name}: the math-shepherd format needs the tokenizer to have the step tag 'ки'")
    # As the model card's `tokenizer.encode("+ -")[1:]` (ids 648, 387 for Mistral's tokenizer).
    good_id, bad_id = _choice_token_ids(name, "math-shepherd", tokenizer, SHEPHERD_GOOD, SHEPHERD_BAD)
    backbone, head, num_parameters = _lm_choice_head(name, load_kwargs, device, good_id, bad_id)

    def encode(question: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
        # The model card's input: f"{question} {output}", output = "Step 1: ... ки\nStep 2: ... ки..."
        text = f"{question} " + "".join(f"{step} {SHEPHERD_STEP_TAG}\n" for step in steps)
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
        return ids, [i for i, token in enumerate(ids) if token == tag_id]

    return backbone, encode, head, num_parameters


def _qwen_prm_parts(
    name: str,
    config_dict: dict,
    tokenizer,
    load_kwargs: dict,
    device: torch.device,
    step_separator: str | None,
):
    step_ids = tokenizer.encode(QWEN_PRM_STEP_TOKEN, add_special_tokens=False)
    if len(step_ids) != 1 or step_ids[0] == tokenizer.unk_token_id:
        raise InputError(f"{name}: the qwen-prm format needs the tokenizer to have the token '<extra_0>'")
    if not getattr(tokenizer, "chat_template", None):
        raise InputError(f"{name}: the qwen-prm format needs a tokenizer with a chat template")
    step_id = step_ids[0]
    head_module = _read_qwen_head(name, config_dict)
    backbone = _base_model_without_head(name, load_kwargs, device)
    head_module.to(device=device, dtype=backbone.dtype)

    def encode(question: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
        messages = [
            {"role": "system", "content": QWEN_PRM_SYSTEM_PROMPT},
            {"role": "user", "content": question},
            {"role": "assistant", "content": QWEN_PRM_STEP_TOKEN.join(steps) + QWEN_PRM_STEP_TOKEN},
        ]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]  # as the card's tokenizer.encode
        return ids, [i for i, token in enumerate(ids) if token == step_id]

    def head(hidden: torch.Tensor) -> torch.Tensor:
        return torch.softmax(head_module(hidden).float(), dim=-1)[:, 1]

    num_parameters = sum(p.numel() for p in backbone.parameters()) + sum(
        p.numel() for p in head_module.parameters()
    )
    return backbone, encode, head, num_parameters


def _rlhflow_parts(
    name: str,
    config_dict: dict,
    tokenizer,
    load_kwargs: dict,
    device: torch.device,
    step_separator: str | None,
):
    if not getattr(tokenizer, "chat_template", None):
        raise InputError(f"{name}: the rlhflow format needs a tokenizer with a chat template")
    good_id, bad_id = _choice_token_ids(name, "rlhflow", tokenizer, RLHFLOW_GOOD, RLHFLOW_BAD)

    # Step-wise search asks for the same conversations again with one more step: only that one is
    # rendered anew. (Bounded: each entry holds a whole conversation's ids.)
    @functools.lru_cache(maxsize=1 << 12)
    def conversation_ids(
        question: str, steps: tuple[str, ...], verdict: str = RLHFLOW_GOOD
    ) -> tuple[int, ...]:
        # The reference's conversation: `prompt + " " + step` first, then each (stripped) step; every
        # assistant turn "+". Tokenized as its `apply_chat_template(conversation)` does (no generation
        # prompt, the template's text with no special tokens added).
        messages = []
        for index, step in enumerate(steps):
            text = f"{question} {step.strip()}" if index == 0 else step.strip()
            messages += [{"role": "user", "content": text}, {"role": "assistant", "content": RLHFLOW_GOOD}]
        messages[-1]["content"] = verdict
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        return tuple(tokenizer(text, add_special_tokens=False)["input_ids"])

    # Where the last verdict sits: rendering one conversation with "+" and with "-" must differ in that
    # one token, and what follows it (the template's end of turn) is the same for every conversation.
    with_good, with_bad = (
        conversation_ids("1 + 1 = ?", ("2",)),
        conversation_ids("1 + 1 = ?", ("2",), RLHFLOW_BAD),
    )
    differing = [i for i, (a, b) in enumerate(zip(with_good, with_bad)) if a != b]
    if len(with_good) != len(with_bad) or len(differing) != 1 or with_good[differing[0]] != good_id:
        raise InputError(
            f"{name}: its chat template does not render an assistant turn '+' as the single token "
            f"{good_id} (the rlhflow format reads the verdict there)"
        )
    tail = with_good[differing[0] + 1 :]  # (<|eot_id|>,) for Llama-3.1's template

    def verdict_position(ids: tuple[int, ...]) -> int:
        position = len(ids) - len(tail) - 2  # the token that predicts the last assistant turn's "+"
        if position < 0 or ids[position + 1] != good_id or ids[position + 2 :] != tail:
            raise ValueError("the chat template rendered this conversation unlike the rlhflow format expects")
        return position

    def encode(question: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
        steps = tuple(steps)
        ids = conversation_ids(question, steps)
        positions = []
        for k in range(1, len(steps) + 1):
            turn = ids if k == len(steps) else conversation_ids(question, steps[:k])
            position = verdict_position(turn)
            # One pass over the whole conversation scores step k as the reference's pass over its
            # first k turns only if those tokens are a prefix of the whole.
            if ids[: position + 1] != turn[: position + 1]:
                raise ValueError(
                    f"step {k - 1}: the chat template renders the conversation differently as it grows"
                )
            positions.append(position)
        return list(ids), positions

    backbone, head, num_parameters = _lm_choice_head(name, load_kwargs, device, good_id, bad_id)
    return backbone, encode, head, num_parameters


def _skywork_parts(
    name: str,
    config_dict: dict,
    tokenizer,
    load_kwargs: dict,
    device: torch.device,
    step_separator: str | None,
):
    bos = tokenizer.bos_token
    if not bos:
        raise InputError(
            f"{name}: the skywork format needs the tokenizer's bos_token (its prompt begins with it)"
        )
    step_ids = tokenizer.encode(SKYWORK_STEP_TOKEN, add_special_tokens=False)
    if not step_ids or step_ids[-1] == tokenizer.unk_token_id:
        raise InputError(f"{name}: the skywork format needs a token for its step token '\\n'")
    step_id = step_ids[-1]  # as the reference's tokenizer.encode(step_token)[-1]
    tensors = _read_head_tensors(name, SKYWORK_HEAD_WEIGHTS, "skywork")
    weight, bias = tensors["v_head.summary.weight"], tensors["v_head.summary.bias"]
    if weight.shape != (1, config_dict["hidden_size"]) or bias.shape != (1,):
        raise InputError(
            f"{name}: v_head.summary is {tuple(weight.shape)} + {tuple(bias.shape)}, "
            f"the skywork format needs (1, {config_dict['hidden_size']}) + (1,)"
        )
    # In float32 whatever the backbone's dtype, as the reference's ValueHead ("force upcast in fp32").
    value_head = nn.Linear(config_dict["hidden_size"], 1, dtype=torch.float32)
    value_head.load_state_dict({"weight": weight, "bias": bias})
    backbone = _base_model_without_head(name, load_kwargs, device)
    value_head.to(device).eval()

    @functools.lru_cache(maxsize=1 << 16)
    def encode_text(text: str) -> tuple[int, ...]:
        return tuple(tokenizer(text)["input_ids"])  # the reference's tokenizer.encode(text)

    def encode(question: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
        # The reference's prepare_input on the response "\n".join(steps): each line tokenized alone and
        # followed by the step token, scored there. A step holding "\n" is several reference steps; it
        # is scored at its last one.
        ids = list(encode_text(bos + question + SKYWORK_STEP_TOKEN))
        positions = []
        for step in steps:
            for line in step.split(SKYWORK_STEP_TOKEN):
                ids.extend(encode_text(line) if line else ())
                ids.append(step_id)
            positions.append(len(ids) - 1)
        return ids, positions

    def head(hidden: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(value_head(hidden.float())[:, 0])

    num_parameters = sum(p.numel() for p in backbone.parameters()) + weight.numel() + bias.numel()
    return backbone, encode, head, num_parameters


def _base_model_without_head(name: str, load_kwargs: dict, device: torch.device) -> nn.Module:
    """The stock base model (``Qwen2Model`` ...) of a checkpoint whose custom class is that base model
    plus a head: it loads the ``model.*`` weights, so the checkpoint's own code is never needed."""
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the report would list the head's weights as "unexpected"
    try:
        backbone, info = AutoModel.from_pretrained(
            name, **{**load_kwargs, "trust_remote_code": False}, output_loading_info=True
        )
    finally:
        hf_logging.set_verbosity(previous)
    if info["missing_keys"]:
        missing = sorted(info["missing_keys"])
        raise InputError(f"{name}: backbone weights missing from the checkpoint: {missing[:5]}")
    return backbone.to(device)


def _read_qwen_head(name: str, config_dict: dict) -> nn.Sequential:
    """``score = Sequential(Linear(h, h), ReLU, Linear(h, 2))`` read from the checkpoint's safetensors."""
    tensors = _read_head_tensors(name, QWEN_PRM_HEAD_WEIGHTS, "qwen-prm")
    hidden_size = config_dict["hidden_size"]
    head = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, 2))
    head.load_state_dict({key.removeprefix("score."): value for key, value in tensors.items()})
    return head.eval()


def _read_head_tensors(name: str, wanted: Sequence[str], prm_format: str) -> dict[str, torch.Tensor]:
    """The tensors ``wanted`` from a checkpoint's safetensors (one file or an index of shards).

    Raises:
        OSError: the checkpoint has no safetensors weights at all (load_prm says why, in one line).
        InputError: some of ``wanted`` are not in them.
    """
    index_file = cached_file(
        name, "model.safetensors.index.json", _raise_exceptions_for_missing_entries=False
    )
    if index_file is not None:
        weight_map = json.loads(Path(index_file).read_text())["weight_map"]
        shards = {key: weight_map.get(key) for key in wanted}
    elif cached_file(name, "model.safetensors", _raise_exceptions_for_missing_entries=False) is not None:
        shards = dict.fromkeys(wanted, "model.safetensors")
    else:
        raise OSError("no model.safetensors or model.safetensors.index.json")
    tensors = {}
    for key, shard in shards.items():
        path = cached_file(name, shard, _raise_exceptions_for_missing_entries=False) if shard else None
        if path is not None:
            with safe_open(path, framework="pt") as weights:
                if key in weights.keys():  # noqa: SIM118 (safe_open has no __contains__)
                    tensors[key] = weights.get_tensor(key)
    missing = [key for key in wanted if key not in tensors]
    if missing:
        raise InputError(
            f"{name}: no {', '.join(missing)} in the safetensors weights (the {prm_format} format's head)"
        )
    return tensors
