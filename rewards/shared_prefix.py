"""Shared-prefix group scoring: a group's common token prefix computed once, its cache shared by all.

Every candidate of a Best-of-N or GRPO group is the same conversation up to its solution: system
prompt, image(s), question. Scored one sequence each, the vision encoder and that prefix run N
times. Here they run once: the prefix's key/value cache is expanded (a view, no copy) to the N
suffixes, which are scored in one right-padded batch whose positions continue the prefix's, so
every logit is the one a full forward pass gives (tests compare them within 1e-5 in fp32).

Where the prefix ends is found in token space (:func:`shared_cut`): the longest common prefix of
the group's token rows, cut back so that every position whose logits are read lies after it, and
refused (0: score the group whole) when an image token would fall after it, so the cut never lands
inside an image's token block and the suffix pass never needs the vision encoder.

Positions: a suffix token's position is the prefix's next position plus its offset; for Qwen2-VL's
multimodal rotary positions the next position is ``max(prefix positions) + 1`` (the model's own
``rope_deltas`` after the prefix pass), for 1-D positions it is the prefix length.

Left out: sharing a prefix across groups (a tree of prefixes), and models whose suffix tokens
attend differently from their prefix ones (e.g. Gemma 3's bidirectional image attention is fine,
since images stay in the prefix, but such models are not verified here: callers keep a list of the
architectures they verified and fall back for the others).
"""

from __future__ import annotations

import inspect
import logging
from typing import Sequence

import torch

log = logging.getLogger(__name__)
_said: set[str] = set()

# transformers model types whose shared-prefix scores were checked against whole-sequence scores
# (tests/rewards/test_shared_prefix.py); other models are scored whole, as before.
VERIFIED_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl", "internvl")


def body(model):
    """The decoder that returns hidden states (``model.model`` in the transformers layout), under a
    PEFT wrapper too (a PRM evaluated while LoRA trains is a ``PeftModel``)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.model


def verified(model) -> bool:
    """Whether shared-prefix scoring is verified for ``model``; says once when it is not."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in VERIFIED_MODEL_TYPES:
        return True
    say_once(f"shared-prefix scoring is not verified for model type {model_type!r} (only "
             f"{', '.join(VERIFIED_MODEL_TYPES)}); its groups are scored one sequence each")
    return False


def image_token_ids(config) -> set[int]:
    """The ids a model replaces with vision features (image and video tokens)."""
    found = (getattr(config, "image_token_id", None), getattr(config, "video_token_id", None))
    return {int(i) for i in found if i is not None}


def say_once(message: str) -> None:
    """Log ``message`` (why a group falls back to whole-sequence scoring) the first time only."""
    if message not in _said:
        _said.add(message)
        log.warning(message)


def common_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """The length of the longest token prefix all ``rows`` share.

    >>> common_prefix_length([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]])
    2
    """
    if not rows:
        return 0
    first, n = rows[0], min(len(r) for r in rows)
    for i in range(n):
        t = first[i]
        if any(r[i] != t for r in rows[1:]):
            return i
    return n


def shared_cut(rows: Sequence[Sequence[int]], limit: int, image_token_ids: set[int]) -> int:
    """Where the shared prefix ends: at most the common prefix of ``rows`` and at most ``limit``.

    ``limit`` is the first position whose logits are needed (it must be computed in the suffix
    pass). Returns 0 when an image token (``image_token_ids``) would lie at or after the cut, so an
    image block is never split and the suffixes hold text only.

    >>> shared_cut([[1, 9, 9, 2, 3, 4], [1, 9, 9, 2, 3, 5]], limit=4, image_token_ids={9})
    4
    >>> shared_cut([[1, 9, 9, 2], [1, 9, 8, 2]], limit=4, image_token_ids={9})
    0
    """
    cut = min(common_prefix_length(rows), limit)
    if cut <= 0:
        return 0
    if image_token_ids and any(t in image_token_ids for r in rows for t in r[cut:]):
        return 0
    return cut


def common_suffix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """The length of the longest token suffix ``a`` and ``b`` share.

    >>> common_suffix_length([7, 1, 2, 3], [8, 8, 2, 3])
    2
    """
    n = 0
    for x, y in zip(reversed(a), reversed(b)):
        if x != y:
            break
        n += 1
    return n


