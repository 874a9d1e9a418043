"""The exact checker on hand-written free text: right, misread, slipped, garbled, unboxed."""

import pytest

from rlvprm.world.check import answer_correct, check_solution, final_answer
from rlvprm.world.problems import Problem

# a + b * c with a, b, c = 3, 7, 5: 7 * 5 = 35, 3 + 35 = 38.
MIXED = Problem("m", "mixed", "a + b * c", (3, 7, 5), (None, 3, 7, 5), "", 38)
# 3 + 7 + 5 = 15.
ADD = Problem("s", "add", "a + b + c", (3, 7, 5), (3, 7, 5), "", 15)
# 4 * 5 - 3 = 17.
SUB = Problem("d", "count", "a * b - c", (4, 5, 3), (4, 5, 3), "", 17)


def steps(*parts):
    return "\n\n".join(parts)


@pytest.mark.parametrize(
    "problem, text, expected",
    [
        # the reference format
        (MIXED, steps("The numbers are 3, 7 and 5.", "7 * 5 = 35.", "3 + 35 = 38.", "The answer is \\boxed{38}."), [1, 1, 1, 1]),
        # looser wording, × and no full stops
        (MIXED, steps("I read 3, 7, 5", "7 × 5 = 35", "35 + 3 = 38", "\\boxed{38}"), [1, 1, 1, 1]),
        # misread 7 as 1, then correct arithmetic from the misread value
        (MIXED, steps("The numbers are 3, 1 and 5.", "1 * 5 = 5.", "3 + 5 = 8.", "The answer is \\boxed{8}."), [0, 0, 0, 0]),
        # arithmetic slip, later steps follow from it
        (MIXED, steps("The numbers are 3, 7 and 5.", "7 * 5 = 36.", "3 + 36 = 39.", "The answer is \\boxed{39}."), [1, 0, 0, 0]),
        # precedence ignored: the arithmetic is right but it is not part of the problem
        (MIXED, steps("The numbers are 3, 7 and 5.", "3 + 7 = 10.", "10 * 5 = 50.", "The answer is \\boxed{50}."), [1, 0, 0, 0]),
        # using a value before computing it
        (MIXED, steps("The numbers are 3, 7 and 5.", "3 + 35 = 38.", "The answer is \\boxed{38}."), [1, 0, 0]),
        # several operations in one step are fine when they are right
        (MIXED, steps("The numbers are 3, 7 and 5.", "3 + 7 * 5 = 38.", "The answer is \\boxed{38}."), [1, 1, 1]),
        (MIXED, steps("The numbers are 3, 7 and 5.", "(7 * 5) + 3 = 38.", "The answer is \\boxed{38}."), [1, 1, 1]),
        # garbage in the middle breaks the chain even when later steps are right
        (MIXED, steps("The numbers are 3, 7 and 5.", "Let me think about it.", "7 * 5 = 35.", "\\boxed{38}"), [1, 0, 0, 0]),
        (MIXED, steps("The numbers are 3, 7 and 5.", "7 * 5 = 35 = 35.", "\\boxed{38}"), [1, 0, 0]),
        (MIXED, steps("7 * 5 =", "\\boxed{38}"), [0, 0]),
        # no reading step is needed; a wrong boxed answer is a wrong step
        (MIXED, steps("7 * 5 = 35.", "3 + 35 = 38.", "The answer is \\boxed{39}."), [1, 1, 0]),
        # a right answer stated without a box is a right step (the outcome check wants the box)
        (MIXED, steps("The numbers are 3, 7 and 5.", "7 * 5 = 35.", "3 + 35 = 38.", "The answer is 38."), [1, 1, 1, 1]),
        (MIXED, steps("The numbers are 3, 7 and 5.", "7 * 5 = 35."), [1, 1]),
        # sums in any order and grouping
        (ADD, steps("The numbers are 3, 7 and 5.", "3 + 5 = 8.", "7 + 8 = 15.", "The answer is \\boxed{15}."), [1, 1, 1, 1]),
        (ADD, steps("The numbers are 3, 7 and 5.", "10 + 5 = 15.", "The answer is \\boxed{15}."), [1, 0, 0]),
        (ADD, steps("The numbers are 3, 7 and 5.", "3 + 7 + 5 = 15.", "\\boxed{15}"), [1, 1, 1]),
        # the reading is in order
        (ADD, steps("The numbers are 7, 3 and 5.", "7 + 3 = 10.", "10 + 5 = 15.", "\\boxed{15}"), [0, 0, 0, 0]),
        # subtraction keeps its order; products commute
        (SUB, steps("The counts are 4, 5 and 3.", "5 * 4 = 20.", "20 - 3 = 17.", "The answer is \\boxed{17}."), [1, 1, 1, 1]),
        (SUB, steps("The counts are 4, 5 and 3.", "4 * 5 = 20.", "3 - 20 = -17.", "\\boxed{-17}"), [1, 1, 0, 0]),
    ],
)
def test_check_solution_on_free_text(problem, text, expected):
    assert check_solution(problem, text) == [bool(e) for e in expected]


def test_final_answer_reads_the_last_box_only():
    text = steps("The numbers are 3, 7 and 5.", "7 * 5 = 35.", "3 + 35 = 38.", "The answer is \\boxed{38}.")
    assert final_answer(text) == 38 and answer_correct(MIXED, text)
    assert final_answer("\\boxed{12} then \\boxed{ 38 }") == 38
    assert not answer_correct(MIXED, "The answer is 38.")  # right, but not boxed
    assert not answer_correct(MIXED, "\\boxed{thirty-eight}")
    assert final_answer("") is None and check_solution(MIXED, "") == []


def test_a_sentence_with_answer_and_an_equation_is_read_as_arithmetic():
    text = steps("The numbers are 3, 7 and 5.", "7 * 5 = 35.", "answer: 3 + 35 = 38")
    assert check_solution(MIXED, text) == [True, True, False]  # words around an equation are not parsed
