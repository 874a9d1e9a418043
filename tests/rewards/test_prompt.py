"""The policy prompt has one definition (rewards.prompt), which rlvprm.generation re-exports."""

import doctest

import pytest

from rewards import prompt
from rewards.prompt import build_prompt_messages, render_prompt


def test_docstring_examples_hold():
    assert doctest.testmod(prompt).failed == 0


def test_images_go_where_placeholders_stand_or_first():
    assert build_prompt_messages("<image>\nHow many?", 1)[0]["content"] == [
        {"type": "image"}, {"type": "text", "text": "\nHow many?"}]
    assert [c["type"] for c in build_prompt_messages("Sum?", 2)[0]["content"]] == ["image", "image", "text"]
    assert build_prompt_messages("Sum?", 0)[0]["content"] == [{"type": "text", "text": "Sum?"}]
    with pytest.raises(ValueError, match="placeholder"):
        build_prompt_messages("<image> vs <image>", 1)


def test_generation_uses_this_definition():
    from rlvprm import generation

    assert generation.build_prompt_messages is build_prompt_messages
    assert generation.render_prompt is render_prompt


def test_render_prompt_ends_with_the_generation_prompt_and_prefix(tiny_models):
    from rewards.backends.processors import load_processor

    processor = load_processor(tiny_models("qwen2-vl"))
    text = render_prompt(processor, "<image>\nHow many?", 1, prefix="Step one.")
    assert text.startswith("<|im_start|>user\n<|vision_start|>")
    assert text.endswith("<|im_start|>assistant\nStep one.")
    assert "system" not in text
