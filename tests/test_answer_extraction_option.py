"""``--answer_extraction strict|lenient`` reaches every stage that grades outputs (sample, label's
rollouts, search), and the light config's list of modes is grading's."""

from __future__ import annotations

import pytest

from ttcompute.core import grading
from ttcompute.core.config import parse_stage_args
from ttcompute.core.errors import InputError
from ttcompute.data_gen.mc_labels import _Grader
from ttcompute.models import generation_config
from ttcompute.models.generation import Completion
from ttcompute.models.generation_config import GeneratorConfig
from ttcompute.models.sampling import sample_rows
from ttcompute.tasks.problem import Problem

UNMARKED = "Adding them up gives 40 + 2 = 42"  # no box, no "the answer is": only lenient reads 42


class Unmarked:
    num_parameters = 1

    def generate(self, prompts, params):
        return [[Completion(UNMARKED, 5, "eos") for _ in range(params.n)] for _ in prompts]


def test_the_config_lists_grading_modes():
    assert generation_config.ANSWER_EXTRACTIONS == grading.ANSWER_EXTRACTIONS
    with pytest.raises(InputError, match="answer_extraction must be one of"):
        parse_stage_args((GeneratorConfig,), ["--answer_extraction", "loose"], prog="ttc sample")


@pytest.mark.parametrize(("mode", "correct"), [("strict", False), ("lenient", True)])
def test_sample_and_label_grade_with_the_chosen_mode(mode, correct):
    problem = Problem("p0", "What is 40 + 2?", "42")
    (row,) = sample_rows(Unmarked(), [problem], GeneratorConfig(answer_extraction=mode), n=2, seed=0)
    assert row["correct"] == [correct, correct]
    assert row["answers"] == (["42", "42"] if correct else [None, None])
    assert _Grader("42", mode)(UNMARKED) is correct


@pytest.mark.parametrize(("mode", "correct"), [("strict", False), ("lenient", True)])
def test_search_rows_are_graded_with_the_chosen_mode(mode, correct):
    from ttcompute.eval.search.stage import SearchRun, outcome_rows
    from ttcompute.eval.search.step_search import Candidate, SearchOutcome

    problem = Problem("p0", "What is 40 + 2?", "42")
    outcome = SearchOutcome(candidates=[Candidate(UNMARKED, [UNMARKED], [0.5], 5, "eos")])
    (row,) = outcome_rows([problem], SearchRun("best_of_n", 1, 1), 1, [outcome], 1, 0, mode)
    assert row["correct"] == [correct]
