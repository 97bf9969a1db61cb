"""``ttc sample``-shaped output of any size, written straight with pyarrow (no model): for tests of
stages that read samples at scale (streaming, kills, merges)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def write_synthetic_samples(
    path: Path, num_problems: int, samples_per_problem: int, problems_per_shard: int, text_chars: int = 200
) -> int:
    """Write the samples; the first sample of every third problem is correct. Returns the total
    number of completion characters (what a reader that holds everything would hold)."""
    path.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    num_shards = -(-num_problems // problems_per_shard)
    manifest = {"stage": "sample", "config_hash": "synthetic", "num_shards": num_shards}
    (path / "manifest.json").write_text(json.dumps({**manifest, "info": {"policy_parameters": 1000}}))
    total_chars = 0
    for shard in range(num_shards):
        rows = []
        for p in range(shard * problems_per_shard, min((shard + 1) * problems_per_shard, num_problems)):
            completions, correct = [], []
            for s in range(samples_per_problem):
                ok = s == 0 and p % 3 == 0
                answer = 100 + p if ok else rng.randrange(10**6)
                step = f"{rng.randrange(10**9)} + {rng.randrange(10**9)} = {rng.randrange(10**10)}\n\n"
                body = (step * (text_chars // len(step) + 1))[: max(text_chars - 30, 0)]
                completions.append(f"{body}The answer is \\boxed{{{answer}}}")
                correct.append(ok)
            total_chars += sum(map(len, completions))
            rows.append(
                {
                    "problem_id": f"p{p}",
                    "question": f"Start at {p}.",
                    "prompt": f"Start at {p}.\n",
                    "gold_answer": str(100 + p),
                    "completions": completions,
                    "correct": correct,
                    "num_tokens": [len(c) for c in completions],
                }
            )
        pq.write_table(pa.Table.from_pylist(rows), path / f"shard-{shard:05d}.parquet")
    return total_chars