def expand_rows(expanded_first: Sequence[int], rows: Sequence[Sequence[int]],
                image_ids: set[int]) -> list[list[int]] | None:
    """All ``rows`` as the processor would expand their images, from the first row's expansion only.

    ``rows`` are the tokenizer's ids of a group's texts, each image still one placeholder token;
    ``expanded_first`` is what the processor made of ``rows[0]`` with its images (each placeholder
    grown into the image's token block). Text tokenises the same on both sides of a special token,
    so row ``i`` expanded is ``expanded_first`` up to its last image token, then ``rows[i]`` from
    the matching point on. None when the rows differ before that point (they do not share the
    images' place), so the images' inputs are computed once for the whole group.

    >>> expand_rows([1, 9, 9, 9, 2, 3], [[1, 9, 2, 3], [1, 9, 2, 4, 5]], {9})
    [[1, 9, 9, 9, 2, 3], [1, 9, 9, 9, 2, 4, 5]]
    """
    last_image = max((i for i, t in enumerate(expanded_first) if t in image_ids), default=-1)
    tail = min(common_suffix_length(expanded_first, rows[0]), len(expanded_first) - 1 - last_image)
    head, k0 = list(expanded_first[: len(expanded_first) - tail]), len(rows[0]) - tail
    first = list(rows[0][:k0])
    if any(list(r[:k0]) != first for r in rows[1:]):
        return None
    return [head + list(r[k0:]) for r in rows]


def group_rows_once(rows: Sequence[Sequence[int]], first: dict | None, image_ids: set[int]
                    ) -> tuple[list[list[int]], dict[str, torch.Tensor]] | None:
    """A group's model rows and the images' inputs, the images processed for the first row only.

    ``rows``: the tokenizer's ids of the group's texts; ``first``: the processor's output for the
    first text with the images (None without images). Returns the rows with their image blocks
    expanded (:func:`expand_rows`) and the image inputs (the processor's tensors other than ids and
    mask), or None when the rows do not share the images' place.
    """
    if first is None:
        return [list(r) for r in rows], {}
    expanded = expand_rows(first["input_ids"][0].tolist(), rows, image_ids)
    if expanded is None:
        say_once("a group's texts differ before their images end; scored one sequence each")
        return None
    vision = {k: v for k, v in first.items() if k not in ("input_ids", "attention_mask") and isinstance(v, torch.Tensor)}
    return expanded, vision


def expand_cache(cache, n: int):
    """The prefix's key/value cache (batch 1) as a fresh cache of batch ``n`` (views of the prefix)."""
    if isinstance(cache, (tuple, list)):  # legacy format: ((key, value), ...) per layer
        return tuple(tuple(t.expand(n, *t.shape[1:]) for t in layer) for layer in cache)
    from transformers import DynamicCache

    return DynamicCache([(k.expand(n, *k.shape[1:]), v.expand(n, *v.shape[1:])) for k, v, *_ in cache])


