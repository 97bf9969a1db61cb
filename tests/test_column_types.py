"""Column types of sharded outputs: what one shard's rows would infer must never decide how the others
read back (``list<null>`` where every answer was None, int where another shard has floats)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ttcompute.cli import run_stage
from ttcompute.core.errors import InputError
from ttcompute.core.prompts import PromptContract
from ttcompute.core.shards import (
    ShardReader,
    load_sharded,
    prepare_output,
    shard_path,
    write_shard,
)
from ttcompute.data_gen.sample import SAMPLE_SCHEMA
from ttcompute.data_gen.stage_stats import sample_stats
from ttcompute.trainers.training_data import load_training_dataset


def test_a_sample_shard_whose_answers_are_all_none_reads_back_with_the_others(tmp_path, small_policy_dir):
    """60 new tokens: the five long problems (shards 0-4) end before any final answer, the short one
    (shard 5) reaches its answers. Inferred, shard 0's answers were ``list<null>`` and the output could
    not be loaded at all."""
    out = tmp_path / "samples"
    run_stage(
        "sample",
        ["--model_name_or_path", str(small_policy_dir), "--num_problems", "6", "--problem_seed", "2024",
         "--num_samples", "2", "--problems_per_shard", "1", "--max_new_tokens", "60", "--device", "cpu",
         "--output_dir", str(out)],
    )  # fmt: skip
    per_shard = [pq.read_table(shard_path(out, j)) for j in range(6)]
    answers = [t.column("answers").to_pylist()[0] for t in per_shard]
    # The case this test is about really happens: no answer at all in shard 0, some in another.
    assert answers[0] == [None, None] and any(a is not None for shard in answers for a in shard)
    assert all(t.schema.remove_metadata() == SAMPLE_SCHEMA for t in per_shard)

    data = load_sharded(out)
    assert data["answers"] == answers
    assert [row["answers"] for row in ShardReader(out).rows(0, 6)] == answers
    stats = sample_stats(str(out))
    assert stats["num_samples"] == 12
    assert stats == json.loads((out / "stats.json").read_text())


def _old_style_output(tmp_path, shards: list[list[dict]]):
    """An output whose shards were written with inferred types, as stages did before fixing them."""
    out = tmp_path / "old"
    prepare_output(out, "sample", "hash", len(shards), overwrite=False)
    for j, rows in enumerate(shards):
        write_shard(out, j, rows)
    return out


def test_outputs_written_with_inferred_types_read_back_in_one_widened_schema(tmp_path):
    out = _old_style_output(
        tmp_path,
        [
            [{"answers": [None, None], "num_tokens": [3, 4]}],
            [{"answers": ["7", None], "num_tokens": [2.5, 4.0]}],
        ],
    )
    assert str(pq.read_schema(shard_path(out, 0)).field("answers").type) == "list<element: null>"
    want = {"answers": [[None, None], ["7", None]], "num_tokens": [[3.0, 4.0], [2.5, 4.0]]}
    assert load_sharded(out)[:] == want
    reader = ShardReader(out)
    assert reader.rows(0, 2) == [dict(zip(want, values)) for values in zip(*want.values())]
    batches = list(reader.iter_batches())
    assert all(b.schema.field("answers").type == pa.list_(pa.string()) for b in batches)
    assert all(b.schema.field("num_tokens").type == pa.list_(pa.float64()) for b in batches)


def test_shards_whose_types_cannot_be_reconciled_are_refused_naming_the_output(tmp_path):
    out = _old_style_output(tmp_path, [[{"answer": "7"}], [{"answer": 7}]])
    with pytest.raises(InputError, match=f"{out}: shards disagree on column types"):
        load_sharded(out)
    with pytest.raises(InputError, match="shards disagree on column types"):
        ShardReader(out)


def test_stepwise_sources_with_bool_and_float_labels_concatenate_as_floats(tmp_path):
    """TRL-format labels (bool) next to ``ttc label``'s soft ones: concatenated as the first source's
    type, 0.25 would have become True."""
    trl = tmp_path / "trl.jsonl"
    soft = tmp_path / "soft.parquet"
    trl.write_text(
        json.dumps({"prompt": "1+1\n", "completions": ["1+1=2", "#### 2"], "labels": [True, False]})
    )
    pq.write_table(
        pa.table({"prompt": ["2+2\n"], "completions": [["2+2=4", "#### 4"]], "labels": [[0.25, 1.0]]}), soft
    )
    both = load_training_dataset(f"{trl},{soft}", "train")
    assert str(both.features["labels"]) == "List(Value('float64'))"
    assert both["labels"] == [[1.0, 0.0], [0.25, 1.0]]
    reverse = load_training_dataset(f"{soft},{trl}", "train")
    assert reverse["labels"] == [[0.25, 1.0], [1.0, 0.0]]

    text = tmp_path / "text.jsonl"
    text.write_text(json.dumps({"prompt": "3+3\n", "completions": ["3+3=6"], "labels": ["good"]}))
    with pytest.raises(InputError, match="column 'labels' has different types"):
        load_training_dataset(f"{trl},{text}", "train")


def test_a_saved_dataset_dict_gives_the_requested_split(tmp_path):
    import datasets

    rows = {"prompt": ["1+1\n"], "completions": [["1+1=2"]], "labels": [[True]]}
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict(rows), "test": datasets.Dataset.from_dict(rows)}
    ).save_to_disk(str(tmp_path / "dd"))
    assert load_training_dataset(str(tmp_path / "dd"), "test")["labels"] == [[True]]
    with pytest.raises(InputError, match="no split 'validation' \\(it has test, train\\)"):
        load_training_dataset(str(tmp_path / "dd"), "validation")


def test_merge_of_workers_whose_shards_inferred_different_types_gives_the_right_stats(tmp_path):
    """Two workers of an older ``ttc sample`` (types inferred per shard): worker 0's shard has no
    answer at all (``list<null>``). The merged stats are the ones counted here by hand."""
    shards = [
        [{"problem_id": "a", "answers": [None, None], "correct": [False, False], "num_tokens": [60, 60]}],
        [{"problem_id": "b", "answers": ["4", "5"], "correct": [True, False], "num_tokens": [9, 11]}],
    ]
    for worker, rows in enumerate(shards):
        out = tmp_path / f"node{worker}"
        prepare_output(out, "sample", "hash", 2, overwrite=False, info={"policy_parameters": 1000})
        write_shard(out, worker, rows)
    result = run_stage("merge", ["--inputs", str(tmp_path / "node*"), "--output_dir", str(tmp_path / "all")])
    stats = result["stats"]
    assert (stats["num_problems"], stats["num_samples"], stats["pass_at_1"]) == (2, 4, 0.25)
    assert stats["compute"]["policy_tokens"] == 60 + 60 + 9 + 11
    assert load_sharded(tmp_path / "all")["answers"] == [[None, None], ["4", "5"]]


def test_reviser_fitting_keeps_its_counts_whatever_the_input_columns_hold(char_tokenizer):
    """An input column named like an output one (a bool ``num_dropped`` left by earlier processing)
    must not change the output's type: inferred, 2 dropped attempts became True and were counted 1."""
    import datasets

    from ttcompute.trainers.revision_trainer import fit_trajectories

    question, completion = "Start at 3. Add 4.", "3 + 4 = 7"
    attempts = [f"3 + 4 = {v}" for v in (11, 12, 13)]
    rows = {"question": [question], "previous_attempts": [attempts], "completion": [completion]}
    template = PromptContract("{question}\n")
    full = len(char_tokenizer(f"Attempt:\n{attempts[2]}\nRevision:\n{question}\n{completion}</s>").input_ids)
    _, plain = fit_trajectories(datasets.Dataset.from_dict(rows), char_tokenizer, full, template)
    assert plain["num_dropped_attempts"] == 2  # room for the most recent attempt only
    clashing = {**rows, "num_dropped": [False], "fits": ["yes"]}
    fitted, stats = fit_trajectories(datasets.Dataset.from_dict(clashing), char_tokenizer, full, template)
    assert stats == plain
    assert fitted["prompt"] == [f"Attempt:\n{attempts[2]}\nRevision:\n{question}\n"]


def test_policy_tokenizing_keeps_its_labels_whatever_the_input_columns_hold(tmp_path, random_policy_dir):
    """A policy dataset that carries a ``labels`` column of bool lists (say, per-step verdicts): the tokenized
    ``labels`` are still -100 on the prompt and the completion's ids, as `tokenize` returns them."""
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttcompute.trainers.policy_config import PolicyConfig
    from ttcompute.trainers.policy_trainer import PolicyTrainer

    tokenizer = AutoTokenizer.from_pretrained(random_policy_dir)
    rows = {"prompt": ["Start at 3. Add 4.\n", "Start at 1.\n"], "completion": ["3 + 4 = 7", "1"]}
    args = PolicyConfig(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none")
    trainer = PolicyTrainer(
        AutoModelForCausalLM.from_pretrained(random_policy_dir),
        args,
        datasets.Dataset.from_dict({**rows, "labels": [[True, False], [False]]}),
        tokenizer,
    )
    want = [PolicyTrainer.tokenize({"prompt": p, "completion": c}, tokenizer) for p, c in zip(*rows.values())]
    assert trainer.train_dataset["labels"] == [w["labels"] for w in want]
    assert trainer.train_dataset["input_ids"] == [w["input_ids"] for w in want]
