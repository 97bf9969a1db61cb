"""``ttc orm-data``: outcome-reward training rows from a reviser's own attempts, history in context.

Snell et al. (sec. 6.2) select among revisions with a verifier that sees the previous attempts: an
ORM trained on the reviser's outputs. This turns the revision rows of a ``ttc search`` run (on
*training* problems) into the stepwise-supervision shape ``ttc train-prm`` reads; train it with
``--train_on_last_step_only true`` and use it with ``ttc search --verifier_context history``.

Each attempt becomes one row: ``prompt`` is the reviser prompt the attempt was written from (rebuilt
exactly, context fitting included, by :func:`ttcompute.models.reviser.attempt_prompts`), ``question``
the reviser's turn behind it (:func:`ttcompute.models.reviser.verifier_question`: attempts,
``Revision:``, the templated question), which the output's recorded prompt contract
(``"{question}\\n"`` in the search's chat template, if any) renders back into ``prompt`` exactly,
``completions`` its steps, ``labels`` its correctness on every step (the ORM uses the last). Empty
attempts are dropped and counted.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from transformers import AutoConfig, AutoTokenizer

from ttcompute.core.errors import InputError
from ttcompute.core.outputs import distinct_revision_rows, misaligned_candidates
from ttcompute.core.prompts import PromptContract, read_contract
from ttcompute.core.sharded_stage import run_sharded_stage
from ttcompute.core.shards import load_sharded, read_manifest, read_resolved_config, shard_path
from ttcompute.core.steps import split_into_steps
from ttcompute.data_gen.orm_data_config import OrmDataConfig
from ttcompute.models.generation import build_prompt, prompt_token_ids
from ttcompute.models.reviser import attempt_prompts, history_verifier_contract, verifier_question

logger = logging.getLogger(__name__)


# ``labels`` are bools, as in TRL's stepwise-supervision datasets (``ttc train-prm`` casts them to
# float); the schema is fixed so that no row set can change a column's type.
ORM_SCHEMA = pa.schema(
    [
        ("problem_id", pa.string()),
        ("question", pa.string()),
        ("prompt", pa.string()),
        ("completions", pa.list_(pa.string())),
        ("labels", pa.list_(pa.bool_())),
        ("correct", pa.bool_()),
        ("position", pa.int64()),
    ]
)


def run_orm_data(config: OrmDataConfig) -> dict[str, Any]:
    """The ``ttc orm-data`` stage."""
    search = load_sharded(config.search_dir)
    saved = Path(config.search_dir) / "ttc_config.yaml"
    settings = read_resolved_config(config.search_dir)
    if not settings.get("reviser"):
        raise InputError(f"{saved}: no reviser in the search's config (was it run with --methods revisions?)")
    rows = [r for r in search if r["method"] == "revisions"]
    if config.chain_length is not None:
        rows = [r for r in rows if r["chain_length"] == config.chain_length]
    if not rows:
        raise InputError(f"{config.search_dir}: no revisions rows (chain_length {config.chain_length})")
    for index, row in enumerate(rows):
        # A misaligned row would give one attempt another's verdict: refused, as `ttc select` does.
        problem = misaligned_candidates(row)
        if problem:
            raise InputError(
                f"{config.search_dir}: revisions row {index} (problem {row['problem_id']}): {problem}"
            )
    rows = distinct_revision_rows(rows)  # smaller budgets are the largest's first chains: each attempt once
    # The search's own choice; explicit, because left unset transformers asks on a terminal.
    trust = bool(settings.get("trust_remote_code", False))
    tokenizer = AutoTokenizer.from_pretrained(settings["reviser"], trust_remote_code=trust)
    context = getattr(
        AutoConfig.from_pretrained(settings["reviser"], trust_remote_code=trust),
        "max_position_embeddings",
        None,
    )
    contract = read_contract(config.search_dir)
    if contract is None:  # a search written before contracts were recorded: its options say it
        contract = PromptContract.from_record(settings, str(saved))
    verifier_contract = history_verifier_contract(contract)
    separator = settings.get("step_separator", "\n\n")
    max_tokens = settings.get("max_new_tokens", 512)

    def count_tokens(text: str) -> int:
        return len(prompt_token_ids(tokenizer, text))

    out_rows, empty = [], 0
    for row in rows:
        chains: dict[int, list[int]] = {}
        for index, chain in enumerate(row["subtrees"]):
            chains.setdefault(chain, []).append(index)
        for indices in chains.values():
            indices.sort(key=lambda i: row["positions"][i])
            texts = [row["completions"][i] for i in indices]
            prompts = attempt_prompts(
                row["question"], texts, context, count_tokens, contract, tokenizer, max_tokens
            )
            for i, text, (prompt, shown) in zip(indices, texts, prompts):
                steps = split_into_steps(text, separator)
                if not steps:
                    empty += 1
                    continue
                question = verifier_question(row["question"], shown, contract)
                if build_prompt(question, verifier_contract, tokenizer) != prompt:
                    raise AssertionError(f"the history verifier's prompt is not the reviser's: {prompt!r}")
                correct = bool(row["correct"][i])
                out_rows.append(
                    {
                        "problem_id": row["problem_id"],
                        "question": question,
                        "prompt": prompt,
                        "completions": steps,
                        "labels": [correct] * len(steps),
                        "correct": correct,
                        "position": row["positions"][i],
                    }
                )

    if not out_rows:
        raise InputError(
            f"{config.search_dir}: field completions: every revisions attempt ({empty}) is empty; "
            "no ORM row to write"
        )
    if len({row["correct"] for row in out_rows}) == 1:
        # Still data (one part of a mix), but an ORM trained on it alone learns a constant.
        verdict = "correct" if out_rows[0]["correct"] else "incorrect"
        logger.warning("%s: all %d attempts are %s", config.search_dir, len(out_rows), verdict)

    def stats(output_dir: str) -> dict[str, Any]:
        written = pq.read_table(shard_path(output_dir, 0), columns=["correct"]).column("correct")
        return {
            "stage": "orm-data",
            "num_rows": len(written),
            "fraction_correct": round((pc.sum(written.cast("int64")).as_py() or 0) / max(len(written), 1), 4),
            "empty_attempts_dropped": read_manifest(output_dir)["info"]["empty_attempts_dropped"],
        }

    # One shard: the rows are built (and checked) before anything is written.
    result = run_sharded_stage(
        "orm-data",
        (config,),
        output_dir=config.output_dir,
        shard="0/1",
        overwrite=config.overwrite,
        num_shards=1,
        schema=ORM_SCHEMA,
        build_shard=lambda j: out_rows,
        stats=stats,
        # The ORM reads the reviser's turn as its question, in the reviser's chat template.
        info={"empty_attempts_dropped": empty, "prompt_contract": verifier_contract.to_dict()},
        # Rows of another search into the same directory are another run, not a resumed one.
        hash_extra={"search_config_hash": read_manifest(config.search_dir)["config_hash"]},
        progress="Writing ORM rows",
    )
    logger.info(
        "%d ORM rows (%.1f%% correct) from %d search rows; %d empty attempts dropped -> %s",
        result["num_rows"],
        100 * result["fraction_correct"],
        len(rows),
        empty,
        config.output_dir,
    )
    return result
