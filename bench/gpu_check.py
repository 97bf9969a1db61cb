"""``make gpu-check``: the first thing to run on a new GPU machine (about 5-8 minutes on one GPU).

Everything that the CPU-only suite cannot reach, on the shipped small policy and the Qwen2.5-format
BPE stand-in (``ttcompute.testing``), each check timed, with its GPU memory:

- ``greedy``: vLLM against the transformers backend, greedy, float32: the same tokens, or the first
  divergence with the transformers logits gap between the two tokens there (a near-tie is float order;
  a large gap is a bug);
- ``seeded``: seeded sampling reproducible on vLLM (the same seeds twice, and one seed alone gives the
  completion it gave among others) and on the transformers backend;
- ``prm``: a PRM scores the same on CUDA as on the CPU, to 1e-3;
- ``beam_search``, ``revisions``: ``ttc search`` with vLLM end to end;
- ``train_prm``, ``train_reviser``: LoRA, 20 steps, ZeRO-2 on one GPU (``deepspeed --num_gpus 1``).

It writes one JSON (``--output``, default ``runs/gpu_check.json``) and exits 1 if a check failed. Where
torch sees no CUDA device it says so in one line and exits 0: nothing was checked, nothing passed.
``--device cpu`` runs the same checks on the CPU with whatever ``vllm`` imports (the tests use the
stand-in built from vLLM's API) -- a rehearsal of the script, not a GPU check.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
GPU_MEMORY_UTILIZATION = 0.25  # each vLLM engine: leaves room for the transformers side of a check
PRM_TOLERANCE = 1e-3
NEAR_TIE = 1e-2  # a greedy divergence whose logits differ by less is float order, not a bug
STEPS = 20
NUM_PROBLEMS = 16  # per search (--num_problems)


# --- the stand-ins --------------------------------------------------------------------------------


def stand_ins(root: Path) -> dict[str, Path]:
    """The shipped small policy, the BPE stand-in policy, and a tiny ttcompute-format PRM on each."""
    from transformers import AutoTokenizer

    from ttcompute.models.shipped import shipped_policy
    from ttcompute.testing import build_bpe_chat_tokenizer, build_tiny_prm_on, build_tiny_qwen2

    small = shipped_policy()
    texts = [json.loads(line)["problem"] for line in (REPO / "tests" / "data" / "math500.jsonl").open()]
    tokenizer = build_bpe_chat_tokenizer(texts)
    bpe = build_tiny_qwen2(tokenizer, root / "bpe_policy", seed=0)
    return {
        "small": small,
        "bpe": bpe,
        "small_prm": build_tiny_prm_on(AutoTokenizer.from_pretrained(small), root / "small_prm"),
        "bpe_prm": build_tiny_prm_on(tokenizer, root / "bpe_prm"),
    }


def prompts_for(name: str, policy: Path) -> list[str]:
    from transformers import AutoTokenizer

    from ttcompute.core.prompts import PromptContract
    from ttcompute.models.generation import build_prompt
    from ttcompute.tasks.arithmetic import generate_problems

    questions = [p.question for p in generate_problems(4, seed=0)]
    contract = PromptContract("{question}\n") if name == "small" else PromptContract("{question}", True, None)
    return [build_prompt(q, contract, AutoTokenizer.from_pretrained(policy)) for q in questions]


@dataclass
class Context:
    paths: dict[str, Path]  # stand_ins()
    device: str
    root: Path  # a temporary folder for the checks' outputs
    num_problems: int  # per search


# --- the checks -----------------------------------------------------------------------------------


def check_greedy(ctx: Context) -> dict:
    """vLLM's greedy tokens against transformers' greedy tokens, prompt by prompt."""
    paths, device = ctx.paths, ctx.device
    import vllm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttcompute.models.generation import prompt_token_ids

    report, ok = {}, True
    for name in ("small", "bpe"):
        policy = paths[name]
        tokenizer = AutoTokenizer.from_pretrained(policy)
        prompts = [prompt_token_ids(tokenizer, p) for p in prompts_for(name, policy)]
        llm = vllm.LLM(
            model=str(policy), dtype="float32", gpu_memory_utilization=GPU_MEMORY_UTILIZATION, seed=0
        )
        params = vllm.SamplingParams(n=1, temperature=0.0, max_tokens=48)
        vllm_ids = [
            list(r.outputs[0].token_ids)
            for r in llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        ]
        del llm
        _free()
        model = AutoModelForCausalLM.from_pretrained(policy, torch_dtype=torch.float32).to(device).eval()
        rows = []
        for prompt, theirs in zip(prompts, vllm_ids):
            with torch.no_grad():
                out = model.generate(
                    torch.tensor([prompt], device=device),
                    attention_mask=torch.ones(1, len(prompt), dtype=torch.long, device=device),
                    do_sample=False,
                    max_new_tokens=48,
                    pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
                )
            ours = out[0, len(prompt) :].tolist()
            ours = ours[: ours.index(tokenizer.eos_token_id) + 1] if tokenizer.eos_token_id in ours else ours
            rows.append(_first_divergence(model, prompt, ours, theirs, device))
        del model
        _free()
        ok &= all(r["same"] or r["logit_gap"] < NEAR_TIE for r in rows)
        report[name] = rows
    return {"ok": ok, "prompts": report}


def _first_divergence(model, prompt: list[int], ours: list[int], theirs: list[int], device: str) -> dict:
    length = min(len(ours), len(theirs))
    at = next((i for i in range(length) if ours[i] != theirs[i]), None)
    if at is None and len(ours) == len(theirs):
        return {"same": True, "tokens": len(ours)}
    if at is None:  # one stopped earlier (an EOS the other did not pick)
        at = length
    with torch.no_grad():
        logits = model(torch.tensor([prompt + ours[:at]], device=device)).logits[0, -1].float()
    pick = [t for t in (ours[at : at + 1] + theirs[at : at + 1])]
    gap = abs(float(logits[pick[0]] - logits[pick[-1]])) if len(pick) == 2 else float("inf")
    return {"same": False, "first_divergence": at, "transformers": ours[at : at + 1], "vllm": theirs[at : at + 1],
            "logit_gap": gap}  # fmt: skip


def check_seeded(ctx: Context) -> dict:
    paths, device = ctx.paths, ctx.device
    from ttcompute.models.generation import SamplingParams
    from ttcompute.models.hf_backend import TransformersBackend
    from ttcompute.models.vllm_backend import VLLMBackend

    policy = paths["small"]
    prompts = prompts_for("small", policy)
    seeds = [[100 + 10 * i + j for j in range(4)] for i in range(len(prompts))]
    params = SamplingParams(n=4, temperature=1.0, max_tokens=48, sample_seeds=seeds)
    alone = SamplingParams(n=1, temperature=1.0, max_tokens=48, sample_seeds=[[seeds[2][1]]])
    results = {}
    backend = VLLMBackend(str(policy), gpu_memory_utilization=GPU_MEMORY_UTILIZATION)
    first, again = backend.generate(prompts, params), backend.generate(prompts, params)
    single = backend.generate([prompts[2]], alone)
    results["vllm"] = {"repeat": first == again, "alone_as_among_others": single[0][0] == first[2][1]}
    del backend
    _free()
    backend = TransformersBackend(str(policy), device=device)
    first, again = backend.generate(prompts, params), backend.generate(prompts, params)
    single = backend.generate([prompts[2]], alone)
    results["transformers"] = {"repeat": first == again, "alone_as_among_others": single[0][0] == first[2][1]}
    ok = all(all(v.values()) for v in results.values())
    return {"ok": ok, **results}


def check_prm(ctx: Context) -> dict:
    paths, device = ctx.paths, ctx.device
    from ttcompute.models.prm_formats import load_prm
    from ttcompute.tasks.arithmetic import stepwise_rows

    rows = stepwise_rows(16, seed=3)
    questions = [r["prompt"].rstrip("\n") for r in rows]
    steps = [r["completions"] for r in rows]
    report, ok = {}, True
    for name in ("small_prm", "bpe_prm"):
        scores = {}
        for where in ("cpu", device):
            prm = load_prm(str(paths[name]), device=where, dtype="float32")
            scores[where] = prm.score(questions, steps)
            del prm
            _free()
        diff = max(abs(a - b) for x, y in zip(scores["cpu"], scores[device]) for a, b in zip(x, y))
        report[name] = {"max_abs_difference": diff, "steps": sum(map(len, steps))}
        ok &= diff <= PRM_TOLERANCE
    return {"ok": ok, **report}


def _search(ctx: Context, out: Path, *args: str) -> dict:
    from ttcompute.cli import run_stage

    common = [
        "--backend", "vllm", "--model_name_or_path", str(ctx.paths["small"]), "--num_problems", str(ctx.num_problems),
        "--gpu_memory_utilization", str(GPU_MEMORY_UTILIZATION), "--max_new_tokens", "96",
        "--output_dir", str(out), "--overwrite", "true",
    ]  # fmt: skip
    result = run_stage("search", [*common, *args])
    _free()
    return result


def check_beam_search(ctx: Context) -> dict:
    paths, device, root = ctx.paths, ctx.device, ctx.root
    from ttcompute.core.shards import load_sharded

    out = root / "search_beam"
    _search(ctx, out, "--methods", "beam_search", "--budgets", "4", "--prm", str(paths["small_prm"]),
            "--prm_device", device, "--max_rounds", "8")  # fmt: skip
    rows = list(load_sharded(out))
    answered = sum(any(a is not None for a in row["answers"]) for row in rows)
    problems = len({row["problem_id"] for row in rows})
    return {
        "ok": problems == ctx.num_problems and answered > 0,
        "rows": len(rows),
        "rows_with_an_answer": answered,
    }


def check_revisions(ctx: Context) -> dict:
    paths, root = ctx.paths, ctx.root
    from ttcompute.core.shards import load_sharded

    out = root / "search_revisions"
    _search(ctx, out, "--methods", "revisions", "--budgets", "4", "--reviser", str(paths["small"]))
    rows = list(load_sharded(out))
    problems = len({row["problem_id"] for row in rows})
    return {"ok": problems == ctx.num_problems, "rows": len(rows)}


def _deepspeed(stage: str, *args: str) -> None:
    launcher = Path(sys.executable).parent / "deepspeed"
    command = [str(launcher), "--num_gpus", "1", "--master_port", str(29500 + os.getpid() % 1000),
               "--module", "ttcompute.cli", stage, "--deepspeed", "configs/deepspeed/zero2.json",
               "--use_peft", "true", "--max_steps", str(STEPS), "--logging_steps", "5", "--save_steps", "1000",
               "--eval_fraction", "0", "--report_to", "none", *args]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    if result.returncode:
        raise RuntimeError(f"{stage} under deepspeed failed:\n{result.stderr[-3000:]}")


def _trained(out: Path) -> dict:
    log = json.loads((out / "training_log.json").read_text())
    zero = (log.get("distributed") or {}).get("zero_stage")
    return {"ok": log["global_steps"] == STEPS and zero == 2, "global_steps": log["global_steps"],
            "distributed": log.get("distributed")}  # fmt: skip


def check_train_prm(ctx: Context) -> dict:
    paths, root = ctx.paths, ctx.root
    from ttcompute.tasks.arithmetic import stepwise_rows

    data = root / "prm_rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in stepwise_rows(200, seed=0)))
    out = root / "prm"
    _deepspeed("train-prm", "--model_name_or_path", str(paths["small"]), "--dataset_name", str(data),
               "--output_dir", str(out), "--per_device_train_batch_size", "8")  # fmt: skip
    return _trained(out)


def check_train_reviser(ctx: Context) -> dict:
    paths, root = ctx.paths, ctx.root
    from ttcompute.cli import run_stage

    samples = root / "samples"
    run_stage("sample", ["--backend", "vllm", "--model_name_or_path", str(paths["small"]), "--num_problems", "64",
                         "--num_samples", "8", "--gpu_memory_utilization", str(GPU_MEMORY_UTILIZATION),
                         "--output_dir", str(samples), "--overwrite", "true"])  # fmt: skip
    _free()
    revisions = root / "revisions"
    run_stage(
        "revisions", ["--samples_dir", str(samples), "--output_dir", str(revisions), "--overwrite", "true"]
    )
    out = root / "reviser"
    _deepspeed("train-reviser", "--model_name_or_path", str(paths["small"]), "--dataset_name", str(revisions),
               "--output_dir", str(out), "--per_device_train_batch_size", "4")  # fmt: skip
    return _trained(out)


CHECKS = {
    "greedy": check_greedy,
    "seeded": check_seeded,
    "prm": check_prm,
    "beam_search": check_beam_search,
    "revisions": check_revisions,
    "train_prm": check_train_prm,
    "train_reviser": check_train_reviser,
}


# --- timing, memory, the report -------------------------------------------------------------------


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class DeviceMemory:
    """The device's used memory, sampled every 0.1 s while a check runs: it sees vLLM's engine process
    and the DeepSpeed ranks, which torch's allocator statistics in this process do not."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.peak, self._stop = 0, threading.Event()

    def __enter__(self):
        if self.cuda:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            free, total = torch.cuda.mem_get_info()
            self.peak = max(self.peak, total - free)

    def __exit__(self, *exc) -> None:
        self._stop.set()


