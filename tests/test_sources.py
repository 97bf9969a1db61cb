"""Tests for ttcompute.tasks.sources: MATH/GSM8K loaders, their error messages, task dispatch."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ttcompute.errors import InputError
from ttcompute.tasks.arithmetic import ArithmeticConfig, generate_problems
from ttcompute.tasks.sources import load_gsm8k, load_math, load_problems


def _shared_data_file(name: str) -> Path:
    for data_dir in (
        Path(__file__).resolve().parents[2] / "shared" / "data",
        Path(__file__).resolve().parents[1] / ".." / "shared" / "data",
    ):
        if (data_dir / name).is_file():
            return data_dir / name
    pytest.skip(f"shared/data/{name} not found next to the repository")


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


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


# --- real data ---------------------------------------------------------------------------------


def test_load_gsm8k_test_split() -> None:
    problems = load_gsm8k(str(_shared_data_file("gsm8k_test.jsonl")))
    assert len(problems) == 1319
    assert problems[0].problem_id == "gsm8k-test-0"
    assert problems[0].question.startswith("Janet")
    assert problems[0].answer == "18"
    assert problems[146].answer == "2125"  # "#### 2,125"
    assert problems[489].answer == "-10"
    assert all("####" not in p.solution for p in problems)
    assert problems[0].solution.endswith("every day at the farmer’s market.")
    assert len({p.problem_id for p in problems}) == 1319


def test_load_gsm8k_limit() -> None:
    problems = load_gsm8k(str(_shared_data_file("gsm8k_test.jsonl")), limit=3)
    assert [p.answer for p in problems] == ["18", "3", "70000"]


def test_load_math500_jsonl() -> None:
    problems = load_math(str(_shared_data_file("math500.jsonl")))
    assert len(problems) == 500
    first = problems[0]
    assert first.problem_id == "test/precalculus/807.json"
    assert first.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert first.metadata == {"level": 2, "subject": "Precalculus"}
    assert "\\boxed" in first.solution
    assert {p.metadata["level"] for p in problems} == {1, 2, 3, 4, 5}


# --- MATH from local files ---------------------------------------------------------------------


def test_load_math_level_strings(tmp_path: Path) -> None:
    path = _write_jsonl(
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
        load_math(str(path))


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
    path = _write_jsonl(tmp_path / "data.jsonl", rows)
    with pytest.raises(InputError, match=r"data\.jsonl:2: missing field 'answer'$"):
        load_math(str(path))


def test_load_math_never_derives_answer_from_boxed_solution(tmp_path: Path) -> None:
    rows = [_math_row(1)]
    del rows[0]["answer"]
    path = _write_jsonl(tmp_path / "data.jsonl", rows)
    with pytest.raises(InputError, match=r"data\.jsonl:1: missing field 'answer' \(the solution has"):
        load_math(str(path))


def test_load_math_bad_level(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "data.jsonl", [_math_row(1, level="hard")])
    with pytest.raises(InputError, match=r"data\.jsonl:1: field 'level'"):
        load_math(str(path))


# --- malformed input ---------------------------------------------------------------------------


def test_bad_json_line(tmp_path: Path) -> None:
    path = tmp_path / "gsm.jsonl"
    lines = [json.dumps({"question": "q", "answer": "a\n#### 1"})] * 2 + ["{not json"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"gsm\.jsonl:3: invalid JSON") as info:
        load_gsm8k(str(path))
    assert f"{path}:3:" in str(info.value)


def test_blank_lines_keep_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "gsm.jsonl"
    path.write_text('{"question": "q", "answer": "a\\n#### 1"}\n\n["a list"]\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"gsm\.jsonl:3: expected a JSON object, got list"):
        load_gsm8k(str(path))


def test_gsm8k_missing_field(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "gsm.jsonl", [{"question": "q", "answer": "a\n#### 1"}, {"answer": "#### 2"}]
    )
    with pytest.raises(InputError, match=r"gsm\.jsonl:2: missing field 'question'"):
        load_gsm8k(str(path))


def test_gsm8k_missing_hashes(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "gsm.jsonl", [{"question": "q", "answer": "the answer is 5"}])
    with pytest.raises(InputError, match=r"gsm\.jsonl:1: field 'answer' has no '#### <answer>' line"):
        load_gsm8k(str(path))


def test_gsm8k_problem_ids_use_split(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "gsm.jsonl", [{"question": "q", "answer": "1 + 1 = 2\n#### 1,002"}] * 2)
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
    path = _write_jsonl(tmp_path / "math.jsonl", [_math_row(i) for i in range(3)])
    assert len(load_problems("math", str(path), "test", 2)) == 2
    gsm = _write_jsonl(tmp_path / "gsm.jsonl", [{"question": "q", "answer": "#### 7"}])
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
    path = _write_jsonl(tmp_path / "math.jsonl", [_math_row(1)])
    assert load_math(str(path), limit=0) == []
    with pytest.raises(InputError, match="limit must be >= 0"):
        load_math(str(path), limit=-1)
