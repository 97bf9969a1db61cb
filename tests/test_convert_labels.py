"""Tests for ``ttc convert-labels`` (ttcompute.data_gen.convert_labels): PRM800K and Math-Shepherd rows
in their raw layouts (tests/data/prm800k_synthetic.jsonl, tests/data/math_shepherd_synthetic.jsonl)
mapped to stepwise rows, checked row by row against rows written out here by hand; resumption, workers
and merge; bad input; ``ttc train-prm`` on the result."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import TEST_DATA, trainer_config, write_jsonl

from ttcompute.cli import STAGES, main, run_stage
from ttcompute.core.config import parse_stage_args
from ttcompute.core.errors import InputError
from ttcompute.core.prompts import read_contract
from ttcompute.core.shards import load_sharded, read_manifest, shard_path

PRM800K = TEST_DATA / "prm800k_synthetic.jsonl"
SHEPHERD = TEST_DATA / "math_shepherd_synthetic.jsonl"
REPO = Path(__file__).resolve().parents[1]


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _raw(path: Path, line: int) -> dict:
    return json.loads(_lines(path)[line - 1])


def convert(source: str, inputs: list, out: Path, *options: str) -> dict:
    return run_stage(
        "convert-labels",
        ["--from", source, "--input", *map(str, inputs), "--output_dir", str(out), *map(str, options)],
    )


def rows_of(out: Path) -> list[dict]:
    return [dict(row) for row in load_sharded(out)]


def expected(
    source: str,
    path: Path,
    line: int,
    question: str,
    steps: list[str],
    labels: list[float],
    first_bad: int = -1,
    *,
    kind: str = "path",
    branch: int = -1,
    gold: str | None = None,
    finish: str | None = None,
    task: str | None = None,
    template: str = "{question}\n",
) -> dict:
    """An output row written out: the prompt, the id and the provenance columns from their definitions."""
    import hashlib

    return {
        "prompt": template.replace("{question}", question),
        "completions": steps,
        "labels": labels,
        "problem_id": f"{source}-{hashlib.sha256(question.encode()).hexdigest()[:16]}",
        "question": question,
        "gold_answer": gold,
        "source": source,
        "source_row": f"{path}:{line}",
        "kind": kind,
        "branch_step": branch,
        "first_bad_step": first_bad,
        "finish_reason": finish,
        "task": task,
    }


# --- PRM800K: the mapping, row by row ------------------------------------------------------------

Q_A = "What is $2 + 2 \\cdot 3$?"
Q_E = "Twice a number is $10$. What is the number?"
Q_F = "What is $3^2 - 1$?"


def _readme_row() -> tuple[str, list[str], list[str]]:
    """Line 2 (the PRM800K README's example): its question, the texts of its first two steps, and the
    five completions of the step where labelling stopped."""
    raw = _raw(PRM800K, 2)
    steps = raw["label"]["steps"]
    assert steps[2]["chosen_completion"] is None and steps[2]["human_completion"] is None
    # The pre-generated solution's own third step is the first completion, rated -1.
    assert steps[2]["completions"][0]["text"] == raw["question"]["pre_generated_steps"][2]
    first_two = [s["completions"][0]["text"] for s in steps[:2]]
    return raw["question"]["problem"], first_two, [c["text"] for c in steps[2]["completions"]]


def prm800k_paths(neutral: float = 1.0) -> list[dict]:
    """The path rows of the fixture (lines 3/4 give_up/bad_problem, 7 blank, 8/9 malformed)."""
    q_b, b_steps, b_third = _readme_row()
    row = lambda line, q, steps, labels, bad, finish, gold: expected(  # noqa: E731
        "prm800k", PRM800K, line, q, steps, labels, bad, gold=gold, finish=finish
    )
    return [
        # the answer step's "\n\n" replaced by "\n"; step 2 was rated 0 (neutral)
        row(
            1,
            Q_A,
            [
                "I need to multiply first: $2 \\cdot 3 = 6$.",
                "Then I add the rest.",
                "So $2 + 6 = 8$.\n# Answer\n8",
            ],
            [1.0, neutral, 1.0],
            -1,
            "solution",
            "8",
        ),
        # ratings 0, 0, then the pre-generated step rated -1 where labelling stopped
        row(2, q_b, [*b_steps, b_third[0]], [neutral, neutral, 0.0], 2, "found_error", "40,\\!000"),
        # chosen completion 1 at step 1, the human completion at step 2 (rated +1)
        row(
            5,
            Q_E,
            ["Call the number $n$, so $2n = 10$.", "Dividing by $2$, $n = 5$.", "# Answer\n5"],
            [1.0, 1.0, 1.0],
            -1,
            "solution",
            "5",
        ),
        # the chosen step 2 is rated -1: the path ends there, step 3 is dropped
        row(6, Q_F, ["$3^2 = 9$.", "$9 - 1 = 7$."], [1.0, 0.0], 1, "found_error", "8"),
        # labelling stopped at step 2 with no pre-generated solution: the path ends before it
        row(10, Q_A, ["First, $2 \\cdot 3 = 6$."], [1.0], -1, "found_error", "8"),
    ]


def test_prm800k_rows_are_the_documented_mapping(tmp_path, caplog):
    out = tmp_path / "prm800k"
    result = convert("prm800k", [PRM800K], out, "--rows_per_shard", 3)
    assert rows_of(out) == prm800k_paths()
    assert len(list(out.glob("shard-*.parquet"))) == 4  # 10 lines, 3 per shard
    # What was skipped, and why, one line each naming the file, line and field.
    messages = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert f"{PRM800K}:8: field 'label.steps': no steps; row skipped" in messages
    assert any(m.startswith(f"{PRM800K}:9: invalid JSON (Unterminated string") for m in messages), messages
    assert result["skipped_input_rows"] == {
        "malformed": 2,
        "finish_reason_give_up": 1,
        "finish_reason_bad_problem": 1,
    }
    assert result["num_input_rows"] == 9  # the blank line is no row
    assert (result["num_rows"], result["num_path_rows"], result["num_alternative_rows"]) == (5, 5, 0)
    assert result["num_problems"] == 4  # lines 1 and 10 are one problem
    assert result["num_steps"] == 3 + 3 + 3 + 2 + 1
    assert result["mean_step_label"] == round(10 / 12, 4)
    assert result["fraction_rows_with_bad_step"] == 0.4
    assert result["steps_after_path_end_dropped"] == 1  # line 6's third step
    assert result["steps_with_separator_replaced"] == 2  # lines 1 and 5: "# Answer\n\n..."
    assert result["rows_without_path"] == 0
    # The prompt contract of the prompt column, for train-prm.
    assert read_manifest(out)["info"]["prompt_contract"] == {
        "prompt_template": "{question}\n",
        "use_chat_template": False,
        "system_prompt": None,
    }
    assert json.loads((out / "stats.json").read_text()) == {
        k: v for k, v in result.items() if k != "output_dir"
    }


def test_prm800k_alternatives_branch_from_the_path_and_neutral_has_its_label(tmp_path):
    out = tmp_path / "alternatives"
    result = convert("prm800k", [PRM800K], out, "--alternatives", "true", "--neutral_label", 0.5)
    paths = prm800k_paths(neutral=0.5)
    q_b, b_steps, b_third = _readme_row()

    def alt(line, q, steps, labels, bad, branch, finish, gold):
        return expected(
            "prm800k",
            PRM800K,
            line,
            q,
            steps,
            labels,
            bad,
            kind="alternative",
            branch=branch,
            gold=gold,
            finish=finish,
        )

    b_alts = [  # the four other completions of the README row's third step: ratings 0, -1, 0, 0
        alt(2, q_b, [*b_steps, b_third[j]], [0.5, 0.5, label], bad, 2, "found_error", "40,\\!000")
        for j, label, bad in [(1, 0.5, -1), (2, 0.0, 2), (3, 0.5, -1), (4, 0.5, -1)]
    ]
    e_alts = [
        alt(5, Q_E, ["Let x be the number, so $x = 10$."], [0.0], 0, 0, "solution", "5"),
        # step 2 took the human completion: both rated completions are alternatives
        alt(
            5,
            Q_E,
            ["Call the number $n$, so $2n = 10$.", "Then $n = 20$."],
            [1.0, 0.0],
            1,
            1,
            "solution",
            "5",
        ),
        alt(5, Q_E, ["Call the number $n$, so $2n = 10$.", "So $n = 2$."], [1.0, 0.0], 1, 1, "solution", "5"),
    ]
    # the unrated "Then add." is skipped
    j_alts = [
        alt(10, Q_A, ["First, $2 \\cdot 3 = 6$.", "Then $2 + 6 = 9$."], [1.0, 0.0], 1, 1, "found_error", "8")
    ]
    assert rows_of(out) == [paths[0], paths[1], *b_alts, paths[2], *e_alts, paths[3], paths[4], *j_alts]
    assert (result["num_path_rows"], result["num_alternative_rows"], result["alternatives_skipped"]) == (
        5,
        8,
        1,
    )


def test_prm800k_finish_reasons_choose_the_rows(tmp_path):
    out = tmp_path / "give_up"
    result = convert("prm800k", [PRM800K], out, "--finish_reasons", "solution", "give_up")
    give_up = expected(
        "prm800k",
        PRM800K,
        3,
        "How many positive divisors does $12$ have?",
        ["The divisors of $12$ are $1, 2, 3, 4, 6, 12$."],
        [1.0],
        gold="6",
        finish="give_up",
    )
    paths = prm800k_paths()
    assert rows_of(out) == [paths[0], give_up, paths[2]]
    assert result["skipped_input_rows"] == {
        "malformed": 2,
        "finish_reason_found_error": 3,
        "finish_reason_bad_problem": 1,
    }


def test_a_separator_inside_a_step_is_malformed_without_a_replacement(tmp_path, capsys):
    out = tmp_path / "no_replacement"
    result = convert("prm800k", [PRM800K], out, "--separator_replacement", "")
    assert [r["source_row"] for r in rows_of(out)] == [f"{PRM800K}:{n}" for n in (2, 6, 10)]
    assert result["skipped_input_rows"]["malformed"] == 4
    args = [
        "convert-labels",
        "--from",
        "prm800k",
        "--input",
        str(PRM800K),
        "--output_dir",
        str(tmp_path / "s"),
    ]
    assert _error(capsys, [*args, "--separator_replacement", "", "--strict", "true"]) == (
        f"ttc: error: {PRM800K}:1: field 'label.steps[2].completions[0].text': holds the step separator "
        "'\\n\\n' (set --separator_replacement)"
    )


# --- Math-Shepherd ---------------------------------------------------------------------------------


def test_math_shepherd_rows_are_the_documented_mapping(tmp_path, caplog):
    out = tmp_path / "shepherd"
    result = convert("math-shepherd", [SHEPHERD], out)
    row = lambda line, q, steps, labels, bad, task: expected(  # noqa: E731
        "math-shepherd", SHEPHERD, line, q, steps, labels, bad, task=task
    )
    assert rows_of(out) == [
        row(
            1,
            "Tom has 3 boxes with 4 pens each. He gives away 5 pens. How many pens does he have left?",
            [
                "Step 1: He has 3 * 4 = <<3*4=12>>12 pens.",
                "Step 2: After giving away 5 he has 12 - 5 = <<12-5=7>>7 pens.",
                "Step 3: The answer is: 7",
            ],
            [1.0, 1.0, 1.0],
            -1,
            "GSM8K",
        ),
        # no space between the question and "Step 1:"; the blank line inside step 1 becomes "\n"
        row(
            2,
            "What is the value of $x$ if $2x + 3 = 11$?",
            [
                "Step 1: Subtract $3$ from both sides:\n$2x = 8$.",
                "Step 2: Divide by $2$: $x = 5$.",
                "Step 3: The answer is: 5",
            ],
            [1.0, 0.0, 0.0],
            1,
            "MATH",
        ),
        row(
            5,
            "A shop sells 2 apples for $1. How much do 6 apples cost?",
            ["step 1: 6 / 2 = <<6/2=3>>3 pairs.", "step 2: The answer is: 3"],
            [1.0, 0.0],
            1,
            "GSM8K",
        ),
    ]
    assert result["skipped_input_rows"] == {"malformed": 3}
    assert result["steps_with_separator_replaced"] == 1
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert (
        f"{SHEPHERD}:3: field 'label': 2 step tags in 'input' but no '+'/'-' for tag 2 (it ends there); row skipped"
        in warned
    )
    bad = _raw(SHEPHERD, 4)["label"]
    at = bad.index(">>9") + 2
    assert (
        f"{SHEPHERD}:4: fields 'input' and 'label' differ at character {at} of 'label' "
        "('9 dollars. +\\nStep 2:' vs '8 dollars. ') after 0 of 2 step tags; row skipped"
    ) in warned
    assert (
        f"{SHEPHERD}:6: field 'input': no 'Step 1:' before the first step tag (where does the question end?); "
        "row skipped"
    ) in warned


# --- bad input: one line naming file, row and field ----------------------------------------------


def _error(capsys, argv: list[str]) -> str:
    capsys.readouterr()  # what ran before (progress bars)
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_strict_stops_at_the_first_bad_row_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "strict"
    argv = ["convert-labels", "--from", "prm800k", "--input", str(PRM800K), "--output_dir", str(out)]
    assert (
        _error(capsys, [*argv, "--strict", "true"])
        == f"ttc: error: {PRM800K}:8: field 'label.steps': no steps"
    )
    assert not out.exists()

    shepherd = [
        "convert-labels",
        "--from",
        "math-shepherd",
        "--input",
        str(SHEPHERD),
        "--output_dir",
        str(out),
    ]
    assert _error(capsys, [*shepherd, "--strict", "true"]) == (
        f"ttc: error: {SHEPHERD}:3: field 'label': 2 step tags in 'input' but no '+'/'-' for tag 2 (it ends there)"
    )
    assert not out.exists()


def test_malformed_json_names_its_line(tmp_path, capsys):
    data = tmp_path / "cut.jsonl"
    data.write_text(_lines(PRM800K)[0] + "\n" + _lines(PRM800K)[8] + "\n")
    argv = ["convert-labels", "--from", "prm800k", "--input", str(data), "--output_dir", str(tmp_path / "o")]
    line = _error(capsys, [*argv, "--strict", "true"])
    assert line.startswith(f"ttc: error: {data}:2: invalid JSON (Unterminated string starting at column ")
    write_jsonl(data, [[1, 2]])
    assert (
        _error(capsys, [*argv, "--strict", "true"])
        == f"ttc: error: {data}:1: expected a JSON object, got list"
    )


def test_a_row_without_labels_where_its_tags_are_is_refused(tmp_path, capsys):
    row = _raw(SHEPHERD, 1)
    cases = {
        "an extra label": row["label"] + " +",
        "a tag left in": row["label"].replace("pens. +", "pens. ки", 1),
        "another mark": row["label"].replace("pens. +", "pens. ?", 1),
    }
    messages = {}
    for name, label in cases.items():
        data = write_jsonl(tmp_path / "one.jsonl", [{**row, "label": label}])
        argv = ["convert-labels", "--from", "math-shepherd", "--input", str(data), "--strict", "true"]
        messages[name] = _error(capsys, [*argv, "--output_dir", str(tmp_path / "o")])
    assert messages == {
        "an extra label": f"ttc: error: {data}:1: field 'label' goes on 2 characters past 'input' and its 3 step tags",
        "a tag left in": f"ttc: error: {data}:1: field 'label' still holds the step tag 'ки'",
        "another mark": f"ttc: error: {data}:1: field 'label': 3 step tags in 'input' but no '+'/'-' for tag 1 (it has '?' there)",
    }


def test_unknown_source_missing_input_and_unloadable_hub_id_are_one_line(tmp_path, capsys):
    out = ["--output_dir", str(tmp_path / "o")]
    line = _error(capsys, ["convert-labels", "--from", "prm900k", "--input", str(PRM800K), *out])
    assert (
        line == "ttc: error: ttc convert-labels: --from must be one of prm800k, math-shepherd, got 'prm900k'"
    )
    assert "--from is required" in _error(capsys, ["convert-labels", "--input", str(PRM800K), *out])
    assert "--input is required" in _error(capsys, ["convert-labels", "--from", "prm800k", *out])
    missing = tmp_path / "nothing.jsonl"
    assert _error(capsys, ["convert-labels", "--from", "prm800k", "--input", str(missing), *out]) == (
        f"ttc: error: {missing}: no such file or directory"
    )
    line = _error(
        capsys, ["convert-labels", "--from", "math-shepherd", "--input", "nobody/no-such-dataset", *out]
    )
    assert line.startswith("ttc: error: nobody/no-such-dataset: cannot load split 'train'")
    assert not (tmp_path / "o").exists()


# --- input forms -----------------------------------------------------------------------------------


def _without_provenance(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "source_row"} for row in rows]


def test_parquet_files_directories_and_saved_datasets_convert_alike(tmp_path):
    convert("math-shepherd", [SHEPHERD], tmp_path / "ref")
    reference = rows_of(tmp_path / "ref")
    shepherd_rows = [json.loads(line) for line in _lines(SHEPHERD)]

    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / SHEPHERD.name).write_bytes(SHEPHERD.read_bytes())
    convert("math-shepherd", [folder], tmp_path / "from_dir")
    assert rows_of(tmp_path / "from_dir") == [
        {**r, "source_row": r["source_row"].replace(str(SHEPHERD), str(folder / SHEPHERD.name))}
        for r in reference
    ]

    parquet = tmp_path / "shepherd.parquet"
    pq.write_table(pa.Table.from_pylist(shepherd_rows), parquet, row_group_size=2)  # spans cross row groups
    convert("math-shepherd", [parquet], tmp_path / "from_parquet", "--rows_per_shard", 3)
    got = rows_of(tmp_path / "from_parquet")
    assert _without_provenance(got) == _without_provenance(reference)
    assert [r["source_row"] for r in got] == [f"{parquet}: row {i}" for i in (0, 1, 4)]

    saved = tmp_path / "saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(shepherd_rows)}).save_to_disk(str(saved))
    convert("math-shepherd", [saved], tmp_path / "from_saved")
    got = rows_of(tmp_path / "from_saved")
    assert _without_provenance(got) == _without_provenance(reference)
    assert [r["source_row"] for r in got] == [f"{saved}[train]: row {i}" for i in (0, 1, 4)]

    # PRM800K's nested rows survive a parquet copy (structs and lists of structs).
    good = [json.loads(line) for n, line in enumerate(_lines(PRM800K), 1) if n in (1, 2, 3, 4, 5, 6, 10)]
    nested = tmp_path / "prm800k.parquet"
    pq.write_table(pa.Table.from_pylist(good), nested)
    convert("prm800k", [nested], tmp_path / "prm_parquet", "--alternatives", "true")
    convert("prm800k", [PRM800K], tmp_path / "prm_jsonl", "--alternatives", "true")
    assert _without_provenance(rows_of(tmp_path / "prm_parquet")) == _without_provenance(
        rows_of(tmp_path / "prm_jsonl")
    )


def test_the_from_flag_has_a_yaml_key_and_the_shipped_config_parses(tmp_path):
    _, specs, _ = STAGES["convert-labels"]
    from importlib import import_module

    types = tuple(getattr(import_module(m), c) for m, c in specs)
    (config,) = parse_stage_args(
        types,
        ["--config", str(REPO / "configs" / "convert_labels.yaml"), "--source", "math-shepherd"],
        "ttc convert-labels",
    )
    shipped = yaml.safe_load((REPO / "configs" / "convert_labels.yaml").read_text())
    assert {k: getattr(config, k) for k in shipped} == shipped
    assert config.source == "math-shepherd"
    with pytest.raises(InputError, match="neutral_label must be in"):
        parse_stage_args(types, ["--from", "prm800k", "--neutral_label", "2"], "ttc convert-labels")


# --- resumption, workers, merge --------------------------------------------------------------------


def _shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("shard-*.parquet"))}


def test_a_lost_shard_is_rebuilt_byte_for_byte_and_another_config_is_refused(tmp_path):
    out = tmp_path / "out"
    options = ["--rows_per_shard", 2, "--alternatives", "true"]
    convert("prm800k", [PRM800K], out, *options)
    before, stats = _shard_bytes(out), (out / "stats.json").read_bytes()
    shard_path(out, 2).unlink()
    (out / "stats.json").unlink()
    (out / ".shard-00003.parquet.99999.tmp").write_bytes(b"PAR1 half a shard")  # a kill mid-write
    convert("prm800k", [PRM800K], out, *options)
    assert _shard_bytes(out) == before
    assert (out / "stats.json").read_bytes() == stats  # counted again from the input: the same
    with pytest.raises(InputError, match="holds output of a different run"):
        convert("prm800k", [PRM800K], out, "--rows_per_shard", 2)


def test_workers_and_merge_give_the_output_and_stats_of_one_run(tmp_path):
    options = ["--rows_per_shard", 2, "--alternatives", "true"]
    whole = tmp_path / "whole"
    convert("prm800k", [PRM800K], whole, *options)
    nodes = [tmp_path / f"node{i}" for i in range(2)]
    for i, node in enumerate(nodes):
        result = convert("prm800k", [PRM800K], node, *options, "--shard", f"{i}/2")
        assert result["remaining_shards"] == (2 if i == 0 else 3)
    merged = tmp_path / "merged"
    run_stage("merge", ["--inputs", *map(str, nodes), "--output_dir", str(merged)])
    assert _shard_bytes(merged) == _shard_bytes(whole)
    assert (merged / "stats.json").read_bytes() == (whole / "stats.json").read_bytes()
    # Workers on a shared filesystem: the last one to finish writes the same stats.
    shared = tmp_path / "shared"
    convert("prm800k", [PRM800K], shared, *options, "--shard", "1/2")
    result = convert("prm800k", [PRM800K], shared, *options, "--shard", "0/2")
    assert (shared / "stats.json").read_bytes() == (whole / "stats.json").read_bytes()
    assert result["num_rows"] == 13


@pytest.mark.slow  # ~12 s; the same crash-safety is checked by default on revisions (test_trajectories)
def test_sigkill_mid_stage_then_rerun_gives_the_uninterrupted_output(tmp_path):
    from killing import kill_after_shards, run_ttc, shard_bytes

    row = _raw(SHEPHERD, 1)
    big = write_jsonl(
        tmp_path / "big.jsonl",
        [{**row, "input": f"{i} " + row["input"], "label": f"{i} " + row["label"]} for i in range(30000)],
    )

    def args(out: Path) -> list[str]:
        return [
            "convert-labels",
            "--from",
            "math-shepherd",
            "--input",
            str(big),
            "--output_dir",
            str(out),
            "--rows_per_shard",
            "100",
        ]

    killed, whole = tmp_path / "killed", tmp_path / "whole"
    done_at_kill = kill_after_shards(args(killed), killed, shards=3)
    assert 3 <= len(done_at_kill) < 300
    kept = shard_bytes(killed)
    run_ttc(args(killed))
    run_ttc(args(whole))
    after = shard_bytes(killed)
    assert {name: after[name] for name in kept} == kept
    assert after == shard_bytes(whole)
    assert (killed / "stats.json").read_bytes() == (whole / "stats.json").read_bytes()
    assert json.loads((whole / "stats.json").read_text())["num_problems"] == 30000


# --- train-prm on the converted rows ---------------------------------------------------------------


@pytest.mark.usefixtures("one_torch_thread")
def test_train_prm_trains_on_converted_rows_under_their_recorded_prompt(tmp_path, random_policy_dir):
    from safetensors.torch import load_file

    from ttcompute.trainers.prm_config import PRMConfig
    from ttcompute.trainers.prm_trainer import train_prm

    template = "Problem: {question}\nSolution:\n"
    data = tmp_path / "labels"
    convert("prm800k", [PRM800K], data, "--alternatives", "true", "--prompt_template", template)
    assert read_contract(data).prompt_template == template

    out = tmp_path / "prm"
    config = trainer_config(PRMConfig, out, random_policy_dir, data, learning_rate=1e-2, warmup_steps=0)
    log = train_prm(config)
    assert config.prompt_template == template  # taken from the manifest, not the flag's default
    losses = [e["loss"] for e in log["log_history"] if "loss" in e]
    assert len(losses) == 2 and all(loss > 0 for loss in losses)
    assert log["num_train_examples"] == 13
    trained, base = load_file(out / "model.safetensors"), load_file(random_policy_dir / "model.safetensors")
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not (trained[name] == base[name]).all()
    assert json.loads((out / "config.json").read_text())["ttc_prm"]["prompt_template"] == template

    # A flag that contradicts the recorded contract is refused before anything is trained.
    wrong = trainer_config(
        PRMConfig, tmp_path / "prm2", random_policy_dir, data, prompt_template="{question}\n"
    )
    with pytest.raises(InputError, match="contradicts the prompt contract recorded"):
        train_prm(wrong)


def test_push_to_hub_uploads_the_converted_dataset_with_its_card(tmp_path, offline_hub):
    out = tmp_path / "prm800k-steps"
    convert("prm800k", [PRM800K], out, "--push_to_hub", "true", "--hub_dataset_id", "me/prm800k-steps")
    (api,) = offline_hub.api.instances
    assert api.created == [
        {"repo_id": "me/prm800k-steps", "repo_type": "dataset", "private": None, "exist_ok": True}
    ]
    (upload,) = api.uploads
    assert upload["repo_type"] == "dataset" and upload["repo_id"] == "me/prm800k-steps"
    # What the Hub receives, after the push's allow_patterns: the shards, the card and the records.
    shards = sorted(path.name for path in out.glob("shard-*.parquet"))
    assert shards
    assert sorted(upload["uploaded_files"]) == sorted(
        [*shards, "README.md", "manifest.json", "stats.json", "ttc_config.yaml"]
    )
    card = (out / "README.md").read_text()
    for fact in ("convert-labels", "prm800k", "neutral label (PRM800K)", "template '{question}\\n'"):
        assert fact in card, fact
    assert offline_hub.connects == []
    # The push options are no part of the run's identity: the same run without them resumes.
    assert convert("prm800k", [PRM800K], out)["num_rows"] == 5
