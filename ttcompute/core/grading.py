"""Final-answer extraction and answer equivalence, shared by every task (MATH, GSM8K, arithmetic).

``extract_answer`` pulls the final answer out of a solution (the last ``\\boxed{}``, else the last
"the answer is X", else GSM8K's ``#### N``); ``is_equivalent`` compares two answer strings, first
by a cheap normalized string match, then with math-verify (SymPy); ``grade`` does both.

Thread safety and hostile input: math-verify's own timeouts use ``signal.alarm``, which Python only
allows on the main thread. We turn them off and bound each comparison with one deadline of our
own: ``SIGALRM`` on a main thread (including the main thread of a process-pool worker), a timer
that raises an exception in the calling thread elsewhere; see :func:`_thread_deadline` for what
that can and cannot interrupt, and :func:`_sympy_can_take` for the answers kept from SymPy
because no deadline could stop them. Extraction and normalization are linear in the text's length.
"""

from __future__ import annotations

import ctypes
import logging
import math
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
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
_MATH_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


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
    for left, right in _MATH_DELIMITERS:
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


def _strip_span(text: str, lo: int, hi: int) -> tuple[int, int]:
    """``text[lo:hi]`` without surrounding whitespace, as bounds (no copy)."""
    while lo < hi and text[lo].isspace():
        lo += 1
    while hi > lo and text[hi - 1].isspace():
        hi -= 1
    return lo, hi


def _unwrap(answer: str) -> str:
    """Strip ``$...$``-style delimiters and a box around the whole string, repeatedly.

    Works on bounds into ``answer`` with its box spans computed once: re-scanning (and copying) the
    rest after each layer was quadratic, ~100 s on ``\\boxed{`` nested 15,000 deep (a 100 kB answer).
    A box that wraps all of ``answer[lo:hi]`` has the same span in the scan of the whole string,
    because everything stripped so far (delimiters, whitespace, box openings) ends on a token
    boundary of that scan.
    """
    spans: set[tuple[int, int]] | None = None
    lo, hi = 0, len(answer)
    while True:
        new_lo, new_hi = _strip_span(answer, lo, hi)
        for left, right in _MATH_DELIMITERS:
            if (
                new_hi - new_lo >= len(left) + len(right)
                and answer.startswith(left, new_lo, new_hi)
                and answer.endswith(right, new_lo, new_hi)
            ):
                new_lo, new_hi = _strip_span(answer, new_lo + len(left), new_hi - len(right))
                break
        command = next((c for c in _BOX_COMMANDS if answer.startswith(c, new_lo, new_hi)), None)
        if command is not None:
            brace = new_lo + len(command)
            while brace < new_hi and answer[brace].isspace():
                brace += 1
            if spans is None:
                spans = set(_box_spans(answer))
            if (brace + 1, new_hi - 1) in spans:
                new_lo, new_hi = _strip_span(answer, brace + 1, new_hi - 1)
        if (new_lo, new_hi) == (lo, hi):
            return answer[lo:hi]
        lo, hi = new_lo, new_hi


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
    # Periods again once spaces are gone: "3. ." must give "3" like "3 ." and "3..", not "3.".
    text = "".join(text.split()).rstrip(".")
    text = _SHORT_LHS_RE.sub("", text)
    if _THOUSANDS_RE.match(text):
        text = text.replace(",", "")
    return text


# A deadline stops math-verify only between bytecodes (see _thread_deadline): a huge integer power
# or factorial evaluated inside SymPy's C code (9^{9^{9}}, 2^{2^{64}}, (\frac{1}{2})^{10^{10}})
# runs to its end first -- measured at minutes and 2 GB on a worker thread for a 2 s timeout. So
# an answer that could ask for such a number never reaches math-verify (is_equivalent falls back
# to the normalized string match it already tried). Real answers are far inside these bounds: the
# longest MATH-500 answer has 53 characters, the largest number 2^{2007} about 2,000 bits.
_MAX_SYMPY_CHARS = 1000
_MAX_SYMPY_NESTING = 50
_MAX_SYMPY_BITS = 2**16  # a product of numbers this size takes microseconds
_LATEX_TOKEN_RE = re.compile(r"\\[A-Za-z]+|\\.|[0-9]+(?:\.[0-9]*)?|\.[0-9]+|\S", re.DOTALL)
_OPENERS, _CLOSERS = "([{", ")]}"
# Commands whose argument n can turn into n! (gamma, binomials) in SymPy.
_FACTORIAL_COMMANDS = {"\\Gamma", "\\gamma", "\\binom", "\\dbinom", "\\tbinom", "\\factorial"}


class _TooCostly(Exception):
    """An answer that may make SymPy build a number of more than ``_MAX_SYMPY_BITS`` bits."""


def _checked(bits: float) -> float:
    if bits > _MAX_SYMPY_BITS:
        raise _TooCostly
    return bits


