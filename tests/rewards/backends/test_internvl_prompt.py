"""``prm_prompt``: the remote-code backend writes the checkpoint's own prompt, or the training prompt.

Tiny remote-code checkpoints (``remote_internvl_fixture.py``) are written with and without their own
``conversation.py``, with and without ``config.system_message``, and loaded through
``ProcessRewardModel.from_pretrained``. The checkpoint-prompt scores are compared with a re-enactment
of the released scoring code (``generate_steps_with_soft_score_v2``) run on the checkpoint's own
template object.
"""

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from PIL import Image

from rewards.backends.internvl_prompt import INTERNVL_TEMPLATES, ChatFormat
from rewards.conversation import SYSTEM_PROMPT, build_conversation
from rewards.prm import Group, ProcessRewardModel

pytestmark = pytest.mark.usefixtures("one_thread")

TILE, TOKENS_PER_TILE = 28, 4
QUESTION = "What is the sum of the numbers in the image?"
INTERNVL_SYSTEM = INTERNVL_TEMPLATES["internvl2_5"][0]
IMAGE = Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 56, 3), dtype=np.uint8))  # 3 tiles
BLOCK = "<img>" + "<IMG_CONTEXT>" * (3 * TOKENS_PER_TILE) + "</img>"


@pytest.fixture(scope="module")
def build(tmp_path_factory, remote_internvl):
    """``build(name, **options)``: a tiny remote-code checkpoint in its own folder."""
    root = tmp_path_factory.mktemp("remote_prompt")
    # Distinct folder names: transformers caches remote code per folder name.
    return lambda name, **kwargs: remote_internvl(root / name, tile=TILE, **kwargs)


@pytest.fixture(scope="module")
def own_template(build):
    return build("prompt_own_template")


def load(path, **kwargs) -> ProcessRewardModel:
    return ProcessRewardModel.from_pretrained(str(path), trust_remote_code=True, dtype="float32", device="cpu",
                                              **kwargs)


def prompt_text(prm, steps) -> str:
    batch = prm.backend.encode([build_conversation(QUESTION, steps)], [[IMAGE]])
    return prm.backend.tokenizer.decode(batch.inputs["input_ids"][0])


def body(sep: str) -> str:
    return (f"<|im_start|>user\n### Question:\n{BLOCK}\n{QUESTION}\n\n### Solution Process:\nStep one.{sep}"
            f"<|im_start|>assistant\n+{sep}<|im_start|>user\nStep two.{sep}<|im_start|>assistant\n+{sep}")


def test_default_is_the_checkpoints_own_template_and_system_message(own_template):
    prm = load(own_template)
    assert prompt_text(prm, ["Step one.", "Step two."]) == (
        f"<|im_start|>system\n{INTERNVL_SYSTEM}<|im_end|>\n" + body("<|im_end|>\n"))
    assert prm.prompt_info == {
        "prm_prompt": "checkpoint", "template": "internvl2_5", "template_from": "the checkpoint's conversation.py",
        "system_message_from": "the internvl2_5 template's default", "system_message": INTERNVL_SYSTEM}


