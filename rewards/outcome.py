"""Outcome: extract a response's final answer and check it against the reference.

:func:`extract_answer` reads, in this order of preference: the last balanced ``\\boxed{...}`` or
``\\fbox{...}``; else the last ``Answer: ...`` / ``Final answer: ...`` line; else an option letter
("The answer is (B)", "answer: C", or a final line that is only ``B``, ``(B)`` or ``B.``).

:func:`accepted_answers` is the one definition of a reference answer: a string, a number, or a
list of accepted strings (any one of them is right); ``verify_answer`` and ``outcome_reward`` take
any of these, and a record reader validates with it.

:func:`verify_answer` decides with cheap rules first and calls math-verify only when they cannot:
(a) multiple choice by option letter, or by the text of the correct choice; (b) equality after
normalising LaTeX wrappers, units of degrees, spacing and thousands separators; (c) numbers
(integers, decimals, ``a/b``, ``\\frac{a}{b}``, percentages) within a relative tolerance of 1e-4;
(d) math-verify (symbolic equality, sets, intervals, equations).

math-verify runs in a persistent worker process with a per-call deadline (``rewards.verifier``):
an answer it cannot decide in time counts as wrong.

Left out: units other than degrees (``5 cm`` against ``5`` goes to math-verify, which usually says
no), decimal commas (``0,5``), answers spread over several boxes, and free-text answers beyond
case-insensitive word equality. A comma between digits followed by exactly three digits is read as
a thousands separator, so the pair ``(1,234)`` reads as ``1234``.

Run the tests with ``python -m pytest -q tests/rewards/test_outcome.py``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence

from rewards import verifier

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Extraction

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_LINE_RE = re.compile(r"^[\s>#*_]*(?:final\s+)?answer[\s*_]*[:：](.*)$", re.IGNORECASE)
_OPTION_PHRASE_RE = re.compile(
    r"(?i:answer)\s*(?:(?i:is)\s*[:：]?|[:：])\s*(?:(?i:option|choice)\s*)?[*$\s]*"
    r"(?:\(([A-Za-z])\)|\b([A-Z])(?=$|[\s.,;:!)*$]))",
    re.MULTILINE,
)
_LETTER_RE = re.compile(r"\(?([A-Z])\)?\.?")


def extract_answer(text: str) -> str | None:
    """The final answer written in ``text``, or ``None`` when it states none.

    >>> extract_answer("so \\\\boxed{\\\\frac{1}{2}}.")
    '\\\\frac{1}{2}'
    >>> extract_answer("Step 1 ...\\nFinal answer: 42.")
    '42'
    >>> extract_answer("Comparing the options, the answer is (C).")
    'C'
    """
    if not text or not text.strip():
        return None

    for content in reversed(_boxed_contents(text)):
        content = content.strip()
        if content:
            return _letter_or_self(content)

    for line in reversed(text.splitlines()):
        match = _ANSWER_LINE_RE.match(line)
        if match:
            content = _clean(match.group(1))
            if content:
                return _letter_or_self(content)

    phrases = list(_OPTION_PHRASE_RE.finditer(text))
    if phrases:
        last = phrases[-1]
        return (last.group(1) or last.group(2)).upper()

    lines = [line for line in text.splitlines() if line.strip()]
    if lines:
        match = _LETTER_RE.fullmatch(_clean(lines[-1]))
        if match:
            return match.group(1)
    return None


def _boxed_contents(text: str) -> list[str]:
    """Contents of the top-level balanced boxes in order; an unbalanced box is skipped."""
    contents = []
    pos = 0
    while match := _BOX_RE.search(text, pos):
        close = _matching_brace(text, match.end() - 1)
        if close is None:
            pos = match.end()
            continue
        content = text[match.end() : close]
        inner = _boxed_contents(content)  # \boxed{\boxed{5}} means 5
        contents.append(inner[-1] if inner else content)
        pos = close + 1
    return contents


def _matching_brace(text: str, open_index: int) -> int | None:
    depth = 0
    i = open_index
    while i < len(text):
        char = text[i]
        if char == "\\":  # \{ and \} are literal braces, not grouping
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _clean(answer: str) -> str:
    return answer.strip().strip("*").replace("$", "").strip().rstrip(".").strip()


def _letter_or_self(answer: str) -> str:
    match = _LETTER_RE.fullmatch(answer)
    return match.group(1) if match else answer


# ---------------------------------------------------------------------------------------------
# Verification

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_NUMBER_RE = re.compile(_NUMBER)
_FRACTION_RE = re.compile(
    rf"([-+]?)\\frac\{{({_NUMBER})\}}\{{({_NUMBER})\}}|({_NUMBER})/({_NUMBER})"
)
_CHOICE_LABEL_RE = re.compile(r"\s*\(?([A-Z])[).:]\s*(.*)", re.DOTALL)
_LEADING_OPTION_RE = re.compile(r"\(([A-Za-z])\)\s*\S.*|([A-Z])[.:)]\s+\S.*", re.DOTALL)


Reference = str | int | float | Sequence[str]


def accepted_answers(reference: Reference) -> list[str]:
    """The answers a reference accepts: a string, a number, or a list of accepted strings.

    Raises :class:`ValueError` saying what is wrong with anything else (a bool, a mapping, a nested
    list, an empty list, NaN); a caller that reads records names the record.

    >>> accepted_answers(31), accepted_answers(["31", "thirty-one"]), accepted_answers(" 0.5 ")
    (['31'], ['31', 'thirty-one'], [' 0.5 '])
    """
    items = list(reference) if isinstance(reference, (list, tuple)) else [reference]
    if not items:
        raise ValueError("the answer is an empty list; give a string, a number or a list of accepted strings")
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            kind = "list inside a list" if isinstance(item, (list, tuple)) else type(item).__name__
            raise ValueError(f"the answer must be a string, a number or a list of accepted strings, not a {kind}")
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"the answer is not a finite number ({item})")
        # 31.0 written by a JSON tool means 31; repr keeps other floats exact.
        out.append(str(int(item)) if isinstance(item, float) and item.is_integer() else str(item))
    return out


def verify_answer(
    predicted: str | None,
    reference: Reference,
    choices: Sequence[str] | None = None,
    timeout: float = 5.0,
) -> bool:
    """Whether ``predicted`` states the same answer as ``reference``.

    With ``choices`` (the option texts, in order A, B, ...) or a reference that is an option
    letter, the question is multiple choice: letters are compared case-insensitively, and a
    prediction that gives the text of the correct choice instead of its letter also counts.
    ``timeout`` bounds the seconds spent in math-verify; when it runs out the answer is wrong.

    >>> verify_answer("\\\\frac{1}{2}", "0.5")
    True
    >>> verify_answer("(b)", "B")
    True
    >>> verify_answer("12", "C", choices=["10", "11", "12"])
    True
    >>> verify_answer("thirty-one", ["31", "thirty-one"])
    True
    """
    if predicted is None or not predicted.strip():
        return False
    return any(_verify_one(predicted.strip(), ref.strip(), choices, timeout) for ref in accepted_answers(reference))


def _verify_one(pred: str, ref: str, choices: Sequence[str] | None, timeout: float) -> bool:
    if not ref:
        return False
    texts = [_strip_choice_label(c, i) for i, c in enumerate(choices)] if choices else []

    ref_letter = _option_letter(ref, lowercase=False)
    if ref_letter is None and texts:
        ref_letter = _choice_letter(ref, texts)
    if ref_letter is None and not texts:
        return _same_value(pred, ref, timeout)

    # A lowercase letter may be the text of a choice ("x" among "x", "y") before it is a letter.
    pred_letter = (
        _option_letter(pred, lowercase=False)
        or (_choice_letter(pred, texts) if texts else None)
        or _option_letter(pred, lowercase=True)
        or _leading_option_letter(pred)
    )

    if ref_letter is not None:
        if pred_letter is not None:
            return pred_letter == ref_letter
        index = ord(ref_letter) - ord("A")
        # A value for the correct choice counts, e.g. "0.5" for "1/2"; without its text, no match.
        return index < len(texts) and _same_value(pred, texts[index], timeout)

    # Choices given, but the reference is a value that matches none of them as written.
    if pred_letter is not None:
        index = ord(pred_letter) - ord("A")
        return index < len(texts) and _same_value(texts[index], ref, timeout)
    return _same_value(pred, ref, timeout)


def outcome_reward(response: str, reference: Reference, choices: Sequence[str] | None = None) -> float:
    """1.0 when the final answer of ``response`` matches ``reference``, else 0.0."""
    return 1.0 if verify_answer(extract_answer(response), reference, choices) else 0.0


def _option_letter(answer: str, lowercase: bool) -> str | None:
    """``"B"``, ``"(B)"`` or ``"B."`` (and lowercase forms if asked) as an uppercase letter."""
    match = re.fullmatch(r"\(?([A-Za-z])\)?", _normalise(answer))
    if match and (lowercase or match.group(1).isupper()):
        return match.group(1).upper()
    return None


def _leading_option_letter(answer: str) -> str | None:
    """The letter of a prediction written as ``"(B) 12"`` or ``"B. 12"``."""
    match = _LEADING_OPTION_RE.fullmatch(answer.strip())
    if match:
        return (match.group(1) or match.group(2)).upper()
    return None


def _strip_choice_label(choice: str, index: int) -> str:
    """``"B. 12"`` or ``"(B) 12"`` at position 1 becomes ``"12"``; other texts stay as they are."""
    match = _CHOICE_LABEL_RE.fullmatch(choice)
    if match and match.group(1) == chr(ord("A") + index) and match.group(2).strip():
        return match.group(2).strip()
    return choice.strip()


def _choice_letter(answer: str, texts: Sequence[str]) -> str | None:
    normalised = _normalise(answer)
    for index, text in enumerate(texts):
        if _same_string(normalised, _normalise(text)):
            return chr(ord("A") + index)
    return None


def _same_value(pred: str, ref: str, timeout: float) -> bool:
    """Steps (b), (c) and (d): string, then numeric, then math-verify."""
    a, b = _normalise(pred), _normalise(ref)
    if _same_string(a, b):
        return True
    a_values, b_values = _number_values(a), _number_values(b)
    if a_values is not None and b_values is not None:
        return any(
            math.isclose(x, y, rel_tol=1e-4, abs_tol=1e-6) for x in a_values for y in b_values
        )
    return verifier.VERIFIER(pred, ref, timeout)


def _normalise(answer: str) -> str:
    s = answer.replace("$", "")
    for _ in range(3):  # \text{\textbf{x}} unwraps in two rounds
        s = re.sub(r"\\(?:text|textbf|textrm|mathrm|mbox)\s*\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\\(?:left|right)(?![A-Za-z])", "", s)
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree(?![A-Za-z])", "", s)
    s = re.sub(r"\\[dt]frac(?![A-Za-z])", r"\\frac", s)
    s = s.replace("\\%", "%").replace("{,}", ",")
    s = re.sub(r"\\[,;:! ]", "", s)  # LaTeX spacing, also used as a thousands separator
    s = re.sub(r"\s+", "", s)
    s = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", s)
    return s.rstrip(".")


def _same_string(a: str, b: str) -> bool:
    if a == b:
        return True
    # Words ("Yes", "north") compare without case; single letters are symbols and keep it.
    return len(a) > 1 and a.isalpha() and b.isalpha() and a.casefold() == b.casefold()


def _number_values(s: str) -> list[float] | None:
    """The values a normalised answer can mean, or ``None`` when it is not a plain number.

    A percentage means both ``x`` and ``x / 100``, so ``50%`` matches ``50`` and ``0.5``.
    """
    percent = s.endswith("%")
    if percent:
        s = s[:-1]
    if _NUMBER_RE.fullmatch(s):
        value = float(s)
    elif match := _FRACTION_RE.fullmatch(s):
        sign, num, den, plain_num, plain_den = match.groups()
        if num is None:
            num, den = plain_num, plain_den
        numerator, denominator = float(num), float(den)
        if denominator == 0:
            return None
        value = (-1.0 if sign == "-" else 1.0) * numerator / denominator
    else:
        return None
    return [value, value / 100] if percent else [value]


shutdown_verifier = verifier.shutdown_verifier
