"""The VisualPRM conversation: one builder for training inputs and scoring inputs.

A conversation is a system prompt, a first user turn ``### Question:\\n{question}\\n\\n### Solution
Process:\\n{step_1}`` (the images stand where ``<image>`` stands in the question), an assistant turn
holding ``+``, then one user turn per further step, each followed by an assistant turn.

The builder returns a neutral :class:`Conversation` (turns made of text and image slots). Renderers
turn it into what each consumer needs: chat-template messages for transformers processors, the
VisualPRM400K ``{from, value}`` list, or the prompt string of InternVL's remote-code format
(``rewards.backends.internvl``). Because all of them start from :func:`build_conversation`, training
and scoring inputs cannot drift apart.

In scoring, every assistant turn holds the placeholder ``+``. In training the inputs are the same
and the label is the target of the position that predicts each placeholder
(``labels_in_input=True`` puts the labels themselves into the assistant turns instead, as the
released checkpoints were trained; DESIGN.md section 7 says why it is not the default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence, Union

SYSTEM_PROMPT = (
    "You are an advanced AI assistant, designed to serve as a process supervision model. In this task, "
    "I will provide a problem statement followed by the first step of the solution process. For each "
    "subsequent turn, I will give you a new step in the solution. Your role is to assess whether the "
    "solution process is correct up to the current step.\n"
    "\n"
    "- In the **first round**, I will input the problem and the first step of the solution process.\n"
    "- In **each subsequent round**, I will provide the next step in the solution.\n"
    "\n"
    "For each step, you should:\n"
    "\n"
    '- Respond with **"+"** if you believe the solution process is correct up to this step.\n'
    '- Respond with **"-"** if you detect any issues or errors in the process up to this step.\n'
    "\n"
    "Please note:\n"
    '- Only respond with **"+"** or **"-"**. Do not provide any additional explanations, comments, or '
    "justifications.\n"
    "\n"
    "Your task is to verify the accuracy and correctness of each step in the given solution process."
)

IMAGE_PLACEHOLDER = "<image>"
GOOD = "+"
BAD = "-"


class ConversationError(ValueError):
    """A record cannot be turned into a conversation (no question, no steps, image count mismatch)."""


@dataclass(frozen=True)
class ImageSlot:
    """Where the ``index``-th image of the record stands inside a turn."""

    index: int


Segment = Union[str, ImageSlot]


@dataclass
class Turn:
    role: str  # "system" | "user" | "assistant"
    segments: list[Segment]

    @property
    def text(self) -> str:
        """The turn as VisualPRM400K text, images written as ``<image>``."""
        return "".join(IMAGE_PLACEHOLDER if isinstance(s, ImageSlot) else s for s in self.segments)


@dataclass
class Conversation:
    turns: list[Turn]
    num_images: int
    labels: list[str] | None = None  # "+"/"-" per step, the training targets; None when scoring
    steps: list[str] = field(default_factory=list)  # each step's text, as it stands at the end of its user turn
    num_steps: int = field(init=False)

    def __post_init__(self) -> None:
        self.num_steps = sum(t.role == "assistant" for t in self.turns)


def _question_segments(question: str, num_images: int) -> list[Segment]:
    """The first user turn's question part, with image slots where ``<image>`` stands."""
    found = question.count(IMAGE_PLACEHOLDER)
    if found == 0:
        question = (IMAGE_PLACEHOLDER + "\n") * num_images + question
    elif found != num_images:
        raise ConversationError(
            f"question has {found} '<image>' placeholder(s) but the record has {num_images} image(s)"
        )
    segments: list[Segment] = []
    pieces = question.split(IMAGE_PLACEHOLDER)
    for i, piece in enumerate(pieces):
        if piece:
            segments.append(piece)
        if i < len(pieces) - 1:
            segments.append(ImageSlot(i))
    return segments


