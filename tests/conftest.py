"""Shared fixtures: tiny models and tokenizers built locally, never fetched; no network."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TTC_LOG_LEVEL", "WARNING")

import inspect  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402
from typing import NoReturn  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# Real MATH-500 and GSM8K rows shipped with the tests (tests/data/README.md), so a clean clone runs
# every real-data check instead of skipping it.
TEST_DATA = REPO / "tests" / "data"
MATH500 = TEST_DATA / "math500.jsonl"
GSM8K_TEST_HEAD = TEST_DATA / "gsm8k_test_head500.jsonl"  # the split's first 500 of 1319 rows
SMALL_POLICY = REPO / "ttcompute" / "checkpoints" / "policy_small"


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny models (``pytestmark = pytest.mark.usefixtures(...)``): with
    two on a busy 2-core machine each matmul waits on the other thread (~20 ms instead of ~40 us)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def char_tokenizer():
    from ttcompute.models.tiny import build_char_tokenizer

    return build_char_tokenizer()


@pytest.fixture(scope="session")
def random_policy_dir(tmp_path_factory, char_tokenizer) -> Path:
    """An untrained tiny Llama saved like any checkpoint (fast; generates noise)."""
    from ttcompute.models.tiny import build_tiny_llama, save_tiny, tiny_llama_config

    path = tmp_path_factory.mktemp("random_policy")
    config = tiny_llama_config(
        len(char_tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    save_tiny(build_tiny_llama(config, seed=0), char_tokenizer, path)
    return path


@pytest.fixture(scope="session")
def small_policy_dir() -> Path:
    """The shipped small policy: trained, so it writes real (often right, sometimes wrong) solutions."""
    if not (SMALL_POLICY / "model.safetensors").is_file():
        pytest.fail(
            f"{SMALL_POLICY} missing: train it with `ttc train-policy --config configs/policy_small.yaml`"
        )
    return SMALL_POLICY


@pytest.fixture(scope="session")
def likelihood_prm_dir(tmp_path_factory, small_policy_dir) -> Path:
    """A likelihood PRM over the small policy (the calibration of bench/prm_experiment.sh, rounded)."""
    import json

    path = tmp_path_factory.mktemp("likelihood_prm")
    spec = {
        "format": "ttcompute-likelihood",
        "base_model": str(small_policy_dir),
        "step_separator": "\n\n",
        "prompt_template": "{question}\n",
        "weight": 0.83,
        "bias": 0.19,
    }
    (path / "likelihood_prm.json").write_text(json.dumps(spec))
    return path


# --- helpers shared by the trainer tests (import them: `from conftest import write_rows`) ------------


def write_rows(rows: dict[str, list], path: Path) -> Path:
    """``rows`` (columns -> values) as a parquet file or, for any other suffix, JSON lines."""
    import datasets

    path.parent.mkdir(parents=True, exist_ok=True)
    dataset = datasets.Dataset.from_dict(rows)
    if path.suffix == ".parquet":
        dataset.to_parquet(str(path))
    else:
        dataset.to_json(str(path), lines=True)
    return path


def write_jsonl(path: Path, rows: list) -> Path:
    """``rows`` as a JSON-lines file, written by hand (no ``datasets`` in between)."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def arithmetic_answer(question: str) -> str:
    """The answer of a built-in arithmetic problem, computed here rather than by the task's own code."""
    from ttcompute.tasks.arithmetic import parse_question

    value, ops = parse_question(question)
    for op, b in ops:
        value = {"+": value + b, "-": value - b, "*": value * b}[op]
    return str(value)


def learning_rates(log: dict) -> dict[int, float]:
    """Step -> learning rate of the training steps in a ``training_log.json``."""
    return {e["step"]: e["learning_rate"] for e in log["log_history"] if "loss" in e}


def trainer_config(config_class, out: Path, policy: Path, data: Path, **overrides):
    """A trainer config (``PRMConfig``, ``RevisionConfig``) for a 2-step CPU run without evaluation,
    saving or reporting; ``overrides`` change any field."""
    values = {
        "output_dir": str(out),
        "model_name_or_path": str(policy),
        "dataset_name": str(data),
        "max_steps": 2,
        "per_device_train_batch_size": 4,
        "logging_steps": 1,
        "report_to": "none",
        "use_cpu": True,
        "save_strategy": "no",
        "eval_fraction": 0.0,
        "disable_tqdm": True,
    }
    values.update(overrides)
    return config_class(**values)


# A tiny LoRA run that moves the adapters visibly in a few steps (the trainers' LoRA tests).
LORA_OPTIONS = {
    "use_peft": True,
    "lora_r": 4,
    "lora_alpha": 8,
    "lora_dropout": 0.0,
    "learning_rate": 1e-2,
    "warmup_steps": 0,
}


