"""Tiny, randomly initialised VLMs of real architectures, built entirely on this machine.

``build_tiny_model(arch, out_dir)`` writes a model, a byte-level BPE tokenizer trained on a small
built-in corpus, an image processor and a chat template to ``out_dir``; everything loads back with
the ordinary ``from_pretrained`` path (``rewards.load_vlm``). Tests, the embedded default world and
users' own CI use these in place of hub checkpoints, which this project cannot download at test time.

Architectures: ``qwen2-vl``, ``qwen2.5-vl`` and ``internvl`` (the transformers-native InternVL).
The tokenizer gives ``+`` and ``-`` their own single tokens (byte-level BPE keeps every byte as a
token, and the pre-tokenizer isolates punctuation) and round-trips any text.

Left out: video processors. No CPU build of torchvision installs beside the CPU torch here, and the
video processors need it, so the saved processors carry only an image processor and a tokenizer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from rewards.backends.processors import make_processor, save_processor
from rewards.conversation import SYSTEM_PROMPT

ARCHES = ("qwen2-vl", "qwen2.5-vl", "internvl")

# Qwen2's split rule: letters runs, single digits, punctuation runs, whitespace.
_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

CHATML_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN_VISION_SPECIALS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
INTERNVL_SPECIALS = ["<img>", "</img>", "<IMG_CONTEXT>", "<video>"]

# A chat template of rlvprm's own: ChatML turns, content given as a string or as a list of
# text/image items. IMAGE_MARKUP is replaced per architecture.
_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ 'IMAGE_MARKUP' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
_IMAGE_MARKUP = {
    "qwen2-vl": "<|vision_start|><|image_pad|><|vision_end|>",
    "qwen2.5-vl": "<|vision_start|><|image_pad|><|vision_end|>",
    "internvl": "<IMG_CONTEXT>",
}

# The corpus the tiny tokenizer's merges are learned from: the PRM's own interface text plus
# ordinary maths prose. Extra text (a task's solutions) can be added with `corpus=`.
_BASE_CORPUS = [
    SYSTEM_PROMPT,
    "### Question:\n<image>\nWhat is the sum of the numbers in the image?\n\n### Solution Process:\n",
    "The numbers are 3, 7 and 5.\n\n3 + 7 = 10.\n\n10 + 5 = 15.\n\nThe answer is \\boxed{15}.",
    "Answer: B. The image shows a triangle with sides 3, 4 and 5, so the area is 6.",
    "First, we read the values from the chart. Then we compute the difference and the ratio.",
    "Let x be the unknown. Then 2x + 3 = 11, so x = 4. Therefore the final answer is \\boxed{4}.",
    "Step 1: count the squares. Step 2: multiply by two. Step 3: subtract one.",
    "The quick brown fox jumps over the lazy dog. A, B, C, D: choose the correct option.",
]


@dataclass
class TinySize:
    """Model width for a tiny build (DESIGN.md section 7 measured the default on this CPU)."""

    hidden: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 512
    vision_hidden: int = 64
    vision_layers: int = 2
    vocab_size: int = 512


def build_tokenizer(arch: str, corpus: list[str] | None = None, vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with ChatML and the architecture's vision special tokens."""
    specials = CHATML_SPECIALS + (INTERNVL_SPECIALS if arch == "internvl" else QWEN_VISION_SPECIALS)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_BASE_CORPUS + list(corpus or []), trainer=trainer)
    extra: dict | list
    if arch == "internvl":
        extra = {
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<video>",
        }
    else:
        extra = QWEN_VISION_SPECIALS
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=extra,
        chat_template=_CHAT_TEMPLATE.replace("IMAGE_MARKUP", _IMAGE_MARKUP[arch]),
        model_max_length=8192,
        clean_up_tokenization_spaces=False,
    )


def _text_config(tok: PreTrainedTokenizerFast, size: TinySize, **extra) -> dict:
    """The decoder's config, shared by every architecture."""
    return dict(
        vocab_size=len(tok),
        hidden_size=size.hidden,
        intermediate_size=size.intermediate,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.kv_heads,
        max_position_embeddings=4096,
        bos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **extra,
    )


