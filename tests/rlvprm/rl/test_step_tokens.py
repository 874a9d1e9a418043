"""Steps (character spans) onto policy tokens, with two differently trained tokenizers."""

import doctest

import pytest

from rewards.steps import split_steps
from rlvprm.models.tiny import build_tokenizer
from rlvprm.rl import step_tokens
from rlvprm.rl.step_tokens import step_last_tokens, token_char_ends

SOLUTION = (
    "The numbers are 3, 7 and 5.\n\n7 × 5 = 35 ✓\n\n3 + 35 = 38.\n\n"
    "Résumé: the answer is \\boxed{38}."
)
CORPUS = ["The numbers are 3, 7 and 5.", "3 + 35 = 38.", "the answer is \\boxed{38}."] * 20


@pytest.fixture(scope="module")
def tokenizers():
    """The tiny model's tokenizer (vocab 512) and one trained on other text with a smaller vocabulary."""
    return {
        "tiny-512": build_tokenizer("qwen2-vl", vocab_size=512),
        "task-300": build_tokenizer("qwen2-vl", corpus=CORPUS, vocab_size=300),
    }


def test_docstring_examples_hold():
    assert doctest.testmod(step_tokens).failed == 0


def test_the_two_tokenizers_really_differ(tokenizers):
    a, b = (tok(SOLUTION, add_special_tokens=False)["input_ids"] for tok in tokenizers.values())
    assert len(a) != len(b)


@pytest.mark.parametrize("name", ["tiny-512", "task-300"])
def test_each_step_ends_in_the_token_that_writes_its_last_character(tokenizers, name):
    tok = tokenizers[name]
    ids = tok(SOLUTION, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]  # TRL keeps the stop token
    text, ends = token_char_ends(tok, ids)
    assert text == SOLUTION
    assert len(ends) == len(ids) and ends[-1] == len(text) == ends[-2]  # the stop token writes nothing
    assert all(a <= b for a, b in zip(ends, ends[1:]))
    steps = split_steps(text)
    last = step_last_tokens(steps, ends)
    assert len(last) == 4 and last == sorted(last)
    for step, k in zip(steps, last):
        before = ends[k - 1] if k else 0
        assert before < step.end <= ends[k], (step, k)
        # Decoding up to that token shows the whole step; one token fewer does not.
        assert tok.decode(ids[: k + 1], skip_special_tokens=True).startswith(text[: step.end])
        assert not tok.decode(ids[:k], skip_special_tokens=True).startswith(text[: step.end])
    # The exact (prefix-by-prefix) path agrees with the incremental one.
    assert token_char_ends(tok, ids, exact=True) == (text, ends)


def test_a_character_split_over_byte_tokens_belongs_to_the_token_that_finishes_it(tokenizers):
    tok = tokenizers["task-300"]
    ids = tok("✓", add_special_tokens=False)["input_ids"]
    assert len(ids) > 1  # three UTF-8 bytes, no merge for them in this vocabulary
    text, ends = token_char_ends(tok, ids)
    assert text == "✓"
    assert ends == [0] * (len(ids) - 1) + [1]


def test_truncated_text_and_empty_completion(tokenizers):
    tok = tokenizers["tiny-512"]
    ids = tok(SOLUTION, add_special_tokens=False)["input_ids"][:5]  # max_completion_length cut it
    text, ends = token_char_ends(tok, ids)
    assert step_last_tokens(split_steps(text), ends) == [4]
    assert token_char_ends(tok, []) == ("", [])
    assert token_char_ends(tok, [tok.eos_token_id]) == ("", [0])