def test_training_prompt_on_request(own_template):
    prm = load(own_template, prm_prompt="training")
    assert prompt_text(prm, ["Step one.", "Step two."]) == (
        f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n" + body("<|im_end|>\n"))
    assert prm.prompt_info["prm_prompt"] == "training" and prm.prompt_info["system_message"] is None


def test_config_system_message_wins_over_the_template_default(build):
    prm = load(build("prompt_config_system", system_message="Judge each step."))
    assert prompt_text(prm, ["Step one.", "Step two."]).startswith("<|im_start|>system\nJudge each step.<|im_end|>\n")
    assert prm.prompt_info["system_message_from"] == "config.system_message"


def test_template_fields_come_from_the_checkpoints_code(build):
    # tiny-chatml exists only in the checkpoint's conversation.py: its system message, and a
    # separator without the newline that internvl2_5 writes.
    prm = load(build("prompt_tiny_chatml", template="tiny-chatml"))
    assert prompt_text(prm, ["Step one.", "Step two."]) == (
        "<|im_start|>system\nYou are a tiny test model.<|im_end|>" + body("<|im_end|>"))


def test_without_its_own_code_internvls_template_is_used(build):
    prm = load(build("prompt_no_code", ship_template=False))
    assert prompt_text(prm, ["Step one.", "Step two."]) == (
        f"<|im_start|>system\n{INTERNVL_SYSTEM}<|im_end|>\n" + body("<|im_end|>\n"))
    assert prm.prompt_info["template_from"].startswith("InternVL's conversation.py")


def test_unknown_or_unsupported_templates_are_refused(build):
    with pytest.raises(ValueError, match="template 'mystery' is neither .* prm_prompt='training'"):
        load(build("prompt_unknown", template="mystery", ship_template=False))
    path = build("prompt_other_style", template="tiny-chatml-style")
    with pytest.raises(ValueError, match="separator style 'CHATML'.*prm_prompt='training'"):
        load(path)
    assert load(path, prm_prompt="training").prompt_info["prm_prompt"] == "training"
    with pytest.raises(ValueError, match="unknown prm_prompt 'released'"):
        load(path, prm_prompt="released")


def test_an_empty_step_is_written_as_each_prompt_writes_it(own_template):
    # The released split keeps empty pieces; get_prompt writes an empty message as its role alone,
    # the training pipeline closes every turn.
    for prompt, empty in (("checkpoint", "<|im_start|>user\n<|im_start|>assistant\n+"),
                          ("training", "<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n+")):
        prm = load(own_template, prm_prompt=prompt)
        (got,) = prm.score_group(QUESTION, [IMAGE], ["a\n\n\n\nb"])
        assert len(got.step_scores) == 3
        conv = prm.prepare(Group(QUESTION, [IMAGE], ["a\n\n\n\nb"]))[0][1]
        assert empty in prm.backend.tokenizer.decode(prm.backend.encode([conv], [[IMAGE]]).inputs["input_ids"][0])


def released_scores(model, tokenizer, question, steps, pixel_values) -> list[float]:
    """What the released ``generate_steps_with_soft_score_v2`` computes, on the checkpoint's own template."""
    template = sys.modules[type(model).__module__].get_conv_template(model.template)
    template.system_message = model.system_message
    for k, step in enumerate(steps):
        template.append_message(template.roles[0], f"### Question:\n<image>\n{question}\n\n### Solution Process:\n{step}"
                                if k == 0 else step)
        template.append_message(template.roles[1], "+")
    query = template.get_prompt().replace("<image>", BLOCK, 1)
    ids = tokenizer(query, return_tensors="pt")
    header = tokenizer(template.roles[1], add_special_tokens=False).input_ids
    target = tokenizer(template.roles[1] + "+" + template.sep, add_special_tokens=False).input_ids
    row = ids["input_ids"][0].tolist()
    idx = [i + len(header) - 1 for i in range(len(row)) if row[i : i + len(target)] == target]
    model.img_context_token_id = tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    with torch.no_grad():
        logits = model(pixel_values=pixel_values, input_ids=ids["input_ids"], attention_mask=ids["attention_mask"],
                       image_flags=torch.ones(pixel_values.shape[0], dtype=torch.long)).logits
    plus, minus = tokenizer.convert_tokens_to_ids("+"), tokenizer.convert_tokens_to_ids("-")
    return logits[0][idx][:, [plus, minus]].softmax(-1)[:, 0].tolist()


def test_checkpoint_prompt_scores_are_the_released_codes_scores(own_template):
    prm = load(own_template)
    solution = "The numbers are 3 and 7.\n\n3 + 7 = 10.\n\nThe answer is \\boxed{10}."
    got = prm.score_group(QUESTION, [IMAGE], [solution])[0].step_scores
    backend = prm.backend
    want = released_scores(backend.model, backend.tokenizer, QUESTION, solution.split("\n\n"), backend.tile_image(IMAGE))
    assert len(want) == 3 and got == pytest.approx(want, abs=1e-5)
    training = load(own_template, prm_prompt="training").score_group(QUESTION, [IMAGE], [solution])[0].step_scores
    assert max(abs(a - b) for a, b in zip(got, training)) > 1e-4  # the two prompts are different inputs


def test_chat_format_render_by_hand():
    fmt = ChatFormat("checkpoint", "t", "S", "x", "y", sep="|", roles=("U:", "A:"), system_template="<{system_message}>",
                     close_empty=False)
    assert fmt.render("ignored", [("user", "q"), ("assistant", "+"), ("user", ""), ("assistant", "+")]) == "<S>|U:q|A:+|U:A:+|"
    training = ChatFormat("training", "t", None, "x", "y", sep="|", roles=("U:", "A:"), system_template="<{system_message}>")
    assert training.render("own", [("user", "")]) == "<own>|U:|"
