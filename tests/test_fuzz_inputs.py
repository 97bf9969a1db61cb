"""Hostile input for answer extraction, normalization, step splitting and grading.

Two halves:

* Property tests (hypothesis, derandomized and without an example database, so every run tries the
  same inputs and nothing is written to the working tree): arbitrary unicode (surrogates included),
  LaTeX soup, 100 kB repetitions, answers from a small grammar of real answer shapes.
* ``fuzz_corpus/hostile_inputs.jsonl``: checked-in cases (RTL marks, NUL, lone surrogates, 10k open
  braces, ``\\boxed`` nested 15,000 deep, 100 kB answers, LaTeX that makes SymPy explode). Each
  line is ``{"id", "kind", "text", "gold", ...expectations}``; ``text`` and ``gold`` are a string
  or a list whose items are strings or ``[piece, times]`` (concatenated), so 100 kB cases stay
  small on disk. Every case goes through extraction, normalization and the step splitters; an
  ``answer`` case is then compared with its gold answer both ways, a ``solution`` case graded.
  Optional expectations: ``extract`` (``extract_answer(text)``), ``equivalent``
  (``is_equivalent(text, gold)``), ``correct`` (``grade(text, gold)[1]``), ``steps`` (how many
  steps ``text`` splits into). The corpus runs in two child processes -- grading on the main
  thread and on a worker thread, whose deadlines work differently -- under a hard wall-clock limit,
  so a hang inside C code fails the test instead of hanging it; each child's peak memory is checked.
"""

from __future__ import annotations

import json
import math
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import MATH500
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from ttcompute.core import grading
from ttcompute.core.grading import extract_answer, grade, is_equivalent, normalize_answer
from ttcompute.core.steps import split_into_steps
from ttcompute.tasks.arithmetic import STEP_SEPARATOR, split_steps

CORPUS = Path(__file__).resolve().parent / "fuzz_corpus" / "hostile_inputs.jsonl"
TIMEOUT_SECONDS = 0.5  # the grading timeout of the corpus run and of the timing properties
# Scheduling slack on a loaded 2-core machine; an uninterruptible call overruns by minutes.
MARGIN_SECONDS = 1.0
FAST_SECONDS = 1.0  # extraction, normalization or splitting of one (up to 100 kB) text
MAX_RSS_GROWTH_MB = 600  # peak memory a child may add over its imports, across the whole corpus
CHILD_MEMORY_LIMIT = 4 << 30  # address space of a corpus child: a blow-up fails fast instead of swapping
CHILD_WALL_SECONDS = 240  # hard limit of a corpus child; the corpus takes ~10 s

# Hypothesis caches unicode tables and constants it finds in the source: in a temp dir, not in a
# .hypothesis/ directory of the working tree.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "ttcompute-hypothesis")

# One settings object for every property: the same inputs on every run and machine (derandomize),
# no .hypothesis/ directory (database=None), deadlines per example set by each test.
FUZZ = settings(
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)

SPLITTERS: dict[str, Callable[[str, str], list[str]]] = {
    "steps.split_into_steps": split_into_steps,
}
# The built-in task's splitter, whose separator is fixed.
ALL_SPLITTERS = [*SPLITTERS, "arithmetic.split_steps"]

# --- strategies --------------------------------------------------------------------------------

_LATEX_TOKENS = [
    *["\\boxed{", "\\fbox{", "\\boxed ", "\\boxed", "{", "}", "\\{", "\\}", "\\\\", "\\"],
    *["$", "$$", "\\(", "\\)", "\\[", "\\]", "\\frac", "\\dfrac", "\\left(", "\\right)", "\\sqrt"],
    *["^", "_", "!", "\\text{", "\\mbox{", "\\%", "%", "\\$", ",", ".", "=", "-", "+", "x", "0", "1"],
    *["42", "1,000", "9^{9^{9}}", "10^{10^{10}}", "(10^{8})!", "\\Gamma(", "\\binom"],
    *["The answer is ", "the final answer is: ", "####", "\n", "\n\n", " ", "\t"],
    *["\u202e", "\u200f", "\u0301", "\u0000", "\ud800", "\udfff", "\U0001f389", "\ufeff", "\u200b", "\u00a0"],
]
_any_char = st.characters(exclude_categories=[]) | st.characters(categories=["Cs"])
unicode_text = st.text(_any_char, max_size=200)
latex_soup = st.lists(st.sampled_from(_LATEX_TOKENS) | st.text(_any_char, max_size=3), max_size=40).map(
    "".join
)
# Up to 100 kB: a short unit repeated, the shape of degenerate model output.
big_text = st.builds(
    lambda unit, times: (unit * times)[:100_000],
    (latex_soup | unicode_text).filter(bool),
    st.integers(1, 25_000),
)
hostile_text = st.one_of(latex_soup, unicode_text, big_text)

