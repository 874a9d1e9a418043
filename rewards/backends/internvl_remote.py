"""The remote-code backend: the released VisualPRM-8B / -v1.1 checkpoints in InternVL's own format.

These checkpoints ship their model code (``InternVLChatModel``) beside the weights, so loading them
runs that code: ``ProcessRewardModel.from_pretrained(..., backend="internvl-remote")`` asks for
``trust_remote_code=True`` before it gets here, and constructing this backend is that opt-in.

The model has no processor; its input format (DESIGN.md section 9) is built here:

- **Images**: :func:`tile_image` resizes each image to the grid of ``S x S`` tiles (``S`` = 448 for
  the real model, read from the config) whose aspect ratio is closest to the image's, with 1 to
  ``max_num`` (12) tiles, cuts the tiles row-major and appends an ``S x S`` thumbnail of the whole
  image when there is more than one tile; ImageNet mean/std normalisation. Pure PIL + numpy.
- **Prompt**: :func:`render_prompt` writes the conversation in the format ``prm_prompt`` chooses
  (``rewards.backends.internvl_prompt``): by default the checkpoint's own template and system
  message, as its scoring code writes them; or the training prompt. Each image slot becomes
  ``<img>`` + ``<IMG_CONTEXT>`` x (``num_image_token`` x tiles of that image) + ``</img>``. The
  prompt is tokenised as one string with the tokenizer's default special tokens, as InternVL's
  ``chat()`` does.
- **Forward**: ``model(pixel_values, input_ids, attention_mask, image_flags)`` with one flag per
  tile; the ``+``/``-`` logits are read at the token before each assistant placeholder. The remote
  forward always runs the vision tower on ``pixel_values`` (it has no text-only branch), so a batch
  without any image calls ``model.language_model`` on the token ids directly, which is what the
  remote forward computes when no tile is flagged.

What is not verified, because no real checkpoint could be loaded here (no model hub):
- that the released remote code (written for transformers 4.x) loads and runs under this
  project's transformers 5;
- the tokenizer: whether it adds a BOS token (InternVL2.5-8B's InternLM2 sentencepiece tokenizer
  should, and the prompt keeps whatever the default adds, as ``chat()`` does); whether ``+`` and
  ``-`` are single tokens after ``<|im_start|>assistant\n`` and the header tokenises the same inside
  the prompt as alone (both checked, at load and at encode time, and they fail loudly);
- that tokenising the whole prompt at once matches the turn-by-turn tokenisation of InternVL's
  training pipeline;
- that a ``(tiles, 1)`` long ``image_flags`` suits every released version (the public forward
  squeezes the last axis and keeps tiles whose flag equals 1);
- the tile count the checkpoints were trained with (``max_num`` defaults to the inference value 12).
The backend was tested only against a tiny remote-code model with the same forward signature
(``tests/rewards/backends/remote_internvl_fixture.py``).

Left out: video; InternVL markup inside question or step text (an ``<IMG_CONTEXT>`` there is
rejected because the image-token count no longer matches; ``<img>`` alone is not caught); and
computing logits only at the read positions (the remote forward returns them for every token, so
a batch briefly holds ``B x L x vocab`` logits).
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from rewards.backends.base import (
    EncodedBatch,
    InputError,
    answer_token_ids,
    check_markup,
    context_limit,
    find_read_positions,
    pad_right,
    special_token_texts,
)
from rewards.backends.internvl_prompt import ChatFormat, prompt_format, training_format
from rewards.conversation import Conversation, ImageSlot
from rewards.images import to_rgb

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMG_START, IMG_END, IMG_CONTEXT = "<img>", "</img>", "<IMG_CONTEXT>"


def choose_grid(width: int, height: int, tile: int, min_num: int = 1, max_num: int = 12) -> tuple[int, int]:
    """The tile grid ``(cols, rows)`` for an image of ``width x height`` pixels.

    Among grids with ``min_num <= cols * rows <= max_num``, the one whose aspect ratio is closest to
    the image's; on a tie the grid with more tiles wins when the image's area is more than half of
    that grid's pixel area (so a large image is not shrunk into few tiles).

    >>> choose_grid(896, 448, 448), choose_grid(448, 1344, 448), choose_grid(1000, 1000, 448)
    ((2, 1), (1, 3), (3, 3))
    """
    aspect = width / height
    area = width * height
    grids = sorted(
        {(c, r) for c in range(1, max_num + 1) for r in range(1, max_num + 1) if min_num <= c * r <= max_num},
        key=lambda g: (g[0] * g[1], g[0]),
    )
    best, best_diff = (1, 1), float("inf")
    for cols, rows in grids:
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best, best_diff = (cols, rows), diff
        elif diff == best_diff and area > 0.5 * tile * tile * cols * rows:
            best = (cols, rows)
    return best


def _normalise(image: Image.Image) -> np.ndarray:
    """``(3, H, W)`` float32: scaled to [0, 1], then ImageNet mean/std per channel."""
    x = np.asarray(image, dtype=np.float32) / 255.0
    x = (x - np.asarray(IMAGENET_MEAN, dtype=np.float32)) / np.asarray(IMAGENET_STD, dtype=np.float32)
    return x.transpose(2, 0, 1)


def tile_image(image: Image.Image, tile: int = 448, max_num: int = 12, use_thumbnail: bool = True) -> torch.Tensor:
    """InternVL's dynamic tiling: ``(num_tiles, 3, tile, tile)`` float32, normalised.

    ``num_tiles`` is ``cols * rows`` from :func:`choose_grid`, plus one thumbnail (the whole image
    resized to ``tile x tile``) when ``use_thumbnail`` and the grid has more than one tile.
    """
    image = to_rgb(image)
    cols, rows = choose_grid(image.width, image.height, tile, 1, max_num)
    resized = _normalise(image.resize((tile * cols, tile * rows), Image.Resampling.BICUBIC))
    tiles = [resized[:, r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] for r in range(rows) for c in range(cols)]
    if use_thumbnail and len(tiles) > 1:
        tiles.append(_normalise(image.resize((tile, tile), Image.Resampling.BICUBIC)))
    return torch.from_numpy(np.ascontiguousarray(np.stack(tiles)))


def image_slots(conv: Conversation) -> list[int]:
    """The image indices of ``conv``'s slots, in the order they appear in the text."""
    return [s.index for t in conv.turns for s in t.segments if isinstance(s, ImageSlot)]


