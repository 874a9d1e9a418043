"""Steps: the one definition of how a solution splits into steps.

A solution is split on blank lines (``"\\n\\n"``); pieces that are empty or whitespace-only are
dropped and the rest are stripped of surrounding whitespace. With ``max_steps``, consecutive steps
are merged into chunks of ``ceil(n / max_steps)`` steps joined by the separator (VisualPRM's rule),
so at most ``max_steps`` remain. Every step keeps the character span it covers in the original
text, so RL can map a step to the policy's own tokens whatever tokenizer the PRM uses.

The ``released`` split (``split="released"``) reproduces the released VisualPRM remote code
(``InternVLRewardModel.split_response``) exactly, for scoring the released checkpoints as their own
code does: ``response.split("\\n\\n")`` with empty pieces kept and nothing stripped, then with
``max_steps`` the pieces (empty ones included) merged into chunks of ``ceil(n / max_steps)``. The
two splits differ only at the edges: ``"a\\n\\n\\n\\nb"`` is ``['a', '', 'b']`` released and
``['a', 'b']`` here; leading or trailing blank lines and spaces stay in released steps.

Training, scoring, labelling, RL and Best-of-N all call :func:`split_steps`; nothing else splits.
"""

from __future__ import annotations

import math
from typing import NamedTuple

SEPARATOR = "\n\n"
SPLITS = ("rlvprm", "released")  # rlvprm's own split (the default) and the released VisualPRM code's


class Step(NamedTuple):
    """One step of a solution: its text and the span ``text[start:end]`` it covers in the source.

    For a merged step, ``text`` is the merged steps joined by the separator and the span runs from
    the first one's start to the last one's end.
    """

    text: str
    start: int
    end: int


def split_steps(solution: str, max_steps: int | None = None, split: str = "rlvprm") -> list[Step]:
    """Split ``solution`` into steps, merging evenly down to at most ``max_steps``.

    ``split``: ``rlvprm`` (empty pieces dropped, steps stripped) or ``released`` (module docstring).

    >>> [s.text for s in split_steps("a\\n\\n\\n\\nb \\n\\n c")]
    ['a', 'b', 'c']
    >>> [s.text for s in split_steps("a\\n\\n\\n\\nb \\n\\n c", split="released")]
    ['a', '', 'b ', ' c']
    >>> split_steps("x\\n\\ny")[1]
    Step(text='y', start=3, end=4)
    >>> [s.text for s in split_steps("1\\n\\n2\\n\\n3", max_steps=2)]
    ['1\\n\\n2', '3']
    """
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if split not in SPLITS:
        raise ValueError(f"unknown step split {split!r}; use one of {', '.join(SPLITS)}")
    steps: list[Step] = []
    pos = 0
    for piece in solution.split(SEPARATOR):
        stripped = piece if split == "released" else piece.strip()
        if stripped or split == "released":
            start = pos + piece.index(stripped)
            steps.append(Step(stripped, start, start + len(stripped)))
        pos += len(piece) + len(SEPARATOR)
    if max_steps is None or len(steps) <= max_steps:
        return steps
    size = math.ceil(len(steps) / max_steps)
    return [
        Step(SEPARATOR.join(s.text for s in chunk), chunk[0].start, chunk[-1].end)
        for chunk in (steps[i : i + size] for i in range(0, len(steps), size))
    ]


def join_steps(steps: list[str]) -> str:
    """The inverse of :func:`split_steps` for clean steps: a solution text with one step per block."""
    return SEPARATOR.join(steps)
