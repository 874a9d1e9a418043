"""The ``+``/``-`` token ids a backend reads, checked against the tokenizer's vocabulary at load."""

import pytest
from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

from rewards.backends.base import answer_token_ids


def word_tokenizer(vocab: dict[str, int], rewrite: dict[str, str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose normaliser rewrites characters (``{"+": "plus"}``) before lookup."""
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.Replace(a, f" {b}") for a, b in rewrite.items()])
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


def test_ids_found_in_the_prompt_are_the_vocabulary_ids():
    tok = word_tokenizer({"[UNK]": 0, "A:": 1, "+": 2, "-": 3}, {})
    assert answer_token_ids(tok, "A:\n") == ([1], 2, 3)


def test_a_plus_that_the_prompt_spells_as_another_token_is_an_error():
    # The prompt's "+" becomes the token "plus" (id 4) while the vocabulary's "+" is id 2: the
    # released code (convert_tokens_to_ids('+')) would read another logit than rlvprm.
    tok = word_tokenizer({"[UNK]": 0, "A:": 1, "+": 2, "-": 3, "plus": 4}, {"+": "plus"})
    with pytest.raises(ValueError, match=r"'\+' after the assistant header .* token 4 \('plus'\).*vocabulary's '\+' is token 2"):
        answer_token_ids(tok, "A:\n")


def test_a_vocabulary_without_minus_is_an_error():
    tok = word_tokenizer({"[UNK]": 0, "A:": 1, "+": 2, "minus": 3}, {"-": "minus"})
    with pytest.raises(ValueError, match="vocabulary has no token '-'"):
        answer_token_ids(tok, "A:\n")


def test_tiny_models_of_every_architecture_pass_the_check(tiny_models, arch):
    from rewards.backends.processors import load_processor
    from rewards.backends.hf import assistant_header

    processor = load_processor(tiny_models(arch))
    _, good, bad = answer_token_ids(processor.tokenizer, assistant_header(processor))
    assert (good, bad) == tuple(processor.tokenizer.convert_tokens_to_ids(["+", "-"]))
