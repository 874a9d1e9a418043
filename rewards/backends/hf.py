"""The transformers backend: any image-text-to-text model through the Auto classes.

Conversations are rendered with the processor's own chat template (content items of type text and
image), so Qwen2-VL, Qwen2.5-VL, Qwen3-VL, InternVL-hf, LLaVA-family, Idefics3/SmolVLM and Gemma 3
all work as long as their template renders a system turn. Logits are computed only at the read
positions (``logits_to_keep``), never for the whole vocabulary at every token; with a likelihood
feature (``rewards.likelihood_feature``) also at the positions that predict the steps' tokens.
"""

from __future__ import annotations

from typing import Sequence

import torch
from PIL import Image

from rewards.backends.base import (
    EncodedBatch,
    InputError,
    answer_token_ids,
    check_markup,
    context_limit,
    find_read_positions,
    special_token_texts,
)
from rewards.conversation import Conversation, to_chat_messages
from rewards.images import to_rgb
from rewards.likelihood_feature import (
    LikelihoodFeature,
    add_feature,
    feature_positions,
    find_step_spans,
    running_min_feature,
)


def assistant_header(processor) -> str:
    """The text the chat template puts before every assistant answer (e.g. ``<|im_start|>assistant\\n``)."""
    msgs = [{"role": "user", "content": [{"type": "text", "text": "x"}]}]
    without = processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False)
    with_prompt = processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    if not with_prompt.startswith(without) or with_prompt == without:
        raise ValueError("the chat template has no generation prompt; cannot locate assistant turns")
    return with_prompt[len(without) :]


class HFBackend:
    """Score with a transformers model and its processor."""

    # Set by ProcessRewardModel.from_pretrained: which prompt choice this backend was loaded with.
    prompt_info: dict | None = None

    def __init__(self, model, processor, max_length: int | None = None, feature: LikelihoodFeature | None = None):
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        # No max_length: the model's own context is the limit, so an over-long record is an error.
        if max_length is None and model is not None:
            max_length = context_limit(model.config)
        self.max_length = max_length
        self.markers = special_token_texts(self.tokenizer)
        self.feature = feature
        header_text = assistant_header(processor)
        self.header_ids, self.good_id, self.bad_id = answer_token_ids(self.tokenizer, header_text)
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def render(self, conv: Conversation) -> str:
        return self.processor.apply_chat_template(to_chat_messages(conv), tokenize=False)

    def encode(
        self, conversations: Sequence[Conversation], images: Sequence[Sequence[Image.Image]], step_spans: bool = False
    ) -> EncodedBatch:
        """Model inputs and read positions; with ``step_spans`` (or a likelihood feature) each step's tokens too."""
        for conv in conversations:
            check_markup(conv, self.markers)
        texts = [self.render(c) for c in conversations]
        has_images = [len(imgs) > 0 for imgs in images]
        kwargs = {}
        if any(has_images):
            if not all(has_images):
                raise InputError("a batch mixes conversations with and without images; score them apart")
            kwargs["images"] = [[to_rgb(im) for im in imgs] for imgs in images]
        # Some processors (InternVL) default to left padding; read positions assume right padding.
        try:
            enc = self.processor(text=texts, padding=True, padding_side="right", return_tensors="pt", **kwargs)
        except (ValueError, TypeError, IndexError) as err:
            # e.g. "Found total 5 image tokens and 4 images" when a step spells an image token: an
            # input error of this batch, so callers can find the record and --skip-bad can skip it.
            raise InputError(f"the processor refused the inputs: {' '.join(str(err).split())}") from None
        ids, mask = enc["input_ids"], enc["attention_mask"]
        lengths = mask.sum(1).tolist()
        read = []
        answers = {self.good_id, self.bad_id}
        for i, conv in enumerate(conversations):
            if self.max_length is not None and lengths[i] > self.max_length:
                raise InputError(f"conversation {i} has {lengths[i]} tokens, over max_length={self.max_length}")
            read.append(find_read_positions(ids[i, : lengths[i]].tolist(), self.header_ids, answers, conv.num_steps))
        spans = None
        if step_spans or self.feature is not None:
            spans = [self.step_spans(ids[i].tolist(), read[i], conv) for i, conv in enumerate(conversations)]
        return EncodedBatch(dict(enc), read, lengths, spans)

    def step_spans(self, ids: list[int], read_positions: list[int], conv: Conversation) -> list[tuple[int, int]]:
        """``[start, end)`` of each step's text tokens in one encoded conversation."""
        if len(conv.steps) != conv.num_steps:
            raise InputError("the conversation does not carry its step texts; build it with build_conversation")
        decode = lambda part: self.tokenizer.decode(  # noqa: E731
            part, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return find_step_spans(decode, ids, read_positions, len(self.header_ids), conv.steps)

    def step_logits(self, batch: EncodedBatch) -> torch.Tensor:
        """``(B, S, 2)`` logits of ``+`` and ``-`` at each read position (padded steps are 0).

        Notation: B conversations, S the most steps in any of them.
        """
        device, dtype = self.device, self.model.dtype
        inputs = {
            k: (v.to(device, dtype) if torch.is_floating_point(v) else v.to(device))
            for k, v in batch.inputs.items()
            if isinstance(v, torch.Tensor)
        }
        keep = {p for row in batch.read_positions for p in row}
        if self.feature is not None:
            keep |= set(feature_positions(batch.step_spans))
        keep = sorted(keep)
        index = {p: j for j, p in enumerate(keep)}
        keep_t = torch.tensor(keep, device=device)
        out = self.model(**inputs, logits_to_keep=keep_t, use_cache=False)
        logits = out.logits[..., [self.good_id, self.bad_id]].float()  # (B, K, 2)
        steps = max(len(r) for r in batch.read_positions)
        result = torch.zeros(len(batch.read_positions), steps, 2, device=logits.device)
        for i, row in enumerate(batch.read_positions):
            result[i, : len(row)] = logits[i, [index[p] for p in row]]
        if self.feature is not None:
            feature = running_min_feature(out.logits, keep_t, batch.inputs["input_ids"], batch.step_spans)
            result = add_feature(result, feature, self.feature)
        return result
