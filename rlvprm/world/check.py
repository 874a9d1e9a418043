"""The exact checker: score any solution text of a visual-arith problem step by step.

Works from the problem's truth alone (``form``, ``values``, ``answer``), with its own parser, so it
can be tested against the generator's labels (``solutions.py``) and can label free text sampled
from a policy. The text is split by ``rewards.steps.split_steps``; each step is one of:

- an **answer step**: holds ``\\boxed{N}``, or says "answer ... N" without an ``=``; right iff N is
  the answer;
- an **arithmetic step**: ``<expression> = N``, the expression over integers with ``+ - * ×`` and
  brackets (a trailing full stop is allowed); right iff the expression equals N and it is a part of
  what is still left to compute. The truth is kept as an expression tree in which sums and products
  are flat and unordered, so additions and products may be done in any order and grouping
  (``5 + 3`` for ``3 + 7 + 5``), but nothing else is rewritten: ``3 + 10`` is wrong while ``10``
  has not been computed yet. A right step replaces its part by N;
- otherwise a **reading step**: right iff the integers in it are the values shown, in order.

A step is correct iff it is right and every earlier step is correct; an unparseable step is wrong.
:func:`answer_correct` checks the last ``\\boxed{...}`` alone.

Left out: words around an arithmetic step ("so 3 + 7 = 10"), chained equalities (``a = b = c``),
rewrites other than reordering sums and products (distributing, ``a - b - c`` as ``a - (b + c)``),
decimals and fractions.
"""

from __future__ import annotations

import re

from rewards.steps import split_steps
from rlvprm.world.problems import Problem

_TOKEN = re.compile(r"\s*(\d+|[a-z]|[-+*×()])")
_BOXED = re.compile(r"\\boxed\s*\{([^{}]*)\}")
_ANSWER_WORDS = re.compile(r"answer\D*?(-?\d+)", re.IGNORECASE)
_RESULT = re.compile(r"\s*(-?\d+)\s*\.?\s*")

# A tree is an int (a known value) or (op, children): "+" and "*" hold any number of children,
# sorted, never a child with their own op; "-" holds (left, right).


def check_solution(problem: Problem, solution_text: str) -> list[bool]:
    """Per step of ``solution_text`` (``split_steps``): is it correct and are all earlier ones?

    >>> from rlvprm.world.problems import Problem
    >>> p = Problem("", "mixed", "a + b * c", (3, 7, 5), (3, 7, 5), "", 38)
    >>> check_solution(p, "The numbers are 3, 7 and 5.\\n\\n7 * 5 = 35.\\n\\n3 + 35 = 38.\\n\\n\\\\boxed{38}")
    [True, True, True, True]
    >>> check_solution(p, "The numbers are 3, 7 and 5.\\n\\n3 + 7 = 10.\\n\\n10 * 5 = 50.")
    [True, False, False]
    """
    names = dict(zip("abcdefgh", problem.values))
    state = _parse(problem.form, names)
    correct: list[bool] = []
    for step in split_steps(solution_text):
        if correct and not correct[-1]:  # a step after a wrong one is wrong
            correct.append(False)
            continue
        ok, state = _check_step(step.text, problem, state)
        correct.append(ok)
    return correct


def final_answer(solution_text: str) -> int | None:
    """The integer in the last ``\\boxed{...}``, or ``None``."""
    boxes = _BOXED.findall(solution_text)
    return _int(boxes[-1]) if boxes else None


def answer_correct(problem: Problem, solution_text: str) -> bool:
    """Whether the last ``\\boxed{...}`` holds the problem's answer."""
    return final_answer(solution_text) == problem.answer


def _int(text: str) -> int | None:
    text = text.strip().rstrip(".").strip()
    return int(text) if re.fullmatch(r"-?\d+", text) else None


def _check_step(text: str, problem: Problem, state):
    """``(right, new_state)`` for one step; ``state`` is the tree still to be computed."""
    boxes = _BOXED.findall(text)
    if boxes:
        return _int(boxes[-1]) == problem.answer, state
    said = _ANSWER_WORDS.search(text)
    if said and "=" not in text:
        return int(said.group(1)) == problem.answer, state
    if "=" in text:
        lhs, _, rhs = text.partition("=")
        result = _RESULT.fullmatch(rhs)
        try:
            expr = _parse(lhs, {})
        except ValueError:
            return False, state
        if result is None or isinstance(expr, int) or _value(expr) != int(result.group(1)):
            return False, state
        reduced = _reduce(state, expr, int(result.group(1)))
        return reduced is not None, reduced if reduced is not None else state
    read = [int(n) for n in re.findall(r"\d+", text)]
    return read == list(problem.values), state


def _reduce(tree, expr, result: int):
    """``tree`` with one part equal to ``expr`` replaced by ``result``; ``None`` if there is none."""
    if tree == expr:
        return result
    if isinstance(tree, int):
        return None
    op, kids = tree
    if op != "-" and not isinstance(expr, int) and expr[0] == op:
        rest = list(kids)
        for kid in expr[1]:
            if kid not in rest:
                break
            rest.remove(kid)
        else:  # expr's operands are some of this sum's (product's) operands
            return _node(op, [*rest, result])
    for i, kid in enumerate(kids):
        new = _reduce(kid, expr, result)
        if new is not None:
            return _node(op, [*kids[:i], new, *kids[i + 1 :]])
    return None


def _node(op: str, kids: list):
    """A canonical node: flat, sorted sums and products; a lone operand stands for itself."""
    if op == "-":
        return ("-", tuple(kids))
    flat = []
    for kid in kids:
        flat.extend(kid[1] if isinstance(kid, tuple) and kid[0] == op else [kid])
    if len(flat) == 1:
        return flat[0]
    return (op, tuple(sorted(flat, key=repr)))


def _value(tree) -> int:
    if isinstance(tree, int):
        return tree
    op, kids = tree
    values = [_value(k) for k in kids]
    if op == "-":
        return values[0] - values[1]
    total = 0 if op == "+" else 1
    for v in values:
        total = total + v if op == "+" else total * v
    return total


def _parse(text: str, names: dict[str, int]):
    """Parse an expression over integers (and ``names``) into a canonical tree; ``ValueError`` if not one."""
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"cannot read {text[pos:]!r}")
        tokens.append(m.group(1))
        pos = m.end()
    tokens.append("")  # end marker
    i = 0

    def peek() -> str:
        return tokens[i]

    def take() -> str:
        nonlocal i
        i += 1
        return tokens[i - 1]

    def expression():
        tree = term()
        while peek() in ("+", "-"):
            op = take()
            rhs = term()
            tree = _node(op, [tree, rhs])
        return tree

    def term():
        tree = factor()
        while peek() in ("*", "×"):
            take()
            tree = _node("*", [tree, factor()])
        return tree

    def factor():
        tok = take()
        if tok == "-" and peek().isdigit():
            return -int(take())
        if tok.isdigit():
            return int(tok)
        if tok in names:
            return names[tok]
        if tok == "(":
            tree = expression()
            if take() != ")":
                raise ValueError("unbalanced brackets")
            return tree
        raise ValueError(f"unexpected {tok!r}")

    tree = expression()
    if peek() != "":
        raise ValueError(f"unexpected {peek()!r}")
    return tree
