"""Final-answer extraction and answer equivalence, shared by every task (MATH, GSM8K, arithmetic).

``extract_answer`` pulls the final answer out of a model's output, ``is_equivalent`` compares two
answer strings (a cheap normalized string match, exact decimals, then math-verify under a
deadline), ``grade`` does both.

Extraction reads the model's own output: it ends where a few-shot continuation starts (a line
beginning "Problem:" or "Question:", where lm-eval stops generation) or at a chat-turn token the
model wrote itself (``<|im_start|>``, ``<|im_end|>``, ...). Then, with ``mode`` one of
:data:`ANSWER_EXTRACTIONS`, the first of these that gives an answer:

1. The later of the last *group of boxes* and the last final-answer header. A group is the last
   balanced ``\\boxed{}``/``\\fbox{}`` with the boxes right before it that are joined to it only by
   separators -- commas, semicolons, "and"/"or" (also in ``\\text{}``), ``\\quad``, math delimiters
   and a short label such as ``y =`` -- on one line, or written back to back:
   ``x = \\boxed{2} and y = \\boxed{3}`` and ``\\boxed{1}, \\boxed{-2}`` are one answer (multiple
   roots, a set of pairs), returned as the span from the first box to the last, which
   :func:`is_equivalent` reads as the list ``2, 3``. Boxes separated by words
   (``\\boxed{3} for part (a) and \\boxed{5}``), a line break or a space alone are separate
   answers (work shown, then the answer), and the last one is taken; so is an empty last box
   (then rules 2-3 apply). The headers: Minerva's / lm-eval ``minerva_math``'s "Final Answer: The
   final answer is X. I hope it is correct.", markdown's "**Final Answer:** X" or "**Final Answer**"
   over the answer's line, and R1-style ``<answer>X</answer>``; the answer is the rest of the line
   without the sign-off, "The final answer is" or "... is" ("The volume of $ABCD$ is 120"). A
   header after the last box wins -- the last statement of the answer, as math-verify takes the
   rightmost match; lm-eval and Qwen2.5-Math's parser take the *first* Minerva line, which only
   matters after a few-shot continuation, already cut off.
2. The last "The answer is X" / "the final answer is X" / "Answer: X" / "Answer $X$" at a line's
   start: the rest of the line up to the end of the sentence ("... X. Let me check", "X, which
   ..."), without a trailing period, ``**`` or ``$...$``.
3. GSM8K's last ``#### N`` (thousands commas removed).
4. ``"lenient"`` only, for an output with none of the markers above, what math-verify extracts --
   the field's unanchored extraction (lighteval's MATH metric, open-r1 and TRL's reward functions
   all call it) rather than a second implementation of it: ``math_verify.parse`` with the
   prediction configs of lighteval's ``latex_gold_metric`` (``ExprExtractionConfig`` and
   ``LatexExtractionConfig(boxed_match_priority=0)``, ``first_match``), on the output's last
   1,000 characters, under our deadline: the rightmost math environment or expression, a space
   or comma thousands separator read as such (``1 000``), a decimal comma as a point (``2,74``).
   Two rules of ours come first and one after. An output that is *only* an answer -- one line, no
   prose: ``\\frac{1}{2}``, ``(x-2)(x+2)``, ``$E$``, ``y=-\\frac{1}{2}x+\\frac{3}{4}`` -- is that
   answer, whole (math-verify reads the product as nothing and the bare equation as its last
   term); a computation with its result (``2 + 2 = 4``) gives the result. Where math-verify finds
   nothing, or the tail is one SymPy must not see (:func:`_sympy_can_take`), the last
   mathematical expression of the output: the content of the last ``$...$``/``\\[...\\]``/``\\(...\\)``
   with a digit or a math command in it and no prose (after its last ``=``), or the last number
   written as a word (``42``, ``1,000,000``, ``-3.5``, ``$5``, ``2/3``, ``50%``; not an operand of
   ``+ - * / ^``, nor a digit inside LaTeX), whichever ends later -- Qwen2.5-Math's last-number
   fallback. open-r1's reward turns unanchored extraction off (``try_extract_without_anchor=False``),
   as strict mode does.

A marked answer that is a sentence ("Final Answer: Jane started 3 hours ago", "The answer is 12
apples") gives the last mathematical expression in it, by rule 4.

The default is :data:`DEFAULT_ANSWER_EXTRACTION` = ``"strict"``. On the 345 cases of
``tests/data/grading_cases.jsonl`` (every format above, hand-written in real models' styles and
rewritten from peer graders' own test expectations) strict agrees with a careful human grader
on 329 (95%), lenient on 341 (99%); 15 of strict's 16 misses are outputs that state their answer
with no marker, where it agrees on 327 of the other 328 (99.7%); among lenient's 4 misses are 2 truncated
outputs whose last number happens to be the gold answer. On the peers' own test cases, lenient agrees
with 33 of the 34 of ``tests/data/grading_cases_peer.jsonl`` and 234 of the 243 held out in
``bench/data/grading_heldout.jsonl`` (``bench/grading_agreement.py``). Both modes grade all 500
MATH-500 reference solutions
correct. The table favours lenient; strict stays the default because a solution with no marked
answer is the pipeline's "unparseable" solution -- ``ttc label`` drops it
(``tests/test_mc_labels.py`` pins this), and a truncated sample must not become a vote in
best-of-N or majority voting. Stages that want unmarked outputs graded pass ``mode="lenient"``.

Equivalence reads, beyond math-verify's own rules: a group of boxes as the list of their contents;
thousands separators (``1,000,000``, ``1{,}000``, ``10,\\!000``; ``1,2`` and ``32, 349`` are lists,
never numbers) -- except ``1,22`` against ``1.22`` (either side), a decimal comma, as math-verify
reads it (alone, MATH's ``-2,1`` stays two roots); an exact value followed by its approximation
(``x = 1/3 \\approx 0.33``) as the exact value; percentages (a ``%`` on one side lets its number be read as the percent figure or
as its value, so with a MATH gold ``50\\%`` both ``50`` and ``0.5`` are right, and ``50\\%`` is right
for a gold ``50`` or ``\\frac{1}{2}``; two plain numbers are never rescaled: ``0.5`` is wrong for
``50``); units (``10\\text{ cm}``, ``\\$5``, ``5 dollars``, ``90^\\circ``); relations
(``\\le``/``\\leq``/``<=``, ``\\ne``/``\\neq``/``!=``, ``\\lt``, and a relation against the interval it
describes, both ways); text answers (``\\text{E}``, ``\\textbf{(E)}``, ``(E)``); intervals and
matrices (math-verify).

Thread safety and hostile input: math-verify's own timeouts use ``signal.alarm``, which Python only
allows on the main thread. We turn them off and bound each comparison with one deadline of our
own: ``SIGALRM`` on a main thread (including the main thread of a process-pool worker), a timer
that raises an exception in the calling thread elsewhere; see :func:`_thread_deadline` for what
that can and cannot interrupt, and :func:`_sympy_can_take` for the answers kept from SymPy
because no deadline could stop them. Extraction and normalization are linear in the text's length.
"""

