"""The MATH recipe (README "MATH on a GPU (recipe)") rehearsed end to end on CPU, chat template on.

Every stage runs from its ``configs/math/*.yaml`` with only size and device overrides (fewer problems,
samples, rollouts, steps and budgets; vLLM stood in for by tests/fake_vllm.py, float32 for bf16, no
DeepSpeed -- ``test_the_recipe_trains_under_deepspeed_zero2`` is the slow twin that keeps it), on the
Qwen2.5-format stand-in (byte-level BPE trained on MATH-500/GSM8K text, Qwen2.5-Math-Instruct's chat
template) with a tiny random Qwen2 policy, on a few MATH-500 problems:

    sample (train, test) -> difficulty (oracle, prm) -> label -> train-prm (LoRA) -> eval-prm
    -> revisions -> train-reviser (LoRA) -> search (policy methods) + search (revisions)
    -> select (each) -> compute-optimal (both) -> report

A random policy never reaches an answer, so each train problem's reference solution (and every
other test problem's) is put among its samples after ``ttc sample`` ran -- the prompts stay the ones
the stage built; quality is not the point, formats and the prompt contract are. The tests after the
rehearsal check what crossed each stage boundary, and that a contract that does not fit is refused.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from conftest import GSM8K_TEST_HEAD, MATH500, check_merged_lora_checkpoint, free_port, write_jsonl
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from ttcompute.cli import run_stage
from ttcompute.core.errors import InputError
from ttcompute.core.grading import extract_answer, is_equivalent
from ttcompute.core.prompts import PromptContract, read_contract
from ttcompute.core.shards import load_sharded, read_manifest, shard_path, write_shard
from ttcompute.data_gen.sample import SAMPLE_SCHEMA
from ttcompute.eval.search.revision_chains import revision_chains
from ttcompute.models.generation import build_prompt
from ttcompute.models.hf_backend import TransformersBackend
from ttcompute.models.prm_formats import load_prm
from ttcompute.models.reviser import FORMAT_VERSION, format_reviser_prompt
from ttcompute.testing import (
    LLAMA2_CHAT_TEMPLATE,
    build_bpe_chat_tokenizer,
    build_sentencepiece_llama_tokenizer,
    build_tiny_llama_on,
    build_tiny_qwen2,
)

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "math"
SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
CONTRACT = PromptContract("{question}", True, SYSTEM)  # what configs/math/sample.yaml and search*.yaml say
NUM_TRAIN, NUM_TEST = 4, 4

pytestmark = pytest.mark.usefixtures("one_torch_thread", "vllm_stand_in")


@pytest.fixture(scope="module")
def vllm_stand_in():
    """``import vllm`` gives the stand-in built from vLLM's API for this module's stages."""
    import fake_vllm

    with pytest.MonkeyPatch.context() as patch:
        yield fake_vllm.install(patch)


# The overrides that make each stage toy-sized on CPU; nothing else differs from the recipe.
TRAINER_OVERRIDES = [
    *("--max_steps", "2", "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1"),
    *("--max_length", "384", "--eval_steps", "2", "--save_steps", "2", "--logging_steps", "1"),
    *("--bf16", "false", "--use_cpu", "true"),
]
# The recipe's own backend, vLLM: here the stand-in built from vLLM's API (tests/fake_vllm.py), which
# samples from the tiny policy on the CPU (`vllm_stand_in` below).
GENERATION_OVERRIDES = ["--max_new_tokens", "24"]
SEARCH_OVERRIDES = [
    *GENERATION_OVERRIDES,
    *("--budgets", "1", "2", "4", "--max_rounds", "3", "--max_step_tokens", "12", "--prm_dtype", "float32"),
]


def stage(name: str, config: str | None, *overrides: str) -> dict:
    args = (["--config", str(RECIPE / config)] if config else []) + [str(o) for o in overrides]
    return run_stage(name, args)


def put_reference_solutions(samples_dir: Path, rows: list[dict], which) -> None:
    """The reference solution as sample 0 of every problem ``which(i)`` selects, graded as sample grades;
    each shard rewritten in place."""
    by_id = {row["unique_id"]: (i, row) for i, row in enumerate(rows)}
    for path in sorted(samples_dir.glob("shard-*.parquet")):
        index = int(path.stem.split("-")[1])
        samples = pq.read_table(path).to_pylist()
        for sample in samples:
            i, row = by_id[sample["problem_id"]]
            if which(i):
                sample["completions"][0] = row["solution"]
            sample["answers"] = [extract_answer(text) for text in sample["completions"]]
            sample["correct"] = [
                a is not None and is_equivalent(a, sample["gold_answer"]) for a in sample["answers"]
            ]
        path.unlink()
        write_shard(samples_dir, index, samples, SAMPLE_SCHEMA)


class Rehearsal:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.kind = ""
        self.seconds: dict[str, float] = {}

    def __getattr__(self, name: str) -> Path:
        return self.root / name

    def run(self, label: str, name: str, config: str | None, *overrides) -> dict:
        start = time.perf_counter()
        result = stage(name, config, *overrides)
        self.seconds[label] = round(time.perf_counter() - start, 1)
        return result


# How each stand-in renders the recipe's system prompt and a question: Qwen2.5-Math-Instruct's
# conversation, and Llama-2-chat's (whose template writes the BOS itself).
TURN_HEAD = {
    "bpe": f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n",
    "sentencepiece": f"<s>[INST] <<SYS>>\n{SYSTEM}\n<</SYS>>\n\n",
}
TURN_TAIL = {"bpe": "<|im_end|>\n<|im_start|>assistant\n", "sentencepiece": " [/INST]"}


# The SentencePiece stand-in reruns the whole rehearsal (~30 s): `make test-slow`; BPE runs by default.
@pytest.fixture(scope="module", params=["bpe", pytest.param("sentencepiece", marks=pytest.mark.slow)])
def rehearsal(request, tmp_path_factory) -> Rehearsal:
    kind = request.param
    root = tmp_path_factory.mktemp(f"math_recipe_{kind}")
    r = Rehearsal(root)
    r.kind = kind
    rows = [json.loads(line) for line in MATH500.read_text().splitlines()]
    texts = [row["problem"] + "\n\n" + row["solution"] for row in rows]
    texts += [json.loads(line)["answer"] for line in GSM8K_TEST_HEAD.read_text().splitlines()]
    # Newline tokens favoured: the policy ends a step every few tokens, as a MATH policy ends paragraphs
    # (a newline is a single byte token for SentencePiece: it needs the larger boost).
    if kind == "bpe":
        tokenizer = build_bpe_chat_tokenizer(texts)
        policy = build_tiny_qwen2(tokenizer, root / "policy", seed=0, favoured_text="\n", favoured_boost=4.0)
    else:
        tokenizer = build_sentencepiece_llama_tokenizer(texts, chat_template=LLAMA2_CHAT_TEMPLATE)
        policy = build_tiny_llama_on(
            tokenizer, root / "policy", seed=0, favoured_text="\n", favoured_boost=10.0
        )
    # Short problems with multi-paragraph solutions keep the toy run short.
    picked = sorted(
        (row for row in rows if row["solution"].count("\n\n") >= 2), key=lambda x: len(x["solution"])
    )
    train, test = picked[:NUM_TRAIN], picked[NUM_TRAIN : NUM_TRAIN + NUM_TEST]
    write_jsonl(root / "train.jsonl", train)
    write_jsonl(root / "test.jsonl", test)
    start = time.perf_counter()
    p = str(policy)

    # 1. Samples on the train problems and on the test problems (for the oracle bins).
    sample_size = [
        *GENERATION_OVERRIDES,
        "--model_name_or_path",
        p,
        "--num_samples",
        "4",
        "--problems_per_shard",
        "2",
    ]
    r.run(
        "sample (train)",
        "sample",
        "sample.yaml",
        *sample_size,
        "--dataset",
        root / "train.jsonl",
        "--output_dir",
        r.train_samples,
    )
    put_reference_solutions(r.train_samples, train, lambda i: True)
    r.run(
        "sample (test)",
        "sample",
        "sample.yaml",
        *sample_size,
        "--dataset",
        root / "test.jsonl",
        "--split",
        "test",
        "--output_dir",
        r.test_samples,
    )
    put_reference_solutions(r.test_samples, test, lambda i: i % 2 == 0)
    r.run(
        "difficulty (oracle)",
        "difficulty",
        "difficulty.yaml",
        "--samples_dir",
        r.test_samples,
        "--output_dir",
        r.difficulty,
        "--num_bins",
        "2",
    )

    # 2. PRM: MC labels, LoRA training (from the policy, as the recipe), difficulty by PRM, eval-prm.
    r.run(
        "label",
        "label",
        "label.yaml",
        "--samples_dir",
        r.train_samples,
        "--output_dir",
        r.labels,
        *GENERATION_OVERRIDES,
        "--num_rollouts",
        "2",
        "--max_solutions_per_problem",
        "2",
        "--max_new_tokens",
        "16",
        "--problems_per_shard",
        "2",
    )
    r.run(
        "train-prm (LoRA)",
        "train-prm",
        "prm.yaml",
        "--model_name_or_path",
        p,
        "--dataset_name",
        r.labels,
        "--output_dir",
        r.prm,
        "--deepspeed",
        "",
        "--eval_fraction",
        "0.25",
        *TRAINER_OVERRIDES,
    )
    r.run(
        "difficulty (prm)",
        "difficulty",
        "difficulty.yaml",
        "--samples_dir",
        r.test_samples,
        "--output_dir",
        r.difficulty_prm,
        "--num_bins",
        "2",
        "--predictor",
        "prm",
        "--prm",
        r.prm,
    )
    r.run("eval-prm", "eval-prm", None, "--prm", r.prm, "--dataset", r.labels, "--output_dir", r.eval_prm)

    # 3. Reviser: trajectories, LoRA training.
    r.run(
        "revisions",
        "revisions",
        "revisions.yaml",
        "--samples_dir",
        r.train_samples,
        "--output_dir",
        r.revisions,
        "--problems_per_shard",
        "2",
    )
    r.run(
        "train-reviser (LoRA)",
        "train-reviser",
        "reviser.yaml",
        "--model_name_or_path",
        p,
        "--dataset_name",
        r.revisions,
        "--output_dir",
        r.reviser,
        "--deepspeed",
        "",
        "--eval_fraction",
        "0",
        *TRAINER_OVERRIDES,
    )

    # 4. Search: the policy's methods, then the reviser's chains; select each; compute-optimal; report.
    test_problems = ["--dataset", root / "test.jsonl", "--model_name_or_path", p, "--prm", r.prm]
    r.run(
        "search (policy methods)",
        "search",
        "search.yaml",
        *test_problems,
        *SEARCH_OVERRIDES,
        "--output_dir",
        r.search,
    )
    r.run(
        "search (revisions)",
        "search",
        "search_revisions.yaml",
        *test_problems,
        *SEARCH_OVERRIDES,
        "--reviser",
        r.reviser,
        "--revision_lengths",
        "1",
        "2",
        "4",
        "--output_dir",
        r.search_revisions,
    )
    r.run(
        "select",
        "select",
        None,
        "--search_dir",
        r.search,
        "--difficulty_dir",
        r.difficulty,
        "--output_dir",
        r.select,
    )
    r.run(
        "select (revisions)",
        "select",
        None,
        "--search_dir",
        r.search_revisions,
        "--difficulty_dir",
        r.difficulty,
        "--output_dir",
        r.select_revisions,
    )
    r.run(
        "compute-optimal",
        "compute-optimal",
        None,
        "--select_dirs",
        r.select,
        r.select_revisions,
        "--difficulty_dir",
        r.difficulty,
        "--output_dir",
        r.compute_optimal,
    )
    r.run(
        "report",
        "report",
        None,
        "--output_dir",
        r.report,
        "--policy_small",
        p,
        "--small_samples_dir",
        r.test_samples,
        "--prm_eval_dir",
        r.eval_prm,
        "--select_dirs",
        r.select,
        r.select_revisions,
        "--compute_optimal_dir",
        r.compute_optimal,
        "--cost_dirs",
        r.train_samples,
        r.test_samples,
        r.labels,
        r.search,
        r.search_revisions,
    )
    r.seconds["total"] = round(time.perf_counter() - start, 1)
    logging.getLogger(__name__).info("MATH recipe rehearsal: %s", r.seconds)
    (root / "seconds.json").write_text(json.dumps(r.seconds, indent=2))
    return r


def test_the_recipe_runs_end_to_end_on_the_stand_ins(rehearsal):
    methods = {row["method"] for row in load_sharded(rehearsal.search)}
    assert methods == {"best_of_n", "beam_search", "lookahead", "dvts"}
    assert {row["method"] for row in load_sharded(rehearsal.search_revisions)} == {"revisions"}
    for directory in (rehearsal.select, rehearsal.select_revisions):
        assert (directory / "selections.parquet").is_file()
    assert json.loads((rehearsal.compute_optimal / "compute_optimal.json").read_text())
    report = (rehearsal.report / "report.md").read_text()
    # Each method's row of the accuracy table (a bare word would match the report's prose).
    for method in ("best_of_n", "beam_search", "revisions"):
        assert re.search(rf"^\| {method} \|", report, re.M), method
    assert (rehearsal.difficulty_prm / "difficulty.parquet").is_file()


def test_the_recipes_generation_went_through_vllm(rehearsal, vllm_stand_in):
    """sample, label and both searches ran the recipe's backend: every engine is the policy's or the
    reviser's, loaded from safetensors, and its requests are what the stages asked for."""
    models = {str(rehearsal.policy), str(rehearsal.reviser)}
    engines = [e for e in vllm_stand_in.engines if e.options["model"] in models]
    assert {e.options["model"] for e in engines} == models
    assert all(e.options["load_format"] == "safetensors" for e in engines)
    requests = [call for name, call in vllm_stand_in.calls if name == "generate"]
    stops = {tuple(p.stop) for call in requests for p in call["params"]}
    assert ("\n\n",) in stops  # step-level search asked for steps


