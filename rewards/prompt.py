"""The policy prompt: the one definition of how a question and its images are shown to a policy.

The policy prompt is one plain user turn, no system prompt: the images stand where ``<image>``
placeholders stand in the question (a question without one gets its images first), then the text.
Sampling (``rlvprm.generation``), SFT, GRPO and the likelihood scorers (``rewards.likelihood``) all
build it here, so the tokens a policy is trained on, samples from and is scored on are the same.

This is the *policy's* prompt. The PRM's conversation is ``rewards.conversation``.
"""

from __future__ import annotations

from rewards.conversation import IMAGE_PLACEHOLDER


def build_prompt_messages(question: str, num_images: int) -> list[dict]:
    """The policy's chat messages: one user turn with the images where ``<image>`` stands, then text.

    >>> build_prompt_messages("Look: <image> and <image>?", 2)[0]["content"]  # doctest: +NORMALIZE_WHITESPACE
    [{'type': 'text', 'text': 'Look: '}, {'type': 'image'}, {'type': 'text', 'text': ' and '},
     {'type': 'image'}, {'type': 'text', 'text': '?'}]
    >>> [c["type"] for c in build_prompt_messages("How many?", 1)[0]["content"]]
    ['image', 'text']
    """
    found = question.count(IMAGE_PLACEHOLDER)
    content: list[dict] = []
    if found == 0:
        content = [{"type": "image"} for _ in range(num_images)]
        content.append({"type": "text", "text": question})
    elif found == num_images:
        pieces = question.split(IMAGE_PLACEHOLDER)
        for i, piece in enumerate(pieces):
            if piece:
                content.append({"type": "text", "text": piece})
            if i < len(pieces) - 1:
                content.append({"type": "image"})
    else:
        raise ValueError(f"question has {found} '<image>' placeholder(s) but {num_images} image(s) were given")
    return [{"role": "user", "content": content}]


def render_prompt(processor, question: str, num_images: int, prefix: str | None = None) -> str:
    """The prompt text: the chat template with its generation prompt, then ``prefix`` (if any).

    The prefix is plain text after the assistant header, so it is tokenised as part of the prompt
    and the policy continues the same assistant turn.
    """
    text = processor.apply_chat_template(
        build_prompt_messages(question, num_images), tokenize=False, add_generation_prompt=True
    )
    return text + (prefix or "")