from __future__ import annotations

import ctypes
import functools
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
# How extract_answer finds an answer (module docstring): "strict" reads marked answers only,
# "lenient" falls back to the last mathematical expression of an output with no marker.
ANSWER_EXTRACTIONS = ("strict", "lenient")
DEFAULT_ANSWER_EXTRACTION = "strict"

_BOX_COMMANDS = ("\\boxed", "\\fbox")
# What the box scanner looks at: box commands, escaped braces and backslashes, braces.
_BOX_TOKEN_RE = re.compile(r"\\(?:boxed|fbox)|\\[{}\\]|[{}]")
# "The answer is X" / "the final answer is: X" / "Answer: X" at a line's start; the last one wins.
_ANSWER_IS_RE = re.compile(
    r"\b(?:the\s+(?:final\s+)?|final\s+)answer\s+is\s*:?[ \t]*"
    r"|^[ \t>#*_]*answer[ \t*_]*(?::[ \t*_]*|(?=[ \t]*(?:\$|\\\[|\\\(|-?[0-9])))",
    re.IGNORECASE | re.MULTILINE,
)
# "Final Answer: ..." (Minerva, lm-eval minerva_math), "**Final Answer**" alone on its line, and
# R1-style "<answer>...</answer>" (open-r1's format reward).
_FINAL_ANSWER_RE = re.compile(
    r"\bfinal\s+answer[ \t*_]*:[ \t*_]*|^[ \t>#*_]*final\s+answer[ \t*_]*$|(?P<tag><answer>)",
    re.IGNORECASE | re.MULTILINE,
)
# Where a model's own output ends: a few-shot continuation (Minerva's "Problem:", GSM8K's
# "Question:" on a new line -- lm-eval stops generation there) or a chat turn it wrote itself.
_CONTINUATION_RE = re.compile(
    r"\n[ \t]*(?:Problem|Question)[ \t]*:|<\|(?:im_start|im_end|endoftext|eot_id)\|>"
)
_HOPE_RE = re.compile(r"I hope it is correct\.?", re.IGNORECASE)  # Minerva's sign-off
_STATEMENT_RE = re.compile(r"^(?:the\s+(?:final\s+)?answer\s+is|.{0,100}?\sis)\s*:?\s+", re.IGNORECASE)
# Where an answer's sentence ends: ". Next sentence", ", which ...", and the like.
_SENTENCE_END_RE = re.compile(r"\.\s+(?=[A-Z0-9(\[])|,\s+(?:which|since|because|as|so|where)\b|\sI hope\b")
_GSM8K_RE = re.compile(r"####[ \t]*([^\n]*)")
# Between two boxes of one answer (module docstring): separators, delimiters, spacing, a label.
_BOX_GAP_RE = re.compile(
    r"(?:[ \t,;&~]|\$|\\[\[\]()]|\\q?quad(?![A-Za-z])|\\[,;:! ]|\b(?:and|or)\b"
    r"|\\(?:text|mbox|textrm|mathrm)\{\s*(?:and|or|,)?\s*\}"
    r"|[A-Za-z](?:_\{?\w{1,3}\}?)?\s*=|\(\s*[A-Za-z](?:\s*,\s*[A-Za-z])*\s*\)\s*=)*"
)
_BOX_SEPARATOR_RE = re.compile(r"[,;]|\band\b|\bor\b|\\q?quad")
_MAX_BOX_GAP = 80
# Lenient: a number written as a word. The lookbehind refuses digits inside LaTeX or words
# (x^{2}, a_1, \frac{1}{2}); a sign must be attached; thousands groups of exactly three digits.
_NUMBER_RE = re.compile(
    r"(?<![\w.,\\^_{}&/|'(\[-])-?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?"
    r"(?:\s*/\s*[0-9]+)?(?:\s*(?:\\%|%|percent\b))?(?![\w^!{}&'/])(?!\.[0-9])(?!,[0-9])"
)
_OPERATORS = "+-*/^×÷·"
_OPERATOR_COMMANDS = ("\\cdot", "\\times", "\\div", "\\pm", "\\mp")
_MATH_COMMAND_RE = re.compile(r"\\(?:frac|dfrac|tfrac|sqrt|pi|infty|begin|text|mathrm|circ|%)|[0-9]")
_PROSE_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")
_LONG_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{4,}")
_COMMAND_RE = re.compile(r"\\[A-Za-z]+(?:\{[^{}]*\})?")  # \text{cm}, \begin{pmatrix}, \frac{1}, \pi
_INLINE_MATH_RE = re.compile(r"\$[^$]*\$")
_LAST_EQUALS_RE = re.compile(r"(?<![<>!=\\])=(?!=)|\\approx(?![A-Za-z])|≈")
_APPROX_RE = re.compile(r"\\approx(?![A-Za-z])|≈")
# No thousands group starts a number with 0: "0,111" is a decimal comma (0.111), not 111.
_THOUSANDS_RE = re.compile(r"^-?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?$")
_LATEX_THOUSANDS_RE = re.compile(r"\{,\}\s*|,\\!\s*")
_TRAILING_UNIT_RE = re.compile(r"^(.+?)\\(?:text|mbox|mathrm|textnormal)\{\s*[A-Za-z][A-Za-z ]*\}$")
# "5 dollars", "12 apples", "28 percent": up to three words after a plain number.
_TRAILING_WORDS_RE = re.compile(r"^(-?[\d.,]+)\s*([A-Za-z]{2,}(?:\s+[A-Za-z]{2,}){0,2})$")
_NOT_UNIT_WORDS = {"pi", "and", "or", "sin", "cos", "tan", "log", "ln", "exp", "sqrt", "times", "cdot"}
_TEXT_RE = re.compile(r"\\(?:text|textbf|mbox|mathrm|textnormal)\{([^{}]*)\}")
_RELATION_RES = (
    (re.compile(r"\\(?:leqslant|leq|le)(?![A-Za-z])|<="), "\\le "),
    (re.compile(r"\\(?:geqslant|geq|ge)(?![A-Za-z])|>="), "\\ge "),
    (re.compile(r"\\(?:neq|ne)(?![A-Za-z])|!="), "\\ne "),
    (re.compile(r"\\lt(?![A-Za-z])"), "<"),
    (re.compile(r"\\gt(?![A-Za-z])"), ">"),
)
_SHORT_LHS_RE = re.compile(r"^[A-Za-z](?:_\{?\w\}?)?=(?!=)")
_PLAIN_NUMBER_RE = re.compile(r"^-?\d+(?:\.\d+)?$")
_DECIMAL_COMMA_RE = re.compile(r"^-?\d+,\d+$")
_MATH_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_MAX_WHOLE_ANSWER = 200
_DISPLAY_OPENER_RE = re.compile(r"[ \t]*:?[ \t]*(\$\$|\\\[)")
_DISPLAY_CLOSERS = {"$$": "$$", "\\[": "\\]"}
_MAX_MATH_VERIFY_TAIL = 1000
# lighteval's MATH metric (latex_gold_metric): what it extracts from a prediction.
_LENIENT_EXTRACTION = (
    math_verify.ExprExtractionConfig(),
    math_verify.LatexExtractionConfig(boxed_match_priority=0),
)


