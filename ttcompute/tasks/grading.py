"""Final-answer extraction and answer equivalence, shared by every task (MATH, GSM8K, arithmetic).

``extract_answer`` pulls the final answer out of a solution (the last ``\\boxed{}``, else the last
"the answer is X", else GSM8K's ``#### N``); ``is_equivalent`` compares two answer strings, first
by a cheap normalized string match, then with math-verify (SymPy); ``grade`` does both.

Thread safety: math-verify bounds ``parse``/``verify`` with ``signal.alarm``, which Python only
allows on the main thread. On the main thread (including the main thread of a process-pool worker)
we use math-verify's own timeout. Elsewhere we turn it off and bound the call ourselves: a timer
raises an exception in the calling thread at the deadline; see :func:`_thread_deadline` for what
that can and cannot interrupt.
"""

from __future__ import annotations

import ctypes
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import math_verify
import math_verify.grader
import math_verify.parser
from math_verify.errors import TimeoutException

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 5

_BOX_COMMANDS = ("\\boxed", "\\fbox")
# "The answer is X" / "the final answer is: X"; the last one in the text wins.
_ANSWER_IS_RE = re.compile(r"\b(?:the\s+(?:final\s+)?|final\s+)answer\s+is\s*:?[ \t]*", re.IGNORECASE)
_GSM8K_RE = re.compile(r"####[ \t]*([^\n]*)")
_THOUSANDS_RE = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_TRAILING_UNIT_RE = re.compile(r"^(.+?)\\(?:text|mbox|mathrm)\{\s*[A-Za-z][A-Za-z ]*\}$")
_TEXT_RE = re.compile(r"\\(?:text|textbf|mbox|mathrm)\{([^{}]*)\}")
_SHORT_LHS_RE = re.compile(r"^[A-Za-z](?:_\{?\w\}?)?=(?!=)")
_PLAIN_NUMBER_RE = re.compile(r"^-?\d+(?:\.\d+)?$")


def _box_spans(text: str) -> Iterator[tuple[int, int]]:
    """Yield ``(start, end)`` of the content of every balanced ``\\boxed{...}``/``\\fbox{...}``.

    One left-to-right scan with a stack of open braces, so the cost is linear in ``len(text)`` no
    matter how many boxes are left open (a per-box scan is quadratic on ``\\boxed{`` repeated).
    Escaped braces ``\\{ \\}`` (set notation) are not counted. Spans come in order of their end.
    """
    stack: list[int | None] = []  # content start for a box's brace, None for any other brace
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "\\":
            if i + 1 < n and text[i + 1] in "{}\\":
                i += 2
                continue
            command = next((c for c in _BOX_COMMANDS if text.startswith(c, i)), None)
            if command is not None:
                j = i + len(command)
                while j < n and text[j] in " \t":
                    j += 1
                if j < n and text[j] == "{":
                    stack.append(j + 1)
                    i = j + 1
                    continue
                if j > i + len(command) and j < n and text[j] not in "\\$":
                    # "\boxed 5": an unbraced box holds one token.
                    end = j
                    while end < n and not text[end].isspace() and text[end] not in "$.,":
                        end += 1
                    yield j, end
                    i = end
                    continue
            i += 1
        elif char == "{":
            stack.append(None)
            i += 1
        elif char == "}":
            if stack:
                start = stack.pop()
                if start is not None:
                    yield start, i
            i += 1
        else:
            i += 1


def _last_boxed(text: str) -> str | None:
    last = None
    for span in _box_spans(text):
        last = span
    if last is None:
        return None
    return text[last[0] : last[1]].strip()


def _strip_math_delimiters(text: str) -> str:
    text = text.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if len(text) >= len(left) + len(right) and text.startswith(left) and text.endswith(right):
            return text[len(left) : len(text) - len(right)].strip()
    return text


def _answer_is(text: str) -> str | None:
    last = None
    for last in _ANSWER_IS_RE.finditer(text):  # noqa: B007 -- we want the last match
        pass
    if last is None:
        return None
    line_end = text.find("\n", last.end())
    answer = text[last.end() : line_end if line_end >= 0 else len(text)].strip()
    answer = _strip_math_delimiters(answer.rstrip(". ").strip())
    answer = answer.rstrip(".").strip()
    return answer or None


