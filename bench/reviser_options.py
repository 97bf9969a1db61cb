"""Which reviser keeps improving over revisions? Each training option, measured the same way.

The demo's reviser gains only at its first revision (pass@1 by step 0.39 / 0.41 / 0.42 / 0.42) and
turns 37% of correct answers incorrect. This trains one reviser per option on the same samples
(the demo's 800 training problems x 64 samples, ``--train_samples``), runs revision chains of
``--chain_length`` attempts (``--chains`` per problem) with each on the same held-out problems, and
prints per option: pass@1 at every step, the gain of step 4 over step 1, the correct->incorrect and
incorrect->correct rates, and the difference to the baseline at step 4 -- each with a 95% paired
bootstrap interval over problems (1000 resamples, seeded). Same problems, same chains' seeds: every
comparison is paired. "P(right) alone / shown": how much a reviser reads its context -- the mean
probability it gives a correct solution with no attempt in its prompt, and with that very solution as
the attempt (:func:`context_use`).

Options (``--options``; each is ``ttc revisions`` flags + ``ttc train-reviser`` flags):

* ``baseline``: the paper's trajectories (0-4 incorrect attempts, the closest by edit distance last).
* ``progressive``: every attempt in order of decreasing edit distance.
* ``keep25`` / ``keep50``: 25% / 50% of the trajectories with attempts end on a correct one.
* ``progressive_keep50``: both.
* ``more_data``: the baseline's trajectories plus those of ``--extra_problems`` more problems.
* ``large``: the baseline's trajectories, the large policy as the base (400 steps).
* ``large_restem``: ``large`` with the ``restem`` trajectories added (what was first reported as
  ``large``).
* ``large_keep50``: the ``keep50`` trajectories, the large policy as the base, a whole epoch.
* ``copy_only``: 0 or 1 attempt in context, and that one always a correct solution -- a check of
  whether the base can learn to copy at all (read it with ``bench/reviser_context_probe.py``).
* ``copy_curriculum``: first a copying stage (one attempt, right or wrong, written out again as the
  revision: ``ttc revisions --copy_attempts 26``), then ``keep50`` from that checkpoint.
* ``expanded_copy_keep50``: ``copy_curriculum`` with two identity-initialised blocks inserted into
  the small policy first (``--expand_blocks 2``, LLaMA Pro), its copying stage 2 epochs at 3e-3;
  ``expanded_copy_keep50_lr3e-4``: the same stage 1, stage 2 at 3e-4.
* ``expanded_copy_any``: ``expanded_copy_keep50``'s stage 1 (shared), then trajectories whose
  attempts are drawn from all of a problem's samples as they came (``--context_attempts any``);
  ``expanded_copy_any50`` / ``expanded_copy_any75``: each of them correct half / three quarters of
  the time (``--correct_attempt_rate 0.5`` / ``0.75``); ``expanded_copy_any75_long``: ``any75`` with
  the reviser's context raised to 1024 tokens (``--context_length 1024``: 4 attempts of any problem fit).
* ``*_cool``: another option's reviser, its revisions sampled at 0.5 (``ttc search
  --revision_temperature 0.5``; the first attempt at 1); ``expanded_copy_keep50_cold``: every attempt
  at 0.5.
* ``copy_weight``: the baseline's trajectories, the tokens a revision copies from the most recent
  attempt (their common prefix) weighted 0.3 in the loss.
* ``restem``: ReST^EM-style -- chains of the baseline reviser's own attempts on the training problems,
  every correct attempt with the chain's earlier attempts as its context (``ttc revisions
  --chains_dir``), added to the baseline's trajectories; trained from the base policy again.

    .venv/bin/python bench/reviser_options.py [--out runs/reviser_options] [--options baseline keep50 ...]

Resumable: every stage's output is reused. About 6-8 minutes per option on 2 CPU cores (training is
most of it; ``large`` about 3x that). Results: ``OUT/reviser_options.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ttcompute.core.bootstrap import paired_interval  # noqa: E402
from ttcompute.core.outputs import distinct_revision_rows, revision_chains_of  # noqa: E402
from ttcompute.core.shards import ShardReader  # noqa: E402

logger = logging.getLogger("reviser_options")
SMALL = "ttcompute/checkpoints/policy_small"
LARGE = "ttcompute/checkpoints/policy_large"
EVAL_SEED = 9000  # the held-out problems every table is paired on
# expanded_copy_keep50's stage 1 (two identity blocks, the copy data 2 epochs at 3e-3), shared: the
# options built on it train one checkpoint.
EXPANDED_STAGE1 = {
    "copy_stage": True,
    "copy_train": ["--expand_blocks", "2", "--learning_rate", "3e-3", "--num_train_epochs", "2"],
    "stage1_of": "expanded_copy_keep50",
}
OPTIONS: dict[str, dict] = {
    "baseline": {},
    "progressive": {"revisions": ["--attempt_order", "progressive"]},
    "keep25": {"revisions": ["--correct_context_fraction", "0.25"]},
    "keep50": {"revisions": ["--correct_context_fraction", "0.5"]},
    "progressive_keep50": {
        "revisions": ["--attempt_order", "progressive", "--correct_context_fraction", "0.5"]
    },
    "more_data": {"extra": True},
    # The large base costs ~14x the FLOPs per token: 400 steps (a third of the others' epoch), and
    # evaluated on the first half of the held-out problems, 2 chains each (paired on those).
    "large": {"base": LARGE, "train": ["--max_steps", "400"], "eval_problems": 150, "eval_chains": 2},
    # As measured first (a key collision had the large option train on the ReST^EM data as well).
    "large_restem": {
        "base": LARGE,
        "own_chains": True,
        "train": ["--max_steps", "400"],
        "eval_problems": 150,
        "eval_chains": 2,
    },
    # A full epoch (34 min at 1 thread) of the keep50 trajectories: does a 5-layer base learn to keep?
    # Evaluated like the small options (all 300 problems x 4 chains, ~16 min at 1 thread).
    "large_keep50": {
        "base": LARGE,
        "revisions": ["--correct_context_fraction", "0.5"],
        "trajectories_of": "keep50",
    },
    # A capacity check rather than a reviser: half the trajectories show the very solution to write.
    "copy_only": {"revisions": ["--correct_context_fraction", "1.0", "--max_previous", "1"]},
    # Learn to copy first (stage 1: one attempt, right or wrong, and the revision writes it out again,
    # so that copying is the only way to predict a wrong attempt's digits), then when to (keep50).
    "copy_curriculum": {
        "copy_stage": True,
        "revisions": ["--correct_context_fraction", "0.5"],
        "trajectories_of": "keep50",
    },
    # copy_curriculum on a deeper base: two identity blocks inserted into the small policy (LLaMA Pro
    # block expansion) give the copying circuit room the policy's two busy blocks did not; stage 1
    # at 3e-3 for 2 epochs (the circuit forms in the second), then 2 epochs of keep50.
    "expanded_copy_keep50": {
        "copy_stage": True,
        "copy_train": ["--expand_blocks", "2", "--learning_rate", "3e-3", "--num_train_epochs", "2"],
        "revisions": ["--correct_context_fraction", "0.5"],
        "trajectories_of": "keep50",
        "train": ["--num_train_epochs", "2"],
    },
    # expanded_copy_keep50's stage 1, then 2 epochs of trajectories whose attempts are drawn from all
    # of a problem's samples as they came (right, wrong, repeated): the mix a chain shows the reviser,
    # where weighing the attempts (a repeated answer is likelier right) is what the data rewards.
    "expanded_copy_any": {
        **EXPANDED_STAGE1,
        "revisions": ["--context_attempts", "any"],
        "train": ["--num_train_epochs", "2"],
    },
    # The same with each attempt shown correct half the time (--correct_attempt_rate 0.5): a chain
    # shows the reviser its own attempts, more often right (its pass@1, ~0.55) than the policy's
    # samples (0.39), and the rate sets how far it trusts what it is shown.
    "expanded_copy_any50": {
        **EXPANDED_STAGE1,
        "revisions": ["--context_attempts", "any", "--correct_attempt_rate", "0.5"],
        "train": ["--num_train_epochs", "2"],
    },
    "expanded_copy_any75": {
        **EXPANDED_STAGE1,
        "revisions": ["--context_attempts", "any", "--correct_attempt_rate", "0.75"],
        "train": ["--num_train_epochs", "2"],
    },
    # expanded_copy_any75 with the reviser's context raised from 512 to 1024 tokens (--context_length):
    # at 512, with 160 tokens kept for the revision, a long problem's chain shows 1-2 of its attempts.
    "expanded_copy_any75_long": {
        **EXPANDED_STAGE1,
        "revisions": ["--context_attempts", "any", "--correct_attempt_rate", "0.75"],
        "trajectories_of": "expanded_copy_any75",
        "train": ["--num_train_epochs", "2", "--context_length", "1024", "--max_length", "1024"],
    },
    # The same revisers, their revisions sampled cooler than the first attempt (ttc search
    # --revision_temperature): a revision then keeps more of what it reads, and the chain moves more
    # slowly toward where it settles.
    "expanded_copy_keep50_cool": {
        "reviser_of": "expanded_copy_keep50",
        "search": ["--revision_temperature", "0.5"],
    },
    "expanded_copy_any75_cool": {
        "reviser_of": "expanded_copy_any75",
        "search": ["--revision_temperature", "0.5"],
    },
    "baseline_cool": {"reviser_of": "baseline", "search": ["--revision_temperature", "0.5"]},
    # Is it the revising or the cooling? Every attempt at 0.5, the first one too.
    "expanded_copy_keep50_cold": {"reviser_of": "expanded_copy_keep50", "search": ["--temperature", "0.5"]},
    "copy_weight": {"train": ["--copied_token_weight", "0.3"]},
    "restem": {"own_chains": True},
}


def ttc(*args) -> None:
    command = [str(REPO / ".venv" / "bin" / "ttc"), *[str(a) for a in args]]
    logger.info("$ %s", " ".join(command[1:]))
    subprocess.run(command, cwd=REPO, check=True)


def done(path: Path, marker: str = "stats.json") -> bool:
    return (path / marker).is_file()


def samples(out: Path, num_problems: int, problem_seed: int, num_samples: int, seed: int, name: str) -> Path:
    path = out / name
    if not done(path):
        ttc("sample", "--config", "configs/sample.yaml", "--model_name_or_path", SMALL, "--num_problems",
            num_problems, "--problem_seed", problem_seed, "--num_samples", num_samples, "--seed", seed,
            "--output_dir", path)  # fmt: skip
    return path


def trajectories(samples_dir: Path, path: Path, flags: list[str]) -> Path:
    if not done(path):
        ttc("revisions", "--config", "configs/revisions.yaml", "--samples_dir", samples_dir, *flags,
            "--output_dir", path)  # fmt: skip
    return path


def train(path: Path, datasets: list[Path], base: str, flags: list[str]) -> Path:
    if not done(path, "training_log.json"):
        ttc("train-reviser", "--config", "configs/reviser.yaml", "--model_name_or_path", base,
            "--dataset_name", ",".join(str(d) for d in datasets), "--num_train_epochs", 1, *flags,
            "--output_dir", path, "--disable_tqdm", "true")  # fmt: skip
    return path


def chains(
    path: Path,
    reviser: Path,
    num_problems: int,
    problem_seed: int,
    args: argparse.Namespace,
    num_chains: int = 0,
    flags: list[str] | None = None,
) -> Path:
    if not done(path):
        num_chains = num_chains or args.chains
        ttc("search", "--config", "configs/search.yaml", "--model_name_or_path", SMALL, "--methods", "revisions",
            "--reviser", reviser, "--budgets", num_chains * args.chain_length, "--revision_lengths",
            args.chain_length, "--num_problems", num_problems, "--problem_seed", problem_seed, "--seed", 0,
            "--problems_per_shard", 50, *(flags or []), "--output_dir", path)  # fmt: skip
    return path


def step_outcomes(search_dir: Path) -> dict[str, dict[str, float]]:
    """Per problem (in problem order): the mean correctness of each step's attempts over the chains,
    the counts of each transition (correct->*, incorrect->*), and the same counts per step (``ci1``:
    correct at step 0, incorrect at step 1; the reviser then saw one attempt)."""
    reader = ShardReader(search_dir)
    columns = ["problem_id", "method", "budget", "chain_length", "correct", "subtrees", "positions"]
    rows = distinct_revision_rows(list(reader.iter_rows(0, len(reader), columns)))
    rows.sort(key=lambda r: r["problem_id"])
    steps = max(p for r in rows for p in r["positions"]) + 1
    by_step = np.zeros((len(rows), steps))
    by_transition = np.zeros((len(rows), steps - 1, 4))  # c->c, c->i, i->c, i->i into each step
    for i, row in enumerate(rows):
        chains = revision_chains_of(row)
        for chain in chains:
            for j in chain:
                by_step[i, row["positions"][j]] += bool(row["correct"][j]) / len(chains)
            verdicts = [bool(row["correct"][j]) for j in chain]
            for t, (before, after) in enumerate(zip(verdicts, verdicts[1:])):
                by_transition[i, t, (0 if before else 2) + (0 if after else 1)] += 1
    counts = by_transition.sum(axis=1)
    kinds = ["cc", "ci", "ic", "ii"]
    names = [f"step{t}" for t in range(steps)] + kinds
    names += [f"{kind}{t}" for t in range(1, steps) for kind in kinds]
    values = np.concatenate([by_step, counts, by_transition.reshape(len(rows), -1)], axis=1)
    return {row["problem_id"]: dict(zip(names, map(float, v))) for row, v in zip(rows, values)}


def paired(*outcomes: dict[str, dict[str, float]]) -> list[dict[str, np.ndarray]]:
    """Per-problem arrays of each option, on the problems all of them ran (in one order)."""
    common = sorted(set.intersection(*(set(o) for o in outcomes)))
    return [{k: np.array([o[p][k] for p in common]) for k in o[common[0]]} for o in outcomes]


def revision_probability(model, tokenizer, prompt: str, text: str) -> float:
    """The probability a reviser gives ``text`` (then EOS) after ``prompt``, teacher forced."""
    import torch

    from ttcompute.models.generation import prompt_token_ids

    start = len(prompt_token_ids(tokenizer, prompt))
    ids = torch.tensor([prompt_token_ids(tokenizer, prompt + text + tokenizer.eos_token)])
    with torch.no_grad():
        logits = model(ids).logits[0, :-1].float()
    target = ids[0, 1:]
    logp = torch.log_softmax(logits, -1)[torch.arange(len(target)), target][start - 1 :]
    return float(logp.sum().exp())


def context_use(reviser: Path, search_dir: Path, num_problems: int = 100) -> dict[str, float]:
    """How much the reviser reads its context: over the first ``num_problems`` held-out problems
    whose chains hold a correct attempt, the mean probability it gives that attempt's text (teacher
    forced) with no attempt in context, and with the same text as the one attempt in context. A
    reviser that copied a right answer it is shown would give the second ~1."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttcompute.models.reviser import format_reviser_prompt

    tokenizer = AutoTokenizer.from_pretrained(reviser)
    model = AutoModelForCausalLM.from_pretrained(reviser).eval()
    reader = ShardReader(search_dir)
    rows = distinct_revision_rows(list(reader.iter_rows(0, len(reader))))
    rows.sort(key=lambda r: r["problem_id"])
    alone, shown = [], []
    for row in rows:
        right = [t for t, ok in zip(row["completions"], row["correct"]) if ok and t.strip()]
        if not right:
            continue
        for attempts, out in (([], alone), ([right[0]], shown)):
            prompt = format_reviser_prompt(row["question"], attempts)
            out.append(revision_probability(model, tokenizer, prompt, right[0]))
        if len(alone) == num_problems:
            break
    return {
        "problems": len(alone),
        "p_alone": round(float(np.mean(alone)), 3),
        "p_shown": round(float(np.mean(shown)), 3),
    }