def test_every_stage_records_and_reads_one_prompt_contract(rehearsal):
    tokenizer = AutoTokenizer.from_pretrained(rehearsal.policy)
    for directory in (
        rehearsal.train_samples,
        rehearsal.labels,
        rehearsal.revisions,
        rehearsal.search,
        rehearsal.search_revisions,
    ):
        assert read_contract(directory) == CONTRACT, directory
    assert read_manifest(rehearsal.revisions)["info"]["reviser_format"] == FORMAT_VERSION
    # The prompts are the stand-in's conversation, the question alone in the user turn.
    for row in load_sharded(rehearsal.train_samples):
        assert row["prompt"] == TURN_HEAD[rehearsal.kind] + row["question"] + TURN_TAIL[rehearsal.kind]
    for row in load_sharded(rehearsal.labels):
        assert row["prompt"] == build_prompt(row["question"], CONTRACT, tokenizer)
    # Trajectories: one user turn holding the attempts, then the question (a real conversation).
    trajectories = list(load_sharded(rehearsal.revisions))
    assert any(row["previous_attempts"] for row in trajectories)
    for row in trajectories:
        attempts = row["previous_attempts"]
        turn = "".join(f"Attempt:\n{a.strip(chr(10))}\n" for a in attempts)
        turn += ("Revision:\n" if attempts else "") + row["question"]
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": turn}]
        assert row["prompt"] == tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
    # The checkpoints record it, and load_prm scores the labels' own prompts.
    prm_record = json.loads((rehearsal.prm / "config.json").read_text())["ttc_prm"]
    reviser_record = json.loads((rehearsal.reviser / "config.json").read_text())["ttc_reviser"]
    for record in (prm_record, reviser_record):
        assert PromptContract.from_record(record, "checkpoint") == CONTRACT
    assert reviser_record["reviser_format"] == FORMAT_VERSION
    for what in ("resolved",):
        resolved = (rehearsal.reviser / "ttc_config.yaml").read_text()
        assert "use_chat_template: true" in resolved, what
    card = (rehearsal.reviser / "README.md").read_text()
    assert "user turn" in card and SYSTEM in card


