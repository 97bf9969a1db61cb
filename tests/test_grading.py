"""Tests for ttcompute.core.grading: answer extraction, equivalence, thread/process safety."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import random
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import math_verify.grader
import pytest
from conftest import MATH500

from ttcompute.core import grading
from ttcompute.core.grading import extract_answer, grade, is_equivalent, normalize_answer
from ttcompute.tasks.arithmetic import generate_problems


def _math500_rows() -> list[dict]:
    with open(MATH500, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


# --- extract_answer ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so $x = \\boxed{\\frac{a}{b^{2}}}$.", "\\frac{a}{b^{2}}"),
        ("first \\boxed{1}, then \\boxed{2}", "2"),
        ("\\fbox{7}", "7"),
        ("\\boxed {12}", "12"),
        ("$\\boxed{\\{1, 2\\}}$", "\\{1, 2\\}"),  # escaped braces are not counted
        ("\\boxed{\\text{(C)}}", "\\text{(C)}"),
        ("The answer is \\boxed{81}", "81"),  # the arithmetic task's last step
        ("The answer is 42.", "42"),
        ("Thus the final answer is $\\frac{1}{2}$.", "\\frac{1}{2}"),
        ("The answer is 3.\nNo wait. The answer is 4.", "4"),
        ("Natalia sold 48 clips.\n#### 1,234", "1234"),
        ("2 + 2 = <<2+2=4>>4\n#### 4", "4"),
        ("no answer here", None),
        ("", None),
        ("The answer is ", None),
    ],
)
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


def test_extract_answer_ignores_unbalanced_box() -> None:
    assert extract_answer("\\boxed{1") is None
    assert extract_answer("\\boxed{1 and so The answer is 5.") == "5"
    assert extract_answer("\\boxed{2} then \\boxed{1") == "2"
    assert extract_answer("}}} \\boxed{3} }") == "3"


def test_extract_answer_linear_on_large_garbage() -> None:
    garbage = [
        "\\boxed{" * 15_000,  # ~100 kB of boxes that never close
        "{" * 100_000,
        "}" * 100_000,
        "The answer is " * 7_000,
        "\\" * 100_000,
        "x" * 100_000,
    ]
    start = time.perf_counter()
    for text in garbage:
        assert extract_answer(text) is None
    assert extract_answer("\\boxed{" * 15_000 + "\\boxed{9}") == "9"
    assert time.perf_counter() - start < 2.0


def test_extract_answer_on_arithmetic_reference_solutions() -> None:
    for problem in generate_problems(20, seed=3):
        assert grade(problem.solution, problem.answer) == (problem.answer, True)


# --- is_equivalent -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "gold"),
    [
        ("\\dfrac{1}{2}", "\\frac{1}{2}"),
        ("$3$", "3"),
        ("\\boxed{10}", "10"),
        ("(1,2)", "(1, 2)"),
        ("x=3", "3"),
        ("1,000", "1000"),
        ("\\frac12", "0.5"),  # math-verify path
        ("0.5", "\\frac{1}{2}"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\frac{\\pi}{2})"),
        ("C", "\\text{(C)}"),
        ("10", "10\\%"),
        ("90^\\circ", "90"),
        ("5\\text{ cm}", "5"),
        ("\\$18.90", "18.90"),
        ("2\\sqrt{2}", "\\sqrt{8}"),
        ("\\{1,2\\}", "\\{2,1\\}"),
    ],
)
def test_equivalent_pairs(pred: str, gold: str) -> None:
    assert is_equivalent(pred, gold)


@pytest.mark.parametrize(
    ("pred", "gold"),
    [
        ("3", "4"),
        ("\\frac{1}{2}", "\\frac{1}{3}"),
        ("garbage text here", "3"),
        ("", "3"),
        ("3", ""),
        ("(1,2)", "(2,1)"),
        ("\\boxed{", "3"),
        ("}{}{\\frac{", "\\frac{1}{2}"),
        ("\\text{(B)}", "\\text{(C)}"),
        ("1,000", "1"),
    ],
)
def test_non_equivalent_pairs(pred: str, gold: str) -> None:
    assert not is_equivalent(pred, gold)


def test_normalize_answer() -> None:
    assert normalize_answer("$\\boxed{\\left( 3, \\dfrac{\\pi}{2} \\right)}$") == "(3,\\frac{\\pi}{2})"
    assert normalize_answer("\\boxed{1}+\\boxed{2}") == "\\boxed{1}+\\boxed{2}"  # not one box
    assert normalize_answer("1,234") == "1234"
    assert normalize_answer("1,2") == "1,2"  # a list, not a thousands separator


def test_grade() -> None:
    assert grade("so the total is \\boxed{\\dfrac{3}{4}}.", "0.75") == ("\\dfrac{3}{4}", True)
    assert grade("so the total is \\boxed{5}.", "6") == ("5", False)
    assert grade("I give up.", "6") == (None, False)


def test_math500_reference_solutions_grade_correct() -> None:
    """Each MATH-500 reference solution, graded against its own ``answer`` field, is correct."""
    # unique_ids whose reference solution cannot be graded correct against its own answer. Empty:
    # in this file `answer` is exactly the content of the solution's last \boxed{}, so all 500 pass.
    allowlist: set[str] = set()
    rows = _math500_rows()
    assert len(rows) == 500
    failures = {row["unique_id"] for row in rows if not grade(row["solution"], row["answer"])[1]}
    assert failures == allowlist


def test_math500_neighbouring_answers_not_confused() -> None:
    """Each MATH-500 answer against the next row's: only genuinely equal answers match."""
    rows = _math500_rows()
    matches = {
        (a["unique_id"], b["unique_id"])
        for a, b in zip(rows, rows[1:], strict=False)
        if is_equivalent(a["answer"], b["answer"])
    }
    assert matches == {
        ("test/algebra/1837.json", "test/algebra/2193.json"),  # 5 vs x=5
        ("test/number_theory/978.json", "test/algebra/2199.json"),  # 7 vs 7
        ("test/number_theory/928.json", "test/counting_and_probability/761.json"),  # 3 vs 3
    }