def extract_answer(text: str) -> str | None:
    """The final answer stated in a model's solution, or None when it states none.

    Looks, in order, for the content of the last balanced ``\\boxed{...}``/``\\fbox{...}`` (an
    unbalanced box is ignored), the last "The answer is X" / "the final answer is X" (rest of its
    line, without a trailing period or ``$...$``), and GSM8K's last ``#### N`` (thousands commas
    removed). Never raises; linear in ``len(text)``.

    >>> extract_answer("so $x = \\\\boxed{\\\\frac{a}{b^{2}}}$.")
    '\\\\frac{a}{b^{2}}'
    >>> extract_answer("The answer is 42.")
    '42'
    >>> extract_answer("#### 1,234")
    '1234'
    """
    try:
        boxed = _last_boxed(text)
        if boxed:
            return boxed
        answer = _answer_is(text)
        if answer:
            return answer
        matches = _GSM8K_RE.findall(text)
        if matches and matches[-1].strip():
            return matches[-1].strip().replace(",", "")
    except Exception as err:  # extraction runs on arbitrary model output: never let it crash a run
        logger.debug("answer extraction failed: %r", err)
    return None


def _unwrap(answer: str) -> str:
    """Strip ``$...$``-style delimiters and a box around the whole string, repeatedly."""
    while True:
        stripped = _strip_math_delimiters(answer)
        command = next((c for c in _BOX_COMMANDS if stripped.startswith(c)), None)
        if command is not None:
            brace = len(stripped) - len(stripped[len(command) :].lstrip())
            whole_box = (brace + 1, len(stripped) - 1)
            if any(span == whole_box for span in _box_spans(stripped)):
                stripped = stripped[whole_box[0] : whole_box[1]].strip()
        if stripped == answer:
            return answer
        answer = stripped


def normalize_answer(answer: str) -> str:
    """A light, purely textual normal form of an answer string (the fast path of ``is_equivalent``).

    Removes delimiters and boxes, spacing macros, ``\\left``/``\\right``, degree, percent and dollar
    signs, a trailing unit in ``\\text{}``, thousands separators and a short ``x =`` prefix; ``\\dfrac`` and
    ``\\tfrac`` become ``\\frac``.

    >>> normalize_answer("$\\\\left( 3, \\\\dfrac{\\\\pi}{2} \\\\right)$")
    '(3,\\\\frac{\\\\pi}{2})'
    """
    text = _unwrap(answer)
    for macro in ("\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "\\displaystyle"):
        text = text.replace(macro, "")
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    for degree in ("^{\\circ}", "^\\circ", "°"):
        text = text.replace(degree, "")
    text = text.replace("\\%", "").replace("%", "").replace("\\$", "")
    text = text.replace("\\ ", " ").strip().rstrip(".")
    unit = _TRAILING_UNIT_RE.match(text)
    if unit and unit.group(1).strip():
        text = unit.group(1)
    text = _TEXT_RE.sub(r"\1", text)
    text = "".join(text.split())
    text = _SHORT_LHS_RE.sub("", text)
    if _THOUSANDS_RE.match(text):
        text = text.replace(",", "")
    return text


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class _DeadlineExceeded(BaseException):
    """Raised inside a worker thread's call to math-verify when its time is up.

    A ``BaseException`` (like math-verify's own ``TimeoutException``) so that SymPy's and
    math-verify's ``except Exception`` handlers do not swallow it.
    """


def _raise_in_thread(thread_id: int, exc_type: type[BaseException] | None) -> None:
    """Schedule ``exc_type`` to be raised in thread ``thread_id`` (None clears a pending one)."""
    exc = ctypes.py_object(exc_type) if exc_type is not None else None  # None -> NULL pointer
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), exc)


@contextmanager
def _thread_deadline(seconds: float) -> Iterator[None]:
    """Bound the wall time of the enclosed code when it runs off the main thread.

    A timer thread raises :class:`_DeadlineExceeded` in the calling thread at the deadline through
    CPython's ``PyThreadState_SetAsyncExc``. That is what ``signal.alarm`` does on the main thread:
    the exception arrives at the next bytecode boundary, so neither can interrupt one long C call
    (a huge integer power inside SymPy, say) -- it lands when that call returns. Unlike a
    ``sys.settrace`` hook (which we measured at ~2.3x slower on MATH answers) it costs nothing while
    the code runs, only a timer thread per call. On interpreters without ``ctypes.pythonapi`` the
    code runs unbounded.
    """
    if not hasattr(ctypes, "pythonapi"):
        yield
        return
    thread_id = threading.get_ident()
    lock = threading.Lock()
    state = {"done": False, "fired": False}

    def interrupt() -> None:
        with lock:  # never fire once the block has finished: the exception would land elsewhere
            if not state["done"]:
                state["fired"] = True
                _raise_in_thread(thread_id, _DeadlineExceeded)

    timer = threading.Timer(seconds, interrupt)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with lock:
            state["done"] = True
        timer.cancel()
        if state["fired"]:
            # Fired but maybe not raised yet (the block finished first): clear it. If it is raised
            # before this line instead, it propagates from here, still inside is_equivalent's try.
            _raise_in_thread(thread_id, None)


