"""Prompt and VisualProcessBench records: answers in every accepted shape, bad ones named."""

import pytest

from rlvprm.data.jsonl import RecordError
from rlvprm.data.records import has_answer, parse_record


@pytest.mark.parametrize("answer, expected", [("31", "31"), (31, "31"), (0.5, "0.5"),
                                              (["31", "thirty-one"], ["31", "thirty-one"])])
def test_answers_keep_their_accepted_values(answer, expected):
    rec = parse_record({"id": "a", "question": "Q", "answer": answer}, 1)
    assert rec.answer == expected and has_answer(rec)


@pytest.mark.parametrize("answer, message", [({"x": 1}, "not a dict"), (True, "not a bool"), ([], "empty list")])
def test_bad_answers_name_the_record(answer, message):
    with pytest.raises(RecordError, match=f"record a \\(line 3\\): the answer .*{message}"):
        parse_record({"id": "a", "question": "Q", "answer": answer}, 3)


def test_blank_answers_are_no_answer():
    assert not has_answer(parse_record({"question": "Q", "answer": [" ", ""]}, 1))
    assert not has_answer(parse_record({"question": "Q"}, 1))