# Answers shaped like MATH/GSM8K answers: numbers, symbols, fractions, parentheses, small powers,
# with the wrappers and decorations normalize_answer removes.
_atoms = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.sampled_from(["1,000", "12,345,678", "3.14", "0.5", "x", "y", "\\pi", "\\sqrt{2}", "\\infty"]),
)
math_expr = st.recursive(
    _atoms,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "\\cdot", "\\times"]), inner).map(" ".join),
        st.tuples(st.sampled_from(["\\frac", "\\dfrac", "\\tfrac"]), inner, inner).map(
            lambda t: f"{t[0]}{{{t[1]}}}{{{t[2]}}}"
        ),
        inner.map(lambda e: f"\\left( {e} \\right)"),
        st.tuples(inner, st.integers(0, 12)).map(lambda t: f"{{{t[0]}}}^{{{t[1]}}}"),
        st.lists(inner, min_size=2, max_size=3).map(lambda items: "(" + ", ".join(items) + ")"),
    ),
    max_leaves=6,
)
_WRAPPERS = [("", ""), ("$", "$"), ("\\(", "\\)"), ("\\boxed{", "}"), ("$\\boxed{", "}$"), ("\\fbox{", "}")]
math_answer = st.builds(
    lambda wrap, lhs, expr, unit: f"{wrap[0]}{lhs}{expr}{unit}{wrap[1]}",
    st.sampled_from(_WRAPPERS),
    st.sampled_from(["", "x = ", "y="]),
    math_expr,
    st.sampled_from(["", "^\\circ", "\\%", "\\text{ cm}", " \\mbox{ inches}", "."]),
)

# Brace-balanced box contents, in the scanner's sense: escaped braces and `\\` pairs do not count.
_box_safe_text = st.text(st.characters(exclude_characters="{}\\", exclude_categories=[]), max_size=8)
balanced = st.recursive(
    _box_safe_text | st.sampled_from(["\\{", "\\}", "\\frac", "\\\\", "\\boxed 5 ", "x^{2}", "\\boxed{3}"]),
    lambda inner: (
        st.lists(inner, max_size=4).map("".join)
        | st.lists(inner, max_size=4).map(lambda p: "{" + "".join(p) + "}")
    ),
    max_leaves=12,
)

# --- extract_answer ----------------------------------------------------------------------------


@settings(FUZZ, max_examples=400, deadline=2000)
@given(hostile_text)
def test_extract_answer_total_and_never_invents(text: str) -> None:
    answer = extract_answer(text)
    assert answer is None or (isinstance(answer, str) and answer.strip() == answer and answer)
    if answer is not None:  # a substring of the text (GSM8K's `#### 1,234` drops the commas)
        assert answer in text or answer in text.replace(",", "")


@settings(FUZZ, max_examples=300, deadline=2000)
@given(hostile_text, balanced.filter(lambda x: x.strip()))
def test_extract_answer_reads_an_appended_box(prefix: str, content: str) -> None:
    # On a line of its own: boxes on one line joined by commas ("\\boxed{2}, \\boxed{3}") are one answer,
    # a line break always ends a group. The newline also keeps a trailing backslash of the prefix from
    # escaping the box's own.
    assert extract_answer(f"{prefix}\n\\boxed{{{content}}}") == content.strip()
    assert extract_answer(f"{prefix}\n\\fbox{{{content}}}.") == content.strip()


# --- normalize_answer --------------------------------------------------------------------------


@settings(FUZZ, max_examples=400, deadline=2000)
@given(hostile_text)
def test_normalize_answer_total(text: str) -> None:
    form = normalize_answer(text)
    assert isinstance(form, str)
    assert not any(char.isspace() for char in form)
    assert len(form) <= len(text)


@settings(FUZZ, max_examples=400, deadline=2000)
@given(math_answer)
def test_normalize_answer_idempotent_on_answers(answer: str) -> None:
    # Best-of-N groups answers by this form; on real answer shapes, normalizing twice changes nothing.
    # (Not on arbitrary soup: "\\le\\leftft" loses one \left per pass, "\\left$$" is unwrapped on
    # the second pass only -- macro splicing no model answer relies on.)
    form = normalize_answer(answer)
    assert normalize_answer(form) == form
    assert form  # every grammar answer has content


