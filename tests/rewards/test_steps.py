import pytest

from rewards.steps import Step, join_steps, split_steps


def test_split_on_blank_lines_drops_empty_pieces_and_strips():
    text = "  a\n\n\n\nb \n\n c\n\n"
    steps = split_steps(text)
    assert [s.text for s in steps] == ["a", "b", "c"]
    for s in steps:
        assert text[s.start : s.end] == s.text


def test_spans_exact():
    assert split_steps("x\n\ny") == [Step("x", 0, 1), Step("y", 3, 4)]
    assert split_steps("one line\nstill one") == [Step("one line\nstill one", 0, 18)]


def test_empty_and_whitespace():
    assert split_steps("") == []
    assert split_steps("\n\n  \n\n") == []


def test_merge_into_ceil_chunks():
    text = join_steps([str(i) for i in range(1, 14)])  # 13 steps
    merged = split_steps(text, max_steps=12)
    # ceil(13 / 12) = 2 steps per chunk -> 7 chunks, the last holding one step.
    assert len(merged) == 7
    assert merged[0].text == "1\n\n2"
    assert merged[-1].text == "13"
    assert text[merged[0].start : merged[0].end] == "1\n\n2"
    assert merged[-1].end == len(text)


def test_merge_not_needed_and_exact_multiple():
    assert len(split_steps("a\n\nb", max_steps=2)) == 2
    merged = split_steps(join_steps(list("abcdef")), max_steps=3)
    assert [s.text for s in merged] == ["a\n\nb", "c\n\nd", "e\n\nf"]


def test_merge_to_one():
    merged = split_steps("a\n\nb\n\nc", max_steps=1)
    assert merged == [Step("a\n\nb\n\nc", 0, 7)]


def test_bad_max_steps():
    with pytest.raises(ValueError):
        split_steps("a", max_steps=0)
