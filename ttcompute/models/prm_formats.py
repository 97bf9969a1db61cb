"""Loading a PRM checkpoint in any format we read: detect the format, build backbone + encoder + head.

The formats (see :mod:`ttcompute.models.prm` for the one engine behind them):

- ``"ttcompute"``: our own PRMs (``*ForTokenClassification`` with ``ttc_prm`` metadata in the config).
- ``"math-shepherd"``: causal LMs scored by P("+") vs P("-") at a step tag ``ки``
  (peiyi9979/math-shepherd-mistral-7b-prm).
- ``"qwen-prm"``: ``Qwen2ForProcessRewardModel`` (Qwen/Qwen2.5-Math-PRM-7B), loaded without its custom
  code.
- ``"ttcompute-likelihood"``: a causal LM's token log-probabilities calibrated on MC labels
  (:mod:`ttcompute.models.likelihood_prm`), for a directory holding ``likelihood_prm.json``.

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

from ttcompute.core.errors import InputError
from ttcompute.core.prompts import PromptContract, recorded_contract
from ttcompute.models.generation import build_prompt
from ttcompute.models.likelihood_prm import LIKELIHOOD_PRM_FILE, load_likelihood_prm
from ttcompute.models.prm import PRM, TransformersPRM, encode_steps
from ttcompute.models.weights import load_error

logger = logging.getLogger(__name__)

PRM_FORMATS = ("ttcompute", "math-shepherd", "qwen-prm", "ttcompute-likelihood")

# Math-Shepherd's conventions, from its model card: each step is followed by " ки" and the PRM's
# verdict at the tag is the LM's choice between "+" and "-".
SHEPHERD_STEP_TAG = "ки"
SHEPHERD_GOOD, SHEPHERD_BAD = "+", "-"
# Qwen2.5-Math-PRM's conventions, from its model card: this system prompt, steps joined and ended by
# "<extra_0>", the score is the positive class's probability at each "<extra_0>".
QWEN_PRM_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
QWEN_PRM_STEP_TOKEN = "<extra_0>"


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
        prm_format: One of :data:`PRM_FORMATS`, or ``"auto"``: ``ttc_prm`` metadata in the config means
            ``ttcompute``; architecture ``Qwen2ForProcessRewardModel`` means ``qwen-prm``; a causal LM
            whose tokenizer has the ``ки`` tag means ``math-shepherd``.
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

    try:
        config_dict, _ = PretrainedConfig.get_config_dict(model_name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise InputError(load_error(model_name_or_path, "the PRM", err)) from None
    architectures = config_dict.get("architectures") or []
    if prm_format == "auto":
        prm_format = _detect_format(config_dict, tokenizer)
        if prm_format is None:
            raise InputError(
                f"{model_name_or_path}: cannot tell the PRM format (architectures {architectures}); "
                f"pass prm_format, one of {PRM_FORMATS}"
            )
    if step_separator is not None and prm_format != "ttcompute":
        logger.warning("step_separator is ignored for the %s format (steps are tagged by it)", prm_format)
    if prompt_contract is not None and prm_format != "ttcompute":
        logger.warning("the prompt contract is ignored for the %s format (it fixes its own)", prm_format)

    load_kwargs = {
        "dtype": dtype if dtype == "auto" else getattr(torch, dtype),
        "use_safetensors": True,
        "trust_remote_code": trust_remote_code,
    }
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    builders = {"ttcompute": _ttcompute_parts, "math-shepherd": _shepherd_parts, "qwen-prm": _qwen_prm_parts}
    if prm_format == "ttcompute":
        builders["ttcompute"] = functools.partial(_ttcompute_parts, prompt_contract=prompt_contract)
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


def _detect_format(config_dict: dict, tokenizer) -> str | None:
    architectures = config_dict.get("architectures") or []
    if isinstance(config_dict.get("ttc_prm"), dict):
        return "ttcompute"
    if architectures == ["Qwen2ForProcessRewardModel"]:
        return "qwen-prm"
    if any(a.endswith("ForCausalLM") for a in architectures) and _shepherd_tag_id(tokenizer) is not None:
        return "math-shepherd"
    return None


def _shepherd_tag_id(tokenizer) -> int | None:
    """The id of the ``ки`` tag if the tokenizer has it as a token of its own (not unknown, not bytes)."""
    ids = tokenizer.encode(SHEPHERD_STEP_TAG, add_special_tokens=False)
    if not ids or ids[-1] == tokenizer.unk_token_id:
        return None
    return ids[-1] if SHEPHERD_STEP_TAG in tokenizer.decode([ids[-1]]) else None


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
        raise InputError(f"{name}: no ttc_prm.step_separator in config.json; pass step_separator")
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
    candidates = [tokenizer.encode(t, add_special_tokens=False)[-1:] for t in (SHEPHERD_GOOD, SHEPHERD_BAD)]
    if not all(candidates) or candidates[0] == candidates[1] or tokenizer.unk_token_id in sum(candidates, []):
        raise InputError(f"{name}: the math-shepherd format needs '+' and '-' as distinct known tokens")
    model = AutoModelForCausalLM.from_pretrained(name, **load_kwargs).to(device)
    lm_head = model.get_output_embeddings()
    # Only the two candidate rows of the LM head: no need for logits over the whole vocabulary.
    rows = torch.tensor([candidates[0][0], candidates[1][0]])
    weight = lm_head.weight[rows].detach().clone()  # (2, hidden)
    bias = lm_head.bias[rows].detach().clone() if getattr(lm_head, "bias", None) is not None else None
    backbone = model.base_model
    del model, lm_head

    def encode(question: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
        # The model card's input: f"{question} {output}", output = "Step 1: ... ки\nStep 2: ... ки..."
        text = f"{question} " + "".join(f"{step} {SHEPHERD_STEP_TAG}\n" for step in steps)
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
        return ids, [i for i, token in enumerate(ids) if token == tag_id]

    def head(hidden: torch.Tensor) -> torch.Tensor:
        logits = nn.functional.linear(hidden, weight, bias)
        return torch.softmax(logits.float(), dim=-1)[:, 0]

    num_parameters = sum(p.numel() for p in backbone.parameters()) + weight.numel()
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
    # The custom Qwen2ForProcessRewardModel is a Qwen2Model plus this head, so the stock Qwen2Model
    # loads the `model.*` weights; its own code is never needed.
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the report would list the score.* weights as "unexpected"
    try:
        backbone, info = AutoModel.from_pretrained(
            name, **{**load_kwargs, "trust_remote_code": False}, output_loading_info=True
        )
    finally:
        hf_logging.set_verbosity(previous)
    if info["missing_keys"]:
        missing = sorted(info["missing_keys"])
        raise InputError(f"{name}: backbone weights missing from the checkpoint: {missing[:5]}")
    backbone.to(device)
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


def _read_qwen_head(name: str, config_dict: dict) -> nn.Sequential:
    """``score = Sequential(Linear(h, h), ReLU, Linear(h, 2))`` read from the checkpoint's safetensors."""
    index_file = cached_file(
        name, "model.safetensors.index.json", _raise_exceptions_for_missing_entries=False
    )
    wanted = ["score.0.weight", "score.0.bias", "score.2.weight", "score.2.bias"]
    if index_file is not None:
        weight_map = json.loads(Path(index_file).read_text())["weight_map"]
        shards = {key: weight_map.get(key) for key in wanted}
    else:
        shards = dict.fromkeys(wanted, "model.safetensors")
    tensors = {}
    for key, shard in shards.items():
        path = cached_file(name, shard, _raise_exceptions_for_missing_entries=False) if shard else None
        if path is not None:
            with safe_open(path, framework="pt") as weights:
                if key in weights.keys():  # noqa: SIM118 (safe_open has no __contains__)
                    tensors[key] = weights.get_tensor(key)
    missing = [key for key in wanted if key not in tensors]
    if missing:
        raise InputError(f"{name}: no {', '.join(missing)} in the safetensors weights (not a Qwen PRM?)")
    hidden_size = config_dict["hidden_size"]
    head = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, 2))
    head.load_state_dict({key.removeprefix("score."): value for key, value in tensors.items()})
    return head.eval()