# --- step splitting ----------------------------------------------------------------------------

_separators = st.sampled_from(["\n\n", "\n", " ки\n", "<step>", "\n\n\n", "aa"]) | st.text(
    _any_char, min_size=1, max_size=3
)


def _split(name: str, text: str, separator: str) -> list[str]:
    if name == "arithmetic.split_steps":
        assert separator == STEP_SEPARATOR
        return split_steps(text)
    return SPLITTERS[name](text, separator)


@pytest.mark.parametrize("name", ALL_SPLITTERS)
@settings(FUZZ, max_examples=300, deadline=2000)
@given(text=hostile_text, separator=_separators)
def test_split_loses_nothing(name: str, text: str, separator: str) -> None:
    if name == "arithmetic.split_steps":
        separator = STEP_SEPARATOR
    steps = _split(name, text, separator)
    assert all(isinstance(step, str) and step.strip() and separator not in step for step in steps)
    # No content is lost: what is not a separator or whitespace is still there, in order.
    assert "".join("".join(steps).split()) == "".join(text.replace(separator, "").split())


_steps = st.lists(
    st.text(_any_char, min_size=1, max_size=30).map(str.strip).filter(bool), min_size=1, max_size=20
)


@pytest.mark.parametrize("name", ALL_SPLITTERS)
@settings(FUZZ, max_examples=300, deadline=2000)
@given(steps=_steps, separator=st.sampled_from(["\n\n", "\n", "\n\n\n", " \n "]))
def test_split_then_join_round_trips(name: str, steps: list[str], separator: str) -> None:
    if name == "arithmetic.split_steps":
        separator = STEP_SEPARATOR
    # Whitespace separators and steps without surrounding whitespace or separators: the round trip
    # is exact. (With a separator like "aba", "xab" + "aba" + "ay" splits as "x", "baay": steps
    # whose ends overlap the separator are not recoverable, whoever wrote them.)
    steps = [step for step in steps if separator not in step]
    text = separator.join(steps)
    assert _split(name, text, separator) == steps
    assert separator.join(_split(name, text + separator, separator)) == text  # a trailing separator


# --- is_equivalent and grade -------------------------------------------------------------------


def _timed_equivalent(pred: str, gold: str) -> bool:
    start = time.perf_counter()
    verdict = is_equivalent(pred, gold, timeout_seconds=TIMEOUT_SECONDS)
    elapsed = time.perf_counter() - start
    assert isinstance(verdict, bool)
    assert elapsed < TIMEOUT_SECONDS + MARGIN_SECONDS, f"{elapsed:.1f} s for {pred[:80]!r} vs {gold[:80]!r}"
    return verdict


@settings(FUZZ, max_examples=150, deadline=None)  # the bound is asserted inside, with its margin
@given(latex_soup | math_answer | big_text, latex_soup | math_answer)
def test_is_equivalent_total_and_bounded(pred: str, gold: str) -> None:
    _timed_equivalent(pred, gold)


@settings(FUZZ, max_examples=150, deadline=None)
@given(hostile_text | math_answer)
def test_is_equivalent_reflexive(answer: str) -> None:
    # Every answer with content equals itself; one that normalizes to nothing is never accepted.
    assert _timed_equivalent(answer, answer) == bool(normalize_answer(answer))


@settings(FUZZ, max_examples=200, deadline=None)
@given(
    st.tuples(hostile_text | st.just(""), st.none() | math_answer | latex_soup).map(
        lambda t: t[0] if t[1] is None else f"{t[0]}\n\nThe answer is \\boxed{{{t[1]}}}"
    ),
    math_answer,
)
def test_grade_is_extract_then_is_equivalent(solution: str, gold: str) -> None:
    answer, correct = grade(solution, gold)
    assert answer == extract_answer(solution)
    assert isinstance(correct, bool)
    assert correct == (answer is not None and is_equivalent(answer, gold))


# --- the SymPy pre-screen ----------------------------------------------------------------------


def _tower_bits(numbers: list[int]) -> float:
    """log2 of the power tower ``numbers[0]^{numbers[1]^{...}}`` (inf when its exponent is over 2^64)."""
    exponent = 1
    for n in reversed(numbers[1:]):
        if exponent * math.log2(n) > 64:
            return math.inf
        exponent = n**exponent
    return exponent * math.log2(numbers[0])


