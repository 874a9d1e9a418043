import threading
import time

import pytest

from rewards import verifier
from rewards.outcome import extract_answer, outcome_reward, shutdown_verifier, verify_answer


# --- extraction ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   \n ", "I am not sure.", "The answer is a bit unclear."])
def test_no_answer(text):
    assert extract_answer(text) is None


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"So $x = \boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
        (r"First \boxed{3}, then corrected: \boxed {4}.", "4"),
        (r"\boxed{3} and a broken \boxed{4", "3"),
        (r"\fbox{7}", "7"),
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),
        (r"\boxed{\boxed{5}}", "5"),
        ("Step 1: 2 + 3 = 5\n\nAnswer: $5$.", "5"),
        ("answer: 3\n**Final Answer:** 3.5\nThat is all.", "3.5"),
        ("Answer: 7\n\n" + r"Boxed wins: \boxed{8}", "8"),
    ],
)
def test_extract_value(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Comparing the options, the answer is (B).",
        "So the correct answer is B, since 12 > 10.",
        "Therefore, answer: B",
        "Answer: (B)",
        r"\boxed{B}",
        "The reasoning above gives\n\n(B)",
        "The reasoning above gives\nB.",
    ],
)
def test_extract_option_letter(text):
    assert extract_answer(text) == "B"


# --- verification: fast paths ----------------------------------------------------------------


@pytest.mark.parametrize(
    "predicted, reference",
    [
        (r"\frac{1}{2}", "0.5"),
        (r"\dfrac{1}{2}", "1/2"),
        (r"-\frac{3}{4}", "-0.75"),
        ("50%", "0.5"),
        (r"50\%", "50"),
        ("1,000,000", "1000000"),
        (r"1\,000", "1000"),
        ("3.14159", "3.1416"),  # within relative 1e-4
        (r"90^\circ", "90"),
        ("45°", "45"),
        (r"\text{Yes}", "yes"),
        (r"\left(1,2\right)", "(1,2)"),
        ("$12$.", "12"),
    ],
)
def test_equal_by_fast_paths(predicted, reference):
    assert verify_answer(predicted, reference)


@pytest.mark.parametrize(
    "predicted, reference",
    [(None, "1"), ("", "1"), ("2", "3"), ("0.33", "1/3"), ("50%", "5"), ("1,5", "15"), ("-1", "1")],
)
def test_wrong_answers(predicted, reference):
    assert not verify_answer(predicted, reference)


@pytest.mark.parametrize(
    "predicted, reference, choices, expected",
    [
        ("B", "B", None, True),
        ("(b)", "B", None, True),
        ("B.", "(B)", None, True),
        ("C", "B", None, False),
        ("B. 12", "B", None, True),
        ("12", "B", None, False),  # a value cannot match a bare letter without the choices
        ("12", "C", ["10", "11", "12"], True),  # the text of the correct choice
        ("11", "C", ["10", "11", "12"], False),
        ("0.5", "B", ["1/3", r"\frac{1}{2}"], True),  # a value equal to the correct choice
        ("B", "12", ["A. 10", "B. 12"], True),  # reference given as the choice's text
        ("A", "12", ["A. 10", "B. 12"], False),
        ("B", "12.0", ["10", "12"], True),  # reference matches no choice as written
        ("y", "B", ["x", "y"], True),  # a lowercase answer that is a choice's text
        ("x", "B", ["x", "y"], False),
    ],
)
def test_multiple_choice(predicted, reference, choices, expected):
    assert verify_answer(predicted, reference, choices) is expected


def test_fast_paths_never_start_the_worker(monkeypatch):
    def fail(*args):
        raise AssertionError("math-verify worker was called")

    monkeypatch.setattr(verifier, "VERIFIER", fail)
    assert verify_answer(r"\frac{1}{2}", "0.5")
    assert not verify_answer("2", "3")
    assert verify_answer("12", "C", ["10", "11", "12"])
    assert not verify_answer("12", "B")


def test_outcome_reward():
    assert outcome_reward(r"2 + 2 = 4, so \boxed{4}", "4") == 1.0
    assert outcome_reward(r"2 + 2 = 5, so \boxed{5}", "4") == 0.0
    assert outcome_reward("no final answer", "4") == 0.0
    assert outcome_reward("The answer is (C).", "C", ["1", "2", "3"]) == 1.0


# --- verification: math-verify in its worker -------------------------------------------------


@pytest.mark.parametrize(
    "predicted, reference, expected",
    [
        ("x^2+2x+1", "(x+1)^2", True),
        (r"\sqrt{4}", "2", True),
        (r"2\sqrt{2}", r"\sqrt{8}", True),
        ("x^2+2x+2", "(x+1)^2", False),
    ],
)
def test_math_verify_only(predicted, reference, expected):
    assert verify_answer(predicted, reference) is expected


def test_math_verify_from_a_thread():
    results = []
    thread = threading.Thread(target=lambda: results.append(verify_answer("x^2+2x+1", "(x+1)^2")))
    thread.start()
    thread.join(timeout=60)
    assert results == [True]


def test_shutdown_then_verify_again():
    shutdown_verifier()
    assert verify_answer(r"\sqrt{9}", "3")


SLOW_TARGET = """
import time

def verdict(predicted, reference):
    if predicted == "sleep":
        time.sleep(60)
    return True
"""


def test_timeout_returns_false_and_the_worker_recovers(tmp_path, monkeypatch):
    (tmp_path / "slow_verdict_target.py").write_text(SLOW_TARGET)
    monkeypatch.syspath_prepend(str(tmp_path))  # the worker inherits sys.path when it starts
    slow = verifier._Verifier(target="slow_verdict_target:verdict", preload=())
    monkeypatch.setattr(verifier, "VERIFIER", slow)
    try:
        assert verify_answer("y", "y^3")  # starts the worker; the fake says yes
        start = time.monotonic()
        assert not verify_answer("sleep", "y^3", timeout=0.5)
        assert time.monotonic() - start < 5
        assert verify_answer("y", "y^3")  # a fresh worker answers
    finally:
        slow.close()


def test_a_reference_is_a_string_a_number_or_a_list_of_accepted_strings():
    from rewards.outcome import accepted_answers

    assert accepted_answers("31") == ["31"] and accepted_answers(31) == ["31"] and accepted_answers(31.0) == ["31"]
    assert accepted_answers(0.5) == ["0.5"] and accepted_answers(["31", "thirty-one"]) == ["31", "thirty-one"]
    for bad, message in [(True, "not a bool"), ({"a": 1}, "not a dict"), ([["31"]], "list inside a list"),
                         ([], "empty list"), (float("nan"), "not a finite number"), (None, "not a NoneType")]:
        with pytest.raises(ValueError, match=message):
            accepted_answers(bad)


def test_a_list_reference_accepts_any_of_its_answers():
    assert verify_answer("thirty-one", ["31", "thirty-one"]) and verify_answer("31", ["31", "thirty-one"])
    assert verify_answer("31.0", 31) and not verify_answer("32", ["31", "thirty-one"])
    assert outcome_reward("So \\boxed{31}.", ["thirty-one", "31"]) == 1.0