def _math_verify_equal(pred: str, gold: str, timeout_seconds: int) -> bool:
    # Both sides go through parse() inside \boxed{}: math-verify's LatexExtractionConfig then reads
    # the box with its own brace matching, so plain strings such as `3`, `(3, \frac{\pi}{2})`,
    # `\text{(C)}` and `10\%` are read as LaTeX (unwrapped, `(1, 2)` would be read as just `2`).
    def parse_both(parse_timeout: int | None) -> tuple[list, list]:
        return (
            math_verify.parse(f"\\boxed{{{gold}}}", parsing_timeout=parse_timeout),
            math_verify.parse(f"\\boxed{{{pred}}}", parsing_timeout=parse_timeout),
        )

    if _on_main_thread():
        gold_parsed, pred_parsed = parse_both(timeout_seconds)
        if not gold_parsed or not pred_parsed:
            return False
        return math_verify.verify(gold_parsed, pred_parsed, timeout_seconds=timeout_seconds)

    # signal.alarm is main-thread only; with the timeouts set to None math-verify logs once that we
    # must bound the time ourselves -- which _thread_deadline does -- so silence that warning.
    math_verify.parser.TIMEOUT_WARNING_SHOWN = True
    math_verify.grader.TIMEOUT_WARNING_SHOWN = True
    with _thread_deadline(timeout_seconds):
        gold_parsed, pred_parsed = parse_both(None)
        if not gold_parsed or not pred_parsed:
            return False
        return math_verify.verify(gold_parsed, pred_parsed, timeout_seconds=None)


def is_equivalent(pred: str, gold: str, timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS) -> bool:
    """Whether the answer ``pred`` is mathematically the same as the gold answer ``gold``.

    Both may carry ``$...$`` or ``\\boxed{}`` wrappers. A normalized string match (see
    :func:`normalize_answer`) is tried first; otherwise both are parsed and compared with
    math-verify. Never raises: any error or timeout counts as not equivalent (logged at DEBUG).

    Safe to call from worker threads and worker processes. ``timeout_seconds`` bounds math-verify's
    work: on a main thread, math-verify's own ``signal.alarm`` bounds each parse and each comparison
    by it (so a call can take a few times ``timeout_seconds`` at worst); on any other thread, where
    signals are unavailable, one deadline bounds the whole call.

    >>> is_equivalent("\\\\dfrac{1}{2}", "$0.5$")
    True
    """
    try:
        pred_norm, gold_norm = normalize_answer(pred), normalize_answer(gold)
        if not pred_norm or not gold_norm:
            return False
        if pred_norm == gold_norm:
            return True
        if _PLAIN_NUMBER_RE.match(pred_norm) and _PLAIN_NUMBER_RE.match(gold_norm):
            # Two plain decimals: compared exactly here, without a SymPy round trip (the hot path
            # when grading thousands of samples of numeric tasks).
            return Decimal(pred_norm) == Decimal(gold_norm)
        return bool(_math_verify_equal(_unwrap(pred), _unwrap(gold), timeout_seconds))
    except (Exception, TimeoutException, _DeadlineExceeded) as err:
        logger.debug("is_equivalent(%.80r, %.80r) -> False: %r", pred, gold, err)
        return False


def grade(solution_text: str, gold: str) -> tuple[str | None, bool]:
    """Extract the final answer of ``solution_text`` and compare it with ``gold``.

    Returns ``(answer, correct)``; a solution that states no answer is incorrect.

    >>> grade("2 + 2 = 4\\n\\nThe answer is \\\\boxed{4}", "4")
    ('4', True)
    """
    answer = extract_answer(solution_text)
    if answer is None:
        return None, False
    return answer, is_equivalent(answer, gold)