def test_the_reviser_card_code_builds_the_prompts_it_was_trained_on(rehearsal):
    card = (rehearsal.reviser / "README.md").read_text()
    snippet = card.split("```python\n", 1)[1].split("```", 1)[0]
    snippet = snippet.replace(
        f'model_id = "{rehearsal.reviser.name}"', f"model_id = {str(rehearsal.reviser)!r}"
    )
    scope: dict = {}
    exec(snippet, scope)
    tokenizer = AutoTokenizer.from_pretrained(rehearsal.reviser)
    for row in list(load_sharded(rehearsal.revisions))[:6]:
        built = scope["reviser_prompt"](row["question"], row["previous_attempts"])
        assert (
            built
            == row["prompt"]
            == format_reviser_prompt(row["question"], row["previous_attempts"], CONTRACT, tokenizer)
        )


class RecordingBackend:
    """A backend that keeps every prompt it is asked to continue."""

    def __init__(self, backend) -> None:
        self.backend, self.prompts = backend, []
        self.tokenizer, self.num_parameters = backend.tokenizer, backend.num_parameters
        self.max_context = getattr(backend, "max_context", None)

    def generate(self, prompts, params):
        self.prompts.append(list(prompts))
        return self.backend.generate(prompts, params)

    def __getattr__(self, name):
        return getattr(self.backend, name)


