"""The flawed teacher: SFT solutions that apply a consistent wrong rule at controlled rates.

Real MLLMs fail by confident, systematic mistakes (a misread figure, a wrong rule, repeated), not by
sampling noise. A policy fine-tuned on this teacher's solutions learns each rule as a belief held
with a probability near its rate, so its wrong steps are high-probability choices that its own
likelihood cannot flag, which is the regime where a PRM earns its keep (issue: train-time evidence).

Rules, each applied at its first opportunity in a solution, with probability ``rates[name]``:

- ``glyph`` (perception, digit images): the first ``8`` shown is read as a ``3``;
- ``dice`` (perception, dot images): the first cell of 5 dots is counted as 4 (the centre dot missed);
- ``carry`` (arithmetic): the first addition whose ones digits sum to 10 or more drops the carry
  (``8 + 5 = 3.``, ``17 + 5 = 12.``);
- ``sign`` (arithmetic): the first subtraction is computed as an addition (``9 - 4 = 13.``).

Whether a rule fires is drawn once per solution, before any condition is looked at, so a rule's rate
is exactly the probability that it is applied given that its opportunity arises. Several rules may
fire in one solution; every later step is computed correctly from the values written so far (as in
``solutions.py``), and the labels are exact: the first flawed step and everything after it are
wrong. Arithmetic rules look at the operands as the teacher has them (after a misread), so a
misread can create or remove a carry.

Left out: rules that depend on more than one step, flaws in the answer step alone.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from rlvprm.world.problems import Problem, evaluate
from rlvprm.world.solutions import Solution, write_steps

Op = tuple[int, str, int, int]  # left, symbol, right, result


@dataclass(frozen=True)
class PerceptionRule:
    """A misreading: value ``seen`` in images of ``kind`` is read as ``read_as``."""

    name: str
    kind: str  # "digits" | "dots"
    seen: int
    read_as: int
    doc: str

    def apply(self, values: tuple[int, ...]) -> tuple[int, ...] | None:
        """``values`` with the first ``seen`` read as ``read_as``; ``None`` if none is shown."""
        if self.seen not in values:
            return None
        i = values.index(self.seen)
        return values[:i] + (self.read_as,) + values[i + 1 :]


@dataclass(frozen=True)
class ArithmeticRule:
    """A wrong rule for one kind of operation: ``applies(op)`` says where, ``wrong(op)`` what is written."""

    name: str
    applies: Callable[[Op], bool]
    wrong: Callable[[Op], int]
    doc: str


def _has_carry(op: Op) -> bool:
    left, symbol, right, _ = op
    return symbol == "+" and left % 10 + right % 10 >= 10


def _is_subtraction(op: Op) -> bool:
    return op[1] == "-"


PERCEPTION_RULES = (
    PerceptionRule("glyph", "digits", 8, 3, "the first 8 shown is read as 3"),
    PerceptionRule("dice", "dots", 5, 4, "the first cell of 5 dots is counted as 4"),
)
ARITHMETIC_RULES = (
    ArithmeticRule("carry", _has_carry, lambda op: op[3] - 10, "the first addition with a carry drops it"),
    ArithmeticRule("sign", _is_subtraction, lambda op: op[0] + op[2], "the first subtraction is added"),
)
RULES = {rule.name: rule for rule in (*PERCEPTION_RULES, *ARITHMETIC_RULES)}


def check_rates(rates: dict[str, float]) -> dict[str, float]:
    """``rates`` as floats, or a ``ValueError`` naming an unknown rule or a rate outside [0, 1]."""
    unknown = set(rates) - set(RULES)
    if unknown:
        raise ValueError(f"unknown flaw rules {sorted(unknown)}; the teacher's rules are {sorted(RULES)}")
    out = {}
    for name, rate in rates.items():
        if not 0.0 <= float(rate) <= 1.0:
            raise ValueError(f"flaw rate of '{name}' must lie in [0, 1], got {rate}")
        out[name] = float(rate)
    return out


@dataclass(frozen=True)
class TeacherSolution:
    """The teacher's solution, the rules it applied (in step order) and the exact labels."""

    solution: Solution
    flaws: tuple[str, ...]


def teacher_solution(problem: Problem, rates: dict[str, float], rng: random.Random) -> TeacherSolution:
    """A solution of ``problem`` by the flawed teacher (rules and rates in the module docstring).

    Draws one number per rule, in the order of ``RULES``, whatever the problem; with every rate 0 the
    solution is the reference one.

    >>> p = Problem("", "add", "a + b + c", (8, 5, 2), (8, 5, 2), "", 15)
    >>> t = teacher_solution(p, {"glyph": 0.0, "carry": 1.0}, random.Random(0))
    >>> t.solution.steps, t.flaws
    (('The numbers are 8, 5 and 2.', '8 + 5 = 3.', '3 + 2 = 5.', 'The answer is \\\\boxed{5}.'), ('carry',))
    >>> t.solution.labels
    (True, False, False, False)
    """
    fires = {name: rng.random() < rates.get(name, 0.0) for name in RULES}
    read = problem.values
    flaws: list[tuple[int, str]] = []  # (step index, rule)
    for rule in PERCEPTION_RULES:
        if fires[rule.name] and rule.kind == problem.kind:
            misread = rule.apply(read)
            if misread is not None:
                read = misread
                flaws.append((0, rule.name))
    written: dict[int, int] = {}
    used: set[str] = set()
    num_ops = len(evaluate(problem.form, read))
    for j in range(num_ops):
        op = evaluate(problem.form, read, written)[j]  # operands as the teacher has them so far
        for rule in ARITHMETIC_RULES:
            if fires[rule.name] and rule.name not in used and j not in written and rule.applies(op):
                written[j] = rule.wrong(op)
                used.add(rule.name)
                flaws.append((1 + j, rule.name))  # step 0 is the reading step
    steps = write_steps(problem, read, written)
    first = min((step for step, _ in flaws), default=len(steps))
    labels = tuple(i < first for i in range(len(steps)))
    kind = "none"
    if flaws:
        kind = "perception" if first == 0 else "arithmetic"
    return TeacherSolution(Solution(tuple(steps), labels, kind), tuple(name for _, name in sorted(flaws)))
