"""The MATH recipe (``configs/math/*.yaml``, README "MATH on a GPU (recipe)") on CPU.

Every config is parsed by its stage's own parser (``ttcompute.cli.STAGES``, as ``ttc`` does), resolves
to the values the recipe promises, and fits the stages around it (each stage reads what the previous
one writes; one prompt template everywhere). The Hub policy and vLLM are swapped for the shipped tiny
policy and the transformers backend through the same command-line overrides a user would pass, and
MATH-500 problems load through the package's own source loader from the local copy. No network.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest
import yaml
from conftest import MATH500

from ttcompute.cli import STAGES
from ttcompute.core.config import parse_stage_args
from ttcompute.core.errors import InputError

REPO = Path(__file__).resolve().parents[1]
MATH_CONFIGS = REPO / "configs" / "math"

# config file -> the stage that reads it
CONFIG_STAGES = {
    "sample.yaml": "sample",
    "difficulty.yaml": "difficulty",
    "label.yaml": "label",
    "prm.yaml": "train-prm",
    "revisions.yaml": "revisions",
    "reviser.yaml": "train-reviser",
    "search.yaml": "search",
    "search_revisions.yaml": "search",
    "flops_matched.yaml": "flops-matched",
}
TRAINERS = ("prm.yaml", "reviser.yaml")
HUB_POLICY = "Qwen/Qwen2.5-Math-1.5B-Instruct"
# Qwen2.5-Math-Instruct's chat format with its recommended system prompt, written out: what the
# recipe's prompt contract renders to.
TEMPLATE = (
    "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{{}}."
    "<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
)
BUDGETS = [1, 2, 4, 8, 16, 32, 64, 128, 256]


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    # Config paths (the DeepSpeed JSONs) are relative to the repository root, where ttc runs.
    monkeypatch.chdir(REPO)
    # `--deepspeed` in TrainingArguments may set this for the process; keep it out of other tests.
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "false")


def parse(name: str, *overrides: str) -> tuple:
    """``ttc <stage> --config configs/math/<name> <overrides>``, parsed as ``cli.run_stage`` does."""
    stage = CONFIG_STAGES[name]
    _, specs, _ = STAGES[stage]
    types = tuple(getattr(importlib.import_module(module), cls) for module, cls in specs)
    args = ["--config", str(MATH_CONFIGS / name), *overrides]
    if name in TRAINERS:
        args += ["--bf16", "false"]  # bf16 needs a GPU; the recipe's own value is checked from the YAML
    return parse_stage_args(types, args, prog=f"ttc {stage}")


def raw(name: str) -> dict:
    return yaml.safe_load((MATH_CONFIGS / name).read_text())


def test_every_recipe_file_is_covered() -> None:
    assert sorted(p.name for p in MATH_CONFIGS.glob("*.yaml")) == sorted(CONFIG_STAGES)


@pytest.mark.parametrize("name", sorted(CONFIG_STAGES))
def test_config_parses_with_its_stage(name: str) -> None:
    # An unknown key, a value of the wrong type or a rejected combination raises InputError here.
    configs = parse(name)
    assert len(configs) == len(STAGES[CONFIG_STAGES[name]][1])


@pytest.fixture(scope="module")
def qwen_tokenizer():
    """The Qwen2.5-Math-Instruct tokenizer format (its chat template), built locally."""
    from ttcompute.testing import build_bpe_chat_tokenizer

    texts = [json.loads(line)["problem"] for line in MATH500.read_text().splitlines()[:50]]
    return build_bpe_chat_tokenizer(texts, vocab_size=600)


def test_one_prompt_contract_everywhere(qwen_tokenizer) -> None:
    # sample and both searches give the contract; the stages between them read it from the data
    # (their prompt options stay unset), and search checks the reviser's recorded one against its own.
    from ttcompute.models.generation import build_prompt

    _, sample_gen, _ = parse("sample.yaml")
    _, search_gen, _ = parse("search.yaml")
    _, revisions_gen, _ = parse("search_revisions.yaml")
    contracts = {g.prompt_contract() for g in (sample_gen, search_gen, revisions_gen)}
    assert len(contracts) == 1
    (contract,) = contracts
    assert contract.use_chat_template and contract.prompt_template == "{question}"
    for name in ("prm.yaml", "reviser.yaml", "revisions.yaml"):
        (config,) = parse(name)
        assert (config.prompt_template, config.use_chat_template, config.system_prompt) == (None, None, None)
    # Rendered by Qwen2.5-Math-Instruct's chat template: its conversation with the recommended system
    # prompt, the question alone in the user turn.
    prompt = build_prompt("What is $1+1$?", contract, qwen_tokenizer)
    assert prompt == TEMPLATE.format(question="What is $1+1$?")
    assert "put your final answer within \\boxed{}.<|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>user\nWhat is $1+1$?<|im_end|>\n<|im_start|>assistant\n")


def test_stages_read_what_the_previous_stage_writes() -> None:
    _, _, sample = parse("sample.yaml")
    (difficulty,) = parse("difficulty.yaml")
    _, label = parse("label.yaml")
    (prm,) = parse("prm.yaml")
    (revisions,) = parse("revisions.yaml")
    (reviser,) = parse("reviser.yaml")
    _, _, search = parse("search.yaml")
    _, _, search_revisions = parse("search_revisions.yaml")
    (flops,) = parse("flops_matched.yaml")
    assert label.samples_dir == revisions.samples_dir == sample.output_dir == "runs/math/train_samples"
    assert prm.dataset_name == label.output_dir
    assert reviser.dataset_name == revisions.output_dir
    assert (
        search.prm == search_revisions.prm == prm.output_dir
        and search_revisions.reviser == reviser.output_dir
    )
    assert difficulty.samples_dir == "runs/math/test_samples"  # README: sample.yaml on MATH-500
    assert flops.compute_optimal_dir == "runs/math/compute_optimal"
    outputs = [sample.output_dir, difficulty.output_dir, label.output_dir, prm.output_dir]
    outputs += [revisions.output_dir, reviser.output_dir, search.output_dir, search_revisions.output_dir]
    outputs += [flops.output_dir]
    assert len(set(outputs)) == len(outputs) and all(o.startswith("runs/math/") for o in outputs)
    separators = {difficulty.step_separator, label.step_separator, prm.step_separator}
    assert separators | {search.step_separator, search_revisions.step_separator} == {
        "\n\n"
    }  # MATH: one step per paragraph


def test_sample_recipe_resolves(small_policy_dir, qwen_tokenizer) -> None:
    problem_args, gen, sample = parse("sample.yaml")
    assert (problem_args.task, problem_args.split) == ("math", "train")
    assert problem_args.dataset.endswith("prm800k/math_splits/train.jsonl")
    assert (gen.model_name_or_path, gen.backend) == (HUB_POLICY, "vllm")
    assert gen.backend_kwargs() == {
        "dtype": "auto",
        "tensor_parallel_size": 1,
        "gpu_memory_utilization": 0.9,
        "enable_prefix_caching": True,
        "trust_remote_code": False,
    }
    assert (gen.temperature, gen.max_new_tokens, sample.num_samples) == (0.8, 2048, 64)
    # The training problems are a local file: a missing one is an error here, never a Hub lookup.
    if not (REPO / problem_args.dataset).is_file():
        with pytest.raises(InputError, match="no such file"):
            problem_args.load()

    # The tiny stand-in, with the same flags that would point the recipe at any other checkpoint.
    problem_args, gen, sample = parse(
        "sample.yaml",
        *("--model_name_or_path", str(small_policy_dir), "--backend", "transformers"),
        *("--dataset", str(MATH500), "--split", "test", "--num_problems", "3"),
    )
    assert gen.backend_kwargs()["device"] is None and sample.num_samples == 64
    problems = problem_args.load()
    assert [p.problem_id for p in problems] == [
        "test/precalculus/807.json",
        "test/intermediate_algebra/1994.json",
        "test/algebra/2584.json",
    ]
    from ttcompute.models.backends import load_backend
    from ttcompute.models.generation import build_prompt

    prompt = build_prompt(problems[0].question, gen.prompt_contract(), qwen_tokenizer)
    assert prompt == TEMPLATE.format(question=problems[0].question)
    backend = load_backend(gen.backend, gen.model_name_or_path, **gen.backend_kwargs())
    assert backend.num_parameters == 137_792


def test_label_recipe_resolves() -> None:
    gen, label = parse("label.yaml")
    assert gen.model_name_or_path is None  # rollouts by the samples' own policy
    assert (gen.backend, gen.temperature, gen.max_new_tokens) == ("vllm", 0.8, 2048)
    assert (label.labeller, label.num_rollouts, label.label_type) == ("exhaustive", 16, "soft")
    assert label.max_solutions_per_problem == 16
    gen, _ = parse("label.yaml", "--backend", "transformers", "--model_name_or_path", "runs/x")
    assert (gen.backend, gen.model_name_or_path) == ("transformers", "runs/x")


def _deepspeed_file(config) -> dict:
    path = REPO / config.deepspeed
    assert path.is_file(), f"{config.deepspeed} does not exist"
    return json.loads(path.read_text())


@pytest.mark.parametrize(("name", "zero_stage"), [("prm.yaml", 2), ("reviser.yaml", 3)])
def test_trainer_recipe_resolves(name, zero_stage, small_policy_dir) -> None:
    assert raw(name)["bf16"] is True  # overridden to false on CPU by parse()
    (config,) = parse(name)
    assert config.model_name_or_path == HUB_POLICY
    assert config.use_peft is True and config.lora_target_modules == "all-linear"
    assert config.deepspeed == f"configs/deepspeed/zero{zero_stage}.json"
    ds = _deepspeed_file(config)
    assert ds["zero_optimization"]["stage"] == zero_stage
    assert ds["bf16"] == {"enabled": "auto"}  # follows --bf16
    assert config.hf_deepspeed_config.config["zero_optimization"]["stage"] == zero_stage
    assert config.report_to == []  # "none": nothing logged unless --report_to wandb

    (config,) = parse(name, "--model_name_or_path", str(small_policy_dir), "--output_dir", "runs/tiny")
    assert (config.model_name_or_path, config.output_dir) == (str(small_policy_dir), "runs/tiny")
    assert config.use_peft is True and config.deepspeed == f"configs/deepspeed/zero{zero_stage}.json"


def test_prm_and_reviser_specifics() -> None:
    (prm,) = parse("prm.yaml")
    (reviser,) = parse("reviser.yaml")
    assert (prm.max_length, reviser.max_length) == (3072, 4096)
    assert prm.prm_kind == "token_classification" and prm.train_on_last_step_only is False
    assert reviser.completion_only_loss is True and reviser.activation_checkpointing is True


def test_search_recipe_resolves(small_policy_dir) -> None:
    from ttcompute.eval.search.stage import plan_runs

    problem_args, gen, search = parse("search.yaml")
    assert (problem_args.task, problem_args.dataset, problem_args.split) == (
        "math",
        "HuggingFaceH4/MATH-500",
        "test",
    )
    assert problem_args.num_problems is None  # all 500
    assert (gen.model_name_or_path, gen.backend) == (HUB_POLICY, "vllm")
    assert gen.backend_kwargs()["gpu_memory_utilization"] == 0.5  # one vLLM engine + the PRM on a GPU
    assert search.methods == ["best_of_n", "beam_search", "lookahead", "dvts"]
    assert search.budgets == BUDGETS
    assert (search.beam_widths, search.lookahead_steps, search.dvts_widths) == (["4", "sqrt"], [3], ["4"])
    assert (search.max_rounds, search.prm_dtype) == (40, "bfloat16")

    runs = plan_runs(search)
    by_method = {m: [r for r in runs if r.method == m] for m in search.methods}
    assert [(r.budget, r.num_beams) for r in by_method["best_of_n"]] == [(256, 256)]
    assert min(r.budget for r in by_method["lookahead"]) == 4  # k = 3 costs N x 4
    assert all(by_method[m] for m in search.methods)

    # The reviser's chains: a search of their own (a process holds one vLLM engine).
    _, revisions_gen, revisions = parse("search_revisions.yaml")
    assert revisions.methods == ["revisions"] and revisions.reviser == "runs/math/reviser"
    assert revisions_gen.backend == "vllm" and revisions.output_dir == "runs/math/search_revisions"
    assert revisions.budgets == BUDGETS and revisions.revision_lengths == BUDGETS
    assert (revisions.verifier_context, revisions.prm) == ("question", search.prm)
    # one run per chain length L, at the largest budget (smaller budgets are its first chains).
    assert [(r.chain_length, r.budget) for r in plan_runs(revisions)] == [(b, max(BUDGETS)) for b in BUDGETS]

    problem_args, gen, search = parse(
        "search.yaml",
        *("--model_name_or_path", str(small_policy_dir), "--backend", "transformers"),
        *("--dataset", str(MATH500), "--num_problems", "4", "--budgets", "1", "4"),
    )
    assert gen.backend == "transformers" and search.budgets == [1, 4]
    problems = problem_args.load()
    assert len(problems) == 4
    assert all(re.fullmatch(r"test/[a-z_]+/\d+\.json", p.problem_id) for p in problems)
    assert all(p.metadata["level"] in range(1, 6) and p.answer for p in problems)
    assert [p.answer for p in problems[:3]] == [
        "\\left( 3, \\frac{\\pi}{2} \\right)",
        "p - q",
        "\\frac{14}{3}",
    ]


def test_difficulty_recipe_resolves() -> None:
    (difficulty,) = parse("difficulty.yaml")
    assert (difficulty.num_bins, difficulty.predictor, difficulty.prm) == (5, "oracle", None)
    (probe,) = parse("difficulty.yaml", "--predictor", "prm_probe", "--prm", "runs/math/prm")
    assert probe.predictor == "prm_probe" and probe.output_dir == "runs/math/difficulty"


def test_flops_matched_recipe_resolves() -> None:
    from ttcompute.eval.flops_matched import matched_generations

    (flops,) = parse("flops_matched.yaml")
    assert flops.small_model is None and flops.large_model is None  # Hub models: no training_log.json
    assert flops.ratios == [0.16, 0.79, 22.0]
    assert flops.small_pretrain_tokens == flops.large_pretrain_tokens
    multiple = flops.large_params / flops.small_params
    assert 4.9 < multiple < 5.0
    for ratio in flops.ratios:  # equal D_pretrain: the paper's M + 3 (M - 1) / R
        matched = matched_generations(
            flops.small_params,
            flops.large_params,
            ratio,
            flops.small_pretrain_tokens,
            flops.large_pretrain_tokens,
        )
        assert matched == pytest.approx(multiple + 3 * (multiple - 1) / ratio)


def test_readme_recipe_names_every_config() -> None:
    section = (REPO / "docs" / "recipes" / "math_1gpu.md").read_text()  # the recipe moved out of the README
    named = set(re.findall(r"configs/math/([a-z_]+\.yaml)", section))
    assert named == set(CONFIG_STAGES)
    for path in re.findall(r"configs/(?:deepspeed|accelerate)/[a-z0-9_]+\.(?:json|yaml)", section):
        assert (REPO / path).is_file(), path
    assert "pip install -e '.[vllm]'" in section
