import pytest

from rewards.conversation import (
    SYSTEM_PROMPT,
    ConversationError,
    ImageSlot,
    build_conversation,
    parse_visualprm_conversations,
    to_chat_messages,
    to_visualprm_conversations,
)


def test_system_prompt_shape():
    paragraphs = SYSTEM_PROMPT.split("\n\n")
    assert paragraphs[0].startswith("You are an advanced AI assistant, designed to serve as a process supervision model.")
    assert paragraphs[-1] == "Your task is to verify the accuracy and correctness of each step in the given solution process."
    assert len(paragraphs) == 6
    assert "\n- In **each subsequent round**" in SYSTEM_PROMPT


def test_first_turn_with_leading_placeholder():
    conv = build_conversation("<image>\nHow many?", ["I count 3.", "So \\boxed{3}."])
    roles = [t.role for t in conv.turns]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    first = conv.turns[1].segments
    assert first == ["### Question:\n", ImageSlot(0), "\nHow many?\n\n### Solution Process:\nI count 3."]
    assert conv.turns[3].segments == ["So \\boxed{3}."]
    assert [t.text for t in conv.turns if t.role == "assistant"] == ["+", "+"]
    assert conv.num_steps == 2


def test_question_without_placeholder_gets_image_first():
    conv = build_conversation("How many?", ["a"], num_images=1)
    assert conv.turns[1].segments == ["### Question:\n", ImageSlot(0), "\nHow many?\n\n### Solution Process:\na"]
    conv2 = build_conversation("Compare.", ["a"], num_images=2)
    assert conv2.turns[1].text == "### Question:\n<image>\n<image>\nCompare.\n\n### Solution Process:\na"


def test_images_in_the_middle_and_text_only():
    conv = build_conversation("Left <image> right <image>?", ["a"], num_images=2)
    assert conv.turns[1].segments == ["### Question:\nLeft ", ImageSlot(0), " right ", ImageSlot(1), "?\n\n### Solution Process:\na"]
    text_only = build_conversation("What is 2+2?", ["4"], num_images=0)
    assert text_only.turns[1].segments == ["### Question:\nWhat is 2+2?\n\n### Solution Process:\n4"]


def test_placeholder_count_mismatch():
    with pytest.raises(ConversationError, match="2 image"):
        build_conversation("<image> only one", ["a"], num_images=2)


def test_training_labels_placeholder_inputs_by_default():
    conv = build_conversation("<image>\nQ", ["a", "b", "c"], labels=["+", "-", "-"])
    assert [t.text for t in conv.turns if t.role == "assistant"] == ["+", "+", "+"]
    assert conv.labels == ["+", "-", "-"]
    with_labels = build_conversation("<image>\nQ", ["a", "b", "c"], labels=[1, 0, 0], labels_in_input=True)
    assert [t.text for t in with_labels.turns if t.role == "assistant"] == ["+", "-", "-"]


def test_bad_inputs():
    with pytest.raises(ConversationError, match="no question"):
        build_conversation("  ", ["a"])
    with pytest.raises(ConversationError, match="no steps"):
        build_conversation("Q", [])
    with pytest.raises(ConversationError, match="2 labels for 3 steps"):
        build_conversation("Q", ["a", "b", "c"], labels=["+", "-"])
    with pytest.raises(ConversationError, match="neither"):
        build_conversation("Q", ["a"], labels=["?"])


def test_visualprm_format_round_trip():
    conv = build_conversation("<image>\nQ?", ["s1", "s2"], labels=["+", "-"])
    convs = to_visualprm_conversations(conv)
    assert convs[0] == {"from": "system", "value": SYSTEM_PROMPT}
    assert convs[1] == {"from": "human", "value": "### Question:\n<image>\nQ?\n\n### Solution Process:\ns1"}
    assert convs[2:] == [{"from": "gpt", "value": "+"}, {"from": "human", "value": "s2"}, {"from": "gpt", "value": "-"}]
    assert parse_visualprm_conversations(convs) == ("<image>\nQ?", ["s1", "s2"], ["+", "-"])


def test_parse_rejects_malformed():
    with pytest.raises(ConversationError):
        parse_visualprm_conversations([{"from": "human", "value": "no header"}, {"from": "gpt", "value": "+"}])
    with pytest.raises(ConversationError):
        parse_visualprm_conversations([{"from": "human", "value": "### Question:\nq\n\n### Solution Process:\na"}])


def test_chat_messages():
    msgs = to_chat_messages(build_conversation("<image>\nQ", ["a"]))
    assert msgs[1]["content"][1] == {"type": "image"}
    assert msgs[2] == {"role": "assistant", "content": [{"type": "text", "text": "+"}]}
