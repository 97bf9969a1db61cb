"""Degenerate input for every trainer and every stage that reads user or stage data (issue 35, item 5).

One problem, all labels equal, empty completions or steps, a held-out split that leaves a side empty,
an empty dataset: each either runs (where the input is legitimate) or is refused with one
:class:`~ttcompute.core.errors.InputError` that names the data and the field or option -- before
anything is written to the output directory, and without touching what is already there.

Like the fuzzing of the grading path (``test_fuzz_inputs.py``), the cases are a table: each builds its
input on disk (tiny models from ``conftest``/``ttcompute.testing``, a handful of rows) and runs the
stage through :func:`ttcompute.cli.run_stage`, the path ``ttc`` takes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import files_under, write_jsonl

from ttcompute.cli import main, run_stage
from ttcompute.core.errors import InputError
from ttcompute.core.shards import prepare_output, write_shard

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SEP = "\n\n"
# What a previous run left in the output directory: a refused run must leave it as it was.
KEPT = "kept_from_before.txt"


# --- inputs ----------------------------------------------------------------------------------------


def _arithmetic(i: int) -> tuple[str, list[str], str]:
    """Problem ``i``: its question, a correct solution's steps, its answer."""
    a, b = i % 9 + 1, i % 7 + 2
    return f"{a}+{b}", [f"{a}+{b}={a + b}", f"The answer is {a + b}"], str(a + b)


def stepwise_rows(
    num_problems: int, per_problem: int = 2, label: Callable[[int, int], float] | None = None
) -> list[dict]:
    """``ttc label``-shaped rows: ``per_problem`` solutions of each problem; ``label(row, step)``
    (default: the second solution of a problem goes wrong at its last step)."""
    rows = []
    for p in range(num_problems):
        question, steps, _ = _arithmetic(p)
        for s in range(per_problem):
            row_index = len(rows)
            labels = [
                label(row_index, j) if label else float(not (s % 2 and j == len(steps) - 1))
                for j in range(len(steps))
            ]
            rows.append(
                {"problem_id": f"p{p}", "prompt": f"{question}\n", "completions": steps, "labels": labels}
            )
    return rows


STEPWISE_SCHEMA = pa.schema(
    [
        ("problem_id", pa.string()),
        ("prompt", pa.string()),
        ("completions", pa.list_(pa.string())),
        ("labels", pa.list_(pa.float64())),
    ]
)


