"""``models/vllm_backend.py`` against a ``vllm`` built from vLLM's own API (``tests/fake_vllm.py``), at
the lowest and the highest version pyproject allows. vLLM itself needs CUDA; ``make gpu-check`` runs
the real one."""

from __future__ import annotations

import re
from pathlib import Path

import fake_vllm
import pytest
from fake_vllm import HIGHEST, LOWEST, VERSIONS
from packaging.requirements import Requirement
from transformers import AutoTokenizer

from ttcompute.models.generation import Completion, SamplingParams
from ttcompute.models.vllm_backend import VLLMBackend, request_seed

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]


def test_the_vllm_extra_allows_exactly_the_versions_the_table_was_read_from():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (requirement,) = map(Requirement, extras["vllm"])
    allowed = requirement.specifier
    assert allowed.contains(LOWEST) and allowed.contains(HIGHEST)
    # Nothing below the lowest or above the highest: their API was never read.
    assert not allowed.contains("0.7.3") and not allowed.contains(f"{HIGHEST}.post1")
    major, minor, _ = map(int, HIGHEST.split("."))
    assert not allowed.contains(f"{major}.{minor}.1") and not allowed.contains(f"{major}.{minor + 1}.0")


def test_the_table_is_what_the_vllm_source_says():
    """Hand-read from the two sdists (vllm/entrypoints/llm.py, sampling_params.py, outputs.py): a table
    that lost or invented names fails here before any fake is built from it."""
    low, high = (fake_vllm.API["versions"][v] for v in (LOWEST, HIGHEST))
    for table in (low, high):
        assert {
            "n",
            "temperature",
            "top_p",
            "max_tokens",
            "stop",
            "seed",
            "include_stop_str_in_output",
        } <= set(table["SamplingParams"])
        assert {"index", "text", "token_ids", "finish_reason", "stop_reason"} <= set(
            table["CompletionOutput"]
        )
        assert {"load_format", "enable_prefix_caching", "max_model_len"} <= set(table["EngineArgs"])
        assert table["TokensPrompt"]["required"] == ["prompt_token_ids"]
        assert table["SamplingParams.defaults"]["max_tokens"] == 16
    assert "best_of" in low["SamplingParams"] and "best_of" not in high["SamplingParams"]
    # 0.34 made everything after `model` keyword-only and dropped generate's prompt_token_ids.
    assert [p["name"] for p in high["LLM.__init__"]["params"] if p["kind"] != "KEYWORD_ONLY"] == ["model"]
    assert "prompt_token_ids" in [p["name"] for p in low["LLM.generate"]["params"]]
    assert "prompt_token_ids" not in [p["name"] for p in high["LLM.generate"]["params"]]
    assert any(r["when"] == "self.temperature > 2.0" for r in high["SamplingParams.rules"]["verify_args"])
    assert not any("> 2.0" in r["when"] for r in low["SamplingParams.rules"]["verify_args"])