def check_merged_lora_checkpoint(out: Path, base_dir: Path, auto_class, input_ids, **base_kwargs):
    """What every trainer's LoRA finish must leave in ``out``: the adapter in ``lora_adapter/`` (none
    at the top), a plain checkpoint without LoRA weights that computes on ``input_ids`` what the base
    (``auto_class`` from ``base_dir`` with ``base_kwargs``) plus the adapter compute, an adapter that
    trained (``lora_B`` starts at 0) and was merged into the attention weights, embeddings untouched.

    Returns the merged model, the adapter's tensors and the merged checkpoint's tensors.
    """
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file

    assert (out / "lora_adapter" / "adapter_config.json").is_file()
    assert (out / "lora_adapter" / "adapter_model.safetensors").is_file()
    assert not (out / "adapter_config.json").exists()
    merged = auto_class.from_pretrained(out).eval()
    assert not hasattr(merged, "peft_config")
    merged_weights = load_file(out / "model.safetensors")
    assert "lora" not in " ".join(merged_weights)

    base = auto_class.from_pretrained(base_dir, **base_kwargs)
    adapted = PeftModel.from_pretrained(base, str(out / "lora_adapter")).eval()
    with torch.no_grad():
        assert torch.allclose(merged(input_ids).logits, adapted(input_ids).logits, atol=1e-4)

    adapter = load_file(out / "lora_adapter" / "adapter_model.safetensors")
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and max(v.abs().max().item() for v in lora_b) > 1e-3
    base_weights = load_file(base_dir / "model.safetensors")
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(merged_weights[name], base_weights[name])
    assert torch.equal(merged_weights["model.embed_tokens.weight"], base_weights["model.embed_tokens.weight"])
    return merged, adapter, merged_weights


def check_resume_and_overwrite(train, config_class, out: Path, policy: Path, data: Path):
    """The resume contract of every trainer: a 4-step run, the same command with 6 steps resumes from
    its checkpoint-4 (steps 1-4 keep the first run's cosine schedule), ``--overwrite_output_dir``
    starts over on the 6-step schedule. Returns the three training logs."""
    import math

    common = {"save_strategy": "steps", "save_steps": 2, "warmup_steps": 0, "learning_rate": 1e-3}
    first = train(trainer_config(config_class, out, policy, data, max_steps=4, **common))
    assert first["global_steps"] == 4
    assert {p.name for p in out.glob("checkpoint-*")} == {"checkpoint-2", "checkpoint-4"}

    resumed = train(trainer_config(config_class, out, policy, data, max_steps=6, **common))
    assert resumed["global_steps"] == 6
    assert {p.name for p in out.glob("checkpoint-*")} == {"checkpoint-4", "checkpoint-6"}
    # Steps 1-4 come from the first run's checkpoint (a cosine schedule over 4 steps): a fresh run
    # over 6 steps would have logged other learning rates there.
    first_lr, resumed_lr = learning_rates(first), learning_rates(resumed)
    assert sorted(resumed_lr) == [1, 2, 3, 4, 5, 6]
    assert {s: resumed_lr[s] for s in range(1, 5)} == first_lr

    # overwrite_output_dir: from scratch, the 6-step schedule from step 1.
    fresh = train(
        trainer_config(config_class, out, policy, data, max_steps=6, overwrite_output_dir=True, **common)
    )
    assert fresh["global_steps"] == 6
    fresh_lr = learning_rates(fresh)
    assert sorted(fresh_lr) == [1, 2, 3, 4, 5, 6]
    assert fresh_lr[2] != pytest.approx(first_lr[2])
    assert fresh_lr[2] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 1 / 6)))
    return first, resumed, fresh


