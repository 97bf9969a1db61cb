"""N graded solutions per problem: one batched policy call, each distinct answer graded once.

``ttc sample`` writes these rows; ``ttc train-policy`` measures its held-out pass@1 with them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from ttcompute.core.grading import extract_answer, is_equivalent
from ttcompute.models.generation import GenerationBackend, build_prompt
from ttcompute.models.generation_config import GeneratorConfig
from ttcompute.tasks.problem import Problem


def sample_rows(
    backend: GenerationBackend, problems: list[Problem], gen_args: GeneratorConfig, n: int, seed: int
) -> list[dict[str, Any]]:
    """Sample ``n`` solutions for each problem in one batched call and grade them."""
    tokenizer = getattr(backend, "tokenizer", None)
    contract = gen_args.prompt_contract()
    prompts = [build_prompt(p.question, contract, tokenizer) for p in problems]
    outputs = backend.generate(prompts, gen_args.sampling_params(n=n, seed=seed))
    rows = []
    for problem, prompt, completions in zip(problems, prompts, outputs):
        answers = [extract_answer(c.text, gen_args.answer_extraction) for c in completions]
        verdicts: dict[str, bool] = {}  # samples repeat answers; grade each distinct one once
        for answer in set(a for a in answers if a is not None):
            verdicts[answer] = is_equivalent(answer, problem.answer)
        rows.append(
            {
                "problem_id": problem.problem_id,
                "question": problem.question,
                "prompt": prompt,
                "gold_answer": problem.answer,
                "metadata": json.dumps(problem.metadata, sort_keys=True),
                "completions": [c.text for c in completions],
                "answers": answers,
                "correct": [a is not None and verdicts[a] for a in answers],
                "num_tokens": [c.num_tokens for c in completions],
                "finish_reasons": [c.finish_reason for c in completions],
            }
        )
    return rows


def pass_at_1_by(rows: list[dict[str, Any]], key: str) -> tuple[float, dict[str, float]]:
    """Mean correctness over all samples, and per value of metadata field ``key``."""
    groups: dict[str, list[bool]] = defaultdict(list)
    everything: list[bool] = []
    for row in rows:
        value = json.loads(row["metadata"]).get(key)
        groups[str(value)].extend(row["correct"])
        everything.extend(row["correct"])
    by = {k: round(sum(v) / len(v), 4) for k, v in sorted(groups.items(), key=lambda kv: _natural(kv[0]))}
    return round(sum(everything) / max(len(everything), 1), 4), by


def _natural(value: str) -> tuple[int, Any]:
    return (0, int(value)) if value.lstrip("-").isdigit() else (1, value)
