"""Tests for ttcompute.tasks.sources: MATH/GSM8K loaders, their error messages, task dispatch."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import GSM8K_TEST_HEAD, MATH500, write_jsonl

from ttcompute.cli import run_stage
from ttcompute.core.errors import InputError
from ttcompute.core.shards import load_sharded
from ttcompute.tasks.arithmetic import ArithmeticConfig, generate_problems
from ttcompute.tasks.problem_config import ProblemConfig
from ttcompute.tasks.sources import MAX_ROW_WARNINGS, MalformedRow, load_gsm8k, load_math, load_problems


def _math_row(i: int, **overrides) -> dict:
    row = {
        "problem": f"What is {i} + {i}?",
        "solution": f"{i} + {i} = \\boxed{{{2 * i}}}",
        "answer": str(2 * i),
        "subject": "Algebra",
        "level": 1 + i % 5,
        "unique_id": f"test/algebra/{i}.json",
    }
    row.update(overrides)
    return row


# --- real data ---------------------------------------------------------------------------------


def test_load_gsm8k_test_split() -> None:
    problems = load_gsm8k(str(GSM8K_TEST_HEAD))
    assert len(problems) == 500  # the shipped head of the split's 1319 rows
    assert problems[0].problem_id == "gsm8k-test-0"
    assert problems[0].question.startswith("Janet")
    assert problems[0].answer == "18"
    assert problems[146].answer == "2125"  # "#### 2,125"
    assert problems[489].answer == "-10"  # "#### -10"
    assert all("####" not in p.solution for p in problems)
    assert problems[0].solution.endswith("every day at the farmer’s market.")
    assert len({p.problem_id for p in problems}) == 500


def test_load_gsm8k_limit() -> None:
    problems = load_gsm8k(str(GSM8K_TEST_HEAD), limit=3)
    assert [p.answer for p in problems] == ["18", "3", "70000"]


def test_load_math500_jsonl() -> None:
    problems = load_math(str(MATH500))
    assert len(problems) == 500
    first = problems[0]
    assert first.problem_id == "test/precalculus/807.json"
    assert first.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert first.metadata == {"level": 2, "subject": "Precalculus"}
    assert "\\boxed" in first.solution
    assert {p.metadata["level"] for p in problems} == {1, 2, 3, 4, 5}


# --- MATH from local files ---------------------------------------------------------------------


def test_load_math_level_strings(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "math.jsonl", [_math_row(1, level="Level 4"), _math_row(2, level="Level ?")]
    )
    problems = load_math(str(path))
    assert [p.metadata["level"] for p in problems] == [4, None]


def test_load_math_parquet(tmp_path: Path) -> None:
    path = tmp_path / "math.parquet"
    pq.write_table(pa.Table.from_pylist([_math_row(i) for i in range(4)]), path)
    problems = load_math(str(path), limit=3)
    assert [p.problem_id for p in problems] == [f"test/algebra/{i}.json" for i in range(3)]
    assert problems[2].answer == "4"
    assert problems[2].metadata == {"level": 3, "subject": "Algebra"}


def test_load_math_parquet_missing_field(tmp_path: Path) -> None:
    path = tmp_path / "math.parquet"
    rows = [_math_row(i) for i in range(3)]
    del rows[1]["problem"]
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(InputError, match=r"math\.parquet: row 1: missing field 'problem'"):
        load_math(str(path), strict=True)


def test_load_math_json_list(tmp_path: Path) -> None:
    path = tmp_path / "math.json"
    path.write_text(json.dumps([_math_row(1), _math_row(2)]), encoding="utf-8")
    assert [p.answer for p in load_math(str(path))] == ["2", "4"]


def test_load_math_local_dataset_directory(tmp_path: Path) -> None:
    data_dir = tmp_path / "my_math"
    data_dir.mkdir()
    pq.write_table(pa.Table.from_pylist([_math_row(i) for i in range(5)]), data_dir / "test.parquet")
    problems = load_math(str(data_dir), split="test")
    assert len(problems) == 5
    assert problems[4].problem_id == "test/algebra/4.json"
    with pytest.raises(InputError, match="cannot load split 'train'"):
        load_math(str(data_dir), split="train")


def test_load_math_missing_answer(tmp_path: Path) -> None:
    rows = [_math_row(1), _math_row(2)]
    del rows[1]["answer"]
    rows[1]["solution"] = "no box here"
    path = write_jsonl(tmp_path / "data.jsonl", rows)
    with pytest.raises(InputError, match=r"data\.jsonl:2: missing field 'answer'$"):
        load_math(str(path), strict=True)


def test_load_math_derives_answers_only_for_a_source_without_an_answer_column(tmp_path: Path) -> None:
    # A source with the column: a row missing its answer is malformed, never given the \boxed{} one.
    rows = [_math_row(1), _math_row(2)]
    del rows[1]["answer"]
    path = write_jsonl(tmp_path / "data.jsonl", rows)
    with pytest.raises(InputError, match=r"data\.jsonl:2: missing field 'answer' \(the solution has"):
        load_math(str(path), strict=True)
    # A source without the column (hendrycks_math's layout): every answer is its solution's last box.
    for row in rows:
        row.pop("answer", None)
    path = write_jsonl(tmp_path / "no_answers.jsonl", rows)
    assert [p.answer for p in load_math(str(path), strict=True)] == ["2", "4"]
    # ... unless the answer column is named and missing: then it is an error listing the columns.
    with pytest.raises(InputError, match=r"no column 'answer' \(--answer_field\); its columns: problem, "):
        load_math(str(path), answer_field="answer")


def test_load_math_bad_level(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "data.jsonl", [_math_row(1, level="hard")])
    with pytest.raises(InputError, match=r"data\.jsonl:1: field 'level'"):
        load_math(str(path), strict=True)


# --- malformed input ---------------------------------------------------------------------------


def test_bad_json_line(tmp_path: Path) -> None:
    path = tmp_path / "gsm.jsonl"
    lines = [json.dumps({"question": "q", "answer": "a\n#### 1"})] * 2 + ["{not json"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"gsm\.jsonl:3: invalid JSON") as info:
        load_gsm8k(str(path), strict=True)
    assert f"{path}:3:" in str(info.value)


def test_blank_lines_keep_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "gsm.jsonl"
    path.write_text('{"question": "q", "answer": "a\\n#### 1"}\n\n["a list"]\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"gsm\.jsonl:3: expected a JSON object, got list"):
        load_gsm8k(str(path), strict=True)


def test_gsm8k_missing_field(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "gsm.jsonl", [{"question": "q", "answer": "a\n#### 1"}, {"answer": "#### 2"}]
    )
    with pytest.raises(InputError, match=r"gsm\.jsonl:2: missing field 'question'"):
        load_gsm8k(str(path), strict=True)


def test_gsm8k_missing_hashes(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "gsm.jsonl", [{"question": "q", "answer": "the answer is 5"}])
    with pytest.raises(InputError, match=r"gsm\.jsonl:1: field 'answer' has no '#### <answer>' line"):
        load_gsm8k(str(path), strict=True)
    with pytest.raises(
        InputError, match=r"gsm\.jsonl: no usable rows \(first: .*gsm\.jsonl:1: field 'answer'"
    ):
        load_gsm8k(str(path))  # skipping every row leaves nothing: an error, not an empty set


def test_gsm8k_problem_ids_use_split(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "gsm.jsonl", [{"question": "q", "answer": "1 + 1 = 2\n#### 1,002"}] * 2)
    problems = load_gsm8k(str(path), split="train")
    assert [p.problem_id for p in problems] == ["gsm8k-train-0", "gsm8k-train-1"]
    assert problems[1].answer == "1002"
    assert problems[1].solution == "1 + 1 = 2"


@pytest.mark.parametrize("name", ["missing.jsonl", "sub/missing.parquet", "./missing", "/no/such/dir"])
def test_missing_file_is_not_sent_to_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    def no_hub(*args, **kwargs):
        raise AssertionError("a local-looking path was sent to datasets.load_dataset")

    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=rf"^{name}: no such file$"):
        load_math(name)


def test_unsupported_file_type(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("problem,answer\n", encoding="utf-8")
    with pytest.raises(InputError, match="unsupported file type '.csv'"):
        load_math(str(path))


# --- load_problems -----------------------------------------------------------------------------


def test_load_problems_unknown_task() -> None:
    with pytest.raises(InputError, match="unknown task 'mmlu'; known tasks: math, gsm8k, arithmetic"):
        load_problems("mmlu", None, "test", None)


def test_load_problems_dispatches_to_files(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "math.jsonl", [_math_row(i) for i in range(3)])
    assert len(load_problems("math", str(path), "test", 2)) == 2
    gsm = write_jsonl(tmp_path / "gsm.jsonl", [{"question": "q", "answer": "#### 7"}])
    assert load_problems("gsm8k", str(gsm), "test", None)[0].answer == "7"


def test_load_problems_arithmetic() -> None:
    problems = load_problems("arithmetic", None, "test", None, num_problems=6, seed=4, max_ops=2)
    assert problems == generate_problems(6, 4, ArithmeticConfig(max_ops=2))
    assert all(p.metadata["num_ops"] <= 2 for p in problems)
    assert len(load_problems("arithmetic", None, "test", 3)) == 3  # limit is the default size
    assert len(load_problems("arithmetic", None, "test", 2, num_problems=10)) == 2


def test_load_problems_arithmetic_bad_options() -> None:
    with pytest.raises(InputError, match="unknown arithmetic option.*max_opz"):
        load_problems("arithmetic", None, "test", 3, max_opz=3)
    with pytest.raises(InputError, match="min_ops <= max_ops"):
        load_problems("arithmetic", None, "test", 3, min_ops=3, max_ops=2)


def test_negative_limit(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "math.jsonl", [_math_row(1)])
    assert load_math(str(path), limit=0) == []
    with pytest.raises(InputError, match="limit must be >= 0"):
        load_math(str(path), limit=-1)


# --- malformed rows: skipped and counted, or rejected with strict ------------------------------

# (line of data.jsonl, field, what the warning says); lines count from 1, the blank line 16 too.
_MALFORMED_MATH_LINES = [
    (2, "problem", "missing field 'problem'"),
    (3, "answer", "missing field 'answer'"),
    (4, "answer", "field 'answer' is empty"),
    (5, "answer", "field 'answer' must be a string, got list"),
    (6, None, "invalid JSON"),
    (7, None, "expected a JSON object, got list"),
    (8, "answer", "missing field 'answer' (the solution has a \\boxed{} answer"),
    (10, "level", "field 'level' must be an int or 'Level N'"),
    (11, "solution", "field 'solution' must be a string, got int"),
    (12, "problem_id", "duplicate problem id 'test/algebra/0.json'"),
    (13, "answer", "field 'answer' is not valid text (surrogates not allowed)"),
    (14, "answer", "field 'answer' must be a string, got bool"),
    (15, "unique_id", "missing field 'unique_id'"),
]


def _malformed_math_file(tmp_path: Path) -> Path:
    no_answer = _math_row(3, solution="no box here")
    del no_answer["answer"]
    boxed_no_answer = _math_row(4)
    del boxed_no_answer["answer"]
    no_id = _math_row(5)
    del no_id["unique_id"]
    no_problem = _math_row(6)
    del no_problem["problem"]
    lines = [
        json.dumps(_math_row(0)),
        json.dumps(no_problem),
        json.dumps(no_answer),
        json.dumps(_math_row(7, answer="  ")),
        json.dumps(_math_row(8, answer=["2"])),
        '{"problem": "truncated',
        "[1, 2]",
        json.dumps(boxed_no_answer),
        json.dumps(_math_row(1)),
        json.dumps(_math_row(9, level="hard")),
        json.dumps(_math_row(10, solution=123)),
        json.dumps(_math_row(11, unique_id="test/algebra/0.json")),
        json.dumps(_math_row(12, answer="\ud800")),  # a lone surrogate, escaped in the JSON
        json.dumps(_math_row(13, answer=True)),
        json.dumps(no_id),
        "",
        json.dumps(_math_row(2)),
    ]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_malformed_rows_are_skipped_counted_and_reported(tmp_path: Path, caplog) -> None:
    path = _malformed_math_file(tmp_path)
    with caplog.at_level(logging.WARNING, logger="ttcompute.tasks.sources"):
        problems = load_math(str(path))
    # Only the good rows, each with its own gold answer: none enters with a missing or made-up one.
    assert [(p.problem_id, p.answer) for p in problems] == [
        (f"test/algebra/{i}.json", str(2 * i)) for i in range(3)
    ]
    assert [(row.where, row.field) for row in problems.skipped] == [
        (f"{path}:{line}", field) for line, field, _ in _MALFORMED_MATH_LINES
    ]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for line, _, reason in _MALFORMED_MATH_LINES:
        assert any(w.startswith(f"{path}:{line}: {reason}") and "row skipped" in w for w in warnings), reason
    assert any(f"{path}: skipped 13 malformed row(s), loaded 3 problem(s)" in w for w in warnings)


def test_strict_rejects_the_first_malformed_row(tmp_path: Path) -> None:
    path = _malformed_math_file(tmp_path)
    with pytest.raises(MalformedRow, match=rf"^{re.escape(str(path))}:2: missing field 'problem'$") as info:
        load_math(str(path), strict=True)
    assert isinstance(info.value, InputError)  # the CLI prints it on one line
    assert (info.value.where, info.value.field) == (f"{path}:2", "problem")


@pytest.mark.parametrize("line", [line for line, _, _ in _MALFORMED_MATH_LINES])
def test_strict_names_every_kind_of_malformed_row(tmp_path: Path, line: int) -> None:
    lines = _malformed_math_file(tmp_path).read_text(encoding="utf-8").splitlines()
    keep = [lines[0], lines[8], lines[line - 1]]  # two good rows, then the bad one on line 3
    path = tmp_path / "one_bad.jsonl"
    path.write_text("\n".join(keep) + "\n", encoding="utf-8")
    _, field, reason = next(item for item in _MALFORMED_MATH_LINES if item[0] == line)
    with pytest.raises(MalformedRow, match=re.escape(f"{path}:3: {reason}")) as info:
        load_math(str(path), strict=True)
    assert info.value.field == field
    assert len(load_math(str(path))) == 2


def test_parquet_nan_and_null_answers_are_not_labels(tmp_path: Path) -> None:
    # pandas stores a missing value of a numeric column as NaN; str(NaN) would be the gold "nan".
    path = tmp_path / "math.parquet"
    rows = [
        {"problem": "1+1?", "answer": 2.0, "unique_id": "a"},
        {"problem": "2+2?", "answer": float("nan"), "unique_id": "b"},
        {"problem": "3+3?", "answer": None, "unique_id": "c"},
        {"problem": "4+4?", "answer": float("inf"), "unique_id": "d"},
        {"problem": "5+5?", "answer": 10.0, "unique_id": "e"},
    ]
    pq.write_table(pa.Table.from_pylist(rows), path)
    problems = load_math(str(path))
    assert [(p.problem_id, p.answer) for p in problems] == [("a", "2.0"), ("e", "10.0")]
    assert [str(row) for row in problems.skipped] == [
        f"{path}: row 1: field 'answer' is nan, not a value",
        f"{path}: row 2: missing field 'answer'",
        f"{path}: row 3: field 'answer' is inf, not a value",
    ]
    with pytest.raises(InputError, match=r"math\.parquet: row 1: field 'answer' is nan"):
        load_math(str(path), strict=True)


def test_gsm8k_skipped_rows_keep_ids_stable(tmp_path: Path) -> None:
    rows = [
        {"question": "q0", "answer": "a\n#### 1"},
        {"question": "q1", "answer": "the answer is 5"},  # the gold answer comes from `#### N`
        {"question": "q2", "answer": "work\n####   "},
        {"question": "", "answer": "#### 3"},
        {"question": "q4", "answer": 4},
        {"question": "q5", "answer": "b\n#### 2,000"},
    ]
    path = write_jsonl(tmp_path / "gsm.jsonl", rows)
    problems = load_gsm8k(str(path))
    assert [(p.problem_id, p.answer) for p in problems] == [("gsm8k-test-0", "1"), ("gsm8k-test-5", "2000")]
    assert [(row.where, row.field) for row in problems.skipped] == [
        (f"{path}:{line}", "answer" if line != 4 else "question") for line in (2, 3, 4, 5)
    ]
    with pytest.raises(InputError, match=r"gsm\.jsonl:2: field 'answer' has no '#### <answer>' line"):
        load_gsm8k(str(path), strict=True)


def test_limit_counts_loaded_problems(tmp_path: Path) -> None:
    path = _malformed_math_file(tmp_path)
    problems = load_math(str(path), limit=2)
    assert [p.problem_id for p in problems] == ["test/algebra/0.json", "test/algebra/1.json"]
    assert len(problems.skipped) == 7  # the bad rows read before the second good one (lines 2-8)
    assert load_math(str(path), limit=0) == []


def test_many_malformed_rows_warn_a_bounded_number_of_times(tmp_path: Path, caplog) -> None:
    rows = [{"problem": f"p{i}", "unique_id": f"id{i}"} for i in range(30)] + [_math_row(1)]
    path = write_jsonl(tmp_path / "data.jsonl", rows)
    with caplog.at_level(logging.WARNING, logger="ttcompute.tasks.sources"):
        problems = load_math(str(path))
    assert len(problems) == 1 and len(problems.skipped) == 30
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("row skipped" in w for w in warnings) == MAX_ROW_WARNINGS
    assert any("skipped 30 malformed row(s), loaded 1 problem(s)" in w for w in warnings)


def test_problem_args_strict_flag(tmp_path: Path) -> None:
    path = _malformed_math_file(tmp_path)
    problems = ProblemConfig(task="math", dataset=str(path)).load()
    assert len(problems) == 3 and len(problems.skipped) == 13
    with pytest.raises(InputError, match=r"data\.jsonl:2: missing field 'problem'"):
        ProblemConfig(task="math", dataset=str(path), strict=True).load()
    assert load_problems("math", str(path), "test", None, strict=False).skipped == problems.skipped
    assert load_problems("arithmetic", None, "test", 2, strict=True).skipped == []


def test_ttc_sample_strict_flag(tmp_path: Path, small_policy_dir: Path, caplog) -> None:
    data = _malformed_math_file(tmp_path)
    args = [
        "--task", "math", "--dataset", str(data), "--model_name_or_path", str(small_policy_dir),
        "--num_samples", "1", "--max_new_tokens", "8", "--device", "cpu",
    ]  # fmt: skip
    with pytest.raises(InputError, match=r"data\.jsonl:2: missing field 'problem'"):
        run_stage("sample", [*args, "--strict", "true", "--output_dir", str(tmp_path / "strict")])
    assert not (tmp_path / "strict").exists()
    with caplog.at_level(logging.WARNING, logger="ttcompute.tasks.sources"):
        result = run_stage("sample", [*args, "--output_dir", str(tmp_path / "lenient")])
    assert result["num_problems"] == 3 and result["malformed_rows_skipped"] == 13
    assert sorted(load_sharded(tmp_path / "lenient")["problem_id"]) == [
        f"test/algebra/{i}.json" for i in range(3)
    ]
    assert any("skipped 13 malformed row(s)" in r.getMessage() for r in caplog.records)