def _rate(flip: str, stay: str):
    def statistic(x):
        total = x[flip].sum() + x[stay].sum()
        return float(x[flip].sum() / total) if total else None

    return statistic


def summarize(option: dict, baseline: dict | None, seed: int) -> dict:
    (outcomes,) = paired(option)
    steps = sorted((k for k in outcomes if k.startswith("step")), key=lambda k: int(k[4:]))
    summary = {
        "pass_at_1_by_step": [round(float(outcomes[s].mean()), 4) for s in steps],
        "step4_minus_step1": paired_interval(
            outcomes, lambda x: float(x["step4"].mean() - x["step1"].mean()), seed=seed
        ),
        "correct_to_incorrect": paired_interval(outcomes, _rate("ci", "cc"), seed=seed),
        "incorrect_to_correct": paired_interval(outcomes, _rate("ic", "ii"), seed=seed),
    }
    # Do the flip rates move with the attempts shown? (c->i and i->c into each step, point estimates)
    for flip, stay, key in (
        ("ci", "cc", "correct_to_incorrect_by_step"),
        ("ic", "ii", "incorrect_to_correct_by_step"),
    ):
        rates = []
        for t in range(1, len(steps)):
            total = outcomes[f"{flip}{t}"].sum() + outcomes[f"{stay}{t}"].sum()
            rates.append(round(float(outcomes[f"{flip}{t}"].sum() / total), 3) if total else None)
        summary[key] = rates
    summary["num_problems"] = len(outcomes["step0"])
    if baseline is not None:
        mine, theirs = paired(option, baseline)
        both = {"a": mine["step4"], "b": theirs["step4"]}
        summary["step4_minus_baseline_step4"] = paired_interval(
            both, lambda x: float(x["a"].mean() - x["b"].mean()), seed=seed
        )
    return summary


