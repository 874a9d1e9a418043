"""The visual-arith world: rlvprm's embedded synthetic default (DESIGN.md section 7).

Images of a few digits or dot groups in a strip of 28-px cells, questions that need reading the
image and then a few arithmetic steps, reference step-by-step solutions, solutions with one
injected perception or arithmetic error and exact per-step labels, an exact checker for any
solution text, and writers for the published data formats. Pure Python, PIL and numpy.

One idea per file: ``config.py`` (WorldConfig), ``glyphs.py`` (bitmaps), ``render.py`` (draw and
read back a strip), ``problems.py`` (families and questions), ``solutions.py`` (steps, errors,
labels), ``check.py`` (the exact checker), ``write.py`` (dataset folders).

Left out: models, tokenizers and training (the toy policy and ``rlvprm demo`` build on this API).
"""

from rlvprm.world.check import answer_correct, check_solution, final_answer
from rlvprm.world.config import ERROR_TYPES, FAMILIES, WorldConfig
from rlvprm.world.problems import Problem, make_problem
from rlvprm.world.render import DrawnCell, Strip, read_strip, render_strip
from rlvprm.world.solutions import Solution, make_solution, reference_solution
from rlvprm.world.write import (
    Example,
    WorldFiles,
    make_example,
    problem_from_row,
    write_set,
    write_world,
)

__all__ = [
    "ERROR_TYPES",
    "FAMILIES",
    "DrawnCell",
    "Example",
    "Problem",
    "Solution",
    "Strip",
    "WorldConfig",
    "WorldFiles",
    "answer_correct",
    "check_solution",
    "final_answer",
    "make_example",
    "make_problem",
    "make_solution",
    "problem_from_row",
    "read_strip",
    "reference_solution",
    "render_strip",
    "write_set",
    "write_world",
]