def render_prompt(
    conv: Conversation, tiles_per_image: Sequence[int], num_image_token: int, chat: ChatFormat | None = None
) -> str:
    """The conversation as one prompt string in ``chat``'s format (default: the training format),
    image ``k`` as ``tiles_per_image[k]`` tiles."""
    chat = chat or training_format()
    system, turns = "", []
    for turn in conv.turns:
        content = "".join(
            IMG_START + IMG_CONTEXT * (num_image_token * tiles_per_image[s.index]) + IMG_END
            if isinstance(s, ImageSlot)
            else s
            for s in turn.segments
        )
        if turn.role == "system":
            system = content
        else:
            turns.append((turn.role, content))
    return chat.render(system, turns)


def _config_tile_size(config) -> int:
    size = getattr(config, "force_image_size", None)
    if not size:
        vision = getattr(config, "vision_config", None)
        size = vision.get("image_size") if isinstance(vision, dict) else getattr(vision, "image_size", None)
    if isinstance(size, (list, tuple)):
        size = size[0]
    if not size:
        raise ValueError("the model config has neither force_image_size nor vision_config.image_size")
    return int(size)


class InternVLRemoteBackend:
    """Score with an InternVL remote-code model (``InternVLChatModel``) and its tokenizer."""

    # The released checkpoints' own code splits with empty pieces kept (rewards.steps); a
    # ProcessRewardModel on this backend splits that way unless told otherwise.
    default_step_split = "released"

    def __init__(
        self,
        model,
        tokenizer,
        max_length: int | None = None,
        max_num: int = 12,
        use_thumbnail: bool | None = None,
        prm_prompt: str = "checkpoint",
    ):
        """``prm_prompt``: ``checkpoint`` (the prompt the checkpoint's own code writes) or ``training``
        (the prompt VisualPRM400K was trained with); ``rewards.backends.internvl_prompt``."""
        self.model = model
        self.tokenizer = tokenizer
        # No max_length: the model's own context is the limit, so an over-long record is an error.
        self.max_length = max_length if max_length is not None else context_limit(model.config)
        # The image markup is written by render_prompt; in a record's text it would fake image runs.
        self.markers = special_token_texts(tokenizer, extra=("<img>", "</img>", IMG_CONTEXT))
        self.max_num = max_num
        config = model.config
        self.tile = _config_tile_size(config)
        self.use_thumbnail = getattr(config, "use_thumbnail", True) if use_thumbnail is None else use_thumbnail
        self.num_image_token = int(model.num_image_token)
        self.chat = prompt_format(model, prm_prompt)
        self.img_context_id = tokenizer.convert_tokens_to_ids(IMG_CONTEXT)
        if self.img_context_id is None or self.img_context_id == tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {IMG_CONTEXT} token")
        self.header_ids, self.good_id, self.bad_id = answer_token_ids(tokenizer, self.chat.assistant_header)
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (tokenizer.eos_token_id or 0)

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        max_length: int | None = None,
        max_num: int = 12,
        revision: str | None = None,
        token: str | bool | None = None,
        prm_prompt: str = "checkpoint",
    ) -> "InternVLRemoteBackend":
        """Load the checkpoint's own model code and tokenizer (runs remote code), in eval mode."""
        from transformers import AutoModel, AutoTokenizer

        from rewards.scorer_files import hub_kwargs

        hub = hub_kwargs(revision, token)
        model = AutoModel.from_pretrained(path_or_id, trust_remote_code=True, dtype=dtype, **hub)
        model.to(device).eval()
        tokenizer = AutoTokenizer.from_pretrained(path_or_id, trust_remote_code=True, use_fast=False, **hub)
        return cls(model, tokenizer, max_length=max_length, max_num=max_num, prm_prompt=prm_prompt)

    @property
    def prompt_info(self) -> dict:
        """Which prompt this backend writes (recorded in every scores file's metadata)."""
        return self.chat.describe()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def tile_image(self, image: Image.Image) -> torch.Tensor:
        """``(num_tiles, 3, S, S)`` for one image, with this model's tile size and options."""
        return tile_image(image, self.tile, self.max_num, self.use_thumbnail)

    def encode(
        self, conversations: Sequence[Conversation], images: Sequence[Sequence[Image.Image]]
    ) -> EncodedBatch:
        """Token ids, tiles and read positions; conversations with and without images may mix.

        ``inputs`` holds ``input_ids`` and ``attention_mask`` ``(B, L)``, and when any image is
        present ``pixel_values`` ``(N, 3, S, S)`` (all tiles of all conversations, in the order
        their ``<IMG_CONTEXT>`` runs appear) and ``image_flags`` ``(N, 1)``.
        """
        if len(images) != len(conversations):
            raise InputError(f"{len(conversations)} conversations but {len(images)} image lists")
        rows, read, tiles = [], [], []
        answers = {self.good_id, self.bad_id}
        for i, (conv, imgs) in enumerate(zip(conversations, images)):
            check_markup(conv, self.markers)
            slots = image_slots(conv)
            if sorted(slots) != list(range(len(imgs))):
                raise InputError(f"conversation {i} has image slots {slots} but {len(imgs)} image(s)")
            pix = {k: self.tile_image(img) for k, img in enumerate(imgs)}
            text = render_prompt(conv, [pix[k].shape[0] for k in range(len(imgs))], self.num_image_token, self.chat)
            ids = list(self.tokenizer(text)["input_ids"])
            if self.max_length is not None and len(ids) > self.max_length:
                raise InputError(f"conversation {i} has {len(ids)} tokens, over max_length={self.max_length}")
            expected = self.num_image_token * sum(p.shape[0] for p in pix.values())
            found = ids.count(self.img_context_id)
            if found != expected:
                raise InputError(
                    f"conversation {i} has {found} {IMG_CONTEXT} tokens for {expected} image tokens: "
                    "the text probably contains InternVL's image markup"
                )
            try:
                read.append(find_read_positions(ids, self.header_ids, answers, conv.num_steps))
            except InputError as e:
                raise InputError(f"conversation {i}: {e}") from None
            rows.append(ids)
            tiles.extend(pix[k] for k in slots)
        input_ids, attention_mask = pad_right(rows, self.pad_id)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if tiles:
            pixel_values = torch.cat(tiles)
            inputs["pixel_values"] = pixel_values
            # The remote forward squeezes the last axis and keeps tiles whose flag is 1; (N, 1)
            # stays 1-D after the squeeze even for a single tile.
            inputs["image_flags"] = torch.ones(pixel_values.shape[0], 1, dtype=torch.long)
        return EncodedBatch(inputs, read, [len(r) for r in rows])

    def step_logits(self, batch: EncodedBatch) -> torch.Tensor:
        """``(B, S, 2)`` float logits of ``+`` and ``-`` at each read position (padded steps are 0).

        Notation: B conversations, S the most steps in any of them.
        """
        device = self.device
        input_ids = batch.inputs["input_ids"].to(device)
        attention_mask = batch.inputs["attention_mask"].to(device)
        if "pixel_values" in batch.inputs:
            self.model.img_context_token_id = self.img_context_id
            out = self.model(
                pixel_values=batch.inputs["pixel_values"].to(device, self.model.dtype),
                input_ids=input_ids,
                attention_mask=attention_mask,
                image_flags=batch.inputs["image_flags"].to(device),
                use_cache=False,
                return_dict=True,
            )
        else:
            out = self.model.language_model(
                input_ids=input_ids, attention_mask=attention_mask, use_cache=False, return_dict=True
            )
        rows = torch.tensor([i for i, r in enumerate(batch.read_positions) for _ in r], dtype=torch.long)
        cols = torch.tensor([p for r in batch.read_positions for p in r], dtype=torch.long)
        picked = out.logits[rows.to(device), cols.to(device)][:, [self.good_id, self.bad_id]].float()  # (K, 2)
        steps = max(len(r) for r in batch.read_positions)
        result = torch.zeros(len(batch.read_positions), steps, 2, device=picked.device)
        k = 0
        for i, r in enumerate(batch.read_positions):
            result[i, : len(r)] = picked[k : k + len(r)]
            k += len(r)
        return result

    @torch.inference_mode()
    def group_step_logits(self, conversations: Sequence[Conversation], images: Sequence[Image.Image],
                          batch_size: int) -> tuple[torch.Tensor, list[int]] | None:
        """``((N, S, 2), lengths)``: step logits like :meth:`step_logits` for a group sharing ``images``, on its shared prefix.

        The prefix's embeddings are built as the remote ``generate()`` builds them
        (``extract_feature`` of the first conversation's tiles put at its ``<IMG_CONTEXT>`` tokens)
        and run through ``language_model`` once; the suffixes run on its cache
        (``rewards.shared_prefix``). None (score whole) when the group shares no prefix.
        """
        from rewards.shared_prefix import cache_keyword, expand_cache, output_cache, say_once, shared_cut, suffix_batch

        batch = self.encode(conversations, [images] * len(conversations))
        rows = [batch.inputs["input_ids"][i, :n].tolist() for i, n in enumerate(batch.lengths)]
        cut = shared_cut(rows, min(r[0] for r in batch.read_positions), {self.img_context_id})
        if cut == 0:
            say_once("a group has no shareable token prefix; scored one sequence each")
            return None
        lm, device = self.model.language_model, self.device
        ids = torch.tensor([rows[0][:cut]], device=device)
        embeds = lm.get_input_embeddings()(ids)
        if "pixel_values" in batch.inputs:
            tiles = rows[0].count(self.img_context_id) // self.num_image_token
            vit = self.model.extract_feature(batch.inputs["pixel_values"][:tiles].to(device, self.model.dtype))
            embeds[ids == self.img_context_id] = vit.reshape(-1, embeds.shape[-1]).to(embeds.dtype)
        key = cache_keyword(lm)
        cache = output_cache(lm(inputs_embeds=embeds, attention_mask=torch.ones_like(ids), use_cache=True, return_dict=True))
        result = torch.zeros(len(rows), max(len(r) for r in batch.read_positions), 2, device=device)
        for s in range(0, len(rows), batch_size):
            part = rows[s : s + batch_size]
            ids, mask = suffix_batch(part, cut, self.pad_id)
            positions = (cut + torch.arange(ids.shape[1])).expand(len(part), -1)
            out = lm(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                     use_cache=True, return_dict=True, **{key: expand_cache(cache, len(part))})
            for i, read in enumerate(batch.read_positions[s : s + batch_size]):
                at = torch.tensor(read, device=device) - cut
                result[s + i, : len(read)] = out.logits[i, at][:, [self.good_id, self.bad_id]].float()
        return result, [len(r) for r in rows]  # each row's whole input, as step_logits' lengths count it