@settings(FUZZ, max_examples=500, deadline=1000)
@given(
    st.lists(st.integers(2, 10**6) | st.integers(2, 12), min_size=1, max_size=4), st.sampled_from(["", "!"])
)
def test_sympy_prescreen_refuses_every_huge_power(numbers: list[int], factorial: str) -> None:
    # Soundness, the property that matters: a number SymPy could only build in minutes (with no
    # deadline able to stop it) is never handed over. (The bound over-estimates, so the converse
    # only holds far from the limit.)
    latex = "".join(f"{n}^{{" for n in numbers[:-1]) + str(numbers[-1]) + "}" * (len(numbers) - 1)
    bits = _tower_bits(numbers)
    if factorial:
        latex = f"({latex})!"
        bits = math.inf if bits > 64 else 2**bits * max(bits, 1)
    if bits > grading._MAX_SYMPY_BITS * (1 + 1e-9):  # float rounding at the limit is no blow-up
        assert not grading._sympy_can_take(latex), latex
    elif bits < grading._MAX_SYMPY_BITS / 64 and len(numbers) == 1:
        assert grading._sympy_can_take(latex), latex


@settings(FUZZ, max_examples=400, deadline=2000)
@given(hostile_text | math_answer)
def test_sympy_prescreen_total(text: str) -> None:
    assert isinstance(grading._sympy_can_take(text), bool)


def test_sympy_prescreen_keeps_real_answers() -> None:
    # Every MATH-500 answer still reaches math-verify (the screen costs no accuracy there).
    answers = [json.loads(line)["answer"] for line in MATH500.read_text(encoding="utf-8").splitlines()]
    assert [a for a in answers if not grading._sympy_can_take(grading._unwrap(a))] == []


# --- the corpus ----------------------------------------------------------------------------------


def _expand(spec: str | list) -> str:
    if isinstance(spec, str):
        return spec
    return "".join(item if isinstance(item, str) else item[0] * item[1] for item in spec)


