"""``ttc difficulty``: difficulty bins of problems from the base policy's samples (Snell et al., Sec. 3).

Bins are quantiles of a per-problem score where higher means easier: bin 1 holds the easiest fifth,
bin 5 the hardest. The score comes from a ``--predictor``:

* ``oracle``: pass@1 over the samples (needs the ground truth);
* ``prm``: the mean PRM final-answer score over the samples -- no ground truth (the paper's
  "predicted" difficulty);
* ``prm_probe``: the same over only the first ``--probe_samples`` samples, a cheap predictor whose
  cost is a few generations and their PRM scoring -- a small fraction of a search budget;
* ``question``: pass@1 predicted before any sampling, from the policy's hidden states of the prompt
  by a probe trained on other problems' oracle pass@1 (``question_probe.py``); its cost is one prompt
  forward pass per problem. The samples are read only for their prompts and, for reporting, the
  oracle agreement.

Every predictor reports its own compute (``estimation_compute``: the generations it read and the
PRM tokens it ran), so compute-optimal selection can be charged for it. Edges are saved, so another
problem set is binned on the same scale with ``--bin_edges_file``.

Output (``output_dir``): ``difficulty.parquet`` with columns ``problem_id, pass_at_1, predicted_score
(null for oracle), num_samples (used), bin``; ``bin_edges.json``; ``stats.json`` (bin sizes, the
estimate's compute and, for the other predictors, agreement with the oracle bins); ``ttc_config.yaml``;
for ``question``, ``question_probe.json`` (the probe, reusable with ``--question_probe``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ttcompute.core.budget import inference_flops
from ttcompute.core.config import save_resolved_config
from ttcompute.core.errors import InputError
from ttcompute.core.outputs import require_unique_ids
from ttcompute.core.shards import ShardReader, write_json
from ttcompute.core.steps import split_into_steps
from ttcompute.data_gen.difficulty_config import DifficultyConfig
from ttcompute.data_gen.question_probe import predict_question_difficulty
from ttcompute.models.prm_formats import load_prm

logger = logging.getLogger(__name__)


def quantile_edges(pass_at_1: list[float], num_bins: int) -> list[float]:
    """``num_bins - 1`` ascending pass@1 edges at the quantiles ``k / num_bins``.

    >>> quantile_edges([0.0, 0.25, 0.5, 0.75, 1.0], 2)
    [0.5]
    """
    if not pass_at_1:
        raise InputError("no problems to bin")
    qs = [k / num_bins for k in range(1, num_bins)]
    return [float(x) for x in np.quantile(np.asarray(pass_at_1, dtype=float), qs)]


def assign_bins(pass_at_1: list[float], edges: list[float]) -> list[int]:
    """Bin of each problem: 1 = easiest (highest pass@1) ... len(edges) + 1 = hardest.

    A value equal to an edge goes to the harder side, so equal pass@1 always means the same bin
    (deterministic ties, whatever the order of problems).

    >>> assign_bins([1.0, 0.5, 0.0], [0.25, 0.5, 0.75])
    [1, 3, 4]
    """
    below = np.searchsorted(np.asarray(edges, dtype=float), np.asarray(pass_at_1, dtype=float), side="left")
    return [int(len(edges) + 1 - b) for b in below]


def prm_difficulty_scores(
    prm, questions: list[str], completions: list[list[str]], step_separator: str, show_progress: bool = True
) -> tuple[list[float], int]:
    """Mean PRM final-answer score of each problem's completions (an empty one scores 0), and the
    PRM tokens this ran. Problems are scored a chunk at a time, every completion of a chunk in one call."""
    before = prm.num_tokens_encoded
    means = []
    chunk = 32
    for start in tqdm(
        range(0, len(questions), chunk), desc="PRM difficulty", unit="chunk", disable=not show_progress
    ):
        pairs = [
            (i, split_into_steps(text, step_separator))
            for i in range(start, min(start + chunk, len(questions)))
            for text in completions[i]
        ]
        scored = [(i, steps) for i, steps in pairs if steps]
        finals = (
            prm.score([questions[i] for i, _ in scored], [steps for _, steps in scored]) if scored else []
        )
        sums: dict[int, float] = {}
        for (i, _), step_scores in zip(scored, finals):
            sums[i] = sums.get(i, 0.0) + float(step_scores[-1])
        for i in range(start, min(start + chunk, len(questions))):
            means.append(sums.get(i, 0.0) / len(completions[i]))
    return means, prm.num_tokens_encoded - before


def _oracle_pass_at_1(oracle_dir: str, problem_ids: list[str]) -> list[float]:
    """The pass@1 an oracle ``ttc difficulty`` output gives each of ``problem_ids``.

    Raises:
        InputError: not a difficulty output, or a problem it does not hold.
    """
    path = Path(oracle_dir) / "difficulty.parquet"
    if not path.is_file():
        raise InputError(f"{path}: no such file (--oracle_dir takes a ttc difficulty output)")
    table = datasets.Dataset.from_parquet(str(path))
    known = dict(zip(table["problem_id"], table["pass_at_1"]))
    missing = [p for p in problem_ids if p not in known]
    if missing:
        raise InputError(f"{path}: no pass@1 of problem {missing[0]!r} ({len(missing)} missing)")
    return [float(known[p]) for p in problem_ids]


def _sample_compute(samples_dir: str) -> dict[str, Any] | None:
    stats_file = Path(samples_dir) / "stats.json"
    return json.loads(stats_file.read_text()).get("compute") if stats_file.exists() else None


def run_difficulty(config: DifficultyConfig) -> dict[str, Any]:
    """The ``ttc difficulty`` stage."""
    samples = ShardReader(config.samples_dir)  # streamed: memory stays at one shard
    needed = ["problem_id", "correct"] + {"oracle": [], "question": ["prompt"]}.get(
        config.predictor, ["question", "completions"]
    )
    for column in needed:
        if column not in samples.column_names:
            raise InputError(f"{config.samples_dir}: missing column '{column}' (not ttc sample output?)")
    out = Path(config.output_dir)

    problem_ids: list[str] = []
    pass_at_1: list[float] = []
    num_samples: list[int] = []
    for batch in samples.iter_batches(["problem_id", "correct"], batch_size=1024):
        for problem_id, verdicts in zip(
            batch.column("problem_id").to_pylist(), batch.column("correct").to_pylist()
        ):
            if not verdicts or any(v is None for v in verdicts):
                what = "no samples" if not verdicts else "a null verdict in 'correct'"
                raise InputError(
                    f"{config.samples_dir}: row {len(problem_ids)} (problem {problem_id}): {what}"
                )
            problem_ids.append(problem_id)
            pass_at_1.append(sum(verdicts) / len(verdicts))
            num_samples.append(len(verdicts))
    if not problem_ids:  # quantile_edges would refuse too, without saying which data
        raise InputError(f"{config.samples_dir}: no problems; nothing to bin")
    # Read before anything is written: a wrong --oracle_dir must leave no output behind.
    reference = _oracle_pass_at_1(config.oracle_dir, problem_ids) if config.oracle_dir else pass_at_1

    require_unique_ids(problem_ids, config.samples_dir)
    sample_compute = _sample_compute(config.samples_dir)
    predicted: list[float | None] = [None] * len(pass_at_1)
    used = num_samples
    probe = None
    if config.predictor == "oracle":
        scores = pass_at_1
        # Oracle difficulty costs the samples it was computed from (the paper did not count this).
        compute = sample_compute
    elif config.predictor == "question":
        prompts = [
            p
            for batch in samples.iter_batches(["prompt"], batch_size=1024)
            for p in batch.column(0).to_pylist()
        ]
        predicted, compute, probe, probe_report = predict_question_difficulty(config, problem_ids, prompts)
        scores = predicted
        used = [0] * len(problem_ids)  # no sample is read to predict
    else:
        prm = load_prm(
            config.prm,
            config.prm_format,
            device=config.device,
            step_separator=config.prm_step_separator,
            prompt_contract=config.prm_prompt_contract(),
        )
        limit = config.probe_samples if config.predictor == "prm_probe" else None
        used = [min(n, limit) if limit else n for n in num_samples]
        predicted, prm_tokens = [], 0
        columns = ["question", "completions"] + (
            ["num_tokens"] if "num_tokens" in samples.column_names else []
        )
        policy_tokens = 0
        for start in tqdm(range(0, len(samples), 256), desc="PRM difficulty", unit="256 problems"):
            rows = samples.rows(start, start + 256, columns)
            scores_chunk, tokens = prm_difficulty_scores(
                prm,
                [r["question"] for r in rows],
                [r["completions"][:limit] for r in rows],
                config.step_separator,
                show_progress=False,
            )
            predicted += scores_chunk
            prm_tokens += tokens
            policy_tokens += sum(sum(r["num_tokens"][:limit]) for r in rows if "num_tokens" in r)
        scores = predicted
        policy_params = (sample_compute or {}).get("policy_parameters", 0)
        if "num_tokens" not in samples.column_names:
            policy_tokens = (sample_compute or {}).get("policy_tokens", 0)
        policy_flops = inference_flops(policy_params, policy_tokens)
        prm_flops = inference_flops(prm.num_parameters, prm_tokens)
        compute = {
            "policy_flops": policy_flops,
            "policy_parameters": policy_params,
            "policy_tokens": policy_tokens,
            "generations": sum(used),
            "verifier_flops": prm_flops,
            "verifier_parameters": prm.num_parameters,
            "verifier_tokens": prm_tokens,
            "total_flops": policy_flops + prm_flops,
        }

    metric = {"oracle": "pass_at_1", "question": "predicted_pass_at_1"}.get(
        config.predictor, "mean_prm_score"
    )
    if config.bin_edges_file:
        saved = json.loads(Path(config.bin_edges_file).read_text())
        edges = saved["edges"]
        if len(edges) != config.num_bins - 1:
            raise InputError(
                f"{config.bin_edges_file}: has {len(edges) + 1} bins, but --num_bins is {config.num_bins}"
            )
        if saved.get("metric", "pass_at_1") != metric:
            raise InputError(
                f"{config.bin_edges_file}: edges of {saved.get('metric')!r}, but predictor "
                f"{config.predictor} bins by {metric!r}"
            )
    else:
        edges = quantile_edges(scores, config.num_bins)
    bins = assign_bins(scores, edges)
    out.mkdir(parents=True, exist_ok=True)
    save_resolved_config(out, "difficulty", config)
    if probe is not None:
        probe.save(out / "question_probe.json")

    table = datasets.Dataset.from_dict(
        {
            "problem_id": problem_ids,
            "pass_at_1": pass_at_1,
            "predicted_score": predicted,
            "num_samples": used,
            "bin": bins,
        },
        features=datasets.Features(
            {
                "problem_id": datasets.Value("string"),
                "pass_at_1": datasets.Value("float64"),
                "predicted_score": datasets.Value("float64"),
                "num_samples": datasets.Value("int64"),
                "bin": datasets.Value("int64"),
            }
        ),
    )
    tmp = out / ".difficulty.parquet.tmp"
    table.to_parquet(str(tmp))
    tmp.replace(out / "difficulty.parquet")
    write_json(
        out / "bin_edges.json",
        {"metric": metric, "edges": edges, "num_bins": config.num_bins, "bin_1": "easiest"},
    )

    sizes = {str(b): bins.count(b) for b in range(1, config.num_bins + 1)}
    mean_by_bin = {
        str(b): round(float(np.mean([p for p, q in zip(pass_at_1, bins) if q == b])), 4)
        if sizes[str(b)]
        else None
        for b in range(1, config.num_bins + 1)
    }
    stats = {
        "stage": "difficulty",
        "predictor": config.predictor,
        "num_problems": len(pass_at_1),
        "bin_sizes": sizes,
        "mean_pass_at_1_by_bin": mean_by_bin,
        "edges": edges,
        "estimation_compute": compute,
    }
    if probe is not None:
        stats["question_probe"] = probe_report
    if config.predictor != "oracle":
        stats["agreement_with_oracle"] = oracle_agreement(reference, predicted, config.num_bins)
        if config.oracle_dir:
            stats["agreement_with_oracle"]["oracle_dir"] = config.oracle_dir
    write_json(out / "stats.json", stats)
    logger.info(
        "Binned %d problems into %d bins by %s (sizes %s, mean pass@1 %s%s) -> %s",
        len(bins),
        config.num_bins,
        metric,
        sizes,
        mean_by_bin,
        f", agreement with oracle {stats['agreement_with_oracle']}"
        if "agreement_with_oracle" in stats
        else "",
        out,
    )
    return {"output_dir": str(out), **stats}


def oracle_agreement(pass_at_1: list[float], predicted: list[float], num_bins: int) -> dict[str, float]:
    """How well a predicted score bins like the oracle: the share of problems in the same bin, within
    one bin, and the Spearman rank correlation of the two scores.

    >>> oracle_agreement([0.9, 0.5, 0.1, 0.0], [0.8, 0.3, 0.6, 0.1], 2)  # 2nd and 3rd swapped
    {'same_bin': 0.5, 'within_one_bin': 1.0, 'spearman': 0.8}
    """
    oracle = assign_bins(pass_at_1, quantile_edges(pass_at_1, num_bins))
    mine = assign_bins(predicted, quantile_edges(predicted, num_bins))
    same = float(np.mean([a == b for a, b in zip(oracle, mine)]))
    near = float(np.mean([abs(a - b) <= 1 for a, b in zip(oracle, mine)]))
    rho = float("nan")
    if len(set(pass_at_1)) > 1 and len(set(predicted)) > 1:
        # Spearman: the Pearson correlation of the ranks (ties share their mean rank).
        rho = np.corrcoef(pd.Series(pass_at_1).rank(), pd.Series(predicted).rank())[0, 1]
    return {"same_bin": round(same, 4), "within_one_bin": round(near, 4), "spearman": round(float(rho), 4)}