# --- threads and processes ---------------------------------------------------------------------

# Pairs that miss the string fast path, so math-verify (and its timeout handling) really runs.
_SLOW_PATH_CASES = [
    ("\\frac12", "0.5", True),
    ("2\\sqrt{2}", "\\sqrt{8}", True),
    ("\\frac{2}{4}", "\\frac{1}{2}", True),
    ("\\frac{1}{3}", "0.5", False),
    ("x^2+2x+1", "(x+1)^2", True),
    ("7", "8", False),
]


def _check_case(case: tuple[str, str, bool]) -> bool:
    pred, gold, expected = case
    return is_equivalent(pred, gold) == expected


def test_is_equivalent_in_thread_pool() -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(_check_case, _SLOW_PATH_CASES * 3))
    assert all(results)


def test_is_equivalent_in_process_pool() -> None:
    # spawn: the strictest start method (fresh interpreter, everything pickled), the default on macOS.
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(_check_case, _SLOW_PATH_CASES))
    assert all(results)


def _spin(*args, **kwargs) -> bool:
    """A stand-in for a SymPy comparison that never finishes."""
    while True:
        sum(range(100))


@pytest.mark.parametrize("in_thread", [False, True], ids=["main-thread", "worker-thread"])
def test_is_equivalent_times_out(monkeypatch: pytest.MonkeyPatch, in_thread: bool) -> None:
    monkeypatch.setattr(math_verify.grader, "sympy_expr_eq", _spin)
    start = time.perf_counter()
    if in_thread:
        # A daemon thread rather than a pool, so that a broken timeout fails the test instead of
        # hanging it on pool shutdown.
        results: list[bool] = []
        worker = threading.Thread(
            target=lambda: results.append(is_equivalent("2\\sqrt{2}", "\\sqrt{8}", timeout_seconds=1)),
            daemon=True,
        )
        worker.start()
        worker.join(timeout=20)
        assert not worker.is_alive(), "is_equivalent ignored its timeout off the main thread"
        result = results[0]
    else:
        result = is_equivalent("2\\sqrt{2}", "\\sqrt{8}", timeout_seconds=1)
    assert result is False
    # One deadline for the whole call on either thread (math-verify's own timeouts bounded the two
    # parses and the comparison one by one: up to three times the timeout).
    assert time.perf_counter() - start < 1 + 2


def _spin_swallowing_one_deadline(*args, **kwargs) -> bool:
    """Spins; eats the first exception, as CPython does with one raised in a ``__del__`` or gc callback."""
    with contextlib.suppress(BaseException):
        _spin()
    end = time.monotonic() + 15  # bounded, so that a lost deadline fails the test instead of hanging it
    while time.monotonic() < end:
        sum(range(100))
    return True


@pytest.mark.parametrize("in_thread", [False, True], ids=["main-thread", "worker-thread"])
def test_a_swallowed_deadline_is_raised_again(monkeypatch: pytest.MonkeyPatch, in_thread: bool) -> None:
    monkeypatch.setattr(math_verify.grader, "sympy_expr_eq", _spin_swallowing_one_deadline)
    results: list[tuple[bool, float]] = []

    def check() -> None:
        start = time.perf_counter()
        verdict = is_equivalent("2\\sqrt{2}", "\\sqrt{8}", timeout_seconds=0.5)
        results.append((verdict, time.perf_counter() - start))

    if in_thread:
        worker = threading.Thread(target=check, daemon=True)
        worker.start()
        worker.join(timeout=30)
    else:
        check()
    verdict, seconds = results[0]
    assert verdict is False
    assert seconds < 0.5 + 1.0


def test_main_thread_deadline_restores_the_callers_alarm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(math_verify.grader, "sympy_expr_eq", _spin)
    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
    signal.setitimer(signal.ITIMER_REAL, 1.5)
    try:
        assert is_equivalent("2\\sqrt{2}", "\\sqrt{8}", timeout_seconds=0.5) is False
        assert 0.3 < signal.getitimer(signal.ITIMER_REAL)[0] < 1.1  # re-armed with the time left
        time.sleep(1.5)
        assert fired == [signal.SIGALRM]  # the caller's own handler, at the caller's time
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_thread_deadline_does_not_fire_after_the_block() -> None:
    def work() -> str:
        with grading._thread_deadline(0.2):
            pass
        time.sleep(0.5)  # the timer would have fired here had it not been cancelled
        return "done"

    with ThreadPoolExecutor(max_workers=1) as pool:
        assert pool.submit(work).result(timeout=10) == "done"
    assert threading.active_count() < 10


def test_extract_answer_never_raises_on_random_text() -> None:
    # A seeded fuzz rather than hypothesis, which writes a .hypothesis/ cache into the working tree.
    tokens = [*"{}\\$#. \n0123456789", "\\boxed", "\\fbox", "The answer is "]
    rng = random.Random(0)
    for _ in range(2000):
        text = "".join(rng.choices(tokens, k=rng.randint(0, 60)))
        answer = extract_answer(text)
        assert answer is None or (isinstance(answer, str) and answer), text
