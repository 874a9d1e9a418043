"""The flawed teacher: each rule by hand, exact labels the checker agrees with, rates honoured."""

import random

import pytest

from rlvprm.world.check import check_solution
from rlvprm.world.config import WorldConfig
from rlvprm.world.problems import Problem, make_problem, question_text
from rlvprm.world.solutions import reference_solution
from rlvprm.world.teacher import RULES, check_rates, teacher_solution


def _problem(form, values, family="mixed"):
    answer = eval(form, dict(zip("abcdefgh", values)))
    return Problem("t", family, form, tuple(values), tuple(values), question_text(family, form), answer)


def _only(name, rate=1.0):
    return {rule: (rate if rule == name else 0.0) for rule in RULES}


def _taught(problem, rates, seed=0):
    taught = teacher_solution(problem, rates, random.Random(seed))
    # The labels are the exact checker's, whatever rules fired.
    assert list(taught.solution.labels) == check_solution(problem, taught.solution.text)
    return taught


def test_glyph_reads_the_first_8_as_3():
    p = _problem("a + b * c", [8, 2, 8])
    t = _taught(p, _only("glyph"))
    assert t.solution.steps == ("The numbers are 3, 2 and 8.", "2 * 8 = 16.", "3 + 16 = 19.", "The answer is \\boxed{19}.")
    assert t.solution.labels == (False, False, False, False) and t.flaws == ("glyph",)
    assert t.solution.error_type == "perception"
    # No 8 shown, or dots: the rule has no opportunity.
    assert _taught(_problem("a + b", [3, 2], "add"), _only("glyph")).flaws == ()
    assert _taught(_problem("a + b", [5, 3], "count"), _only("glyph")).flaws == ()


def test_dice_counts_the_first_5_as_4():
    p = _problem("a + b + c", [2, 5, 5], "count")
    t = _taught(p, _only("dice"))
    assert t.solution.steps == ("The counts are 2, 4 and 5.", "2 + 4 = 6.", "6 + 5 = 11.", "The answer is \\boxed{11}.")
    assert t.solution.labels == (False,) * 4 and t.flaws == ("dice",)
    assert _taught(_problem("a + b", [8, 5], "add"), _only("dice")).flaws == ()


def test_carry_drops_the_first_carry_only():
    p = _problem("a + b + c", [4, 7, 9], "add")
    t = _taught(p, _only("carry"))
    # 4 + 7 = 11 has the first carry: written 1; 1 + 9 = 10 is right from there (the rule fires once).
    assert t.solution.steps == ("The numbers are 4, 7 and 9.", "4 + 7 = 1.", "1 + 9 = 10.", "The answer is \\boxed{10}.")
    assert t.solution.labels == (True, False, False, False) and t.solution.error_type == "arithmetic"
    # No carry anywhere: the reference solution.
    q = _problem("a + b + c", [1, 2, 3], "add")
    assert _taught(q, _only("carry")).solution == reference_solution(q)
    # A carry in a later operation (17 + 5).
    r = _problem("a * b + c", [3, 9, 5])
    assert _taught(r, _only("carry")).solution.steps[1:3] == ("3 * 9 = 27.", "27 + 5 = 22.")


def test_sign_adds_the_first_subtraction():
    p = _problem("a * b - c", [3, 4, 5])
    t = _taught(p, _only("sign"))
    assert t.solution.steps == ("The numbers are 3, 4 and 5.", "3 * 4 = 12.", "12 - 5 = 17.", "The answer is \\boxed{17}.")
    assert t.solution.labels == (True, True, False, False) and t.flaws == ("sign",)


def test_several_rules_compose_and_the_first_flaw_sets_the_labels():
    p = _problem("a + b - c", [8, 6, 2])
    t = _taught(p, {name: 1.0 for name in RULES})
    # 8 read as 3; 3 + 6 = 9 has no carry any more; 9 - 2 written as 11.
    assert t.solution.steps == ("The numbers are 3, 6 and 2.", "3 + 6 = 9.", "9 - 2 = 11.", "The answer is \\boxed{11}.")
    assert t.flaws == ("glyph", "sign") and t.solution.labels == (False,) * 4


def test_rates_zero_give_the_reference_and_unknown_rules_are_refused():
    rng = random.Random(3)
    for i in range(50):
        p = make_problem(rng, WorldConfig(), id=str(i))
        assert teacher_solution(p, dict.fromkeys(RULES, 0.0), random.Random(i)).solution == reference_solution(p)
    with pytest.raises(ValueError, match="unknown flaw rules"):
        check_rates({"carry": 0.5, "typo": 0.1})
    with pytest.raises(ValueError, match="must lie in"):
        WorldConfig(flaw_rates={"carry": 1.5})


@pytest.mark.parametrize("name", sorted(RULES))
def test_rates_are_honoured_where_the_rule_applies(name):
    rate, config, rng = 0.3, WorldConfig(), random.Random(f"rate/{name}")
    applied = opportunities = 0
    for i in range(2500):
        p = make_problem(rng, config, id=str(i))
        if not teacher_solution(p, _only(name), random.Random(i)).flaws:
            continue  # the rule has no opportunity in this problem
        opportunities += 1
        applied += bool(teacher_solution(p, _only(name, rate), random.Random(i)).flaws)
    assert opportunities > 300
    # Binomial: 4 standard errors.
    assert abs(applied / opportunities - rate) < 4 * (rate * (1 - rate) / opportunities) ** 0.5