def test_revision_chains_and_the_policy_see_the_same_question_prompt(rehearsal):
    problems = [json.loads(line) for line in (rehearsal.root / "test.jsonl").read_text().splitlines()][:2]
    questions = [p["problem"] for p in problems]
    reviser = RecordingBackend(TransformersBackend(str(rehearsal.reviser), device="cpu"))
    outcomes = revision_chains(
        questions, reviser, None, num_chains=1, chain_length=3, max_tokens=16, contract=CONTRACT
    )
    tokenizer = reviser.tokenizer
    policy_prompts = [build_prompt(q, CONTRACT, tokenizer) for q in questions]
    assert reviser.prompts[0] == policy_prompts  # attempt 0: exactly the other methods' prompt
    for position in (1, 2):
        for p, question in enumerate(questions):
            shown = [c.text for c in outcomes[p].candidates[:position] if c.text.strip()]
            assert reviser.prompts[position][p] == format_reviser_prompt(question, shown, CONTRACT, tokenizer)


def test_orm_data_gives_the_history_verifier_the_revisers_prompts(rehearsal, tmp_path):
    out = tmp_path / "orm"
    stage("orm-data", None, "--search_dir", rehearsal.search_revisions, "--output_dir", out)
    contract = read_contract(out)
    assert contract == PromptContract("{question}\n", True, SYSTEM)
    tokenizer = AutoTokenizer.from_pretrained(rehearsal.reviser)
    rows = list(load_sharded(out))
    assert rows and any("Attempt:" in row["question"] for row in rows)
    for row in rows:
        assert build_prompt(row["question"], contract, tokenizer) == row["prompt"]
        assert row["prompt"].startswith(TURN_HEAD[rehearsal.kind])