def _boxes(text: str) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(command, start, end, after)`` of every balanced ``\\boxed{...}``/``\\fbox{...}``.

    ``text[start:end]`` is the content, ``text[command:after]`` the whole box. One left-to-right
    scan over the braces and backslashes with a stack of open braces, so the cost is linear in
    ``len(text)`` no matter how many boxes are left open (a per-box scan is quadratic on
    ``\\boxed{`` repeated). Escaped braces ``\\{ \\}`` (set notation) are not counted. Boxes come
    in order of their end.
    """
    stack: list[tuple[int, int] | None] = []  # (command, content start) for a box's brace, else None
    search, n, pos = _BOX_TOKEN_RE.search, len(text), 0
    while True:
        token = search(text, pos)
        if token is None:
            return
        i, pos = token.start(), token.end()
        char = text[i]
        if char == "{":
            stack.append(None)
        elif char == "}":
            if stack:
                box = stack.pop()
                if box is not None:
                    yield box[0], box[1], i, i + 1
        elif pos - i > 2:  # \boxed or \fbox (else an escaped brace or backslash: skipped)
            j = pos
            while j < n and text[j] in " \t":
                j += 1
            if j < n and text[j] == "{":
                stack.append((i, j + 1))
                pos = j + 1
            elif j > pos and j < n and text[j] not in "\\$":
                # "\boxed 5": an unbraced box holds one token.
                end = j
                while end < n and not text[end].isspace() and text[end] not in "$.,":
                    end += 1
                yield i, j, end, end
                pos = end


def _box_spans(text: str) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of the content of every balanced box, in order of their end (see :func:`_boxes`)."""
    for _, start, end, _ in _boxes(text):
        yield start, end


def _boxes_join(gap: str) -> bool:
    """Whether two boxes ``gap`` apart belong to one answer (see the module docstring)."""
    if not gap:
        return True  # \boxed{1}\boxed{2}
    return (
        len(gap) <= _MAX_BOX_GAP
        and "\n" not in gap
        and _BOX_GAP_RE.fullmatch(gap) is not None
        and _BOX_SEPARATOR_RE.search(gap) is not None
    )


def _last_box_group(text: str) -> list[tuple[int, int, int, int]]:
    """The boxes of the last group (see the module docstring), in order; [] when there is no box.

    Walks back from the last box over the top-level boxes before it (boxes nested in the group's
    first box are skipped), so the cost is linear in the number of boxes.
    """
    boxes = list(_boxes(text))
    if not boxes:
        return []
    group = [boxes[-1]]
    for box in reversed(boxes[:-1]):
        first = group[-1]
        if box[3] > first[0]:
            continue  # inside the group's first box
        if not text[box[1] : box[2]].strip() or not _boxes_join(text[box[3] : first[0]]):
            break
        group.append(box)
    return group[::-1]


def _join_box_group(answer: str) -> str:
    """A group of boxes that is all of ``answer`` as the list of their contents, else ``answer``.

    >>> _join_box_group("\\\\boxed{2} and y = \\\\boxed{3}")
    '2, 3'
    """
    if not answer.startswith(_BOX_COMMANDS) or not answer.endswith("}"):
        return answer
    group = _last_box_group(answer)
    if len(group) < 2 or group[0][0] != 0 or group[-1][3] != len(answer):
        return answer
    return ", ".join(answer[start:end].strip() for _, start, end, _ in group)


def _strip_math_delimiters(text: str) -> str:
    text = text.strip()
    for left, right in _MATH_DELIMITERS:
        if len(text) >= len(left) + len(right) and text.startswith(left) and text.endswith(right):
            return text[len(left) : len(text) - len(right)].strip()
    return text


def _clean_statement(answer: str) -> str:
    """The answer of a marker's rest of line: to the end of its sentence, without decoration."""
    hope = _HOPE_RE.search(answer)
    if hope:
        answer = answer[: hope.start()]
    end = _SENTENCE_END_RE.search(answer)
    if end:
        answer = answer[: end.start()]
    answer = answer.strip().rstrip(". ").strip().strip("*").strip()
    if len(answer) >= 2 and answer[0] == answer[-1] == '"':
        answer = answer[1:-1]
    answer = _strip_math_delimiters(answer.rstrip(". ").strip())
    return answer.rstrip(".").strip()


def _statement_answer(statement: str) -> str:
    """A marked answer that is a sentence ("Jane started growing Sphere 3 hours ago") gives the
    last mathematical expression in it; a text answer ("Evelyn") or a formula stays whole."""
    if _LONG_WORD_RE.search(_COMMAND_RE.sub("", _INLINE_MATH_RE.sub("", statement))):
        return _last_expression(statement) or statement
    return statement


def _rest_of_line(text: str, start: int, next_line: bool) -> str:
    """``text`` from ``start`` to the end of its line; with ``next_line``, the next non-empty line
    when that is empty (``**Final Answer**`` on a line of its own)."""
    line_end = text.find("\n", start)
    rest = text[start : line_end if line_end >= 0 else len(text)]
    if rest.strip(" \t*_:") or not next_line or line_end < 0:
        return rest
    start = line_end
    while start < len(text) and text[start].isspace():
        start += 1
    line_end = text.find("\n", start)
    return text[start : line_end if line_end >= 0 else len(text)]


def _mentions_answer(text: str) -> bool:
    """A cheap pre-check of the answer markers' regexes (most outputs have a box and no marker)."""
    return "nswer" in text or "NSWER" in text


def _final_answer(text: str) -> tuple[int, str] | None:
    """``(position, answer)`` of the last final-answer header ("Final Answer:", "**Final Answer**",
    ``<answer>``), or None."""
    if not _mentions_answer(text):
        return None
    last = None
    for last in _FINAL_ANSWER_RE.finditer(text):  # noqa: B007 -- we want the last match
        pass
    if last is None:
        return None
    if last.group("tag"):
        close = text.find("</answer>", last.end())
        answer = text[last.end() : close if close >= 0 else len(text)].strip()
    else:
        answer = _rest_of_line(text, last.end(), next_line=True).strip(" \t*_:")
    hope = _HOPE_RE.search(answer)
    if hope:
        answer = answer[: hope.start()]
    # "The final answer is $X$." / "The volume of $ABCD$ is 120." -> what comes after "is".
    statement = _STATEMENT_RE.match(answer)
    if statement:
        answer = answer[statement.end() :]
    return last.start(), _statement_answer(_clean_statement(answer))


def _answer_is(text: str) -> str | None:
    if not _mentions_answer(text):
        return None
    last = None
    for last in _ANSWER_IS_RE.finditer(text):  # noqa: B007 -- we want the last match
        pass
    if last is None:
        return None
    # "Answer \\[" with the display on the lines below: the display's content is the answer.
    display = _DISPLAY_OPENER_RE.match(text, last.end())
    if display:
        closer = _DISPLAY_CLOSERS[display.group(1)]
        close = text.find(closer, display.end())
        if close >= 0 and "\n" in text[display.end() : close]:
            return _statement_answer(_clean_statement(text[display.end() : close])) or None
    # "Answer:" or "the answer is:" on a line of its own: the answer is on the next line.
    answer = _statement_answer(
        _clean_statement(_rest_of_line(text, last.end(), next_line=":" in last.group()))
    )
    return answer or None


def _marked_answer(text: str) -> str | None:
    """The answer of rules 1-3 of the module docstring, or None."""
    group = _last_box_group(text)
    final = _final_answer(text)
    if final is not None and final[1] and (not group or final[0] >= group[-1][3]):
        return final[1]
    if group:
        _, start, end, after = group[-1]
        if text[start:end].strip():  # an empty last box is no answer (the rules below apply)
            # One box: its content; several: the span from the first box to the last.
            return text[start:end].strip() if len(group) == 1 else text[group[0][0] : after].strip()
    answer = _answer_is(text)
    if answer:
        return answer
    matches = _GSM8K_RE.findall(text)
    if matches and matches[-1].strip():
        return matches[-1].strip().replace(",", "")
    return None


def _math_spans(text: str) -> Iterator[tuple[int, int, int]]:
    """``(start, end, after)`` of the contents of ``$$..$$``, ``\\[..\\]``, ``$..$`` and ``\\(..\\)``.

    Linear: each search for a closer either consumes the text up to it or finds none, after which
    that kind of span is not looked for again. ``\\$`` opens nothing.
    """
    exhausted: set[str] = set()
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "\\" and i + 1 < n:
            kind = text[i + 1]
            if kind in "[(" and kind not in exhausted:
                close = text.find("\\]" if kind == "[" else "\\)", i + 2)
                if close < 0:
                    exhausted.add(kind)
                else:
                    yield i + 2, close, close + 2
                    i = close + 2
                    continue
            i += 2
            continue
        if char == "$":
            kind = "$$" if text.startswith("$$", i) else "$"
            if kind not in exhausted:
                close = text.find(kind, i + len(kind))
                if close < 0:
                    exhausted.add(kind)
                else:
                    yield i + len(kind), close, close + len(kind)
                    i = close + len(kind)
                    continue
            i += len(kind)
            continue
        i += 1


def _exact_value(text: str) -> str:
    """``x = 1/3 \\approx 0.33`` states the exact value 1/3: the approximation after it is dropped.
    ``x \\approx 11`` has no exact value, so it stays (11 is then its answer)."""
    approx = _APPROX_RE.search(text)
    if approx is None:
        return text
    before = text[: approx.start()]
    value = _LAST_EQUALS_RE.split(before)[-1]
    return before.rstrip() if _MATH_COMMAND_RE.search(value) else text


def _span_answer(content: str) -> str | None:
    """The answer a math span states: after its last ``=``; None for a variable or for prose."""
    content = content.strip()
    if not _MATH_COMMAND_RE.search(content) or _PROSE_RE.search(_COMMAND_RE.sub("", content)):
        return None
    content = _exact_value(content)
    last = None
    for last in _LAST_EQUALS_RE.finditer(content):  # noqa: B007 -- we want the last match
        pass
    if last is not None:
        content = content[last.end() :].strip()
    content = content.rstrip(".,;").strip()
    return content if _MATH_COMMAND_RE.search(content) else None


def _is_operand(text: str, start: int, end: int) -> bool:
    """Whether the number ``text[start:end]`` is an operand of an operator next to it."""
    before = text[max(0, start - 8) : start].rstrip()
    after = text[end : end + 8].lstrip()
    if before.endswith("**") or after.startswith("**"):  # markdown bold, not multiplication
        return False
    return (
        (bool(before) and before[-1] in _OPERATORS)
        or before.endswith(_OPERATOR_COMMANDS)
        or (bool(after) and after[0] in _OPERATORS)
        or after.startswith(_OPERATOR_COMMANDS)
    )


def _last_expression(text: str) -> str | None:
    """Rule 4 of the module docstring: the last math span's answer or the last number, or None."""
    best_end, best = -1, None
    spans = list(_math_spans(text))
    for start, end, after in reversed(spans):
        answer = _span_answer(text[start:end])
        if answer:
            best_end, best = after, answer
            break
    # Numbers outside math spans, from the right.
    span_index = len(spans) - 1
    for match in reversed(list(_NUMBER_RE.finditer(text))):
        if match.end() <= best_end:
            break
        while span_index >= 0 and spans[span_index][0] > match.start():
            span_index -= 1
        if span_index >= 0 and spans[span_index][2] > match.start():
            continue  # inside a math span
        if match.start() > 0 and text[match.start() - 1] == "$":
            dollar = match.start() - 1
            if dollar > 0 and not (text[dollar - 1].isspace() or text[dollar - 1] == "\\"):
                continue  # "$" that is not a currency sign starting a word
        if _is_operand(text, match.start(), match.end()):
            continue
        return match.group().strip()
    return best


def _whole_output_answer(text: str) -> str | None:
    """An output that is only an answer -- one line, no prose: ``\\frac{1}{2}``, ``(x-2)(x+2)``,
    ``$E$``, ``$$f(y) = y$$`` -- is that answer, whole (math-verify reads ``(x-2)(x+2)`` as nothing
    and a bare ``y=-\\frac{1}{2}x+\\frac{3}{4}`` as its last term)."""
    answer = _unwrap(text.strip())
    if not answer or "\n" in answer or len(answer) > _MAX_WHOLE_ANSWER or "$" in answer:
        return None
    if _PROSE_RE.search(_COMMAND_RE.sub("", answer)):
        return None
    answer = _exact_value(answer)
    *_, lhs, rhs = [""] + _LAST_EQUALS_RE.split(answer)
    if lhs and not re.search(r"[A-Za-z]", _COMMAND_RE.sub("", lhs)):
        answer = rhs  # "2 + 2 = 4": a computation and its result; "f(y) = y" is an equation
    return answer.rstrip(".").strip() or None


def _math_verify_answer(text: str) -> str | None:
    """The answer math-verify's ``parse`` extracts from an unmarked output, with the extraction
    configs of lighteval's MATH metric (its ``latex_gold_metric``'s predictions: expressions, then
    LaTeX with boxes first; ``first_match`` keeps a match SymPy cannot read as its text), or None.

    It reads the output's last :data:`_MAX_MATH_VERIFY_TAIL` characters (from a line start): the
    answer of an unmarked output is its last expression, and SymPy must not see more text than our
    guard (:func:`_sympy_can_take`) vets. Under our one deadline, like every math-verify call here.
    """
    tail = text[-_MAX_MATH_VERIFY_TAIL:]
    if len(text) > _MAX_MATH_VERIFY_TAIL and "\n" in tail:
        tail = tail[tail.index("\n") + 1 :]
    if not tail.strip() or not _sympy_can_take(tail):
        return None
    _silence_math_verify_timeouts()
    with _deadline(DEFAULT_TIMEOUT_SECONDS):
        parsed = math_verify.parse(
            tail, extraction_config=_LENIENT_EXTRACTION, fallback_mode="first_match", parsing_timeout=None
        )
    found = parsed[-1] if parsed and isinstance(parsed[-1], str) else None
    # math-verify keeps the sentence's period ("2/3."), which SymPy then reads as a float.
    return (found.strip().rstrip(".,;:").strip() or None) if found else None


def _lenient_answer(text: str) -> str | None:
    """Rule 4 of the module docstring: an output with no marked answer."""
    try:
        found = _whole_output_answer(text) or _math_verify_answer(text)
    except (_DeadlineExceeded, TimeoutException, Exception) as err:  # noqa: BLE001 -- never crash a run
        logger.debug("lenient extraction by math-verify failed (%r); the last expression instead", err)
        found = None
    return found or _last_expression(text)


def extract_answer(text: str, mode: str = DEFAULT_ANSWER_EXTRACTION) -> str | None:
    """The final answer stated in a model's output, or None when it states none.

    ``mode`` is ``"strict"`` (marked answers: boxes, "Final Answer:", "The answer is X", ``#### N``)
    or ``"lenient"`` (also the last mathematical expression of an output with no marker); the rules
    are in the module docstring. An unbalanced box is ignored. Never raises on any text (a ``mode``
    not in :data:`ANSWER_EXTRACTIONS` is a ``ValueError``); linear in ``len(text)``.

    >>> extract_answer("so $x = \\\\boxed{\\\\frac{a}{b^{2}}}$.")
    '\\\\frac{a}{b^{2}}'
    >>> extract_answer("The roots are $x = \\\\boxed{2}$ and $x = \\\\boxed{-3}$.")
    '\\\\boxed{2}$ and $x = \\\\boxed{-3}'
    >>> extract_answer("Final Answer: The final answer is $[2,5)$. I hope it is correct.")
    '[2,5)'
    >>> extract_answer("The answer is 42.")
    '42'
    >>> extract_answer("#### 1,234")
    '1234'
    >>> extract_answer("so the total is 1,250 dollars.", mode="lenient")
    '1250'
    >>> extract_answer("\\\\frac{1}{2}", mode="lenient"), extract_answer("\\\\frac{1}{2}")
    ('\\\\frac{1}{2}', None)
    """
    if mode not in ANSWER_EXTRACTIONS:
        raise ValueError(f"answer extraction {mode!r} is not one of {ANSWER_EXTRACTIONS}")
    try:
        continuation = _CONTINUATION_RE.search(text)
        if continuation:
            text = text[: continuation.start()]
        answer = _marked_answer(text)
        if answer is None and mode == "lenient":
            answer = _lenient_answer(text)
        if answer is not None and answer.strip():
            return answer.strip()
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


def _answer_text(answer: str) -> str:
    """What an answer string says: unwrapped (:func:`_unwrap`), a group of boxes as a list, and
    without a lone leading ``$`` (a currency sign in prose: "The answer is $40.")."""
    text = _join_box_group(_unwrap(answer))
    if text.startswith("$") and "$" not in text[1:]:
        text = text[1:].lstrip()
    text = _exact_value(text)
    return text


def _normal_form(text: str) -> str:
    """:func:`normalize_answer` of an answer already through :func:`_answer_text`."""
    text = _LATEX_THOUSANDS_RE.sub(",", text)  # 10,\\!000 and 10{,}000 (MATH's thousands)
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
    words = _TRAILING_WORDS_RE.match(text.strip())
    if words and not _NOT_UNIT_WORDS.intersection(words.group(2).lower().split()):
        text = words.group(1)
    if "\\" in text or "=" in text:  # every relation spelling has one
        for pattern, replacement in _RELATION_RES:
            text = pattern.sub(lambda _, r=replacement: r, text)
    # A comma followed by a space separates list items: "32, 349" is two numbers, "32,349" one.
    spaced_comma = re.search(r",\s", text) is not None
    # Periods again once spaces are gone: "3. ." must give "3" like "3 ." and "3..", not "3.".
    text = "".join(text.split()).rstrip(".")
    text = _SHORT_LHS_RE.sub("", text)
    if not spaced_comma and _THOUSANDS_RE.match(text):
        text = text.replace(",", "")
    return text


def normalize_answer(answer: str) -> str:
    """A light, purely textual normal form of an answer string (the fast path of ``is_equivalent``).

    Removes delimiters and boxes (a group of boxes becomes the list of their contents), spacing
    macros, ``\\left``/``\\right``, degree, percent and dollar signs, a trailing unit in ``\\text{}``
    or as words after a number, thousands separators and a short ``x =`` prefix; ``\\dfrac`` and
    ``\\tfrac`` become ``\\frac``, ``\\leq``/``<=`` become ``\\le`` (likewise ``\\ge``, ``\\ne``).

    >>> normalize_answer("$\\\\left( 3, \\\\dfrac{\\\\pi}{2} \\\\right)$")
    '(3,\\\\frac{\\\\pi}{2})'
    """
    return _text_and_normal_form(answer)[1]


# Selection regroups the same few answers of a problem again and again (every budget, rule and
# stopping point): short answers are normalized once per process (a pure function of the string, no
# deadline involved). Long ones are rare and not kept.
_CACHED_LENGTH = 512


def _text_and_normal_form(answer: str) -> tuple[str, str]:
    """:func:`_answer_text` of an answer and its normal form (:func:`_normal_form`)."""
    if len(answer) <= _CACHED_LENGTH:
        return _cached_text_and_normal_form(answer)
    text = _answer_text(answer)
    return text, _normal_form(text)


@functools.lru_cache(maxsize=1 << 16)
def _cached_text_and_normal_form(answer: str) -> tuple[str, str]:
    text = _answer_text(answer)
    return text, _normal_form(text)


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


def _silence_math_verify_timeouts() -> None:
    """math-verify logs once that a caller who turns its timeouts off must bound the time itself: we
    do, with :func:`_deadline` around every call, so that warning is noise."""
    math_verify.parser.TIMEOUT_WARNING_SHOWN = True
    math_verify.grader.TIMEOUT_WARNING_SHOWN = True


@functools.lru_cache(maxsize=1 << 12)
def _parsed_gold(gold: str) -> list:
    """math-verify's parse of a gold answer, once per process: a problem's N samples are all graded
    against it. Called under the caller's deadline; a parse the deadline stops raises and is not kept.
    SymPy's objects are immutable, so the cached parse is shared safely between threads."""
    return math_verify.parse(f"\\boxed{{{gold}}}", parsing_timeout=None)


def _math_verify_equal(pred: str, gold: str, timeout_seconds: float) -> bool:
    # Both sides go through parse() inside \boxed{}: math-verify's LatexExtractionConfig then reads
    # the box with its own brace matching, so plain strings such as `3`, `(3, \frac{\pi}{2})`,
    # `\text{(C)}` and `10\%` are read as LaTeX (unwrapped, `(1, 2)` would be read as just `2`).
    if not (_sympy_can_take(pred) and _sympy_can_take(gold)):
        logger.debug("is_equivalent(%.80r, %.80r): too costly for SymPy, string match only", pred, gold)
        return False
    # math-verify's own timeouts (signal.alarm, whole seconds, main thread only) would bound the
    # parse of each side and the comparison separately -- up to three times timeout_seconds. We turn
    # them off and set one deadline.
    _silence_math_verify_timeouts()
    with _deadline(timeout_seconds):
        gold_parsed = _parsed_gold(gold)
        pred_parsed = math_verify.parse(f"\\boxed{{{pred}}}", parsing_timeout=None)
        if not gold_parsed or not pred_parsed:
            return False
        # allow_set_relation_comp: a relation and the interval it describes are one answer both
        # ways (`-2 \le x \le 7` and `[-2, 7]`); math-verify's default accepts it for a set
        # prediction only.
        return math_verify.verify(
            gold_parsed, pred_parsed, timeout_seconds=None, allow_set_relation_comp=True
        )


def _is_percent(answer: str) -> bool:
    return "%" in answer or "percent" in answer or "pct" in answer


def _numbers_equal(pred_norm: str, gold_norm: str, pred_percent: bool, gold_percent: bool) -> bool:
    """Two plain decimals, exactly; a side written with ``%`` may also be read as its value (x/100)."""
    pred_value, gold_value = Decimal(pred_norm), Decimal(gold_norm)
    if pred_value == gold_value:
        return True
    if pred_percent and not gold_percent:
        return pred_value / 100 == gold_value
    if gold_percent and not pred_percent:
        return gold_value / 100 == pred_value
    return False


def is_equivalent(pred: str, gold: str, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> bool:
    """Whether the answer ``pred`` is mathematically the same as the gold answer ``gold``.

    Both may carry ``$...$`` or ``\\boxed{}`` wrappers; a group of boxes (what :func:`extract_answer`
    returns for ``x = \\boxed{2}, y = \\boxed{3}``) is the list of their contents. A normalized
    string match (see :func:`normalize_answer`) is tried first, then two plain decimals are compared
    exactly (a percentage also as its value: ``50\\%`` = ``0.5``, module docstring); otherwise both are
    parsed and compared with math-verify. Never raises: any error or timeout counts as not
    equivalent (logged at DEBUG).

    Safe to call from worker threads and worker processes. One deadline of ``timeout_seconds``
    bounds math-verify's work (``SIGALRM`` on a main thread, a timer thread elsewhere). Answers that
    could make SymPy build a huge number -- work no deadline can interrupt -- or that are over 1,000
    characters or nested over 50 brackets deep are compared by their normalized strings only.

    >>> is_equivalent("\\\\dfrac{1}{2}", "$0.5$")
    True
    >>> is_equivalent("50\\\\%", "0.5"), is_equivalent("50", "0.5")
    (True, False)
    """
    try:
        (pred_text, pred_norm), (gold_text, gold_norm) = (
            _text_and_normal_form(pred),
            _text_and_normal_form(gold),
        )
        if not pred_norm or not gold_norm:
            return False
        if pred_norm == gold_norm:
            return True
        # A decimal comma against the same digits written with a point ("1,22" and 1.22), either side:
        # as math-verify reads it. Only then: "-2,1" alone stays MATH's list of two roots.
        if _DECIMAL_COMMA_RE.match(pred_norm) and "." in gold_norm:
            pred_norm = pred_norm.replace(",", ".")
        elif _DECIMAL_COMMA_RE.match(gold_norm) and "." in pred_norm:
            gold_norm = gold_norm.replace(",", ".")
        if _PLAIN_NUMBER_RE.match(pred_norm) and _PLAIN_NUMBER_RE.match(gold_norm):
            # Two plain decimals: compared exactly here, without a SymPy round trip (the hot path
            # when grading thousands of samples of numeric tasks).
            return _numbers_equal(pred_norm, gold_norm, _is_percent(pred_text), _is_percent(gold_text))
        return bool(_math_verify_equal(pred_text, gold_text, timeout_seconds))
    except (Exception, TimeoutException, _DeadlineExceeded) as err:
        logger.debug("is_equivalent(%.80r, %.80r) -> False: %r", pred, gold, err)
        return False


def grade(
    solution_text: str,
    gold: str,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    mode: str = DEFAULT_ANSWER_EXTRACTION,
) -> tuple[str | None, bool]:
    """Extract the final answer of ``solution_text`` and compare it with ``gold``.

    Returns ``(answer, correct)``; a solution that states no answer is incorrect. ``timeout_seconds``
    bounds the comparison as in :func:`is_equivalent`; ``mode`` is the answer extraction of
    :func:`extract_answer` (one of :data:`ANSWER_EXTRACTIONS`).

    >>> grade("2 + 2 = 4\\n\\nThe answer is \\\\boxed{4}", "4")
    ('4', True)
    >>> grade("2 + 2 = 4", "4"), grade("2 + 2 = 4", "4", mode="lenient")
    ((None, False), ('4', True))
    """
    answer = extract_answer(solution_text, mode)
    if answer is None:
        return None, False
    return answer, is_equivalent(answer, gold, timeout_seconds)