def run_one(name: str, ctx: Context) -> dict:
    start = time.perf_counter()
    print(f"gpu-check: {name} ...", flush=True)
    with DeviceMemory(ctx.device) as memory:
        try:
            result = CHECKS[name](ctx)
        except Exception as err:  # one failing check must not hide the others' results
            result = {
                "ok": False,
                "error": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc(),
            }
    result["seconds"] = round(time.perf_counter() - start, 1)
    if memory.cuda:
        result["peak_device_memory_gib"] = round(memory.peak / 2**30, 2)
    print(f"gpu-check: {name}: {'ok' if result['ok'] else 'FAILED'} in {result['seconds']} s", flush=True)
    return result


def run(names: list[str], device: str, root: Path, num_problems: int = NUM_PROBLEMS) -> dict:
    """Each check on CUDA in a process of its own: a vLLM engine's memory is only surely given back when
    its process ends, and the next check's engine must find the device free."""
    paths = stand_ins(root)
    report = {
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else device,
        "torch": torch.__version__,
        "vllm": getattr(sys.modules.get("vllm") or __import__("vllm"), "__version__", "unknown"),
        "checks": {},
    }
    (root / "paths.json").write_text(json.dumps({k: str(v) for k, v in paths.items()}))
    for name in names:
        if device.startswith("cuda"):
            result_file = root / f"{name}.json"
            command = [sys.executable, __file__, "--one", name, "--root", str(root), "--device", device,
                       "--num_problems", str(num_problems), "--output", str(result_file)]  # fmt: skip
            done = subprocess.run(command, cwd=REPO)
            result = (
                json.loads(result_file.read_text())
                if result_file.is_file()
                else {"ok": False, "error": f"the check's process exited with {done.returncode}"}
            )
        else:
            result = run_one(name, Context(paths, device, root, num_problems))
        report["checks"][name] = result
    report["ok"] = all(c["ok"] for c in report["checks"].values())
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="runs/gpu_check.json", help="the JSON report")
    parser.add_argument("--device", default="cuda", help="cuda, or cpu for a rehearsal of the script")
    parser.add_argument("--checks", nargs="+", choices=list(CHECKS), default=list(CHECKS))
    parser.add_argument("--num_problems", type=int, default=NUM_PROBLEMS, help="problems per search")
    parser.add_argument("--one", choices=list(CHECKS), help=argparse.SUPPRESS)  # run() on CUDA: one check
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        root = Path(args.root)
        paths = {k: Path(v) for k, v in json.loads((root / "paths.json").read_text()).items()}
        result = run_one(args.one, Context(paths, args.device, root, args.num_problems))
        Path(args.output).write_text(json.dumps(result))
        return 0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu-check: no CUDA device here (torch.cuda.is_available() is False): nothing was checked")
        return 0
    try:
        import vllm  # noqa: F401 -- the checks need it; say so before building anything
    except ImportError:
        print("gpu-check: vllm is not installed: pip install -e '.[vllm]'", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        report = run(args.checks, args.device, Path(tmp), args.num_problems)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=1) + "\n")
    print(f"gpu-check: {'all passed' if report['ok'] else 'FAILED'}; report in {output}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
