"""A ``vllm`` module for tests, built from vLLM's own API (``tests/data/vllm_api.json``), not from our calls.

vLLM needs CUDA, so ``models/vllm_backend.py`` is tested against this stand-in. Everything it accepts
comes from the table that ``tests/vllm_api_table.py`` reads out of vLLM's published source, one
version at a time (the lowest and the highest that pyproject allows):

- ``LLM(...)``, ``LLM.generate(...)``: bound against the real signatures; ``LLM``'s ``**kwargs`` go on to
  ``EngineArgs``, whose fields are the only other names it takes. An unknown name is a ``TypeError``.
- ``SamplingParams``: the real fields, defaults and validation rules (``_verify_args``,
  ``_verify_greedy_sampling``), evaluated on the fake's values; the normalisations of ``__post_init__``
  that the rules rely on (``stop`` to a list, ``seed=-1`` to None) are written here by hand.
- Prompts: a string (tokenized with the special tokens, as vLLM does: a second BOS where the text
  already had one) or a ``TokensPrompt`` dict whose keys are the real ones.
- Outputs: ``RequestOutput`` built through its real ``__init__`` parameters and ``CompletionOutput`` with
  exactly the real fields, so reading a field vLLM does not have fails here too. Requests come back in
  request order (vLLM sorts them by request id); a request's completions come back in the order they
  finished, not by ``index`` (V0's order; V1 aggregates by index -- the backend must not rely on it).
- Finishes: ``length`` at ``max_tokens`` or at ``max_model_len``; ``stop`` at the EOS token
  (``stop_reason`` None) or at a stop string (``stop_reason`` the string, the text cut after it with
  ``include_stop_str_in_output`` and before it without); child ``j`` of a seeded request uses seed
  ``seed + j`` (vLLM's ``ParentRequest``).

Tokens come from a real causal LM loaded from ``model`` (safetensors only when ``load_format`` says
so), sampled on the CPU with the request's seed -- or from ``script(prompt_token_ids, seed)``, a list of
token ids, where a test needs to know the tokens in advance.
"""

from __future__ import annotations

import importlib.machinery
import inspect
import itertools
import json
import math
import random
import sys
import types
from collections.abc import Callable
from dataclasses import make_dataclass
from pathlib import Path

API = json.loads((Path(__file__).parent / "data" / "vllm_api.json").read_text())
VERSIONS: tuple[str, ...] = tuple(API["versions"])
LOWEST, HIGHEST = VERSIONS[0], VERSIONS[-1]

_KINDS = {
    "POSITIONAL_ONLY": inspect.Parameter.POSITIONAL_ONLY,
    "POSITIONAL_OR_KEYWORD": inspect.Parameter.POSITIONAL_OR_KEYWORD,
    "KEYWORD_ONLY": inspect.Parameter.KEYWORD_ONLY,
}


def signature(entry: dict) -> inspect.Signature:
    """The real function's signature (self left out), its defaults replaced by None."""
    params = [
        inspect.Parameter(
            p["name"], _KINDS[p["kind"]], default=inspect.Parameter.empty if p["required"] else None
        )
        for p in entry["params"]
    ]
    if entry["var_positional"]:
        params.insert(
            sum(p.kind != inspect.Parameter.KEYWORD_ONLY for p in params),
            inspect.Parameter(entry["var_positional"], inspect.Parameter.VAR_POSITIONAL),
        )
    if entry["var_keyword"]:
        params.append(inspect.Parameter(entry["var_keyword"], inspect.Parameter.VAR_KEYWORD))
    return inspect.Signature(params)


def _bind(qualname: str, entry: dict, args: tuple, kwargs: dict) -> inspect.BoundArguments:
    try:
        bound = signature(entry).bind(*args, **kwargs)
    except TypeError as err:
        raise TypeError(f"{qualname}(): {err}") from None
    bound.apply_defaults()
    return bound


def _require(table: dict, key: str, names: list[str]) -> None:
    """The fake offers an attribute only where the real class has it."""
    missing = [n for n in names if n not in table[key]]
    if missing:
        raise AssertionError(f"vLLM's {key} has no {missing}: the fake must not offer them")


def build(version: str = HIGHEST, script: Callable[[list[int], int | None], list[int]] | None = None):
    """A module object standing in for ``vllm`` at ``version``; install it in ``sys.modules``."""
    table = API["versions"][version]
    _require(table, "LLM.attributes", ["llm_engine"])
    _require(table, "V1 LLMEngine.attributes", ["model_config"])
    _require(table, "ModelConfig.attributes", ["model", "max_model_len"])

    module = types.ModuleType("vllm")
    # importlib.util.find_spec("vllm") (transformers' and TRL's availability checks) needs one.
    module.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    module.__version__ = version
    module.calls = []  # what each LLM and each generate call received
    module.engines = []  # every LLM built, in order

    class VLLMValidationError(Exception):
        """0.34's validation error (not a ValueError); 0.8 raises ValueError and TypeError."""

    errors = {"ValueError": ValueError, "TypeError": TypeError, "VLLMValidationError": VLLMValidationError}
    module.VLLMValidationError = VLLMValidationError

    fields = [f for f in table["SamplingParams"] if not f.startswith("_")]
    defaults = table["SamplingParams.defaults"]
    rules = table["SamplingParams.rules"]

    class SamplingParams:
        """vLLM's ``SamplingParams``: its fields, defaults and validation, nothing else."""

        def __init__(self, *args, **kwargs) -> None:
            if len(args) > len(fields):
                raise TypeError(f"SamplingParams: at most {len(fields)} positional arguments")
            for name, value in zip(fields, args):
                if name in kwargs:
                    raise TypeError(f"SamplingParams: argument '{name}' given by position and by name")
                kwargs[name] = value
            unknown = sorted(set(kwargs) - set(fields))
            if unknown:  # msgspec.Struct's own error
                raise TypeError(f"Unexpected keyword argument '{unknown[0]}'")
            for name in fields:
                setattr(self, name, kwargs.get(name, defaults.get(name)))
            self._post_init()

        def _post_init(self) -> None:
            if self.seed == -1:
                self.seed = None
            if self.stop is None:
                self.stop = []
            elif isinstance(self.stop, str):
                self.stop = [self.stop]
            for name in ("stop_token_ids", "bad_words"):
                if name in fields and getattr(self, name) is None:
                    setattr(self, name, [])
            self._check(rules["verify_args"])
            if self.temperature < rules["constants"]["_SAMPLING_EPS"]:
                self._check(rules["verify_greedy_sampling"])

        def _check(self, checks: list[dict]) -> None:
            scope = {"self": self, "math": math, "isinstance": isinstance, "int": int, "any": any, "all": all}
            for rule in checks:
                try:
                    broken = eval(rule["when"], scope)  # noqa: S307 -- vLLM's own condition, from the table
                except (NameError, AttributeError, TypeError):
                    continue  # names this fake does not model (envs, RequestOutputKind)
                if broken:
                    try:
                        message = eval(rule["message"], scope)  # noqa: S307
                    except Exception:
                        message = rule["when"]
                    raise errors[rule["error"]](message)

    CompletionOutput = make_dataclass(
        "CompletionOutput", [(name, object, None) for name in table["CompletionOutput"]]
    )
    request_output_signature = signature(table["RequestOutput.__init__"])

    class RequestOutput:
        def __init__(self, *args, **kwargs) -> None:
            bound = request_output_signature.bind(*args, **kwargs)
            bound.apply_defaults()
            for name, value in bound.arguments.items():
                if name != table["RequestOutput.__init__"]["var_keyword"]:
                    setattr(self, name, value)

    prompt_keys = set(table["TokensPrompt"]["required"]) | set(table["TokensPrompt"]["optional"])
    engine_fields = set(table["EngineArgs"])

    class LLM:
        _counter = itertools.count()

        def __init__(self, *args, **kwargs) -> None:
            bound = _bind("LLM.__init__", table["LLM.__init__"], args, kwargs)
            options = dict(bound.arguments)
            extra = options.pop(table["LLM.__init__"]["var_keyword"], {})
            unknown = sorted(set(extra) - engine_fields)
            if unknown:  # LLM passes **kwargs to the EngineArgs dataclass
                raise TypeError(f"EngineArgs.__init__() got an unexpected keyword argument '{unknown[0]}'")
            options.update(extra)
            module.calls.append(("LLM", options))
            module.engines.append(self)
            self.options = options
            self._load(options)

        def _load(self, options: dict) -> None:
            from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

            model = Path(options["model"])
            if not (model / "config.json").is_file():
                raise OSError(f"{model}: no config.json (the fake loads local checkpoints only)")
            if options.get("load_format") == "safetensors" and not list(model.glob("*.safetensors")):
                raise RuntimeError(f"Cannot find any model weights with `{model}`")
            trust = bool(options.get("trust_remote_code"))
            config = AutoConfig.from_pretrained(model, trust_remote_code=trust)
            self._tokenizer = AutoTokenizer.from_pretrained(options.get("tokenizer") or model)
            derived = getattr(config, "max_position_embeddings", None)
            max_model_len = options.get("max_model_len") or derived
            if derived and max_model_len > derived:
                raise ValueError(f"max_model_len {max_model_len} > the model's {derived}")
            model_config = types.SimpleNamespace(model=str(options["model"]), max_model_len=max_model_len)
            self.llm_engine = types.SimpleNamespace(model_config=model_config)
            self._model = None
            if script is None:
                self._model = AutoModelForCausalLM.from_pretrained(
                    model,
                    trust_remote_code=trust,
                    use_safetensors=options.get("load_format") == "safetensors" or None,
                ).eval()

        def get_tokenizer(self, *args, **kwargs):
            _bind("LLM.get_tokenizer", table["LLM.get_tokenizer"], args, kwargs)
            return self._tokenizer

        def generate(self, *args, **kwargs):
            bound = _bind("LLM.generate", table["LLM.generate"], args, kwargs)
            prompts, params = bound.arguments["prompts"], bound.arguments["sampling_params"]
            if isinstance(prompts, (str, dict)):
                prompts = [prompts]
            if params is None:
                params = SamplingParams()
            if isinstance(params, SamplingParams):
                params = [params] * len(prompts)
            if len(params) != len(prompts):
                raise ValueError("The lengths of prompts and params must be the same.")
            if any(not isinstance(p, SamplingParams) for p in params):
                raise TypeError("sampling_params must be vllm.SamplingParams")
            module.calls.append(("generate", {"prompts": list(prompts), "params": list(params), **kwargs}))
            outputs = []
            for prompt, sampling in zip(prompts, params):
                ids = self._prompt_ids(prompt)
                if len(ids) >= self.llm_engine.model_config.max_model_len:
                    raise ValueError(
                        f"The decoder prompt (length {len(ids)}) is longer than the maximum model length "
                        f"of {self.llm_engine.model_config.max_model_len}."
                    )
                children = [self._complete(ids, sampling, j) for j in range(sampling.n)]
                # Finish order: the shortest first, ties latest index first -- never simply by index.
                children.sort(key=lambda c: (len(c.token_ids), -c.index))
                outputs.append(
                    RequestOutput(
                        request_id=str(next(LLM._counter)),
                        prompt=prompt if isinstance(prompt, str) else prompt.get("prompt"),
                        prompt_token_ids=ids,
                        prompt_logprobs=None,
                        outputs=children,
                        finished=True,
                    )
                )
            return outputs

        def _prompt_ids(self, prompt) -> list[int]:
            if isinstance(prompt, str):
                return self._tokenizer(prompt)["input_ids"]  # special tokens added, as vLLM does
            if not isinstance(prompt, dict):
                raise TypeError("Prompt should be a string or dictionary")
            unknown = sorted(set(prompt) - prompt_keys)
            if unknown:
                # vLLM would ignore the key silently; a misspelt key is a bug, so the fake refuses it.
                raise TypeError(f"TokensPrompt has no key {unknown[0]!r}")
            ids = prompt.get("prompt_token_ids")
            if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
                raise TypeError("prompt_token_ids should be a list of integers")
            return list(ids)

        def _tokens(self, ids: list[int], sampling, seed: int | None, budget: int) -> list[int]:
            if script is not None:
                return list(script(ids, seed))[:budget]
            import torch

            # Unseeded, vLLM draws from fresh randomness: so does the fake, or a missing seed would pass.
            generator = torch.Generator().manual_seed(seed if seed is not None else random.randrange(2**31))
            from transformers import DynamicCache

            out, step, cache = [], torch.tensor([ids]), DynamicCache()
            with torch.no_grad():
                for _ in range(budget):
                    logits = self._model(step, cache=cache, use_cache=True).logits[0, -1].float()
                    if sampling.temperature < rules["constants"]["_SAMPLING_EPS"]:
                        token = int(logits.argmax())
                    else:
                        probs = torch.softmax(logits / sampling.temperature, -1)
                        if sampling.top_p < 1:
                            sorted_probs, order = probs.sort(descending=True)
                            keep = sorted_probs.cumsum(0) - sorted_probs < sampling.top_p
                            probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
                        token = int(torch.multinomial(probs, 1, generator=generator))
                    out.append(token)
                    if token == self._tokenizer.eos_token_id and not sampling.ignore_eos:
                        break
                    step = torch.tensor([[token]])
            return out

        def _complete(self, ids: list[int], sampling, index: int):
            seed = None if sampling.seed is None else sampling.seed + index
            room = self.llm_engine.model_config.max_model_len - len(ids)
            budget = min(sampling.max_tokens or room, room)
            tokens = self._tokens(ids, sampling, seed, budget)
            eos = self._tokenizer.eos_token_id
            generated: list[int] = []
            for token in tokens:
                generated.append(token)
                if token == eos and not sampling.ignore_eos:
                    text = self._decode(generated, sampling)
                    return self._output(index, text, generated, "stop", None)
                text = self._decode(generated, sampling)
                for stop in sampling.stop:
                    at = text.find(stop)
                    if at >= 0:
                        cut = at + len(stop) if sampling.include_stop_str_in_output else at
                        return self._output(index, text[:cut], generated, "stop", stop)
            return self._output(index, self._decode(generated, sampling), generated, "length", None)

        def _decode(self, ids: list[int], sampling) -> str:
            return self._tokenizer.decode(ids, skip_special_tokens=sampling.skip_special_tokens)

        def _output(self, index, text, token_ids, finish_reason, stop_reason):
            return CompletionOutput(
                index=index,
                text=text,
                token_ids=list(token_ids),
                cumulative_logprob=None,
                logprobs=None,
                finish_reason=finish_reason,
                stop_reason=stop_reason,
            )

    module.LLM = LLM
    module.SamplingParams = SamplingParams
    module.RequestOutput = RequestOutput
    module.CompletionOutput = CompletionOutput
    module.TokensPrompt = dict  # a TypedDict: a plain dict at run time
    return module


def install(monkeypatch, version: str = HIGHEST, script=None):
    """Put the fake in ``sys.modules["vllm"]`` for one test; returns it (``.calls``, ``.engines``)."""
    module = build(version, script)
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module
