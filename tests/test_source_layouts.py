"""Problem sources in the column layouts of the public copies of MATH and GSM8K, written locally.

Each fixture is a dataset directory laid out as its Hub repository is (parquet files and a README
whose ``configs:`` metadata maps each config and split to its files, which ``datasets.load_dataset``
reads offline exactly as it reads the Hub copy), filled with real MATH-500 / GSM8K rows:

- ``HuggingFaceH4/MATH-500``: one ``test`` split; ``problem, solution, answer, subject, level``
  (an int), ``unique_id``.
- ``EleutherAI/hendrycks_math``: one config per subject (``algebra``, ``counting_and_probability``,
  ``geometry``, ``intermediate_algebra``, ``number_theory``, ``prealgebra``, ``precalculus``), splits
  ``train``/``test``; ``problem, level`` ("Level 3"), ``type`` (the subject), ``solution`` -- no answer,
  no id.
- lighteval's MATH copy (``lighteval/MATH``; ``DigitalLearningGmbH/MATH-lighteval`` since): the same
  columns, the seven subject configs and an ``all`` config of every problem.
- ``openai/gsm8k``: configs ``main`` and ``socratic``, splits ``train``/``test``; ``question, answer``
  (the worked solution ending in ``#### N``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import GSM8K_TEST_HEAD, MATH500

from ttcompute.core.errors import InputError
from ttcompute.core.grading import is_equivalent
from ttcompute.tasks.problem_config import ProblemConfig
from ttcompute.tasks.sources import stable_id

SUBJECT_CONFIGS = {
    "Algebra": "algebra",
    "Counting & Probability": "counting_and_probability",
    "Geometry": "geometry",
    "Intermediate Algebra": "intermediate_algebra",
    "Number Theory": "number_theory",
    "Prealgebra": "prealgebra",
    "Precalculus": "precalculus",
}
PER_SUBJECT = 4  # test rows per subject config (train: 2)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_hub_layout(root: Path, files: dict[tuple[str, str], list[dict]]) -> Path:
    """A dataset directory as a parquet Hub repository: ``<config>/<split>-00000-of-00001.parquet``
    per (config, split), and the README ``configs:`` metadata that names them."""
    configs: dict[str, list[dict]] = {}
    for (config, split), rows in files.items():
        path = root / config / f"{split}-00000-of-00001.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), path)
        configs.setdefault(config, []).append({"split": split, "path": f"{config}/{split}-*.parquet"})
    meta = {"configs": [{"config_name": name, "data_files": data} for name, data in configs.items()]}
    (root / "README.md").write_text("---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n")
    return root


@pytest.fixture(scope="module")
def math500_rows() -> list[dict]:
    return read_jsonl(MATH500)


def hendrycks_row(row: dict) -> dict:
    """A MATH-500 row in hendrycks_math's columns (it is a MATH test problem)."""
    return {
        "problem": row["problem"],
        "level": f"Level {row['level']}",
        "type": row["subject"],
        "solution": row["solution"],
    }