@pytest.mark.parametrize("version", VERSIONS)
def test_the_fake_refuses_what_vllm_refuses(version, random_policy_dir):
    vllm = fake_vllm.build(version, script=lambda ids, seed: [])
    with pytest.raises(TypeError, match="unexpected keyword argument 'enable_prefix_cache'"):
        vllm.LLM(model=str(random_policy_dir), enable_prefix_cache=True)
    with pytest.raises(TypeError, match="Unexpected keyword argument 'stop_strings'"):
        vllm.SamplingParams(stop_strings=["\n"])
    error = (ValueError, vllm.VLLMValidationError)
    with pytest.raises(error, match="n must be 1 when using greedy sampling"):
        vllm.SamplingParams(n=2, temperature=0.0)
    with pytest.raises(error, match="max_tokens must be at least 1"):
        vllm.SamplingParams(max_tokens=0)
    with pytest.raises(error, match="stop cannot contain an empty string"):
        vllm.SamplingParams(stop=[""])
    llm = vllm.LLM(model=str(random_policy_dir))
    with pytest.raises(TypeError, match="unexpected keyword argument 'tqdm'"):
        llm.generate(["a"], vllm.SamplingParams(), tqdm=False)
    with pytest.raises(ValueError, match="lengths of prompts and params must be the same"):
        llm.generate(["a", "b"], [vllm.SamplingParams()])
    with pytest.raises(TypeError, match="TokensPrompt has no key 'token_ids'"):
        llm.generate([{"token_ids": [1, 2]}], vllm.SamplingParams())
    if version == HIGHEST:
        with pytest.raises(vllm.VLLMValidationError, match=r"temperature must be in \[0, 2\]"):
            vllm.SamplingParams(temperature=2.5)
        with pytest.raises(TypeError, match="too many positional arguments"):
            llm.generate(["a"], vllm.SamplingParams(), False)  # use_tqdm became keyword-only
    else:
        assert vllm.SamplingParams(temperature=2.5).temperature == 2.5
        llm.generate(["a"], vllm.SamplingParams(), None, False)


def test_a_bin_only_checkpoint_is_refused_like_vllm_with_safetensors_only(random_policy_dir, tmp_path):
    import shutil

    bin_only = tmp_path / "bin_only"
    shutil.copytree(random_policy_dir, bin_only)
    for weights in bin_only.glob("*.safetensors"):
        weights.unlink()
    vllm = fake_vllm.build(script=lambda ids, seed: [])
    with pytest.raises(RuntimeError, match="Cannot find any model weights"):
        vllm.LLM(model=str(bin_only), load_format="safetensors")


# --- the backend's completions, read exactly -------------------------------------------------------

STOP = "\n\n"


def _scripted(tokenizer, plan: dict[int, str]):
    """Token ids by child seed: the text (``</s>`` marks the EOS token), characters one token each."""

    def script(prompt_ids, seed):
        text = plan[seed]
        ids = tokenizer(text.removesuffix("</s>"), add_special_tokens=False)["input_ids"]
        return ids + ([tokenizer.eos_token_id] if text.endswith("</s>") else [])

    return script


@pytest.mark.parametrize("version", VERSIONS)
def test_the_backend_reads_each_finish_and_puts_completions_back_in_index_order(
    version, monkeypatch, random_policy_dir
):
    tokenizer = AutoTokenizer.from_pretrained(random_policy_dir)
    prompts = ["Start at 1. ", f"{tokenizer.bos_token}Start at 2. "]
    seed = 7
    texts = ["x" * 20, f"ab{STOP}cd", "abc</s>"]  # child j of each request
    plan = {request_seed(seed, i) + j: t for i in range(2) for j, t in enumerate(texts)}
    vllm = fake_vllm.install(monkeypatch, version, script=_scripted(tokenizer, plan))

    backend = VLLMBackend(str(random_policy_dir))
    params = SamplingParams(n=3, temperature=1.0, top_p=0.9, max_tokens=12, stop=[STOP], seed=seed)
    got = backend.generate(prompts, params)

    expected = [
        Completion("x" * 12, 12, "length"),
        Completion(f"ab{STOP}", 4, "stop"),
        Completion("abc", 4, "eos"),  # the EOS token is generated, so counted, but not in the text
    ]
    assert got == [expected, expected]
    (_, request) = vllm.calls[-1]
    # The BOS-led prompt went as its token ids (one BOS), the other as text vLLM tokenizes with its BOS.
    assert request["prompts"] == [
        prompts[0],
        {"prompt_token_ids": tokenizer(prompts[1], add_special_tokens=False)["input_ids"]},
    ]
    assert request["prompts"][1]["prompt_token_ids"].count(tokenizer.bos_token_id) == 1
    sent = request["params"]
    assert [
        (p.n, p.temperature, p.top_p, p.max_tokens, p.stop, p.include_stop_str_in_output) for p in sent
    ] == [(3, 1.0, 0.9, 12, [STOP], True)] * 2
    child_seeds = [p.seed + j for p in sent for j in range(p.n)]
    assert len(set(child_seeds)) == len(child_seeds)  # no two completions share a random stream
    # The fake really returned them out of index order: the sort is what put them back.
    raw = vllm.engines[-1].generate(request["prompts"], sent)
    assert [o.index for o in raw[0].outputs] == [2, 1, 0]