def cache_keyword(module) -> str:
    """The name ``module.forward`` takes the key/value cache by (``cache`` in recent transformers)."""
    params = inspect.signature(module.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def output_cache(out):
    """The key/value cache a forward pass returned."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def suffix_batch(rows: Sequence[Sequence[int]], cut: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, mask)``: ``ids`` ``(n, S)`` the rows after ``cut``, right-padded; ``mask`` ``(n, cut + S)``.

    The mask covers the shared prefix (all ones) and the suffix; S is the longest suffix.
    """
    width = max(len(r) - cut for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), cut + width), dtype=torch.long)
    mask[:, :cut] = 1
    for i, r in enumerate(rows):
        ids[i, : len(r) - cut] = torch.tensor(r[cut:], dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


class SharedPrefix:
    """The shared prefix of a transformers VLM, run once; :meth:`suffix_hidden` runs suffixes on it.

    ``model`` is an ``...ForConditionalGeneration`` whose ``model`` attribute is the body returning
    hidden states and whose output embeddings are the output layer (the transformers layout).
    The prefix is ``row[:cut]`` with the images' inputs ``vision`` (the processor's tensors for
    that row; per-token ones such as ``mm_token_type_ids`` are cut too).
    """

    def __init__(self, model, row: Sequence[int], cut: int, vision: dict[str, torch.Tensor] | None = None):
        self.body = body(model)
        self.key = cache_keyword(self.body)
        param = next(self.body.parameters())
        inputs = {"input_ids": torch.tensor([list(row[:cut])]), "attention_mask": torch.ones(1, cut, dtype=torch.long)}
        for k, v in (vision or {}).items():
            per_token = v.dim() == 2 and v.shape[0] == 1 and v.shape[1] == len(row)
            inputs[k] = v[:, :cut] if per_token else v
        inputs = {k: (v.to(param.device, param.dtype) if torch.is_floating_point(v) else v.to(param.device))
                  for k, v in inputs.items()}
        if hasattr(self.body, "rope_deltas"):
            self.body.rope_deltas = None  # the prefix pass sets it afresh
        out = self.body(**inputs, use_cache=True)
        self.cache = output_cache(out)
        self.length = cut
        deltas = getattr(self.body, "rope_deltas", None)
        # Multimodal rotary positions: the next text position is max(prefix positions) + 1.
        self.next_position = cut + (int(deltas.reshape(-1)[0]) if deltas is not None else 0)

    def suffix_hidden(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(n, S, H)`` last hidden states of the suffixes ``ids`` ``(n, S)`` after the prefix.

        ``mask`` ``(n, P + S)`` covers prefix and suffix (:func:`suffix_batch`).
        """
        n, width = ids.shape
        device = self.cache_device
        positions = (self.next_position + torch.arange(width, device=device)).expand(n, width)
        out = self.body(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions,
                        use_cache=True, **{self.key: expand_cache(self.cache, n)})
        return out.last_hidden_state

    @property
    def cache_device(self) -> torch.device:
        return next(self.body.parameters()).device


def head_logits(model, hidden: torch.Tensor, token_ids: Sequence[int] | None = None) -> torch.Tensor:
    """``(..., V)`` logits of ``hidden`` ``(..., H)``, or ``(..., len(token_ids))`` of those tokens only."""
    head = model.get_output_embeddings()
    if token_ids is None:
        return head(hidden)
    idx = torch.tensor(list(token_ids), device=hidden.device)
    bias = head.bias[idx] if getattr(head, "bias", None) is not None else None
    return torch.nn.functional.linear(hidden, head.weight[idx], bias)


def chunked_token_logprobs(model, hidden: torch.Tensor, targets: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """``(K,)`` log-probability of ``targets`` ``(K,)`` under the logits of ``hidden`` ``(K, H)``.

    The vocabulary's logits exist for ``chunk`` positions at a time (``chunk x V`` floats), never
    for all ``K`` at once.
    """
    out = torch.empty(hidden.shape[0], device=hidden.device)
    for s in range(0, hidden.shape[0], chunk):
        logits = head_logits(model, hidden[s : s + chunk]).float()  # (c, V)
        out[s : s + chunk] = logits.gather(1, targets[s : s + chunk, None]).squeeze(1) - torch.logsumexp(logits, -1)
    return out


def target_logprobs(model, rows: Sequence[Sequence[int]], vision: dict[str, torch.Tensor], num_targets: Sequence[int],
                    image_ids: set[int], batch_size: int, pad_id: int = 0) -> list[torch.Tensor] | None:
    """Per row ``b``, ``(num_targets[b],)`` log-probabilities of its last ``num_targets[b]`` tokens given the rest.

    The rows (one group's, sharing ``vision``: the processor's image inputs for ``rows[0]``) run on
    their shared prefix; None when they have none (then score them whole).
    """
    if not verified(model) or min(num_targets) < 1:
        return None
    cut = shared_cut(rows, min(len(r) - n - 1 for r, n in zip(rows, num_targets)), image_ids)
    if cut == 0:
        say_once("a group has no shareable token prefix; scored one sequence each")
        return None
    prefix = SharedPrefix(model, rows[0], cut, vision)
    out = []
    for s in range(0, len(rows), batch_size):
        part, counts = rows[s : s + batch_size], num_targets[s : s + batch_size]
        ids, mask = suffix_batch(part, cut, pad_id)
        hidden = prefix.suffix_hidden(ids, mask)  # (n, S, H)
        b = torch.tensor([i for i, n in enumerate(counts) for _ in range(n)])
        t = torch.tensor([j for r, n in zip(part, counts) for j in range(len(r) - n - cut, len(r) - cut)])
        lp = chunked_token_logprobs(model, hidden[b, t - 1], ids[b, t].to(hidden.device))
        out.extend(lp.split(list(counts)))
    return out
