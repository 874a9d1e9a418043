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


def released_split_response(response, sep="\n\n", max_steps=None):
    """The released VisualPRM remote code's split, restated from its description (DESIGN.md section 9)."""
    steps = response.split(sep)
    if max_steps is not None:
        size = -(-len(steps) // max_steps)
        steps = [sep.join(steps[i : i + size]) for i in range(0, len(steps), size)]
    return steps


@pytest.mark.parametrize("text", ["a\n\n\n\nb", "\n\na\n\n", " a \n\nb\n\n\n\n\n\nc\n\n", "", "one", "1\n\n2\n\n3\n\n\n\n5"])
@pytest.mark.parametrize("max_steps", [None, 1, 2, 3, 12])
def test_released_split_is_the_released_codes_split(text, max_steps):
    steps = split_steps(text, max_steps, split="released")
    assert [s.text for s in steps] == released_split_response(text, max_steps=max_steps)
    for s in steps:  # every step, empty ones too, is the exact text of its span
        assert text[s.start : s.end] == s.text


def test_released_split_keeps_empty_pieces():
    assert [s.text for s in split_steps("a\n\n\n\nb", split="released")] == ["a", "", "b"]
    assert [s.text for s in split_steps("a\n\n\n\nb")] == ["a", "b"]
    # Merging counts the empty pieces: 4 pieces, at most 2 steps -> chunks of 2.
    assert [s.text for s in split_steps("a\n\n\n\nb\n\nc", 2, split="released")] == ["a\n\n", "b\n\nc"]
    with pytest.raises(ValueError, match="unknown step split"):
        split_steps("a", split="official")
