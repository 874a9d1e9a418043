"""Step-by-step solutions: the reference one, and ones with one injected error, with exact labels.

A solution is steps joined by a blank line (``rewards.steps.join_steps``):

    The numbers are 3, 7 and 5.

    7 * 5 = 35.

    3 + 35 = 38.

    The answer is \\boxed{38}.

the reading step ("The counts are ..." for dots), one operation per step, then the answer step.
Errors, each one per solution, with every later step computed correctly from the wrong value:

- ``perception``: the reading step misreads one value (a look-alike digit, or a count off by one);
- ``arithmetic``: one operation writes a wrong result (off by one; a forgotten or extra carry or
  borrow; a neighbour in the times table).

Labels: a step is correct (``True``, process_correctness 1) iff it comes before the first error;
the error step and everything after it are wrong (``False``, -1). Erroneous solutions avoid
negative numbers where any choice of error allows it.

Left out: errors in the answer step alone, several errors in one solution, neutral (0) labels.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from rewards.steps import join_steps
from rlvprm.world.config import ERROR_TYPES, WorldConfig
from rlvprm.world.glyphs import CONFUSABLE
from rlvprm.world.problems import Problem, evaluate, join_list


@dataclass(frozen=True)
class Solution:
    """A solution's steps, the exact label of each, and what kind of error it carries."""

    steps: tuple[str, ...]
    labels: tuple[bool, ...]
    error_type: str = "none"

    @property
    def text(self) -> str:
        return join_steps(list(self.steps))

    @property
    def process_correctness(self) -> list[int]:
        """Labels in VisualProcessBench's encoding: 1 correct, -1 wrong."""
        return [1 if ok else -1 for ok in self.labels]


def write_steps(problem: Problem, read: tuple[int, ...], written: dict[int, int] | None = None) -> list[str]:
    """The steps of a solution that reads ``read`` and writes ``written`` results (see ``evaluate``)."""
    noun = "counts" if problem.kind == "dots" else "numbers"
    ops = evaluate(problem.form, read, written)
    steps = [f"The {noun} are {join_list(list(read))}."]
    steps += [f"{left} {symbol} {right} = {result}." for left, symbol, right, result in ops]
    steps.append(f"The answer is \\boxed{{{ops[-1][3]}}}.")
    return steps


def reference_solution(problem: Problem) -> Solution:
    steps = write_steps(problem, problem.values)
    return Solution(tuple(steps), (True,) * len(steps))


def make_solution(problem: Problem, error_type: str, rng: random.Random, config: WorldConfig | None = None) -> Solution:
    """A solution of ``problem`` with an error of ``error_type`` ("none", "perception", "arithmetic")."""
    if error_type == "none":
        return reference_solution(problem)
    if error_type == "perception":
        return _perception_error(problem, rng, config or WorldConfig())
    if error_type == "arithmetic":
        return _arithmetic_error(problem, rng)
    raise ValueError(f"error_type must be one of {ERROR_TYPES}, got {error_type!r}")


def _labelled(steps: list[str], first_error: int, error_type: str) -> Solution:
    return Solution(tuple(steps), tuple(i < first_error for i in range(len(steps))), error_type)


def _non_negative(problem: Problem, read, written=None) -> bool:
    return all(result >= 0 for *_, result in evaluate(problem.form, read, written))


def _pick(rng: random.Random, options: dict[int, list], keep) -> tuple[int, object]:
    """A place uniformly, then one of its options, among those that pass ``keep(place, option)``;
    any place and option when none passes."""
    kept = {k: [o for o in opts if keep(k, o)] for k, opts in options.items()}
    kept = {k: opts for k, opts in kept.items() if opts} or {k: o for k, o in options.items() if o}
    place = rng.choice(sorted(kept))
    return place, rng.choice(kept[place])


def _misreads(value: int, kind: str, rng: random.Random, config: WorldConfig) -> list[int]:
    if kind == "dots":
        lo, hi = config.count_range
        near = [v for v in (value - 1, value + 1) if max(lo, 1) <= v <= min(hi, 5)]
        return near or [v for v in (value - 1, value + 1) if 1 <= v <= 5]
    lo, hi = config.digit_range
    alike = [v for v in CONFUSABLE[value] if lo <= v <= hi]
    if alike and rng.random() < 0.7:
        return alike
    return [v for v in range(lo, hi + 1) if v != value] or list(CONFUSABLE[value])


def _perception_error(problem: Problem, rng: random.Random, config: WorldConfig) -> Solution:
    values = problem.values
    options = {i: _misreads(v, problem.kind, rng, config) for i, v in enumerate(values)}
    i, wrong = _pick(rng, options, lambda i, w: _non_negative(problem, values[:i] + (w,) + values[i + 1 :]))
    read = values[:i] + (wrong,) + values[i + 1 :]
    return _labelled(write_steps(problem, read), 0, "perception")


def _slips(left: int, symbol: str, right: int, result: int) -> list[int]:
    """Plausible wrong results of one operation."""
    wrong = [result - 1, result + 1]
    if symbol == "+" and left % 10 + right % 10 >= 10:
        wrong.append(result - 10)  # carry forgotten
    if symbol == "-" and left % 10 < right % 10:
        wrong.append(result + 10)  # borrow forgotten
    if symbol == "*":
        wrong += [result - left, result + left, result - right, result + right]  # next table row
        if result >= 10:
            wrong += [result - 10, result + 10]
    return [w for w in dict.fromkeys(wrong) if w != result]


def _arithmetic_error(problem: Problem, rng: random.Random) -> Solution:
    options = {j: _slips(*op) for j, op in enumerate(evaluate(problem.form, problem.values))}
    j, wrong = _pick(rng, options, lambda j, w: _non_negative(problem, problem.values, {j: w}))
    steps = write_steps(problem, problem.values, {j: wrong})
    return _labelled(steps, 1 + j, "arithmetic")  # step 0 is the reading step