def _qwen_config(arch: str, tok: PreTrainedTokenizerFast, size: TinySize):
    head_dim = size.hidden // size.heads
    # mrope sections (temporal, height, width) must sum to head_dim / 2.
    half = head_dim // 2
    mrope = [half - 2 * (half // 3), half // 3, half // 3]
    text = _text_config(
        tok, size, rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope}
    )
    ids = dict(
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"),
    )
    if arch == "qwen2-vl":
        from transformers import Qwen2VLConfig

        vision = dict(
            depth=size.vision_layers,
            embed_dim=size.vision_hidden,
            hidden_size=size.hidden,
            num_heads=max(1, size.vision_hidden // 32),
            mlp_ratio=2,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
        )
        return Qwen2VLConfig(text_config=text, vision_config=vision, **ids)
    from transformers import Qwen2_5_VLConfig

    vision = dict(
        depth=size.vision_layers,
        hidden_size=size.vision_hidden,
        out_hidden_size=size.hidden,
        intermediate_size=2 * size.vision_hidden,
        num_heads=max(1, size.vision_hidden // 32),
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=56,
        fullatt_block_indexes=[size.vision_layers - 1],
    )
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids)


def _internvl_config(tok: PreTrainedTokenizerFast, size: TinySize, image_size: int):
    from transformers import InternVLConfig

    text = _text_config(tok, size, model_type="qwen2", tie_word_embeddings=False)
    vision = dict(
        hidden_size=size.vision_hidden,
        num_hidden_layers=size.vision_layers,
        num_attention_heads=max(1, size.vision_hidden // 32),
        intermediate_size=2 * size.vision_hidden,
        image_size=[image_size, image_size],
        patch_size=[14, 14],
    )
    return InternVLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=internvl_seq_length(image_size),
        downsample_ratio=0.5,
        tie_word_embeddings=False,
    )


def internvl_seq_length(image_size: int, patch: int = 14, downsample: float = 0.5) -> int:
    return int((image_size // patch) ** 2 * downsample**2)


def build_processor(arch: str, tok: PreTrainedTokenizerFast, image_size: int = 56, white_is_zero: bool = False):
    """The architecture's processor with a PIL image processor and no video processor.

    ``white_is_zero`` normalises with mean 1 / std 0.5, so a white background maps to 0 (what made
    digits learnable for a tiny model, DESIGN.md section 7); otherwise each architecture's usual
    CLIP / ImageNet statistics are used.
    """
    norm = {"image_mean": [1.0] * 3, "image_std": [0.5] * 3} if white_is_zero else {}
    if arch in ("qwen2-vl", "qwen2.5-vl"):
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        # Keep images small: at most 16 x 16 patches of 14 px.
        ip = Qwen2VLImageProcessorPil(
            size={"shortest_edge": 28 * 28, "longest_edge": 28 * 28 * 64}, **norm
        )
        if arch == "qwen2-vl":
            from transformers import Qwen2VLProcessor as Proc
        else:
            from transformers import Qwen2_5_VLProcessor as Proc
        return make_processor(Proc, ip, tok, chat_template=tok.chat_template)
    from transformers import InternVLProcessor
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    ip = GotOcr2ImageProcessorPil(
        size={"height": image_size, "width": image_size},
        crop_to_patches=True,
        min_patches=1,
        max_patches=4,
        **(norm or {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}),
    )
    return make_processor(
        InternVLProcessor, ip, tok, chat_template=tok.chat_template, image_seq_length=internvl_seq_length(image_size)
    )


def build_tiny_model(
    arch: str,
    out_dir: str | Path,
    seed: int = 0,
    size: TinySize | None = None,
    corpus: list[str] | None = None,
    white_is_zero: bool = False,
    image_size: int = 56,
) -> Path:
    """Write a tiny randomly initialised ``arch`` model with tokenizer and processor to ``out_dir``."""
    if arch not in ARCHES:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHES)}")
    size = size or TinySize()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(arch, corpus, size.vocab_size)
    torch.manual_seed(seed)
    if arch == "internvl":
        from transformers import InternVLForConditionalGeneration

        config = _internvl_config(tok, size, image_size)
        model = InternVLForConditionalGeneration(config)
    else:
        from transformers import AutoModelForImageTextToText

        config = _qwen_config(arch, tok, size)
        model = AutoModelForImageTextToText.from_config(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    processor = build_processor(arch, tok, image_size=image_size, white_is_zero=white_is_zero)
    save_processor(processor, out)
    (out / "rlvprm_tiny.json").write_text(json.dumps({"arch": arch, "seed": seed, **size.__dict__}, indent=1))
    return out