def by_subject(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(SUBJECT_CONFIGS[row["subject"]], []).append(row)
    return out


@pytest.fixture(scope="module")
def layouts(math500_rows, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("layouts")
    grouped = by_subject(math500_rows)
    test = {config: rows[:PER_SUBJECT] for config, rows in grouped.items()}
    train = {config: rows[PER_SUBJECT : PER_SUBJECT + 2] for config, rows in grouped.items()}
    hendrycks = {}
    for config in SUBJECT_CONFIGS.values():
        hendrycks[(config, "test")] = [hendrycks_row(r) for r in test[config]]
        hendrycks[(config, "train")] = [hendrycks_row(r) for r in train[config]]
    lighteval = dict(hendrycks)
    lighteval[("all", "test")] = [hendrycks_row(r) for c in SUBJECT_CONFIGS.values() for r in test[c]]
    lighteval[("all", "train")] = [hendrycks_row(r) for c in SUBJECT_CONFIGS.values() for r in train[c]]
    gsm = read_jsonl(GSM8K_TEST_HEAD)
    socratic = [{**r, "question": r["question"], "answer": "How? ** " + r["answer"]} for r in gsm[:10]]
    math500 = root / "MATH-500"
    math500.mkdir()
    (math500 / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in math500_rows[:40]))
    return {
        "math500": math500,
        "hendrycks": write_hub_layout(root / "hendrycks_math", hendrycks),
        "lighteval": write_hub_layout(root / "lighteval_MATH", lighteval),
        "gsm8k": write_hub_layout(
            root / "gsm8k",
            {("main", "test"): gsm[:10], ("main", "train"): gsm[10:20], ("socratic", "test"): socratic},
        ),
    }


def load(**options):
    return ProblemConfig(**options).load()


def test_math500_layout_loads_with_the_defaults(layouts, math500_rows):
    problems = load(task="math", dataset=str(layouts["math500"]), split="test")
    assert [p.problem_id for p in problems] == [r["unique_id"] for r in math500_rows[:40]]
    assert [p.answer for p in problems] == [r["answer"] for r in math500_rows[:40]]
    assert problems[0].metadata == {"level": math500_rows[0]["level"], "subject": math500_rows[0]["subject"]}


def test_hendrycks_layout_every_config_answers_from_the_solutions_box(layouts, math500_rows):
    problems = load(task="math", dataset=str(layouts["hendrycks"]), dataset_config=["all"], split="test")
    assert len(problems) == PER_SUBJECT * len(SUBJECT_CONFIGS)
    gold = {r["problem"]: r for r in math500_rows}
    for problem in problems:
        row = gold[problem.question]
        # MATH-500's answer column was taken from the same solutions: the derived answer agrees.
        assert is_equivalent(problem.answer, row["answer"]), (problem.answer, row["answer"])
        assert problem.problem_id == stable_id("math", problem.question)
        assert problem.metadata == {"level": row["level"], "subject": row["subject"]}
    # The configs are read in the source's order, each one's rows in theirs.
    subjects = [p.metadata["subject"] for p in problems]
    assert subjects == sorted(subjects, key=lambda s: list(SUBJECT_CONFIGS).index(s))


def test_one_or_several_configs(layouts):
    one = load(task="math", dataset=str(layouts["hendrycks"]), dataset_config=["geometry"], split="train")
    assert len(one) == 2 and {p.metadata["subject"] for p in one} == {"Geometry"}
    two = load(
        task="math",
        dataset=str(layouts["hendrycks"]),
        dataset_config=["precalculus", "algebra"],
        split="test",
    )
    assert [p.metadata["subject"] for p in two] == ["Precalculus"] * PER_SUBJECT + ["Algebra"] * PER_SUBJECT


def test_lighteval_layout_reads_its_own_all_config(layouts):
    # lighteval's copy has a config named "all": that one is read, not all of them (every problem twice).
    everything = load(task="math", dataset=str(layouts["lighteval"]), dataset_config=["all"], split="test")
    assert len(everything) == PER_SUBJECT * len(SUBJECT_CONFIGS)
    assert not everything.skipped  # no duplicate ids: each problem read once


def test_gsm8k_layout_configs_and_ids(layouts):
    main = load(task="gsm8k", dataset=str(layouts["gsm8k"]), dataset_config=["main"], split="test")
    assert [p.problem_id for p in main][:2] == ["gsm8k-test-0", "gsm8k-test-1"] and main[0].answer == "18"
    # Several configs: the row index runs on, so the ids stay unique.
    both = load(
        task="gsm8k", dataset=str(layouts["gsm8k"]), dataset_config=["main", "socratic"], split="test"
    )
    assert len(both) == 20 and len({p.problem_id for p in both}) == 20
    assert both[10].solution.startswith("How? **")
    # A multi-config dataset with no config named: the error says which it has.
    with pytest.raises(InputError, match="cannot load split 'test'"):
        load(task="gsm8k", dataset=str(layouts["gsm8k"]), split="test")


def test_field_options_rename_the_columns(layouts, tmp_path, math500_rows):
    rows = [
        {"query": r["problem"], "gt": r["answer"], "idx": f"q{i}", "worked": r["solution"]}
        for i, r in enumerate(math500_rows[:5])
    ]
    path = tmp_path / "renamed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    problems = load(
        task="math", dataset=str(path), question_field="query", answer_field="gt", id_field="idx",
        solution_field="worked",
    )  # fmt: skip
    assert [(p.problem_id, p.answer) for p in problems] == [(f"q{i}", r["gt"]) for i, r in enumerate(rows)]
    assert problems[0].solution == rows[0]["worked"]
    # Without an answer column, the renamed solution's last box is the answer; without an id, a hash.
    for row in rows:
        del row["gt"]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    derived = load(task="math", dataset=str(path), question_field="query", solution_field="worked")
    assert [p.answer for p in derived] == [r["answer"] for r in math500_rows[:5]]
    assert derived[0].problem_id == stable_id("math", rows[0]["query"])


def test_shuffle_seed_draws_a_reproducible_subset(layouts, math500_rows):
    base = {"task": "math", "dataset": str(MATH500), "num_problems": 10}
    first = [p.problem_id for p in load(**base)]
    assert first == [r["unique_id"] for r in math500_rows[:10]]  # no seed: the first N
    drawn = [p.problem_id for p in load(**base, shuffle_seed=3)]
    assert drawn == [p.problem_id for p in load(**base, shuffle_seed=3)]
    assert drawn != first and drawn != [p.problem_id for p in load(**base, shuffle_seed=4)]
    everything = [p.problem_id for p in load(task="math", dataset=str(MATH500), shuffle_seed=3)]
    assert drawn == everything[:10] and sorted(everything) == sorted(r["unique_id"] for r in math500_rows)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"question_field": "question"},
            r"no column 'question' \(--question_field\); its columns: problem, level",
        ),
        ({"id_field": "uid"}, r"no column 'uid' \(--id_field\); its columns: problem, level, type, solution"),
        ({"answer_field": "answer"}, r"no column 'answer' \(--answer_field\)"),
        (
            {"dataset_config": ["calculus"]},
            r"no config 'calculus'; it has algebra, counting_and_probability, ",
        ),
    ],
)
def test_a_field_or_config_that_does_not_exist_is_one_line_naming_what_does(layouts, options, message):
    config = {"dataset_config": ["algebra"], **options}
    with pytest.raises(InputError, match=message) as err:
        load(task="math", dataset=str(layouts["hendrycks"]), split="test", **config)
    assert "\n" not in str(err.value)


def test_source_options_do_not_apply_to_the_generated_task():
    with pytest.raises(ValueError, match="arithmetic task is generated: shuffle_seed do not apply"):
        ProblemConfig(task="arithmetic", shuffle_seed=1)


def test_answers_derived_from_every_math500_solution_match_its_answer_column(math500_rows, tmp_path):
    # The rule a copy without an answer column relies on, checked on all 500 reference solutions.
    path = tmp_path / "hendrycks_style.jsonl"
    path.write_text("".join(json.dumps(hendrycks_row(r)) + "\n" for r in math500_rows))
    problems = load(task="math", dataset=str(path))
    assert len(problems) == 500
    wrong = [
        (p.question[:40], p.answer, r["answer"])
        for p, r in zip(problems, math500_rows)
        if not is_equivalent(p.answer, r["answer"])
    ]
    assert wrong == []
