"""The transformers backend: any image-text-to-text model through the Auto classes.

Conversations are rendered with the processor's own chat template (content items of type text and
image), so Qwen2-VL, Qwen2.5-VL, Qwen3-VL, InternVL-hf, LLaVA-family, Idefics3/SmolVLM and Gemma 3
all work as long as their template renders a system turn. Logits are computed only at the read
positions (``logits_to_keep``), never for the whole vocabulary at every token; with a likelihood
feature (``rewards.likelihood_feature``) also at the positions that predict the steps' tokens, a
chunk of positions at a time.

A group's conversations (one question, its images, N solutions) are scored on their shared token
prefix (``rewards.shared_prefix``): :meth:`HFBackend.group_step_logits` runs the images and the
prefix once and the N suffixes in batches on its cache, for the model types verified against
whole-sequence scores; other models are scored one sequence each, as :meth:`HFBackend.step_logits`
does.
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
    running_min_of_tokens,
    span_tokens,
)
from rewards.shared_prefix import (
    SharedPrefix,
    body,
    chunked_token_logprobs,
    group_rows_once,
    head_logits,
    image_token_ids,
    say_once,
    shared_cut,
    suffix_batch,
    verified,
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
        self.image_ids = image_token_ids(model.config) if model is not None else set()

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
        if any(has_images) and not all(has_images):
            raise InputError("a batch mixes conversations with and without images; score them apart")
        enc = self.process(texts, images if any(has_images) else None)
        ids, mask = enc["input_ids"], enc["attention_mask"]
        rows = [ids[i, :n].tolist() for i, n in enumerate(mask.sum(1).tolist())]
        read, spans = self.locate(rows, conversations, step_spans)
        return EncodedBatch(dict(enc), read, [len(r) for r in rows], spans)

    def process(self, texts: list[str], images: Sequence[Sequence[Image.Image]] | None) -> dict:
        """The processor's right-padded tensors for ``texts`` (and their images)."""
        kwargs = {"images": [[to_rgb(im) for im in imgs] for imgs in images]} if images else {}
        # Some processors (InternVL) default to left padding; read positions assume right padding.
        try:
            return self.processor(text=texts, padding=True, padding_side="right", return_tensors="pt", **kwargs)
        except (ValueError, TypeError, IndexError) as err:
            # e.g. "Found total 5 image tokens and 4 images" when a step spells an image token: an
            # input error of this batch, so callers can find the record and --skip-bad can skip it.
            raise InputError(f"the processor refused the inputs: {' '.join(str(err).split())}") from None

    def locate(self, rows: list[list[int]], conversations: Sequence[Conversation], step_spans: bool = False
               ) -> tuple[list[list[int]], list[list[tuple[int, int]]] | None]:
        """Read positions (and step spans, with ``step_spans`` or a feature) of each token row."""
        read = []
        answers = {self.good_id, self.bad_id}
        for i, (row, conv) in enumerate(zip(rows, conversations)):
            if self.max_length is not None and len(row) > self.max_length:
                raise InputError(f"conversation {i} has {len(row)} tokens, over max_length={self.max_length}")
            read.append(find_read_positions(row, self.header_ids, answers, conv.num_steps))
        spans = None
        if step_spans or self.feature is not None:
            spans = [self.step_spans(row, read[i], conv) for i, (row, conv) in enumerate(zip(rows, conversations))]
        return read, spans

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
        if verified(self.model):
            hidden = body(self.model)(**inputs, use_cache=False).last_hidden_state  # (B, L, H)
            return self.logits_from_hidden(hidden, 0, batch.read_positions, batch.step_spans, inputs["input_ids"])
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

    def logits_from_hidden(self, hidden: torch.Tensor, offset: int, read: list[list[int]],
                           spans: list[list[tuple[int, int]]] | None, ids: torch.Tensor) -> torch.Tensor:
        """``(B, S, 2)`` ``+``/``-`` logits (with the feature) from last hidden states ``hidden`` ``(B, W, H)``.

        ``hidden[:, j]`` and ``ids[:, j]`` ``(B, W)`` stand at position ``offset + j`` of the
        conversations; ``read`` and ``spans`` are in conversation positions. Only the ``+``/``-``
        rows of the output layer are applied at read positions; the feature's log-probabilities
        take the whole vocabulary a chunk of positions at a time.
        """
        device = hidden.device
        rows = torch.tensor([i for i, r in enumerate(read) for _ in r], device=device)
        cols = torch.tensor([p - offset for r in read for p in r], device=device)
        picked = head_logits(self.model, hidden[rows, cols], (self.good_id, self.bad_id)).float()  # (K, 2)
        result = torch.zeros(len(read), max(len(r) for r in read), 2, device=device)
        k = 0
        for i, r in enumerate(read):
            result[i, : len(r)] = picked[k : k + len(r)]
            k += len(r)
        if self.feature is None:
            return result
        pairs = span_tokens(spans)  # (row, token position) of every step token
        b = torch.tensor([i for i, _ in pairs], device=device)
        t = torch.tensor([p - offset for _, p in pairs], device=device)
        token_lp = chunked_token_logprobs(self.model, hidden[b, t - 1], ids.to(device)[b, t])
        return add_feature(result, running_min_of_tokens(token_lp, spans), self.feature)

    def group_rows(self, conversations: Sequence[Conversation], images: Sequence[Image.Image]
                   ) -> tuple[list[list[int]], dict[str, torch.Tensor]] | None:
        """Token rows of a group's conversations (one set of images) and the images' inputs, computed once.

        None when the rows do not share the images' place (then the group is scored whole).
        """
        for conv in conversations:
            check_markup(conv, self.markers)
        texts = [self.render(c) for c in conversations]
        rows = self.tokenizer(texts)["input_ids"]
        return group_rows_once(rows, self.process(texts[:1], [images]) if images else None, self.image_ids)

    @torch.inference_mode()
    def group_step_logits(self, conversations: Sequence[Conversation], images: Sequence[Image.Image],
                          batch_size: int) -> tuple[torch.Tensor, list[int]] | None:
        """``((N, S, 2), lengths)``: step logits like :meth:`step_logits` for a group sharing ``images``, on its shared prefix.

        None (score the group with :meth:`step_logits`) when the model is not verified for it or
        the group has no shareable prefix (``rewards.shared_prefix``).
        """
        if not verified(self.model):
            return None
        found = self.group_rows(conversations, images)
        if found is None:
            return None
        rows, vision = found
        read, spans = self.locate(rows, conversations)
        first_read = min(r[0] for r in read)
        limit = min(first_read, min(feature_positions(spans), default=first_read)) if spans else first_read
        cut = shared_cut(rows, limit, self.image_ids)
        if cut == 0:
            say_once("a group has no shareable token prefix (an image token after the first read position?); "
                     "scored one sequence each")
            return None
        prefix = SharedPrefix(self.model, rows[0], cut, vision)
        device = self.device
        steps = max(len(r) for r in read)
        result = torch.zeros(len(rows), steps, 2, device=device)
        for s in range(0, len(rows), batch_size):
            ids, mask = suffix_batch(rows[s : s + batch_size], cut, self.pad_id)
            hidden = prefix.suffix_hidden(ids, mask)
            part = self.logits_from_hidden(hidden, cut, read[s : s + batch_size],
                                           spans[s : s + batch_size] if spans else None, ids)
            result[s : s + len(ids), : part.shape[1]] = part
        return result, [len(r) for r in rows]  # each row's whole input, as step_logits' lengths count it