# --------------------------------------------------------------------------------------------------
# A contract that does not fit is refused in one line, nothing written


def assert_refused(match: str, name: str, config: str | None, *overrides, out: Path) -> None:
    with pytest.raises(InputError, match=match) as err:
        stage(name, config, *overrides, "--output_dir", out)
    assert "\n" not in str(err.value)
    assert not out.exists()


def test_a_search_whose_prompts_differ_from_the_revisers_is_refused(rehearsal, tmp_path):
    base = [
        "--dataset",
        rehearsal.root / "test.jsonl",
        "--model_name_or_path",
        rehearsal.policy,
        "--prm",
        rehearsal.prm,
        *SEARCH_OVERRIDES,
        "--revision_lengths",
        "1",
    ]
    assert_refused(
        r"trained on prompts with .*system prompt 'Please reason.*this search builds .*system prompt 'Be brief.'",
        "search",
        "search_revisions.yaml",
        *base,
        "--reviser",
        rehearsal.reviser,
        "--system_prompt",
        "Be brief.",
        out=tmp_path / "a",
    )
    # A reviser checkpoint of another reviser format.
    other = tmp_path / "old_reviser"
    shutil.copytree(rehearsal.reviser, other)
    config = json.loads((other / "config.json").read_text())
    config["ttc_reviser"]["reviser_format"] = 2
    (other / "config.json").write_text(json.dumps(config))
    assert_refused(
        "reviser format 2", "search", "search_revisions.yaml", *base, "--reviser", other, out=tmp_path / "b"
    )


def test_a_reviser_that_records_no_contract_follows_the_search(rehearsal, tmp_path, caplog):
    bare = tmp_path / "bare_reviser"
    shutil.copytree(rehearsal.reviser, bare)
    config = json.loads((bare / "config.json").read_text())
    del config["ttc_reviser"]
    (bare / "config.json").write_text(json.dumps(config))
    with caplog.at_level(logging.WARNING):
        stage(
            "search",
            "search_revisions.yaml",
            "--dataset",
            rehearsal.root / "test.jsonl",
            "--prm",
            rehearsal.prm,
            "--reviser",
            bare,
            *SEARCH_OVERRIDES,
            "--budgets",
            "1",
            "--revision_lengths",
            "1",
            "--output_dir",
            tmp_path / "out",
        )
    assert any("records no prompt contract" in message for message in caplog.messages)
    assert read_contract(tmp_path / "out") == CONTRACT


def test_stages_refuse_flags_that_contradict_the_recorded_contract(rehearsal, tmp_path):
    assert_refused(
        r"--use_chat_template False contradicts the prompt contract recorded in .*train_samples",
        "revisions",
        "revisions.yaml",
        "--samples_dir",
        rehearsal.train_samples,
        "--use_chat_template",
        "false",
        out=tmp_path / "revisions",
    )
    assert_refused(
        r"--system_prompt 'Be brief.' contradicts .*\(system_prompt 'Please reason",
        "train-reviser",
        "reviser.yaml",
        "--model_name_or_path",
        rehearsal.policy,
        "--dataset_name",
        rehearsal.revisions,
        "--system_prompt",
        "Be brief.",
        "--deepspeed",
        "",
        *TRAINER_OVERRIDES,
        out=tmp_path / "reviser",
    )
    assert_refused(
        r"--prompt_template 'Q: \{question\}' contradicts",
        "train-prm",
        "prm.yaml",
        "--model_name_or_path",
        rehearsal.policy,
        "--dataset_name",
        rehearsal.labels,
        "--prompt_template",
        "Q: {question}",
        "--deepspeed",
        "",
        *TRAINER_OVERRIDES,
        out=tmp_path / "prm",
    )


def test_a_chat_template_the_tokenizer_lacks_is_refused(rehearsal, tmp_path):
    # The SentencePiece stand-in has no chat template: rendering the samples' chat prompts with it fails.
    texts = [json.loads(line)["problem"] for line in MATH500.read_text().splitlines()[:200]]
    plain = build_sentencepiece_llama_tokenizer(texts, vocab_size=400)
    plain.save_pretrained(tmp_path / "plain")
    assert_refused(
        "has no chat template",
        "revisions",
        "revisions.yaml",
        "--samples_dir",
        rehearsal.train_samples,
        "--tokenizer_name_or_path",
        tmp_path / "plain",
        out=tmp_path / "revisions",
    )


def test_trajectories_of_another_reviser_format_are_refused(rehearsal, tmp_path):
    old = tmp_path / "old_revisions"
    shutil.copytree(rehearsal.revisions, old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["info"]["reviser_format"] = 2
    (old / "manifest.json").write_text(json.dumps(manifest))
    assert_refused(
        "trajectories in reviser format 2",
        "train-reviser",
        "reviser.yaml",
        "--model_name_or_path",
        rehearsal.policy,
        "--dataset_name",
        old,
        "--deepspeed",
        "",
        *TRAINER_OVERRIDES,
        out=tmp_path / "reviser",
    )
    assert shard_path(old, 0).is_file()


def test_the_prm_recipe_trains_without_held_out_problems(rehearsal, tmp_path):
    # The recipe evaluates every 500 steps (eval_strategy: steps); with --eval_fraction 0 there is
    # nothing to evaluate and train-prm must not hand the Trainer a strategy it refuses.
    out = tmp_path / "prm"
    stage("train-prm", "prm.yaml", "--model_name_or_path", rehearsal.policy, "--dataset_name", rehearsal.labels,
          "--output_dir", out, "--deepspeed", "", "--eval_fraction", "0", *TRAINER_OVERRIDES)  # fmt: skip
    assert json.loads((out / "training_log.json").read_text())["global_steps"] == 2


# --------------------------------------------------------------------------------------------------
# The slow twins: both trainers of the recipe under `deepspeed --num_gpus 2`, ZeRO-2 on CPU (gloo);
# the reviser also under its recipe's own ZeRO-3


def deepspeed_launch(
    stage_name: str, config: str, *overrides, timeout: int = 900
) -> subprocess.CompletedProcess:
    launcher = Path(sys.executable).parent / "deepspeed"
    if not launcher.is_file():
        pytest.skip(f"no deepspeed launcher at {launcher}")
    command = [
        str(launcher),
        "--num_gpus",
        "2",
        "--master_port",
        str(free_port()),
        "--module",
        "ttcompute.cli",
    ]
    command += [stage_name, "--config", str(RECIPE / config), *[str(o) for o in overrides]]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "LOCAL_RANK", "RANK"))}
    env.update(
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TORCH_EXTENSIONS_DIR=str(REPO / ".cache" / "torch_extensions"),
        TTC_LOG_LEVEL="INFO",
    )
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


@pytest.mark.slow
def test_the_recipe_trains_under_deepspeed_zero2(rehearsal, tmp_path):
    """train-prm (its recipe's own ZeRO-2 JSON) and train-reviser (ZeRO-2 instead of the recipe's
    ZeRO-3, which the next test keeps) on the rehearsal's labels and trajectories, two CPU processes;
    about a minute."""
    pytest.importorskip("deepspeed", reason="deepspeed is not installed")
    trainer_overrides = [o for o in TRAINER_OVERRIDES if o not in ("--use_cpu", "true")]
    runs = {
        "prm": deepspeed_launch(
            "train-prm", "prm.yaml", "--model_name_or_path", rehearsal.policy, "--dataset_name", rehearsal.labels,
            "--output_dir", tmp_path / "prm", "--eval_fraction", "0", *trainer_overrides,
        ),
        "reviser": deepspeed_launch(
            "train-reviser", "reviser.yaml", "--model_name_or_path", rehearsal.policy, "--dataset_name",
            rehearsal.revisions, "--output_dir", tmp_path / "reviser", "--deepspeed", "configs/deepspeed/zero2.json",
            "--eval_fraction", "0", *trainer_overrides,
        ),
    }  # fmt: skip
    for name, result in runs.items():
        out = tmp_path / name
        log = json.loads((out / "training_log.json").read_text())
        assert log["distributed"] == {
            "distributed_type": "DEEPSPEED",
            "world_size": 2,
            "backend": "gloo",
            "zero_stage": 2,
        }, name
        assert log["global_steps"] == 2
        assert "DDP constructor" not in result.stdout + result.stderr
        key = {"prm": "ttc_prm", "reviser": "ttc_reviser"}[name]
        record = json.loads((out / "config.json").read_text())[key]
        assert PromptContract.from_record(record, key) == CONTRACT, name
        assert (out / "lora_adapter").is_dir() and not list(out.glob("adapter_model*")), name
    # The ZeRO-2 PRM scores the labels' prompts as the single-process one reads them.
    prm = load_prm(str(tmp_path / "prm"), device="cpu")
    row = next(iter(load_sharded(rehearsal.labels)))
    assert len(prm.score([row["question"]], [row["completions"]])[0]) == len(row["completions"])


