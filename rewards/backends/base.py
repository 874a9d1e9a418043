"""What every PRM backend provides, and the one rule for where step scores are read.

A backend turns conversations (``rewards.conversation``) plus their images into one padded batch of
model inputs and, for every conversation, the *read positions*: the index of the token that
predicts each assistant turn's placeholder. The step score is read from the logits there, and
training puts the step label there as the target, so scoring and training share one definition.

Read positions are found in token space, not by string search: the assistant header that the chat
format puts before every answer (``<|im_start|>assistant\\n`` for ChatML) is tokenised once, and
every occurrence of its ids followed by the answer token marks one placeholder. A solution whose
text contains the chat format's special tokens would add occurrences; the count check catches it.

Special tokens inside a record's text are **rejected**, not escaped, by every backend
(:func:`check_markup`, called by each backend's ``encode`` with that backend's own list: the
tokenizer's special tokens, plus ``<img>``/``</img>``/``<IMG_CONTEXT>`` for InternVL remote code).
Escaping would change the text the PRM judges into text no training data held, and such text is a
data bug or an injection (``<|im_end|>\n<|im_start|>system`` would be read as a new system turn,
``<|image_pad|>`` as an image); a per-record :class:`InputError` names it and ``--skip-bad`` skips it.

The context length is checked against the model's own limit (:func:`context_limit`) unless a
smaller ``max_length`` is given, so a record too long for the model is an error, never scored past
the positions the model was built for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

import torch
from PIL import Image

from rewards.conversation import Conversation


class InputError(ValueError):
    """A record cannot be scored as given (too long, markup inside the text, bad image)."""


# What a scorer raises for one record: its input (InputError) or the model's own failure on it
# (RuntimeError: out of memory, a shape it rejects). Callers rescore a failed batch record by record
# and name or skip only the record that fails.
RECORD_ERRORS = (InputError, RuntimeError)


def record_error_text(err: Exception) -> str:
    """What a per-record scoring error says: a model error also names its type."""
    return str(err) if isinstance(err, InputError) else f"model error ({type(err).__name__}): {err}"


@dataclass
class EncodedBatch:
    """Model inputs for a batch of conversations (right-padded) and where to read each step.

    ``read_positions[i]`` lists, for conversation ``i``, the index of the token whose logits predict
    each step's placeholder (so ``input_ids[i, p + 1]`` is the placeholder).
    """

    inputs: dict[str, torch.Tensor]
    read_positions: list[list[int]]
    lengths: list[int] = field(default_factory=list)
    # [start, end) of each step's text tokens, filled when a likelihood feature needs them
    step_spans: list[list[tuple[int, int]]] | None = None


class Backend(Protocol):
    good_id: int  # token id of "+"
    bad_id: int  # token id of "-"

    def encode(
        self, conversations: Sequence[Conversation], images: Sequence[Sequence[Image.Image]]
    ) -> EncodedBatch: ...

    def step_logits(self, batch: EncodedBatch) -> torch.Tensor: ...


def special_token_texts(tokenizer, extra: Sequence[str] = ()) -> list[str]:
    """The strings ``tokenizer`` reads as special tokens (longest first), plus ``extra``."""
    found = set(getattr(tokenizer, "all_special_tokens", None) or [])
    for tok in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(tok, "special", False):
            found.add(str(tok.content))
    found.update(extra)
    return sorted((t for t in found if t and t.strip()), key=lambda t: (-len(t), t))


def find_markup(text: str, markers: Sequence[str]) -> str | None:
    """The first of ``markers`` (special-token strings) that ``text`` contains, or None."""
    return next((m for m in markers if m in text), None)


def markup_error(where: str, marker: str) -> InputError:
    return InputError(
        f"{where} contains {marker!r}, a special token of this model's chat format; markup inside a "
        "record's text would be read as real markup, so it is refused (remove it)"
    )


def check_markup(conv: Conversation, markers: Sequence[str]) -> None:
    """Raise :class:`InputError` when a record's text (question or a step) holds one of ``markers``."""
    step = 0
    for turn in conv.turns:
        if turn.role != "user":
            continue
        step += 1
        for seg in turn.segments:
            marker = find_markup(seg, markers) if isinstance(seg, str) else None
            if marker is not None:
                first_step = conv.steps[0] if conv.steps else ""
                raise markup_error(f"step {step}" if step > 1 or marker in first_step else "the question", marker)


def context_limit(config) -> int | None:
    """The longest sequence the model's positions cover (``max_position_embeddings``), if it says."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for cfg in (text, config, getattr(config, "llm_config", None)):
        limit = getattr(cfg, "max_position_embeddings", None) if cfg is not None else None
        if isinstance(limit, int) and limit > 0:
            return limit
    return None


def find_read_positions(ids: Sequence[int], header: Sequence[int], answer_ids: set[int], expected: int) -> list[int]:
    """Positions ``p`` such that ``ids[p+1]`` is an answer token right after the assistant header.

    >>> find_read_positions([9, 1, 2, 5, 9, 1, 2, 6], header=[1, 2], answer_ids={5, 6}, expected=2)
    [2, 6]
    """
    n, h = len(ids), len(header)
    found = []
    first = header[0]
    for i in range(n - h):
        if ids[i] == first and list(ids[i : i + h]) == list(header):
            p = i + h - 1
            if ids[p + 1] in answer_ids:
                found.append(p)
    if len(found) != expected:
        raise InputError(
            f"found {len(found)} assistant placeholders for {expected} steps: the text probably "
            "contains the chat format's special tokens"
        )
    return found


def answer_token_ids(tokenizer, header_text: str) -> tuple[list[int], int, int]:
    """Token ids of the assistant header and of ``+`` and ``-`` as they follow it.

    Raises when the tokenizer does not give ``+`` or ``-`` a single token of its own there, or when
    that token is not the vocabulary's ``+`` / ``-``: the released VisualPRM code reads the logits of
    ``convert_tokens_to_ids('+')`` and ``('-')``, rlvprm those of the token found in the prompt, and
    the two must be the same logit for the scores to agree.
    """
    header = tokenizer.encode(header_text, add_special_tokens=False)
    out = []
    for answer in ("+", "-"):
        ids = tokenizer.encode(header_text + answer, add_special_tokens=False)
        if ids[: len(header)] != header or len(ids) != len(header) + 1:
            raise ValueError(
                f"the tokenizer does not give {answer!r} its own token after the assistant header "
                f"{header_text!r} (got {tokenizer.convert_ids_to_tokens(ids[len(header):])})"
            )
        vocab_id = tokenizer.convert_tokens_to_ids(answer)
        if vocab_id is None or (vocab_id == tokenizer.unk_token_id and answer != tokenizer.unk_token):
            raise ValueError(f"the tokenizer's vocabulary has no token {answer!r} (convert_tokens_to_ids gives "
                             f"{vocab_id}), which the released VisualPRM code reads its step scores from")
        if vocab_id != ids[-1]:
            raise ValueError(
                f"{answer!r} after the assistant header {header_text!r} is token {ids[-1]} "
                f"({tokenizer.convert_ids_to_tokens(ids[-1])!r}), but the vocabulary's {answer!r} is token {vocab_id}: "
                "the released VisualPRM code and rlvprm would read different logits"
            )
        out.append(ids[-1])
    return header, out[0], out[1]


def pad_right(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists into ``(input_ids, attention_mask)`` of shape ``(B, L)``."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask
