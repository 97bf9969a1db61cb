"""Safe loading: pickled weights are never unpickled and a checkpoint's own code never runs unasked.

Every checkpoint here is a tiny Llama built locally. The hostile ones carry a payload that creates a
marker directory when it runs: a pickle whose ``__reduce__`` calls ``os.mkdir`` (in place of
``pytorch_model.bin``), and Python modules named by ``auto_map`` that do the same on import. Each
test asserts the marker never appears; the control tests show that the payloads are live (loaded the
unsafe way, they do run), so a loader that unpickled or imported them would fail these tests.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from ttcompute.cli import main
from ttcompute.core.errors import InputError
from ttcompute.models.tiny import build_char_tokenizer, build_tiny_llama, save_tiny, tiny_llama_config

SHEPHERD_TAG = "ки"  # the Math-Shepherd step tag: a tokenizer with it makes a math-shepherd PRM


class MkdirOnUnpickle:
    """A pickle payload: unpickling it calls ``os.mkdir(marker)`` (a stand-in for any code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _save_checkpoint(path: Path, config_updates: dict | None = None, tokenizer=None) -> Path:
    """A tiny Llama saved as safetensors + tokenizer, with ``config_updates`` merged into config.json."""
    tokenizer = tokenizer or build_char_tokenizer()
    config = tiny_llama_config(len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    save_tiny(build_tiny_llama(config, seed=0), tokenizer, path)
    _update_json(path / "config.json", config_updates or {})
    return path


def _update_json(path: Path, updates: dict) -> None:
    values = json.loads(path.read_text())
    values.update(updates)
    path.write_text(json.dumps(values, indent=2))


def _pickle_weights_only(path: Path, marker: Path) -> Path:
    """Replace the safetensors weights by a ``pytorch_model.bin`` holding them plus the payload."""
    from safetensors.torch import load_file

    weights = load_file(path / "model.safetensors")
    (path / "model.safetensors").unlink()
    torch.save({**weights, "payload": MkdirOnUnpickle(marker)}, path / "pytorch_model.bin")
    return path


def _likelihood_spec(path: Path, base: Path) -> Path:
    path.mkdir(parents=True)
    spec = {
        "format": "ttcompute-likelihood",
        "base_model": str(base),
        "step_separator": "\n\n",
        "prompt_template": "{question}\n",
        "weight": 1.0,
        "bias": 0.0,
    }
    (path / "likelihood_prm.json").write_text(json.dumps(spec))
    return path


# --- (a) weights only from safetensors ----------------------------------------------------------

TOKEN_CLASSIFICATION_PRM = {
    "architectures": ["LlamaForTokenClassification"],
    "id2label": {"0": "LABEL_0"},
    "label2id": {"LABEL_0": 0},
    "ttc_prm": {"step_separator": "\n\n", "prompt_template": "{question}\n"},
}


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "payload_ran"


@pytest.fixture
def pickled_policy(tmp_path, marker) -> Path:
    return _pickle_weights_only(_save_checkpoint(tmp_path / "pickled_policy"), marker)


def test_the_pickle_payload_runs_when_unpickled(pickled_policy, marker):
    """Control: the planted file is a live exploit for ``torch.load`` without ``weights_only``."""
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(pickled_policy / "pytorch_model.bin", weights_only=True)
    assert not marker.exists()
    torch.load(pickled_policy / "pytorch_model.bin", weights_only=False)
    assert marker.is_dir()


def test_only_weight_pickles_count_as_pickled_weights(tmp_path):
    from ttcompute.models.weights import holds_only_pickled_weights

    (tmp_path / "training_args.bin").write_bytes(b"")  # a pickled config: not weights
    assert not holds_only_pickled_weights(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    assert holds_only_pickled_weights(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"")  # transformers loads this one, never the .bin
    assert not holds_only_pickled_weights(tmp_path)


def test_generation_backend_refuses_pickled_weights(pickled_policy, marker):
    from ttcompute.models.backends import load_backend
    from ttcompute.models.generation_config import GeneratorConfig

    args = GeneratorConfig(model_name_or_path=str(pickled_policy), device="cpu")
    with pytest.raises(InputError, match=r"model\.safetensors.*pickles") as refusal:
        load_backend(args.backend, args.model_name_or_path, **args.backend_kwargs())
    assert "\n" not in str(refusal.value)
    assert not marker.exists()


def test_ttc_sample_refuses_a_pickled_policy_with_one_line(pickled_policy, marker, tmp_path, capsys):
    out = tmp_path / "samples"
    argv = ["sample", "--model_name_or_path", str(pickled_policy), "--num_problems", "1"]
    assert main([*argv, "--device", "cpu", "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ttc: error: ") and "pickles" in err[0], err
    assert not marker.exists()
    assert not (out / "manifest.json").exists()


def _pickled_token_classification_prm(root: Path, marker: Path) -> Path:
    return _pickle_weights_only(_save_checkpoint(root / "prm", TOKEN_CLASSIFICATION_PRM), marker)


def _pickled_shepherd_prm(root: Path, marker: Path) -> Path:
    tokenizer = build_char_tokenizer(extra_special_tokens=[SHEPHERD_TAG])
    return _pickle_weights_only(_save_checkpoint(root / "shepherd", tokenizer=tokenizer), marker)


def _pickled_likelihood_prm(root: Path, marker: Path) -> Path:
    base = _pickle_weights_only(_save_checkpoint(root / "base"), marker)
    return _likelihood_spec(root / "likelihood_prm", base)


@pytest.mark.parametrize(
    ("prm_format", "build"),
    [
        ("ttcompute", _pickled_token_classification_prm),
        ("math-shepherd", _pickled_shepherd_prm),
        ("ttcompute-likelihood", _pickled_likelihood_prm),
    ],
)
def test_load_prm_refuses_pickled_weights(prm_format, build, tmp_path, marker):
    from ttcompute.models.prm_formats import load_prm

    path = build(tmp_path, marker)
    # "auto" first: format detection reads config.json and the tokenizer, never the weights.
    for requested in ("auto", prm_format):
        with pytest.raises(InputError, match=r"model\.safetensors.*pickles"):
            load_prm(str(path), requested, device="cpu")
    assert not marker.exists()


def test_the_same_checkpoint_as_safetensors_loads(tmp_path):
    """The refusals above are about the pickle, not about a broken checkpoint."""
    from ttcompute.models.hf_backend import TransformersBackend
    from ttcompute.models.prm_formats import load_prm

    assert TransformersBackend(str(_save_checkpoint(tmp_path / "policy")), device="cpu").num_parameters > 0
    prm = load_prm(str(_save_checkpoint(tmp_path / "prm", TOKEN_CLASSIFICATION_PRM)), device="cpu")
    assert len(prm.score(["Start at 1. Add 2."], [["1 + 2 = 3"]])[0]) == 1


def test_vllm_backend_loads_safetensors_only_without_remote_code(monkeypatch, tmp_path):
    """vLLM's default load format falls back to pickled ``.bin`` files; ours asks for safetensors."""
    import fake_vllm

    from ttcompute.models.vllm_backend import VLLMBackend

    policy = _save_checkpoint(tmp_path / "policy")
    vllm = fake_vllm.install(monkeypatch, script=lambda prompt_ids, seed: [])
    backend = VLLMBackend(str(policy))
    ((_, kwargs),) = vllm.calls
    assert kwargs["load_format"] == "safetensors"
    assert kwargs["trust_remote_code"] is False
    assert backend.num_parameters > 0  # counted from config.json without running any code


# --- (b) a checkpoint's own code (auto_map) runs only with trust_remote_code ---------------------

PLANTED_MODULE = '''"""Planted by tests/test_safe_loading.py: importing this module is the exploit."""
import os

os.makedirs({marker!r}, exist_ok=True)

from transformers import LlamaConfig, LlamaForCausalLM, LlamaForTokenClassification
from transformers import PreTrainedTokenizerFast


class PlantedConfig(LlamaConfig):
    model_type = {model_type!r}


class PlantedForCausalLM(LlamaForCausalLM):
    config_class = PlantedConfig


class PlantedForTokenClassification(LlamaForTokenClassification):
    config_class = PlantedConfig


class PlantedTokenizerFast(PreTrainedTokenizerFast):
    pass
'''


def _planted_checkpoint(
    path: Path, marker: Path, model_type: str, config_updates: dict | None = None
) -> Path:
    """A checkpoint whose config and tokenizer name custom classes in ``planted.py`` via ``auto_map``.

    ``model_type`` "llama" is one transformers knows (it has local code to use instead); any other
    name can only be built by the planted code.
    """
    auto_map = {
        "AutoConfig": "planted.PlantedConfig",
        "AutoModelForCausalLM": "planted.PlantedForCausalLM",
        "AutoModelForTokenClassification": "planted.PlantedForTokenClassification",
    }
    updates = {"model_type": model_type, "architectures": ["PlantedForCausalLM"], "auto_map": auto_map}
    _save_checkpoint(path, {**updates, **(config_updates or {})})
    _update_json(
        path / "tokenizer_config.json",
        {"auto_map": {"AutoTokenizer": [None, "planted.PlantedTokenizerFast"]}},
    )
    (path / "planted.py").write_text(PLANTED_MODULE.format(marker=str(marker), model_type=model_type))
    return path


def _load_policy(path: Path) -> object:
    from ttcompute.models.backends import load_backend

    return load_backend("transformers", str(path), device="cpu")


def _load_token_classification_prm(path: Path) -> object:
    from ttcompute.models.prm_formats import load_prm

    _update_json(
        path / "config.json", {**TOKEN_CLASSIFICATION_PRM, "architectures": ["PlantedForTokenClassification"]}
    )
    return load_prm(str(path), device="cpu")


def _load_likelihood_prm(path: Path) -> object:
    from ttcompute.models.prm_formats import load_prm

    return load_prm(str(_likelihood_spec(path.parent / "likelihood_prm", path)), device="cpu")


def _count_parameters_for_report(path: Path) -> object:
    from ttcompute.eval.report import parameter_count

    return parameter_count(str(path))


LOADERS = {
    "policy": _load_policy,
    "token_classification_prm": _load_token_classification_prm,
    "likelihood_prm": _load_likelihood_prm,
    "report_parameter_count": _count_parameters_for_report,
}


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_known_model_type_loads_with_stock_code_not_the_planted_code(loader, tmp_path, marker):
    path = _planted_checkpoint(tmp_path / "checkpoint", marker, model_type="llama")
    loaded = LOADERS[loader](path)
    assert loaded is not None
    assert not marker.exists(), f"{loader} imported the checkpoint's own code"


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_unknown_model_type_is_refused_without_running_its_code(loader, tmp_path, marker):
    path = _planted_checkpoint(tmp_path / "checkpoint", marker, model_type="planted_llama")
    with pytest.raises(InputError, match="custom code"):
        LOADERS[loader](path)
    assert not marker.exists(), f"{loader} imported the checkpoint's own code"


def test_ttc_sample_refuses_custom_code_unless_trusted(tmp_path, marker, capsys):
    path = _planted_checkpoint(tmp_path / "checkpoint", marker, model_type="planted_llama")
    argv = ["sample", "--model_name_or_path", str(path), "--num_problems", "1", "--device", "cpu"]
    assert main([*argv, "--output_dir", str(tmp_path / "samples")]) == 2
    assert "custom code" in capsys.readouterr().err
    assert not marker.exists()


def test_trust_remote_code_does_run_the_planted_code(tmp_path, marker, monkeypatch):
    """Control: asked for, the same checkpoint's code runs, so the refusals above are real."""
    import transformers.dynamic_module_utils as dynamic_modules

    from ttcompute.models.hf_backend import TransformersBackend

    # Keep the copied module out of ~/.cache/huggingface/modules and, afterwards, this process.
    monkeypatch.setattr(dynamic_modules, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    imported_before = set(sys.modules)
    path = _planted_checkpoint(tmp_path / "checkpoint", marker, model_type="planted_llama")
    try:
        backend = TransformersBackend(str(path), device="cpu", trust_remote_code=True)
    finally:
        for name in set(sys.modules) - imported_before:
            if name.startswith("transformers_modules"):
                del sys.modules[name]
    assert marker.is_dir()
    assert type(backend.model).__name__ == "PlantedForCausalLM"


# --- the trainers' base models ----------------------------------------------------------------------


def _trainer_data(root: Path) -> dict[str, Path]:
    import datasets

    steps = {"prompt": ["1+2\n"] * 2, "completions": [["1+2=3", "#### 3"]] * 2, "labels": [[1.0, 1.0]] * 2}
    datasets.Dataset.from_dict({**steps, "problem_id": ["p0", "p1"]}).to_json(str(root / "steps.jsonl"))
    revisions = {
        "problem_id": ["p0", "p1"],
        "question": ["Start at 1. Add 2."] * 2,
        "previous_attempts": [[], []],
        "completion": ["1 + 2 = 3\n\nThe answer is \\boxed{3}"] * 2,
    }
    datasets.Dataset.from_dict(revisions).to_parquet(str(root / "revisions.parquet"))
    return {"train-prm": root / "steps.jsonl", "train-reviser": root / "revisions.parquet"}


@pytest.mark.parametrize("stage", ["train-prm", "train-reviser"])
def test_trainers_refuse_pickled_or_custom_code_base_models(stage, tmp_path, marker):
    """Refused, never run. (The trainers raise transformers' own OSError / ValueError here, not yet a
    one-line ``ttc: error``.)"""
    from ttcompute.cli import run_stage

    data = _trainer_data(tmp_path)[stage]
    bases = {
        "pickled": _pickle_weights_only(_save_checkpoint(tmp_path / "pickled"), marker),
        "custom code": _planted_checkpoint(tmp_path / "planted", marker, model_type="planted_llama"),
    }
    for kind, base in bases.items():
        argv = ["--model_name_or_path", str(base), "--dataset_name", str(data), "--max_steps", "1"]
        argv += ["--output_dir", str(tmp_path / kind), "--use_cpu", "true", "--report_to", "none"]
        with pytest.raises((InputError, OSError, ValueError), match="safetensors|custom code"):
            run_stage(stage, [*argv, "--eval_fraction", "0", "--save_strategy", "no"])
    assert not marker.exists()