@pytest.mark.slow
def test_the_reviser_recipe_trains_under_its_own_deepspeed_zero3(rehearsal, tmp_path):
    """train-reviser as the recipe has it -- LoRA on all linear layers, its own ZeRO-3 JSON, merged
    when saved -- on the rehearsal's trajectories, two CPU processes. ZeRO-3 partitions every weight,
    so the save must gather them: the merged checkpoint is base + the trained adapter in every
    LoRA-targeted matrix, every tensor at its full shape; 20-40 s on 2 cores."""
    pytest.importorskip("deepspeed", reason="deepspeed is not installed")
    out = tmp_path / "reviser"
    trainer_overrides = [o for o in TRAINER_OVERRIDES if o not in ("--use_cpu", "true")]
    # A learning rate that moves the adapters visibly in two steps (the recipe's 1e-4 barely does).
    result = deepspeed_launch(
        "train-reviser", "reviser.yaml", "--model_name_or_path", rehearsal.policy, "--dataset_name",
        rehearsal.revisions, "--output_dir", out, "--eval_fraction", "0", *trainer_overrides,
        "--learning_rate", "1e-2",
    )  # fmt: skip
    log = json.loads((out / "training_log.json").read_text())
    assert log["distributed"] == {
        "distributed_type": "DEEPSPEED",
        "world_size": 2,
        "backend": "gloo",
        "zero_stage": 3,
    }
    assert log["global_steps"] == 2
    assert "DDP constructor" not in result.stdout + result.stderr
    record = json.loads((out / "config.json").read_text())["ttc_reviser"]
    assert PromptContract.from_record(record, "ttc_reviser") == CONTRACT

    tokenizer = AutoTokenizer.from_pretrained(out)
    row = next(iter(load_sharded(rehearsal.revisions)))
    ids = torch.tensor([tokenizer(row["prompt"] + row["completion"]).input_ids[:96]])
    _, adapter, merged = check_merged_lora_checkpoint(out, rehearsal.policy, AutoModelForCausalLM, ids)
    assert not list(out.glob("adapter_model*"))
    # Partitioned weights saved ungathered are empty (or flat) tensors: every tensor has its full shape.
    base = load_file(rehearsal.policy / "model.safetensors")
    assert {k: v.shape for k, v in merged.items()} == {k: v.shape for k, v in base.items()}
    targeted = set()
    for key, weight in adapter.items():
        module, part = re.fullmatch(r"base_model\.model\.(.+)\.(lora_[AB])\.weight", key).groups()
        rows, columns = base[module + ".weight"].shape
        assert weight.shape == ((16, columns) if part == "lora_A" else (rows, 16)), key
        targeted.add(module + ".weight")
    # all-linear: every matrix of every block, each merged with its trained adapter (not the base's);
    # everything else (embeddings, norms) exactly as the base has it.
    assert targeted == {k for k, v in base.items() if ".layers." in k and v.ndim == 2}
    for key, weight in base.items():
        if key in targeted:
            assert not torch.allclose(merged[key], weight), key
        else:
            assert torch.equal(merged[key], weight), key


def test_any_context_trajectories_render_the_chat_prompt_and_train(rehearsal, tmp_path):
    """``--context_attempts any --correct_attempt_rate``: the attempts come from all samples, and the
    prompts are still the chat template's user turn, which train-reviser reads back (2 steps)."""
    out = tmp_path / "revisions_any"
    stage("revisions", "revisions.yaml", "--samples_dir", rehearsal.train_samples, "--output_dir", out,
          "--context_attempts", "any", "--correct_attempt_rate", "0.5", "--problems_per_shard", "2")  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(rehearsal.policy)
    samples = {row["problem_id"]: row for row in load_sharded(rehearsal.train_samples)}
    rows = list(load_sharded(out))
    assert rows and any(row["previous_attempts"] for row in rows)
    for row in rows:
        assert set(row["previous_attempts"]) <= set(samples[row["problem_id"]]["completions"])
        assert row["prompt"] == format_reviser_prompt(
            row["question"], row["previous_attempts"], CONTRACT, tokenizer
        )
    stage("train-reviser", "reviser.yaml", "--model_name_or_path", rehearsal.policy, "--dataset_name", out,
          "--output_dir", tmp_path / "reviser", "--deepspeed", "", "--eval_fraction", "0",
          *TRAINER_OVERRIDES)  # fmt: skip
    assert (tmp_path / "reviser" / "model.safetensors").is_file()
