"""`rlvprm tiny-model`: write a tiny randomly initialised VLM of a real architecture to disk.

The model, a locally trained tokenizer and a processor load back through ``from_pretrained``; see
``rlvprm.models.tiny``. Sizes are for tests and the embedded world, not for real use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from rlvprm.config import field
from rlvprm.models.tiny import TinySize, build_tiny_model

log = logging.getLogger(__name__)


@dataclass
class TinyModelConfig:
    out: str = field(help="folder to write the model, tokenizer and processor to")
    arch: Literal["qwen2-vl", "qwen2.5-vl", "internvl"] = field("qwen2-vl", help="architecture")
    seed: int = field(0, help="seed of the random initialisation")
    hidden: int = field(128, min=2, help="text hidden size")
    layers: int = field(4, min=1, help="text decoder layers")
    heads: int = field(4, min=1, help="attention heads")
    kv_heads: int = field(2, min=1, help="key/value heads (grouped-query attention)")
    intermediate: int = field(512, min=1, help="text MLP width")
    vision_hidden: int = field(64, min=1, help="vision encoder width")
    vision_layers: int = field(2, min=1, help="vision encoder depth")
    vocab_size: int = field(512, min=300, help="byte-level BPE vocabulary size (at least 256 + special tokens)")
    white_is_zero: bool = field(False, help="normalise images so white maps to 0 (mean 1, std 0.5)")

    def __post_init__(self) -> None:
        if self.hidden % self.heads or self.heads % self.kv_heads:
            raise ValueError("hidden must be divisible by heads, and heads by kv_heads")
        if (self.hidden // self.heads) % 2:
            raise ValueError("head dim (hidden / heads) must be even for rotary embeddings")
        if self.vocab_size < 300:
            raise ValueError("vocab_size must be at least 300 (256 bytes plus special tokens)")


def main(cfg: TinyModelConfig) -> None:
    size = TinySize(cfg.hidden, cfg.layers, cfg.heads, cfg.kv_heads, cfg.intermediate,
                    cfg.vision_hidden, cfg.vision_layers, cfg.vocab_size)
    out = build_tiny_model(cfg.arch, cfg.out, seed=cfg.seed, size=size, white_is_zero=cfg.white_is_zero)
    log.info("wrote a tiny %s model to %s", cfg.arch, out)
    print(f"tiny-model: {cfg.arch} -> {out}")