def build_conversation(
    question: str,
    steps: Sequence[str],
    num_images: int = 1,
    labels: Sequence[str | bool | int] | None = None,
    labels_in_input: bool = False,
    system_prompt: str = SYSTEM_PROMPT,
    allow_empty_steps: bool = False,
) -> Conversation:
    """Build the VisualPRM conversation for ``steps`` (already split with ``split_steps``).

    ``labels`` (``"+"``/``"-"``, or truthy for correct) makes it a training conversation. The
    assistant turns hold ``+`` unless ``labels_in_input`` puts the labels there.
    ``allow_empty_steps``: keep empty steps as empty user turns, as the released VisualPRM code does
    with the empty pieces of its split (``split_steps(..., split="released")``).
    """
    if not question or not question.strip():
        raise ConversationError("the record has no question")
    if not steps:
        raise ConversationError("the solution has no steps (empty response)")
    if not allow_empty_steps and any(not s.strip() for s in steps):
        raise ConversationError("a step is empty")
    norm_labels = None
    if labels is not None:
        if len(labels) != len(steps):
            raise ConversationError(f"{len(labels)} labels for {len(steps)} steps")
        norm_labels = [_label(x) for x in labels]
    if labels_in_input and norm_labels is None:
        raise ConversationError("labels_in_input needs labels")

    first = [*_question_segments(question, num_images)]
    first[0:0] = ["### Question:\n"]
    first.append(f"\n\n### Solution Process:\n{steps[0]}")
    turns = [Turn("system", [system_prompt]), Turn("user", _merge_text(first))]
    for i, step in enumerate(steps):
        if i > 0:
            turns.append(Turn("user", [step]))
        answer = norm_labels[i] if labels_in_input else GOOD
        turns.append(Turn("assistant", [answer]))
    return Conversation(turns, num_images, norm_labels, list(steps))


def _label(x: str | bool | int) -> str:
    if isinstance(x, str):
        if x not in (GOOD, BAD):
            raise ConversationError(f"label {x!r} is neither '+' nor '-'")
        return x
    return GOOD if x else BAD


def _merge_text(segments: list[Segment]) -> list[Segment]:
    """Join neighbouring text segments so each turn alternates text and images."""
    out: list[Segment] = []
    for s in segments:
        if isinstance(s, str) and out and isinstance(out[-1], str):
            out[-1] += s
        else:
            out.append(s)
    return out


def to_chat_messages(conv: Conversation) -> list[dict]:
    """Messages for a transformers processor's chat template (content items of type text/image)."""
    messages = []
    for turn in conv.turns:
        content = [
            {"type": "image"} if isinstance(s, ImageSlot) else {"type": "text", "text": s}
            for s in turn.segments
        ]
        messages.append({"role": turn.role, "content": content})
    return messages


_ROLE_TO_FROM = {"system": "system", "user": "human", "assistant": "gpt"}
_FROM_TO_ROLE = {v: k for k, v in _ROLE_TO_FROM.items()}


def to_visualprm_conversations(conv: Conversation, with_labels: bool = True) -> list[dict]:
    """The VisualPRM400K ``conversations`` list; with labels, assistant turns hold them."""
    out = []
    k = 0
    for turn in conv.turns:
        value = turn.text
        if turn.role == "assistant":
            if with_labels and conv.labels is not None:
                value = conv.labels[k]
            k += 1
        out.append({"from": _ROLE_TO_FROM[turn.role], "value": value})
    return out


def parse_visualprm_conversations(conversations: list[dict]) -> tuple[str, list[str], list[str]]:
    """Read a VisualPRM400K ``conversations`` list back into (question, steps, labels).

    The question keeps its ``<image>`` placeholders. Raises :class:`ConversationError` when the
    turns do not follow the format (so a malformed record is never silently mislabelled).
    """
    roles = [_FROM_TO_ROLE.get(c.get("from")) for c in conversations]
    if None in roles:
        raise ConversationError(f"unknown speaker in {[c.get('from') for c in conversations]}")
    turns = [(r, c["value"]) for r, c in zip(roles, conversations) if r != "system"]
    if len(turns) < 2 or len(turns) % 2:
        raise ConversationError(f"expected alternating user/assistant turns, got {len(turns)} turns")
    users, answers = turns[0::2], turns[1::2]
    if any(r != "user" for r, _ in users) or any(r != "assistant" for r, _ in answers):
        raise ConversationError("turns do not alternate user/assistant")
    first = users[0][1]
    head, sep, step1 = first.partition("\n\n### Solution Process:\n")
    if not sep or not head.startswith("### Question:\n"):
        raise ConversationError("first user turn is not '### Question:\\n...\\n\\n### Solution Process:\\n...'")
    question = head[len("### Question:\n") :]
    steps = [step1] + [v for _, v in users[1:]]
    labels = [v.strip() for _, v in answers]
    for lab in labels:
        _label(lab)
    return question, steps, labels