def _ci(interval: dict | None, digits: int = 3) -> str:
    if not interval:
        return "—"
    return (
        f"{interval['estimate']:+.{digits}f} [{interval['low']:+.{digits}f}, {interval['high']:+.{digits}f}]"
    )


def _rate_ci(interval: dict) -> str:
    return f"{interval['estimate']:.3f} [{interval['low']:.3f}, {interval['high']:.3f}]"


def markdown(results: dict[str, dict], args: argparse.Namespace) -> str:
    lines = [
        f"Revision chains of {args.chain_length} attempts on held-out problems (problem seed {args.eval_seed}; "
        "the first N of the same set, M chains each); 95% paired bootstrap over problems.",
        "",
        "| option | problems × chains | pass@1 by step 0, 1, 2, ... | step 4 − step 1 | correct→incorrect "
        "| incorrect→correct | step 4 − baseline's (same problems) | P(right) alone / shown |",
        "|---|---:|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        steps = " / ".join(f"{p:.3f}" for p in r["pass_at_1_by_step"])
        lines.append(
            f"| {name} | {r['num_problems']} × {r.get('chains_per_problem', args.chains)} | {steps} | {_ci(r['step4_minus_step1'])} | {_rate_ci(r['correct_to_incorrect'])} "
            f"| {_rate_ci(r['incorrect_to_correct'])} | {_ci(r.get('step4_minus_baseline_step4'))} "
            f"| {r['context_use']['p_alone']:.2f} / {r['context_use']['p_shown']:.2f} |"
        )
    lines += [
        "",
        "Flip rates into each step (step t: the reviser saw min(t, 4) attempts), correct→incorrect / "
        "incorrect→correct:",
        "",
        "| option | step 1 | 2 | 3 | 4 | 5 | 6 | 7 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        if "correct_to_incorrect_by_step" in r:  # results of an older bench have none
            pairs = zip(r["correct_to_incorrect_by_step"], r["incorrect_to_correct_by_step"])
            lines.append(f"| {name} | " + " | ".join(f"{a:.2f} / {b:.2f}" for a, b in pairs) + " |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 4))
    for name, r in results.items():
        curve = r["pass_at_1_by_step"]
        ax.plot(range(len(curve)), curve, marker="o", label=name)
    ax.set_xlabel("revision step (0 = first attempt)")
    ax.set_ylabel("pass@1")
    ax.set_title("Reviser options: pass@1 by revision step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))  # many options: beside the plot
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_reviser(name: str, out: Path, args: argparse.Namespace, train_samples: Path, paper: Path) -> Path:
    """The option's reviser: its trajectories, its stage 1 where it has one, then training (each
    reused when already there)."""
    option = OPTIONS[name]
    datasets = [paper]
    if option.get("revisions"):
        datasets = [
            trajectories(
                train_samples, out / "trajectories" / option.get("trajectories_of", name), option["revisions"]
            )
        ]
    if option.get("extra"):
        extra = samples(out, args.extra_problems, 14000, 64, 0, "extra_samples")
        datasets.append(trajectories(extra, out / "trajectories" / "extra", []))
    if option.get("own_chains"):
        # The baseline reviser's own chains on the training problems (never the held-out ones).
        own = chains(out / "train_chains", out / "revisers" / "baseline", args.train_problems, 12000, args)
        datasets.append(trajectories(train_samples, out / "trajectories" / "restem", ["--chains_dir", own]))
    base = option.get("base", SMALL)
    if option.get("copy_stage"):
        copies = trajectories(train_samples, out / "trajectories" / "copy", ["--copy_attempts", 26])
        shared = option.get("stage1_of", name)  # the same stage-1 flags: one checkpoint
        base = train(out / "revisers" / f"{shared}_stage1", [copies], base, option.get("copy_train", []))
    return train(out / "revisers" / name, datasets, base, option.get("train", []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "reviser_options")
    parser.add_argument("--options", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    parser.add_argument("--train_samples", type=Path, default=REPO / "runs" / "demo" / "reviser" / "train_samples",
                        help="a ttc sample output to train on (built like the demo's when missing)")  # fmt: skip
    parser.add_argument("--train_problems", type=int, default=800)
    parser.add_argument("--extra_problems", type=int, default=1200, help="more_data: problems added")
    parser.add_argument("--eval_problems", type=int, default=300)
    parser.add_argument("--eval_seed", type=int, default=EVAL_SEED)
    parser.add_argument("--chain_length", type=int, default=8)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--bootstrap_seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    train_samples = args.train_samples
    if not done(train_samples):
        train_samples = samples(out, args.train_problems, 12000, 64, 0, "train_samples")
    paper = trajectories(train_samples, out / "trajectories" / "baseline", [])
    results: dict[str, dict] = {}
    outcomes: dict[str, dict] = {}
    # Another draw of held-out problems (a confirmation run) gets its own chains and results.
    draw = "" if args.eval_seed == EVAL_SEED else f"@seed{args.eval_seed}"
    for name in ["baseline", *[o for o in args.options if o != "baseline"]]:
        option = OPTIONS[name]
        reviser = build_reviser(option.get("reviser_of", name), out, args, train_samples, paper)
        num_chains = option.get("eval_chains", args.chains)
        num_problems = option.get("eval_problems", args.eval_problems)
        search = chains(out / "eval_chains" / f"{name}{draw}", reviser, num_problems, args.eval_seed, args, num_chains,
                        option.get("search", []))  # fmt: skip
        recorded = json.loads((search / "stats.json").read_text()).get("num_problems")
        if recorded not in (None, num_problems):
            raise SystemExit(
                f"{search} holds chains of {recorded} problems, not {num_problems}: move it aside"
            )
        outcomes[name] = step_outcomes(search)
        results[name] = summarize(
            outcomes[name], None if name == "baseline" else outcomes["baseline"], args.bootstrap_seed
        )
        results[name]["chains_per_problem"] = num_chains
        results[name]["context_use"] = context_use(reviser, search)
        results[name]["training_seconds"] = json.loads((reviser / "training_log.json").read_text()).get(
            "train_runtime_s"
        )
        stem = f"reviser_options{draw}"
        (out / f"{stem}.json").write_text(json.dumps(results, indent=2))
        (out / f"{stem}.md").write_text(markdown(results, args))
        plot(results, out / f"{stem}.png")
        print(markdown(results, args), flush=True)


if __name__ == "__main__":
    main()
