"""Chain coherence: does a solution's final answer follow from its own steps?

A sample is *coherent* when every arithmetic step ``<expr> = N`` uses only numbers the solution has
already written (the values of its reading step, or earlier results), and its boxed answer is the
result of its last arithmetic step (or, with no arithmetic step, a value it read). Wrong readings
and arithmetic slips do not make a chain incoherent when later steps carry them on; a right answer
that no written step produces does. Incoherent chains cap what any process reward can add
(DESIGN.md section 7), so the toy policy is trained until most of its samples are coherent.
"""

from __future__ import annotations

import re
from collections import Counter

from rewards.steps import split_steps
from rlvprm.world.check import final_answer

_EQUATION = re.compile(r"^(.*?)=\s*(-?\d+)\s*\.?\s*$", re.S)
_NUMBER = re.compile(r"\d+")


def is_coherent(solution_text: str) -> bool:
    """Whether the boxed answer is what the solution's own steps compute.

    >>> is_coherent("The numbers are 3, 7.\\n\\n3 + 7 = 11.\\n\\nThe answer is \\\\boxed{11}.")
    True
    >>> is_coherent("The numbers are 3, 7.\\n\\n3 + 7 = 10.\\n\\nThe answer is \\\\boxed{11}.")
    False
    >>> is_coherent("The numbers are 3, 7.\\n\\n3 + 8 = 11.\\n\\nThe answer is \\\\boxed{11}.")
    False
    """
    answer = final_answer(solution_text)
    steps = split_steps(solution_text)
    if answer is None or not steps:
        return False
    available = Counter(int(x) for x in _NUMBER.findall(steps[0].text))
    last = None
    for step in steps[1:]:
        if "\\boxed" in step.text:
            break
        match = _EQUATION.match(step.text)
        if not match:
            return False
        used = Counter(int(x) for x in _NUMBER.findall(match.group(1)))
        if any(available[n] < k for n, k in used.items()):
            return False
        available.subtract(used)
        last = int(match.group(2))
        available[last] += 1
    if last is None:
        return answer in available
    return answer == last
