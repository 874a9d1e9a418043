import pytest

from rlvprm.world.coherence import is_coherent
from rlvprm.world.evaluate import judge, summarise


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The numbers are 3, 7 and 5.\n\n3 + 7 = 10.\n\n10 + 5 = 15.\n\nThe answer is \\boxed{15}.", True),
        # A misread carried on consistently is coherent (but wrong).
        ("The numbers are 3, 1 and 5.\n\n3 + 1 = 4.\n\n4 + 5 = 9.\n\nThe answer is \\boxed{9}.", True),
        # An arithmetic slip carried on is coherent.
        ("The numbers are 3, 7 and 5.\n\n3 + 7 = 11.\n\n11 + 5 = 16.\n\nThe answer is \\boxed{16}.", True),
        # The right answer that no step computes is not.
        ("The numbers are 3, 7 and 5.\n\n3 + 7 = 11.\n\n11 + 5 = 16.\n\nThe answer is \\boxed{15}.", False),
        # A number used that was never written.
        ("The numbers are 3, 7 and 5.\n\n3 + 8 = 11.\n\n11 + 5 = 16.\n\nThe answer is \\boxed{16}.", False),
        ("The numbers are 3, 7 and 5.\n\n3 + 7 = 10.", False),  # no boxed answer
        ("The numbers are 2, 2.\n\n2 * 2 = 4.\n\nThe answer is \\boxed{4}.", True),  # a value used twice
        ("The numbers are 2, 3.\n\n2 * 2 = 4.\n\nThe answer is \\boxed{4}.", False),  # 2 only once
    ],
)
def test_is_coherent(text, expected):
    assert is_coherent(text) is expected


ROW = {"id": "p", "question": "<image>\nWhat is the sum of the numbers in the image?", "answer": "15",
       "data_source": "add", "form": "a + b + c", "values": [3, 7, 5]}


def test_judge_kinds():
    right = judge(ROW, "The numbers are 3, 7 and 5.\n\n3 + 7 = 10.\n\n10 + 5 = 15.\n\nThe answer is \\boxed{15}.")
    assert right.correct and right.first_error == "none" and right.steps_correct == [True] * 4
    misread = judge(ROW, "The numbers are 3, 1 and 5.\n\n3 + 1 = 4.\n\n4 + 5 = 9.\n\nThe answer is \\boxed{9}.")
    assert not misread.correct and misread.first_error == "perception" and misread.coherent
    slip = judge(ROW, "The numbers are 3, 7 and 5.\n\n3 + 7 = 11.\n\n11 + 5 = 16.\n\nThe answer is \\boxed{16}.")
    assert slip.first_error == "arithmetic" and slip.steps_correct == [True, False, False, False]
    assert judge(ROW, "The numbers are 3, 7 and 5.").first_error == "format"


def test_summarise_hand_computed():
    records = [
        {"greedy_correct": True, "correct": [True, False], "coherent": [True, True], "first_error": ["none", "arithmetic"],
         "steps_correct": [[True, True], [True, False]]},
        {"greedy_correct": False, "correct": [False, False], "coherent": [True, False],
         "first_error": ["perception", "format"], "steps_correct": [[False], [True]]},
    ]
    m = summarise(records)
    assert m["greedy_accuracy"] == 0.5
    assert m["sample_accuracy"] == 0.25
    assert m["pass_at_k"] == 0.5 and m["k"] == 2
    assert m["mixed_prompts"] == 0.5
    assert m["coherence"] == 0.75
    assert m["fully_correct_chains"] == 0.5  # [T,T] and [T]
    assert m["error_mix"] == {"perception": 1 / 3, "arithmetic": 1 / 3, "format": 1 / 3}