def _value_bound(bits: float) -> float:
    """An upper bound on a number of ``bits`` bits, refusing numbers no answer needs."""
    if bits > 64:
        raise _TooCostly
    return 2.0**bits


def _factorial_bits(bits: float) -> float:
    """Bits of ``n!`` for an ``n`` of ``bits`` bits: ``log2(n!) <= n * log2(n)``."""
    return _value_bound(bits) * max(bits, 1.0)


def _literal_bits(digits: str) -> float:
    digits = digits.replace(".", "")
    if len(digits) > 15:
        return len(digits) * math.log2(10)
    return math.log2(max(int(digits), 2))


def _atom_bits(tokens: list[str], i: int, depth: int) -> tuple[float, int]:
    """Bits of the atom at ``tokens[i]`` (a number, a group, a symbol) and the index after it."""
    if i >= len(tokens) or tokens[i] in _CLOSERS:
        return 0.0, i
    token = tokens[i]
    if token in _OPENERS:
        return _sequence_bits(tokens, i + 1, depth + 1)
    if token[0] in "0123456789" or (token[0] == "." and len(token) > 1):  # not "¹" (isdigit)
        return _literal_bits(token), i + 1
    # A symbol counts as a small number: (x+1)^{n} expands to n + 1 terms of up to n bits each.
    return (1.0 if token[0].isalpha() or token[0] == "\\" else 0.0), i + 1


def _sequence_bits(tokens: list[str], i: int, depth: int) -> tuple[float, int]:
    """Upper bound on log2 of any number SymPy can build from ``tokens[i:]`` up to the closing bracket.

    The atoms' bits are summed: a bound for any mix of + - * / of numbers of at least 2, which is
    what every literal counts as. ``b^e`` has ``bits(b) * 2**bits(e)`` bits, ``n!`` at most
    ``n * bits(n)``. Symbols in an exponent count as 1 bit: SymPy keeps ``2^{n}`` symbolic.
    Returns the bound and the index after the closing bracket.
    """
    if depth > _MAX_SYMPY_NESTING:
        raise _TooCostly
    total = last = 0.0
    while i < len(tokens):
        token = tokens[i]
        if token in _CLOSERS:
            return total, i + 1
        if token == "^":
            exponent, i = _atom_bits(tokens, i + 1, depth)
            new = max(last, 1.0) * _value_bound(exponent)
        elif token == "!" and tokens[i + 1 : i + 2] != ["="]:
            i += 2 if tokens[i + 1 : i + 2] == ["!"] else 1  # n!! (double factorial) <= n!
            new = _factorial_bits(last)
        elif token == "_":  # a subscript indexes, it builds no number
            _, i = _atom_bits(tokens, i + 1, depth)
            continue
        else:
            if token in _FACTORIAL_COMMANDS:  # \Gamma(n), \binom{n}{k} <= n!
                argument, i = _atom_bits(tokens, i + 1, depth)
                bits = _factorial_bits(argument)
            else:
                bits, i = _atom_bits(tokens, i, depth)
            total, last = _checked(total + bits), bits
            continue
        # b^e and n! replace their operand in the sum.
        total, last = _checked(total - last + _checked(new)), new
    return total, i


def _sympy_can_take(latex: str) -> bool:
    """Whether math-verify may parse ``latex`` without risking a computation no deadline can stop.

    A textual over-estimate of the largest number SymPy could evaluate from it (see
    :func:`_sequence_bits`); too long or too deeply nested answers are refused too.

    >>> _sympy_can_take("\\frac{2^{2007}-1}{3}"), _sympy_can_take("9^{9^{9}}")
    (True, False)
    """
    if len(latex) > _MAX_SYMPY_CHARS:
        return False
    tokens = _LATEX_TOKEN_RE.findall(latex)
    try:
        _sequence_bits(tokens, 0, 0)
    except _TooCostly:
        return False
    return True


