"""Problems of the visual-arith world: what an image shows and what its question asks.

A problem shows a few values in a strip (``render.py``) and asks for an expression over them, read
left to right as ``a, b, c, ...``. Families (the ``data_source`` of every written row):

- ``add``: digits; the sum of all of them.
  ``<image>\\nWhat is the sum of the numbers in the image?``
- ``mixed``: digits; an expression template.
  ``<image>\\nLet a, b and c be the numbers in the image from left to right. What is a + b * c?``
- ``count``: cells of 1 to 5 dots; the total, or an expression template over the counts.
  ``<image>\\nHow many dots are in the image?``

An expression is evaluated by the usual precedence, one operation per solution step, so a form's
number of operators is its number of arithmetic steps. Values are redrawn until no intermediate
result is negative. :func:`evaluate` is the generator's bookkeeping; ``check.py`` re-derives the
truth from ``form`` and ``values`` on its own.

Left out: division, numbers of more than one digit in the image, several images per problem.
"""

from __future__ import annotations

import ast
import functools
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # config.py imports this module to validate itself
    from rlvprm.world.config import WorldConfig

LETTERS = "abcdefgh"

# Templates over letters in reading order; "add" uses plain sums (sum_form).
MIXED_FORMS = (
    "a * b", "a - b",
    "a + b * c", "a * b + c", "(a + b) * c", "a * (b + c)", "a * b - c", "a + b - c",
    "a * b + c * d", "(a + b) * (c + d)", "a + b * c + d", "(a + b) * c - d", "a * (b + c) + d",
    "a * b + c * d + e", "(a + b) * c + d * e", "a + b + c * d - e",
)

_SYMBOLS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*"}


@dataclass(frozen=True)
class Problem:
    """One problem: the values shown, where they sit in the strip, the question and its answer."""

    id: str
    family: str
    form: str  # expression over a, b, c, ... (the values in reading order)
    values: tuple[int, ...]  # shown left to right
    cells: tuple[int | None, ...]  # value of every strip cell, None for blank
    question: str
    answer: int

    @property
    def kind(self) -> str:
        """What the cells hold: ``"dots"`` for the count family, ``"digits"`` otherwise."""
        return "dots" if self.family == "count" else "digits"


def sum_form(n: int) -> str:
    """``a + b + ... `` over the first ``n`` letters."""
    return " + ".join(LETTERS[:n])


def num_letters(form: str) -> int:
    return sum(ch in LETTERS for ch in form)


def num_ops(form: str) -> int:
    return sum(ch in "+-*" for ch in form)


def forms_for(family: str, config: WorldConfig) -> tuple[str, ...]:
    """The forms of ``family`` whose value count and step count fall in the config's ranges."""
    return _forms(family, tuple(config.num_values), tuple(config.arith_steps))


@functools.lru_cache(maxsize=64)
def _forms(family: str, num_values: tuple[int, int], arith_steps: tuple[int, int]) -> tuple[str, ...]:
    sums = [sum_form(n) for n in range(2, len(LETTERS) + 1)]
    pool = {"add": sums, "mixed": list(MIXED_FORMS), "count": sums + list(MIXED_FORMS)}[family]
    (lo_v, hi_v), (lo_s, hi_s) = num_values, arith_steps
    return tuple(f for f in pool if lo_v <= num_letters(f) <= hi_v and lo_s <= num_ops(f) <= hi_s)


def evaluate(form: str, values, written: dict[int, int] | None = None) -> list[tuple[int, str, int, int]]:
    """The operations of ``form`` in solving order: ``(left, symbol, right, result)`` per step.

    Operands are evaluated before their operation, left before right. ``written`` maps an
    operation's index to the result written there instead of the true one (an arithmetic slip);
    later operations use the written value.

    >>> evaluate("a + b * c", [3, 7, 5])
    [(7, '*', 5, 35), (3, '+', 35, 38)]
    >>> evaluate("a + b + c", [3, 7, 5], written={0: 11})
    [(3, '+', 7, 11), (11, '+', 5, 16)]
    """
    env = dict(zip(LETTERS, values))
    written = written or {}
    ops: list[tuple[int, str, int, int]] = []

    def visit(node: ast.expr) -> int:
        if isinstance(node, ast.Name):
            return env[node.id]
        left, right = visit(node.left), visit(node.right)
        symbol = _SYMBOLS[type(node.op)]
        result = {"+": left + right, "-": left - right, "*": left * right}[symbol]
        result = written.get(len(ops), result)
        ops.append((left, symbol, right, result))
        return result

    visit(ast.parse(form, mode="eval").body)
    return ops


def make_problem(rng: random.Random, config: WorldConfig, id: str = "", family: str | None = None) -> Problem:
    """Draw one problem: a family (uniform unless given), a form, values, and their cells."""
    family = family or rng.choice(config.families)
    form = rng.choice(forms_for(family, config))
    n = num_letters(form)
    lo, hi = config.count_range if family == "count" else config.digit_range
    for _ in range(1000):
        values = tuple(rng.randint(lo, hi) for _ in range(n))
        if all(result >= 0 for *_, result in evaluate(form, values)):
            break
    else:  # only reachable with a very narrow value range
        raise ValueError(f"no values in {lo}..{hi} keep '{form}' non-negative")
    positions = sorted(rng.sample(range(config.num_cells), n))
    cells: list[int | None] = [None] * config.num_cells
    for pos, value in zip(positions, values):
        cells[pos] = value
    answer = evaluate(form, values)[-1][3]
    return Problem(id, family, form, values, tuple(cells), question_text(family, form), answer)


def question_text(family: str, form: str) -> str:
    n = num_letters(form)
    if form == sum_form(n):
        if family == "count":
            return "<image>\nHow many dots are in the image?"
        return "<image>\nWhat is the sum of the numbers in the image?"
    names = join_list(list(LETTERS[:n]))
    what = "numbers of dots in the cells" if family == "count" else "numbers in the image"
    return f"<image>\nLet {names} be the {what} from left to right. What is {form}?"


def join_list(items: list) -> str:
    """``"3, 7 and 5"``."""
    items = [str(x) for x in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