def _timed(results: dict[str, Any], name: str, function: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    try:
        value = function()
    except BaseException as err:  # noqa: BLE001 -- recorded and failed on by the parent test
        results.setdefault("errors", []).append(f"{name}: {err!r}"[:300])
        value = None
    results["seconds"][name] = round(time.perf_counter() - start, 3)
    return value


def _run_case(case: dict[str, Any]) -> dict[str, Any]:
    """Every function of the grading path on one corpus case: results, times, errors.

    An ``answer`` case is compared with its gold answer both ways; a ``solution`` case is graded.
    """
    text, gold = _expand(case["text"]), _expand(case.get("gold", "42"))
    out: dict[str, Any] = {"id": case["id"], "seconds": {}}
    out["extract"] = _timed(out, "extract_answer", lambda: extract_answer(text))
    out["normalize_type"] = type(_timed(out, "normalize_answer", lambda: normalize_answer(text))).__name__
    steps = {name: _timed(out, name, lambda s=s: s(text, STEP_SEPARATOR)) for name, s in SPLITTERS.items()}
    steps["arithmetic.split_steps"] = _timed(out, "arithmetic.split_steps", lambda: split_steps(text))
    out["num_steps"] = sorted({len(s) for s in steps.values() if s is not None})
    out["steps_ok"] = all(
        isinstance(s, list) and all(isinstance(x, str) and x.strip() for x in s) for s in steps.values()
    )
    if case["kind"] == "answer":
        out["equivalent"] = _timed(out, "is_equivalent", lambda: is_equivalent(text, gold, TIMEOUT_SECONDS))
        backwards = _timed(
            out, "is_equivalent(gold, text)", lambda: is_equivalent(gold, text, TIMEOUT_SECONDS)
        )
        out["types_ok"] = type(out["equivalent"]) is bool and type(backwards) is bool
    else:
        graded = _timed(out, "grade", lambda: grade(text, gold, timeout_seconds=TIMEOUT_SECONDS))
        out["correct"] = graded[1] if isinstance(graded, tuple) else None
        out["types_ok"] = (
            isinstance(graded, tuple) and graded[0] == out["extract"] and type(graded[1]) is bool
        )
    out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _corpus_child(mode: str) -> None:
    """Run the corpus, one JSON line per case on stdout; ``mode`` is ``main`` or ``thread``."""
    cases = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    print(
        json.dumps({"baseline_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True
    )
    for case in cases:
        print(json.dumps({"running": case["id"]}), flush=True)  # names the case if the child is killed
        if mode == "main":
            result = _run_case(case)
        else:  # a fresh worker thread per case: a hang is reported by name instead of blocking
            box: list[dict[str, Any]] = []
            worker = threading.Thread(target=lambda c=case, b=box: b.append(_run_case(c)), daemon=True)
            worker.start()
            worker.join(timeout=60)
            result = box[0] if box else {"id": case["id"], "hung": True}
        print(json.dumps(result), flush=True)
        if result.get("hung"):
            return


def _start_child(mode: str) -> subprocess.Popen:
    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_LIMIT, CHILD_MEMORY_LIMIT))

    return subprocess.Popen(
        [sys.executable, __file__, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit_memory,
    )


@pytest.fixture(scope="module")
def corpus_runs() -> dict[str, tuple[list[dict[str, Any]], str]]:
    """Both children at once (2 cores): mode -> (result lines, what went wrong or "")."""
    children = {mode: _start_child(mode) for mode in ("main", "thread")}
    runs = {}
    for mode, child in children.items():
        try:
            stdout, stderr = child.communicate(timeout=CHILD_WALL_SECONDS)
            problem = "" if child.returncode == 0 else f"exit {child.returncode}: {stderr[-2000:]}"
        except subprocess.TimeoutExpired:
            child.kill()
            stdout, stderr = child.communicate()
            problem = f"still running after {CHILD_WALL_SECONDS} s"
        lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
        running = [line["running"] for line in lines if "running" in line]
        if problem and running:
            problem = f"{problem}, in case {running[-1]}"
        runs[mode] = ([line for line in lines if "running" not in line], problem)
    return runs


def _corpus_cases() -> list[dict[str, Any]]:
    return [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_corpus_is_hostile_enough() -> None:
    cases = _corpus_cases()
    texts = [_expand(c["text"]) for c in cases]
    assert len({c["id"] for c in cases}) == len(cases) >= 100
    assert max(map(len, texts)) >= 100_000
    assert any("\u0000" in t for t in texts) and any("\ud800" in t for t in texts)  # NUL, a lone surrogate
    assert {c["kind"] for c in cases} == {"answer", "solution"}
    assert any(t.count("\\boxed{") >= 1000 for t in texts)


# A bound on time and memory over the whole corpus (~20 s): `make test-slow`; the properties above run by default.
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["main", "thread"])
def test_corpus_bounded_in_time_and_memory(corpus_runs, mode: str) -> None:
    results, problem = corpus_runs[mode]
    assert not problem, f"corpus child ({mode} thread): {problem}"
    baseline, cases = results[0]["baseline_rss_mb"], results[1:]
    assert [r["id"] for r in cases] == [c["id"] for c in _corpus_cases()]
    slow, errors = [], []
    for result in cases:
        assert not result.get("hung"), f"{result['id']} hung in a worker thread"
        errors += [f"{result['id']}: {e}" for e in result.get("errors", [])]
        for name, seconds in result["seconds"].items():
            limit = (
                TIMEOUT_SECONDS + MARGIN_SECONDS if "equivalent" in name or name == "grade" else FAST_SECONDS
            )
            if seconds > limit:
                slow.append(f"{result['id']}: {name} took {seconds} s (limit {limit})")
    assert errors == []
    assert slow == []
    growth = max(r["maxrss_mb"] for r in cases) - baseline
    assert growth < MAX_RSS_GROWTH_MB, f"peak memory grew by {growth:.0f} MB"


# The corpus in two child processes (~15 s): `make test-slow` with its time bound; by default the
# properties above fuzz the same functions.
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["main", "thread"])
def test_corpus_results(corpus_runs, mode: str) -> None:
    results = {r["id"]: r for r in corpus_runs[mode][0][1:]}
    wrong = []
    for case in _corpus_cases():
        result = results[case["id"]]
        if not result["steps_ok"] or len(result["num_steps"]) != 1:
            wrong.append(f"{case['id']}: splitters disagree or return blank steps: {result['num_steps']}")
        if result["normalize_type"] != "str" or not result["types_ok"]:
            wrong.append(f"{case['id']}: wrong result types")
        if "steps" in case and result["num_steps"] != [case["steps"]]:
            wrong.append(f"{case['id']}: {result['num_steps']} steps, expected {case['steps']}")
        if "extract" in case and result["extract"] != (
            None if case["extract"] is None else _expand(case["extract"])
        ):
            wrong.append(f"{case['id']}: extracted {str(result['extract'])[:60]!r}")
        for key in ("equivalent", "correct"):  # is_equivalent(text, gold) / grade(text, gold)[1]
            if key in case and result.get(key) != case[key]:
                wrong.append(f"{case['id']}: {key} is {result.get(key)}, expected {case[key]}")
    assert wrong == []


if __name__ == "__main__":  # a corpus child, started by corpus_runs
    _corpus_child(sys.argv[1])