def run_from(cwd: Path, stage: str, args: list[str]):
    """``ttc <stage> args`` started from ``cwd`` (made if missing), every path in ``args`` (absolute,
    or existing relative to the current directory; also each part of a comma-joined list) rewritten
    relative to ``cwd``: a stage run from elsewhere than the stage that wrote its inputs."""
    from ttcompute.cli import run_stage

    here = Path.cwd()
    cwd.mkdir(parents=True, exist_ok=True)

    def relative(part: str) -> str:
        full = Path(part) if Path(part).is_absolute() else here / part
        if "/" not in part or not (Path(part).is_absolute() or full.exists()):
            return part
        return os.path.relpath(full, cwd)

    moved = [",".join(relative(p) for p in str(a).split(",")) for a in args]
    os.chdir(cwd)
    try:
        return run_stage(stage, moved)
    finally:
        os.chdir(here)


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeHfApi:
    """``huggingface_hub.HfApi`` that records what a push asks for and never connects, and refuses what
    the Hub would refuse: each method binds its arguments to the real method's signature (an unknown
    keyword is a TypeError), an unknown ``repo_type`` is a ValueError, and an upload to a repo that no
    ``create_repo`` of this test made -- or made as another type -- is the real
    ``RepositoryNotFoundError``. It follows the source of huggingface_hub 2.4.0 (``HfApi.create_repo``,
    ``upload_folder``, ``_prepare_upload_folder_additions``).

    ``created`` holds each ``create_repo``'s repo_id (as asked), repo_type (None read as "model", like
    huggingface_hub), private and exist_ok; ``uploads`` each ``upload_folder``'s arguments, defaults
    applied, with repo_type read the same way and ``uploaded_files``: the paths in the repo of the
    files the real call would upload, after its ``allow_patterns`` / ``ignore_patterns`` filtering.

    huggingface_hub is imported in the methods, not above, so that conftest stays light for the tests
    that push nothing."""

    instances: list[FakeHfApi] = []
    # The Hub of one test (reset by `offline_hub`): (repo_type, repo_id) -> its branches.
    repos: dict[tuple[str, str], set[str]] = {}
    # Whose token it is: a bare repo name is created under this namespace, as the Hub does.
    user = "offline-user"

    def __init__(self, *args, **kwargs):
        call = self._bind("__init__", args, kwargs)
        self.token = call["token"]
        self.endpoint = call["endpoint"]
        self.created: list[dict] = []
        self.uploads: list[dict] = []
        self.branches: list[dict] = []
        FakeHfApi.instances.append(self)

    def create_repo(self, *args, **kwargs):
        from huggingface_hub import constants
        from huggingface_hub.hf_api import RepoUrl
        from huggingface_hub.utils import validate_repo_id

        call = self._bind("create_repo", args, kwargs)
        repo_id, repo_type = call["repo_id"], call["repo_type"]
        validate_repo_id(repo_id)  # as the real method's @validate_hf_hub_args
        if repo_type not in constants.REPO_TYPES_WITH_KERNEL:
            raise ValueError("Invalid repo type")
        self.created.append(
            {
                "repo_id": repo_id,
                "repo_type": repo_type or constants.REPO_TYPE_MODEL,
                "private": call["private"],
                "exist_ok": call["exist_ok"],
            }
        )
        full_id = repo_id if "/" in repo_id else f"{self.user}/{repo_id}"
        key = (repo_type or constants.REPO_TYPE_MODEL, full_id)
        if key in FakeHfApi.repos and not call["exist_ok"]:
            self._hub_refuses(409, "/api/repos/create")
        FakeHfApi.repos.setdefault(key, {constants.DEFAULT_REVISION})
        endpoint = self.endpoint or constants.ENDPOINT
        prefix = constants.REPO_TYPES_URL_PREFIXES.get(repo_type, "")
        return RepoUrl(f"{endpoint}/{prefix}{full_id}", endpoint=endpoint)

    def create_branch(self, *args, **kwargs):
        from huggingface_hub import constants

        call = self._bind("create_branch", args, kwargs)
        type_name = call["repo_type"] or constants.REPO_TYPE_MODEL
        branches = FakeHfApi.repos.get((type_name, call["repo_id"]))
        if branches is None:
            self._hub_refuses(
                404, f"/api/{type_name}s/{call['repo_id']}/branch/{call['branch']}", "RepoNotFound"
            )
        if call["branch"] in branches and not call["exist_ok"]:
            self._hub_refuses(409, f"/api/{type_name}s/{call['repo_id']}/branch/{call['branch']}")
        branches.add(call["branch"])
        self.branches.append({"repo_id": call["repo_id"], "repo_type": type_name, "branch": call["branch"]})

    def upload_folder(self, *args, **kwargs):
        from huggingface_hub import DatasetCard, ModelCard, SpaceCard, constants
        from huggingface_hub.hf_api import CommitInfo
        from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects, validate_repo_id

        call = self._bind("upload_folder", args, kwargs)
        repo_id, repo_type, revision = call["repo_id"], call["repo_type"], call["revision"]
        validate_repo_id(repo_id)
        if repo_type not in constants.REPO_TYPES_WITH_KERNEL:
            raise ValueError(f"Invalid repo type, must be one of {constants.REPO_TYPES_WITH_KERNEL}")
        if call["delete_patterns"] is not None:
            raise NotImplementedError("FakeHfApi keeps no remote files for delete_patterns to match")

        # As _prepare_upload_folder_additions: every file under the folder, sorted, as a POSIX path
        # relative to it; the caller's ignore_patterns plus DEFAULT_IGNORE_PATTERNS (.git/,
        # .cache/huggingface/). The real call extends the caller's list in place; we copy it.
        folder = Path(call["folder_path"]).expanduser().resolve()
        if not folder.is_dir():
            raise ValueError(f"Provided path: '{folder}' is not a directory")
        ignore_patterns = call["ignore_patterns"]
        ignore_patterns = (
            [ignore_patterns] if isinstance(ignore_patterns, str) else list(ignore_patterns or [])
        )
        relpaths = [p.relative_to(folder).as_posix() for p in sorted(folder.glob("**/*")) if p.is_file()]
        kept = list(
            filter_repo_objects(
                relpaths,
                allow_patterns=call["allow_patterns"],
                ignore_patterns=ignore_patterns + DEFAULT_IGNORE_PATTERNS,
            )
        )
        if "README.md" in kept:
            # The real call posts the card to /api/validate-yaml first; a header that does not parse
            # fails there with this ValueError.
            card_class = {"dataset": DatasetCard, "space": SpaceCard}.get(repo_type, ModelCard)
            try:
                card_class((folder / "README.md").read_text(encoding="utf8"))
            except Exception as error:
                raise ValueError(f"Invalid metadata in README.md.\n- {error}") from error

        type_name = repo_type or constants.REPO_TYPE_MODEL
        branch = revision or constants.DEFAULT_REVISION
        commit_path = f"/api/{type_name}s/{repo_id}/commit/{branch}"
        branches = FakeHfApi.repos.get((type_name, repo_id))
        if branches is None:
            self._hub_refuses(404, commit_path, "RepoNotFound")
        if branch not in branches:  # a --hub_revision branch that no one created
            self._hub_refuses(404, commit_path, "RevisionNotFound")
        prefix = f"{call['path_in_repo'].strip('/')}/" if call["path_in_repo"] else ""
        upload = {name: value for name, value in call.items() if name != "self"}
        self.uploads.append({**upload, "repo_type": type_name, "uploaded_files": [prefix + p for p in kept]})
        endpoint = self.endpoint or constants.ENDPOINT
        url_prefix = constants.REPO_TYPES_URL_PREFIXES.get(repo_type, "")
        return CommitInfo(
            commit_url=f"{endpoint}/{url_prefix}{repo_id}/commit/{'0' * 40}",
            commit_message=call["commit_message"] or "Upload folder using huggingface_hub",
            commit_description=call["commit_description"] or "",
            oid="0" * 40,
            _endpoint=endpoint,
        )

    def __getattr__(self, name):
        from huggingface_hub.hf_api import HfApi

        if hasattr(HfApi, name):
            raise AttributeError(f"FakeHfApi fakes no HfApi.{name}: add it, bound to the real signature")
        raise AttributeError(name)

    def _bind(self, method: str, args: tuple, kwargs: dict) -> dict:
        """The arguments of a call to the real ``HfApi.<method>``, defaults applied; a TypeError where
        the real method would raise one."""
        # huggingface_hub.HfApi is this fake while `offline_hub` runs; the module keeps the real one.
        from huggingface_hub.hf_api import HfApi

        bound = inspect.signature(getattr(HfApi, method)).bind(self, *args, **kwargs)
        bound.apply_defaults()
        return bound.arguments

    def _hub_refuses(self, status: int, path: str, error_code: str | None = None) -> NoReturn:
        """Raise what huggingface_hub raises when the Hub answers ``status`` (and ``X-Error-Code``) to a
        request for ``path``: its own ``hf_raise_for_status`` on such a response."""
        import httpx2  # huggingface_hub 2.x's HTTP client
        from huggingface_hub import constants
        from huggingface_hub.utils import hf_raise_for_status

        url = f"{self.endpoint or constants.ENDPOINT}{path}"
        headers = {"X-Error-Code": error_code} if error_code else {}
        hf_raise_for_status(httpx2.Response(status, headers=headers, request=httpx2.Request("POST", url)))
        raise AssertionError(f"hf_raise_for_status let a {status} pass")


@pytest.fixture
def offline_hub(monkeypatch):
    """``HfApi`` replaced by `FakeHfApi` and every socket connect refused and recorded, so a push runs
    to its end with no network; ``.connects`` lists what tried to connect."""
    import huggingface_hub

    connects: list = []

    def no_network(self, address):
        connects.append(address)
        raise OSError("no network in tests")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    FakeHfApi.instances = []
    FakeHfApi.repos = {}
    return SimpleNamespace(api=FakeHfApi, connects=connects)