# How often a deadline that has passed is raised again until the guarded block ends.
_DEADLINE_REPEAT_SECONDS = 0.05


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
    CPython's ``PyThreadState_SetAsyncExc``. The exception arrives at the next bytecode boundary, so
    it cannot interrupt one long C call (a huge integer power inside SymPy, say: unlike a signal
    handler, which CPython's integer power runs between its steps) -- it lands when that call
    returns; :func:`_sympy_can_take` keeps such calls away from math-verify. Unlike a
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
        while True:  # again and again until the block ends: see _alarm_deadline
            with lock:  # never fire once the block has finished: the exception would land elsewhere
                if state["done"]:
                    return
                state["fired"] = True
                _raise_in_thread(thread_id, _DeadlineExceeded)
            time.sleep(_DEADLINE_REPEAT_SECONDS)

    def finish() -> None:
        with lock:
            state["done"] = True

    timer = threading.Timer(seconds, interrupt)
    timer.daemon = True
    timer.start()
    try:
        try:
            yield
        finally:
            finish()
    finally:
        finish()  # again, should the exception have landed in the first call
        timer.cancel()
        if state["fired"]:
            # Fired but maybe not raised yet (the block finished first): clear it. If it is raised
            # before this line instead, it propagates from here, still inside is_equivalent's try.
            _raise_in_thread(thread_id, None)


@contextmanager
def _alarm_deadline(seconds: float) -> Iterator[None]:
    """Bound the wall time of the enclosed code on the main thread with ``SIGALRM``.

    The handler raises :class:`_DeadlineExceeded` between bytecodes and also inside CPython's long
    integer loops, which check for signals. The alarm repeats every ``_DEADLINE_REPEAT_SECONDS``
    until the block ends: an exception raised while a ``__del__`` method or a gc callback runs is
    printed and dropped by CPython (we saw it happen in hypothesis's gc callback), so one alarm can
    be lost. Any timer and handler the caller had set are restored.
    """
    state = {"done": False}

    def on_alarm(signum: int, frame: object) -> None:
        if not state["done"]:
            raise _DeadlineExceeded

    start = time.monotonic()
    previous_handler = signal.signal(signal.SIGALRM, on_alarm)
    # max(): a zero delay would disarm the timer; no time left means an immediate deadline.
    previous_delay, previous_interval = signal.setitimer(
        signal.ITIMER_REAL, max(seconds, 1e-6), _DEADLINE_REPEAT_SECONDS
    )
    try:
        try:
            yield
        finally:
            state["done"] = True
    finally:
        state["done"] = True  # again, should the alarm have landed before the first
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_delay:
            left = max(previous_delay - (time.monotonic() - start), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, previous_interval)


def _deadline(seconds: float) -> AbstractContextManager[None]:
    """One deadline for a whole math-verify comparison, on whichever thread it runs."""
    if _on_main_thread() and hasattr(signal, "setitimer"):
        return _alarm_deadline(seconds)
    return _thread_deadline(seconds)


def _math_verify_equal(pred: str, gold: str, timeout_seconds: float) -> bool:
    # Both sides go through parse() inside \boxed{}: math-verify's LatexExtractionConfig then reads
    # the box with its own brace matching, so plain strings such as `3`, `(3, \frac{\pi}{2})`,
    # `\text{(C)}` and `10\%` are read as LaTeX (unwrapped, `(1, 2)` would be read as just `2`).
    if not (_sympy_can_take(pred) and _sympy_can_take(gold)):
        logger.debug("is_equivalent(%.80r, %.80r): too costly for SymPy, string match only", pred, gold)
        return False
    # math-verify's own timeouts (signal.alarm, whole seconds, main thread only) would bound the
    # parse of each side and the comparison separately -- up to three times timeout_seconds. We turn
    # them off and set one deadline; math-verify then logs once that we must bound the time
    # ourselves, so silence that warning.
    math_verify.parser.TIMEOUT_WARNING_SHOWN = True
    math_verify.grader.TIMEOUT_WARNING_SHOWN = True
    with _deadline(timeout_seconds):
        gold_parsed = math_verify.parse(f"\\boxed{{{gold}}}", parsing_timeout=None)
        pred_parsed = math_verify.parse(f"\\boxed{{{pred}}}", parsing_timeout=None)
        if not gold_parsed or not pred_parsed:
            return False
        return math_verify.verify(gold_parsed, pred_parsed, timeout_seconds=None)


def is_equivalent(pred: str, gold: str, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> bool:
    """Whether the answer ``pred`` is mathematically the same as the gold answer ``gold``.

    Both may carry ``$...$`` or ``\\boxed{}`` wrappers. A normalized string match (see
    :func:`normalize_answer`) is tried first; otherwise both are parsed and compared with
    math-verify. Never raises: any error or timeout counts as not equivalent (logged at DEBUG).

    Safe to call from worker threads and worker processes. One deadline of ``timeout_seconds``
    bounds math-verify's work (``SIGALRM`` on a main thread, a timer thread elsewhere). Answers that
    could make SymPy build a huge number -- work no deadline can interrupt -- or that are over 1,000
    characters or nested over 50 brackets deep are compared by their normalized strings only.

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


def grade(
    solution_text: str, gold: str, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
) -> tuple[str | None, bool]:
    """Extract the final answer of ``solution_text`` and compare it with ``gold``.

    Returns ``(answer, correct)``; a solution that states no answer is incorrect. ``timeout_seconds``
    bounds the comparison as in :func:`is_equivalent`.

    >>> grade("2 + 2 = 4\\n\\nThe answer is \\\\boxed{4}", "4")
    ('4', True)
    """
    answer = extract_answer(solution_text)
    if answer is None:
        return None, False
    return answer, is_equivalent(answer, gold, timeout_seconds)