def write_table(path: Path, rows: list[dict], schema: pa.Schema) -> Path:
    """``rows`` as parquet with a fixed schema (so that zero rows still have their columns)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def revision_rows(num_problems: int, completion: str | None = None) -> list[dict]:
    """``ttc revisions``-shaped rows: one wrong attempt, then the correct solution."""
    rows = []
    for p in range(num_problems):
        question, steps, _ = _arithmetic(p)
        rows.append(
            {
                "problem_id": f"p{p}",
                "question": question,
                "previous_attempts": ["0+0=1"],
                "completion": SEP.join(steps) if completion is None else completion,
            }
        )
    return rows


REVISION_SCHEMA = pa.schema(
    [
        ("problem_id", pa.string()),
        ("question", pa.string()),
        ("previous_attempts", pa.list_(pa.string())),
        ("completion", pa.string()),
    ]
)


def sample_rows(
    num_problems: int, correct: Callable[[int, int], bool] | None = None, text: str | None = None
):
    """``ttc sample``-shaped rows, 2 solutions per problem (default: the first one right)."""
    rows = []
    for p in range(num_problems):
        question, steps, answer = _arithmetic(p)
        verdicts = [correct(p, s) if correct else s == 0 for s in range(2)]
        completions = [
            text if text is not None else SEP.join(steps if ok else [steps[0], "The answer is 0"])
            for ok in verdicts
        ]
        rows.append(
            {
                "problem_id": f"p{p}",
                "question": question,
                "prompt": f"{question}\n",
                "gold_answer": answer,
                "completions": completions,
                "answers": [answer if ok else "0" for ok in verdicts],
                "correct": verdicts,
                "num_tokens": [len(c) for c in completions],
            }
        )
    return rows


SAMPLE_SCHEMA = pa.schema(
    [
        ("problem_id", pa.string()),
        ("question", pa.string()),
        ("prompt", pa.string()),
        ("gold_answer", pa.string()),
        ("completions", pa.list_(pa.string())),
        ("answers", pa.list_(pa.string())),
        ("correct", pa.list_(pa.bool_())),
        ("num_tokens", pa.list_(pa.int64())),
    ]
)


def write_output(path: Path, stage: str, rows: list[dict], schema: pa.Schema | None = None) -> Path:
    """A finished one-shard ``ttc <stage>`` output holding ``rows``."""
    prepare_output(path, stage, "test", 1, False)
    write_shard(path, 0, rows, schema)
    return path


def search_rows(num_problems: int, correct: Callable[[int, int], bool] | None = None, size: int = 2):
    """``ttc search`` best-of-N rows at budgets 1 and 2 (default: the second candidate right)."""
    rows = []
    for p in range(num_problems):
        for budget in (1, 2):
            n = min(budget, size)
            verdicts = [correct(p, c) if correct else c == 1 for c in range(n)]
            rows.append(
                {
                    "problem_id": f"p{p}",
                    "method": "best_of_n",
                    "width_setting": None,
                    "lookahead": 0,
                    "search_aggregation": "last",
                    "budget": budget,
                    "generations": budget,
                    "answers": [str(c) for c in range(n)],
                    "correct": verdicts,
                    "step_scores": [[0.2 + 0.5 * c] for c in range(n)],
                    "subtrees": list(range(n)),
                    "positions": [0] * n,
                    "policy_flops": 10 * budget,
                    "prm_flops": 5 * budget,
                }
            )
    return rows


# --- the cases -------------------------------------------------------------------------------------

TRAIN = [
    *["--max_steps", "1", "--per_device_train_batch_size", "2", "--logging_steps", "1"],
    *["--report_to", "none", "--use_cpu", "true", "--save_strategy", "no", "--disable_tqdm", "true"],
]


@dataclass
class Case:
    """``stage`` run on the input ``build(tmp, models)`` writes (it returns the arguments, without
    ``--output_dir``). ``refused``: a regex the one-line InputError must match (it names the data and
    the field or option); None: the input is legitimate and the stage runs, logging ``warning`` (a
    regex) where one is given."""

    stage: str
    name: str
    build: Callable[[Path, dict], list[str]]
    refused: str | None
    warning: str | None = None

    @property
    def id(self) -> str:
        return f"{self.stage}:{self.name}"


def _prm(kind: str, rows: list[dict] | None, *extra: str, eval_rows: list[dict] | None = None):
    def build(tmp: Path, models: dict) -> list[str]:
        data = write_table(tmp / "stepwise.parquet", rows or [], STEPWISE_SCHEMA)
        args = [
            "--model_name_or_path",
            str(models["policy"]),
            "--dataset_name",
            str(data),
            "--prm_kind",
            kind,
        ]
        if eval_rows is not None:
            args += [
                "--eval_dataset_name",
                str(write_table(tmp / "eval.parquet", eval_rows, STEPWISE_SCHEMA)),
            ]
        return [*args, *TRAIN, *extra]

    return build


def _prm_cases(kind: str) -> list[Case]:
    stage = f"train-prm[{kind}]"
    no_eval = ("--eval_fraction", "0")
    return [
        Case(
            stage,
            "one problem",
            _prm(kind, stepwise_rows(1)),
            r"stepwise\.parquet: 1 of 1 problem held out.*--eval_fraction 0 ",
        ),
        Case(stage, "one problem, no eval", _prm(kind, stepwise_rows(1), *no_eval), None),
        Case(
            stage,
            "split leaves no training problem",
            _prm(kind, stepwise_rows(2), "--eval_fraction", "0.9"),
            r"stepwise\.parquet: 2 of 2 problems held out.*--eval_fraction 0\.9",
        ),
        Case(stage, "empty dataset", _prm(kind, []), r"stepwise\.parquet: no rows"),
        Case(
            stage,
            "empty eval dataset",
            _prm(kind, stepwise_rows(3), eval_rows=[]),
            r"eval\.parquet: no rows",
        ),
        Case(
            stage,
            "empty step",
            _prm(kind, [{**stepwise_rows(1)[0], "completions": ["1+2=3", " "]}], *no_eval),
            r"stepwise\.parquet: row 0, field completions\[1\]: empty step",
        ),
        Case(
            stage,
            "no steps",
            _prm(kind, [{**stepwise_rows(1)[0], "completions": [], "labels": []}], *no_eval),
            r"stepwise\.parquet: row 0, field completions: no steps",
        ),
        # A network still trains (with a warning); two numbers fitted to one class have no optimum.
        *(
            Case(
                stage,
                f"all labels {value}",
                _prm(kind, stepwise_rows(3, label=lambda i, j, v=value: v), *no_eval),
                None
                if kind == "token_classification"
                else rf"stepwise\.parquet: field labels: every step label .* is {value}",
                rf"stepwise\.parquet: every step label .* is {value}: the PRM can only learn",
            )
            for value in (0, 1)
        ),
    ]


def _reviser(rows: list[dict], *extra: str):
    def build(tmp: Path, models: dict) -> list[str]:
        data = write_table(tmp / "trajectories.parquet", rows, REVISION_SCHEMA)
        return ["--model_name_or_path", str(models["policy"]), "--dataset_name", str(data), *TRAIN, *extra]

    return build


def _policy(*extra: str):
    def build(tmp: Path, models: dict) -> list[str]:
        # Later flags win: a case may turn the held-out evaluation back on.
        return [*TRAIN, "--eval_num_problems", "0", "--hidden_size", "16", "--num_hidden_layers", "1", *extra]

    return build


def _samples(rows: list[dict], *extra: str, policy: bool = False):
    def build(tmp: Path, models: dict) -> list[str]:
        samples = write_output(tmp / "samples", "sample", rows, SAMPLE_SCHEMA)
        args = ["--samples_dir", str(samples), *extra]
        if policy:
            args += ["--model_name_or_path", str(models["policy"]), "--max_new_tokens", "8"]
        return args

    return build


def _label(rows: list[dict]):
    return _samples(rows, "--num_rollouts", "1", policy=True)


def _eval_prm(rows: list[dict], *extra: str):
    def build(tmp: Path, models: dict) -> list[str]:
        data = write_table(tmp / "stepwise.parquet", rows, STEPWISE_SCHEMA)
        return ["--prm", str(models["prm"]), "--dataset", str(data), "--gold", "labels", *extra]

    return build


def _search(rows: list[dict], *extra: str):
    def build(tmp: Path, models: dict) -> list[str]:
        # The columns of a real search, so that no rows at all still reads back as search output.
        schema = pa.Table.from_pylist(search_rows(1)).schema
        return ["--search_dir", str(write_output(tmp / "search", "search", rows, schema)), *extra]

    return build


def _compute_optimal(rows: list[dict]):
    def build(tmp: Path, models: dict) -> list[str]:
        search = write_output(tmp / "search", "search", rows)
        run_stage(
            "select",
            ["--search_dir", str(search), "--output_dir", str(tmp / "select"), "--adaptive", "false"],
        )
        return ["--select_dirs", str(tmp / "select"), "--bootstrap_resamples", "100"]

    return build


def _shepherd(lines: list[dict], *extra: str):
    def build(tmp: Path, models: dict) -> list[str]:
        data = write_jsonl(tmp / "shepherd.jsonl", lines)
        return ["--from", "math-shepherd", "--input", str(data), *extra]

    return build


def _shepherd_line(question: str, steps: list[str], marks: list[str]) -> dict:
    body = "\n".join(f"Step {i + 1}: {s}" for i, s in enumerate(steps))
    return {
        "input": f"{question} " + body.replace("\n", " ки\n") + " ки",
        "label": f"{question} "
        + "\n".join(f"Step {i + 1}: {s} {m}" for i, (s, m) in enumerate(zip(steps, marks))),
    }


SHEPHERD = [
    _shepherd_line(f"What is {i}+1?", [f"{i}+1={i + 1}", f"The answer is: {i + 1}"], ["+", "+"])
    for i in range(3)
]


def _orm(rows_of: Callable[[], list[dict]]):
    def build(tmp: Path, models: dict) -> list[str]:
        search = write_output(tmp / "search", "search", rows_of())
        (search / "ttc_config.yaml").write_text(f'reviser: {models["policy"]}\nstep_separator: "\\n\\n"\n')
        return ["--search_dir", str(search)]

    return build


def _revision_search_rows(texts: list[str], verdicts: list[bool]) -> list[dict]:
    n = len(texts)
    return [
        {
            "problem_id": "p0",
            "question": "1+2",
            "method": "revisions",
            "chain_length": n,
            "budget": n,
            "answers": ["3"] * n,
            "completions": texts,
            "correct": verdicts,
            "step_scores": [[0.5]] * n,
            "subtrees": [0] * n,
            "positions": list(range(n)),
        }
    ]


CASES = [
    *_prm_cases("token_classification"),
    *_prm_cases("likelihood"),
    Case(
        "train-prm",
        "empty JSON-lines file",
        lambda tmp, models: [
            *_prm("token_classification", stepwise_rows(2))(tmp, models),
            "--dataset_name",
            str(write_jsonl(tmp / "stepwise.jsonl", [])),
        ],
        r"stepwise\.jsonl: no rows",
    ),
    # train-reviser
    Case(
        "train-reviser",
        "one problem",
        _reviser(revision_rows(1)),
        r"trajectories\.parquet: 1 of 1 problem held out.*--eval_fraction 0 ",
    ),
    Case("train-reviser", "one problem, no eval", _reviser(revision_rows(1), "--eval_fraction", "0"), None),
    Case(
        "train-reviser",
        "split leaves no training problem",
        _reviser(revision_rows(2), "--eval_fraction", "0.9"),
        r"trajectories\.parquet: 2 of 2 problems held out.*--eval_fraction 0\.9",
    ),
    Case("train-reviser", "empty dataset", _reviser([]), r"trajectories\.parquet: no rows"),
    Case(
        "train-reviser",
        "empty completion",
        _reviser(revision_rows(2, completion=""), "--eval_fraction", "0"),
        r"trajectories\.parquet: row 0, field completion: empty",
    ),
    # train-policy: the built-in task only
    Case(
        "train-policy",
        "held-out problems are the training problems",
        _policy("--problem_seed", "3", "--eval_problem_seed", "3", "--eval_num_problems", "4"),
        r"--problem_seed.*--eval_problem_seed.*differ",
    ),
    Case(
        "train-policy",
        "not the arithmetic task",
        _policy("--task", "math", "--dataset", "x.jsonl"),
        r"--task arithmetic",
    ),
    Case("train-policy", "one problem", _policy("--num_problems", "1"), None),
    # Nothing is held out: the seeds cannot collide.
    Case(
        "train-policy",
        "equal seeds, no held-out evaluation",
        _policy("--problem_seed", "3", "--eval_problem_seed", "3"),
        None,
    ),
    # difficulty
    Case("difficulty", "empty samples", _samples([]), r"samples: no problems"),
    Case("difficulty", "one problem", _samples(sample_rows(1)), None),
    Case("difficulty", "all incorrect", _samples(sample_rows(3, correct=lambda p, s: False)), None),
    Case("difficulty", "empty completions", _samples(sample_rows(3, text="")), None),
    # label
    Case("label", "empty samples", _label([]), r"samples: no problems"),
    Case(
        "label",
        "empty completions",
        _label(sample_rows(2, text="")),
        r"samples.*no completion contains the step separator",
    ),
    Case("label", "one problem", _label(sample_rows(1)), None),
    # revisions
    Case("revisions", "empty samples", _samples([]), r"samples: no problems"),
    Case(
        "revisions",
        "all incorrect",
        _samples(sample_rows(3, correct=lambda p, s: False)),
        r"samples: fields correct, completions: no problem has a correct non-empty completion",
    ),
    Case(
        "revisions",
        "empty completions",
        _samples(sample_rows(3, text=" ")),
        r"samples: fields correct, completions: no problem has a correct non-empty completion",
    ),
    Case(
        "revisions",
        "empty completions, copying stage",
        _samples(sample_rows(3, text=""), "--copy_attempts", "2"),
        r"samples: field completions: every completion is empty",
    ),
    Case("revisions", "one problem", _samples(sample_rows(1)), None),
    Case("revisions", "all correct", _samples(sample_rows(2, correct=lambda p, s: True)), None),
    # convert-labels
    Case("convert-labels", "empty input", _shepherd([]), r"shepherd\.jsonl: no rows"),
    Case("convert-labels", "one problem", _shepherd(SHEPHERD[:1]), None),
    Case("convert-labels", "all labels +", _shepherd(SHEPHERD), None),
    # Malformed rows are skipped (--strict refuses them); input of which none converts is refused.
    Case(
        "convert-labels",
        "every step empty",
        _shepherd([{"input": "What is 1+1? ки\n ки", "label": "What is 1+1? +\n +"}]),
        r"shepherd\.jsonl: no row converts to stepwise labels \(1 malformed",
    ),
    Case(
        "convert-labels",
        "an empty step in every row",
        _shepherd(
            [{"input": "What is 1+1? Step 1: 1+1=2 ки\n ки", "label": "What is 1+1? Step 1: 1+1=2 +\n +"}] * 2
        ),
        r"shepherd\.jsonl: no row converts to stepwise labels \(2 malformed",
    ),
    # orm-data
    Case(
        "orm-data",
        "empty attempts",
        _orm(lambda: _revision_search_rows(["", " "], [False, False])),
        r"search.*completions.*empty",
    ),
    Case(
        "orm-data",
        "all attempts correct",
        _orm(lambda: _revision_search_rows(["1+2=3", "1+2=3"], [True, True])),
        None,
        r"search: all 2 attempts are correct",
    ),
    # eval-prm
    Case("eval-prm", "empty dataset", _eval_prm([]), r"stepwise\.parquet: no rows"),
    Case("eval-prm", "one problem", _eval_prm(stepwise_rows(1)), None),
    Case("eval-prm", "all labels 1", _eval_prm(stepwise_rows(2, label=lambda i, j: 1.0)), None),
    Case(
        "eval-prm",
        "empty samples",
        lambda tmp, models: [
            *_eval_prm(stepwise_rows(2))(tmp, models),
            "--samples_dir",
            str(write_output(tmp / "samples", "sample", [], SAMPLE_SCHEMA)),
        ],
        r"samples: no problems",
    ),
    # select
    Case("select", "empty search", _search([]), r"search: the search output has no rows"),
    Case("select", "one problem", _search(search_rows(1)), None),
    Case("select", "all correct", _search(search_rows(2, correct=lambda p, c: True)), None),
    Case("select", "no candidates", _search(search_rows(2, size=0)), r"search: row 0.*no candidates"),
    # compute-optimal
    Case("compute-optimal", "one problem", _compute_optimal(search_rows(1)), None),
    Case(
        "compute-optimal", "all incorrect", _compute_optimal(search_rows(3, correct=lambda p, c: False)), None
    ),
]


@pytest.fixture(scope="module")
def models(tmp_path_factory, random_policy_dir, char_tokenizer) -> dict:
    """The tiny random policy (base model of the trainers, reviser of orm-data) and a tiny PRM on it."""
    from ttcompute.testing import build_tiny_prm_on

    prm = build_tiny_prm_on(char_tokenizer, tmp_path_factory.mktemp("prm"))
    return {"policy": random_policy_dir, "prm": prm}


def _stage_args(case: Case, tmp: Path, models: dict) -> tuple[str, list[str], Path]:
    stage = case.stage.split("[")[0]
    out = tmp / "out"
    return stage, [*case.build(tmp, models), "--output_dir", str(out)], out


@pytest.mark.parametrize("case", [c for c in CASES if c.refused], ids=lambda c: c.id)
def test_refused_in_one_line_before_anything_is_written(case: Case, tmp_path: Path, models: dict) -> None:
    stage, args, out = _stage_args(case, tmp_path, models)
    out.mkdir()
    (out / KEPT).write_text("a previous run's file")
    with pytest.raises(InputError, match=case.refused) as refused:
        run_stage(stage, args)
    assert "\n" not in str(refused.value)
    assert files_under(out) == [out / KEPT]  # nothing written, nothing deleted
    assert (out / KEPT).read_text() == "a previous run's file"


@pytest.mark.parametrize("case", [c for c in CASES if not c.refused], ids=lambda c: c.id)
def test_legitimate_degenerate_input_runs(case: Case, tmp_path: Path, models: dict, caplog) -> None:
    stage, args, out = _stage_args(case, tmp_path, models)
    with caplog.at_level(logging.WARNING, logger="ttcompute"):
        run_stage(stage, args)
    assert files_under(out)
    if case.warning:
        assert any(re.search(case.warning, r.getMessage()) for r in caplog.records), caplog.text


def test_ttc_prints_the_split_error_on_one_line(tmp_path: Path, models: dict, capsys) -> None:
    """The reported failure: one prompt, the default --eval_fraction -- a line, exit 2, no ttc_config.yaml."""
    case = next(c for c in CASES if c.id == "train-prm[token_classification]:one problem")
    stage, args, out = _stage_args(case, tmp_path, models)
    assert main([stage, *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ttc: error: ") and "--eval_fraction" in lines[0]
    assert not out.exists()