@pytest.mark.parametrize("version", VERSIONS)
def test_greedy_asks_vllm_for_one_completion_and_repeats_it(version, monkeypatch, random_policy_dir):
    tokenizer = AutoTokenizer.from_pretrained(random_policy_dir)
    plan = {request_seed(0, 0): "abc</s>"}
    vllm = fake_vllm.install(monkeypatch, version, script=_scripted(tokenizer, plan))
    got = VLLMBackend(str(random_policy_dir)).generate(
        ["q "], SamplingParams(n=3, temperature=0.0, max_tokens=8)
    )
    assert got == [[Completion("abc", 4, "eos")] * 3]
    assert [p.n for p in vllm.calls[-1][1]["params"]] == [1]


@pytest.mark.parametrize("version", VERSIONS)
def test_sample_seeds_are_one_request_per_completion_with_exactly_that_seed(
    version, monkeypatch, random_policy_dir
):
    tokenizer = AutoTokenizer.from_pretrained(random_policy_dir)
    plan = {11: "a</s>", 12: "bb</s>", 13: "ccc</s>", 14: "x" * 9}
    vllm = fake_vllm.install(monkeypatch, version, script=_scripted(tokenizer, plan))
    params = SamplingParams(n=2, max_tokens=5, sample_seeds=[[11, 12], [13, 14]])
    got = VLLMBackend(str(random_policy_dir)).generate(["p ", "q "], params)
    assert got == [
        [Completion("a", 2, "eos"), Completion("bb", 3, "eos")],
        [Completion("ccc", 4, "eos"), Completion("xxxxx", 5, "length")],
    ]
    sent = vllm.calls[-1][1]
    assert sent["prompts"] == ["p ", "p ", "q ", "q "]
    assert [(p.n, p.seed) for p in sent["params"]] == [(1, 11), (1, 12), (1, 13), (1, 14)]


@pytest.mark.parametrize("version", VERSIONS)
def test_the_engine_options_and_the_context_are_vllms(version, monkeypatch, random_policy_dir):
    import json

    vllm = fake_vllm.install(monkeypatch, version, script=lambda ids, seed: [])
    backend = VLLMBackend(str(random_policy_dir), tensor_parallel_size=2, seed=3)
    (_, options) = vllm.calls[0]
    assert options["model"] == str(random_policy_dir) and options["load_format"] == "safetensors"
    assert (options["tensor_parallel_size"], options["seed"], options["enable_prefix_caching"]) == (
        2,
        3,
        True,
    )
    config = json.loads((random_policy_dir / "config.json").read_text())
    assert backend.max_context == config["max_position_embeddings"]
    assert backend.num_parameters > 0


def test_real_sampling_in_the_fake_is_seeded_per_request(monkeypatch, random_policy_dir):
    """With the model's own tokens (no script): the same seeds give the same completions, other seeds
    other ones, and a request's completion does not depend on the other requests of the call."""
    fake_vllm.install(monkeypatch)
    backend = VLLMBackend(str(random_policy_dir))
    params = SamplingParams(n=1, max_tokens=6, sample_seeds=[[1], [2]])
    first = backend.generate(["a ", "b "], params)
    assert first == backend.generate(["a ", "b "], params)
    alone = backend.generate(["b "], SamplingParams(n=1, max_tokens=6, sample_seeds=[[2]]))
    assert alone[0] == first[1]
    assert all(re.fullmatch(r"length|eos|stop", c.finish_reason) for c in first[0] + first[1])
