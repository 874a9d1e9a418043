"""Problems, reference solutions and injected errors: hand-written texts, exact labels, the mix."""

import random
from collections import Counter

import pytest

from rewards.steps import split_steps
from rlvprm.world.check import answer_correct, check_solution
from rlvprm.world.config import WorldConfig
from rlvprm.world.problems import Problem, evaluate, make_problem, question_text
from rlvprm.world.solutions import make_solution, reference_solution
from rlvprm.world.write import make_example


def _problem(form, values, family="mixed"):
    answer = eval(form, dict(zip("abcdefgh", values)))  # Python's own precedence as the truth
    return Problem("t", family, form, tuple(values), tuple(values), question_text(family, form), answer)


def test_evaluate_orders_operations_by_precedence():
    assert evaluate("a + b * c", [3, 7, 5]) == [(7, "*", 5, 35), (3, "+", 35, 38)]
    assert evaluate("(a + b) * (c + d)", [1, 2, 3, 4]) == [(1, "+", 2, 3), (3, "+", 4, 7), (3, "*", 7, 21)]
    assert evaluate("a + b + c", [3, 7, 5], written={0: 11}) == [(3, "+", 7, 11), (11, "+", 5, 16)]


def test_reference_solution_text():
    p = _problem("a + b * c", [3, 7, 5])
    assert p.question == "<image>\nLet a, b and c be the numbers in the image from left to right. What is a + b * c?"
    assert reference_solution(p).text == (
        "The numbers are 3, 7 and 5.\n\n7 * 5 = 35.\n\n3 + 35 = 38.\n\nThe answer is \\boxed{38}."
    )
    dots = _problem("a + b", [2, 4], family="count")
    assert dots.question == "<image>\nHow many dots are in the image?"
    assert reference_solution(dots).steps == ("The counts are 2 and 4.", "2 + 4 = 6.", "The answer is \\boxed{6}.")
    assert question_text("add", "a + b + c") == "<image>\nWhat is the sum of the numbers in the image?"


def test_problems_respect_the_config():
    config = WorldConfig(num_values=(2, 4), arith_steps=(1, 3), num_cells=5)
    rng = random.Random(0)
    families = Counter()
    for _ in range(300):
        p = make_problem(rng, config)
        families[p.family] += 1
        ops = evaluate(p.form, p.values)
        assert 2 <= len(p.values) <= 4 and 1 <= len(ops) <= 3
        lo, hi = (1, 5) if p.family == "count" else (1, 9)
        assert all(lo <= v <= hi for v in p.values)
        assert len(p.cells) == 5 and tuple(v for v in p.cells if v is not None) == p.values
        assert all(result >= 0 for *_, result in ops)
        assert p.answer == eval(p.form, dict(zip("abcdefgh", p.values)))
        assert p.question.startswith("<image>\n")
        assert p.kind == ("dots" if p.family == "count" else "digits")
    assert set(families) == {"add", "mixed", "count"}


def test_perception_error_misreads_one_value_and_follows_it():
    p = _problem("a + b * c", [3, 7, 5])
    for seed in range(50):
        s = make_solution(p, "perception", random.Random(seed))
        read = [int(x) for x in s.steps[0].replace(".", "").replace(",", "").split() if x.isdigit()]
        assert sum(a != b for a, b in zip(read, p.values)) == 1
        assert s.steps[1:] == reference_solution(_problem("a + b * c", read)).steps[1:]
        assert s.labels == (False,) * 4 and s.error_type == "perception"


def test_arithmetic_error_is_one_wrong_result_then_correct_arithmetic():
    p = _problem("a * b + c * d", [4, 6, 3, 7])
    first_errors = Counter()
    for seed in range(100):
        s = make_solution(p, "arithmetic", random.Random(seed))
        first = s.labels.index(False)
        assert 1 <= first <= 3 and s.labels == (True,) * first + (False,) * (len(s.steps) - first)
        assert s.steps[0] == "The numbers are 4, 6, 3 and 7."
        wrong = 0
        for step in s.steps[1:-1]:
            lhs, rhs = step.rstrip(".").split(" = ")
            wrong += eval(lhs) != int(rhs)
        assert wrong == 1
        first_errors[first] += 1
    assert set(first_errors) == {1, 2, 3}  # the slip lands on every operation


def test_generator_labels_equal_the_checker_for_many_seeds():
    config = WorldConfig()
    for seed in range(400):
        rng = random.Random(seed)
        p = make_problem(rng, config)
        for error_type in ("none", "perception", "arithmetic"):
            s = make_solution(p, error_type, rng, config)
            assert [step.text for step in split_steps(s.text)] == list(s.steps)
            assert check_solution(p, s.text) == list(s.labels), (p, s)
            if error_type == "none":
                assert answer_correct(p, s.text)


def test_error_mix_is_followed():
    config = WorldConfig(error_mix={"none": 0.5, "perception": 0.2, "arithmetic": 0.3})
    counts = Counter(make_example(3, "vpb", i, config, with_errors=True).solution.error_type for i in range(600))
    assert abs(counts["none"] - 300) < 45 and abs(counts["perception"] - 120) < 35 and abs(counts["arithmetic"] - 180) < 40
    only = WorldConfig(error_mix={"arithmetic": 1.0})
    assert {make_example(0, "vpb", i, only, with_errors=True).solution.error_type for i in range(20)} == {"arithmetic"}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_cells": 4}, "num_cells"),
        ({"num_values": (5, 5), "arith_steps": (1, 2)}, "widen"),
        ({"error_mix": {"typo": 1.0}}, "error_mix"),
        ({"families": ("add", "geometry")}, "families"),
        ({"glyph_height": (20, 24)}, "overflows"),
        ({"digit_range": (5, 12)}, "digit_range"),
    ],
)
def test_config_rejects_contradictions(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WorldConfig(**kwargs)
