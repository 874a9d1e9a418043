"""Load a transformers VLM and its processor the ordinary way (local folder or hub id)."""

from __future__ import annotations

import torch
from transformers import AutoModelForImageTextToText

from rewards.backends.processors import load_processor


def load_vlm(
    path_or_id: str,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    trust_remote_code: bool = False,
    train: bool = False,
):
    """``(model, processor)`` for an image-text-to-text model; the model in eval mode unless ``train``."""
    model = AutoModelForImageTextToText.from_pretrained(path_or_id, dtype=dtype, trust_remote_code=trust_remote_code)
    model.to(device)
    model.train(train)
    processor = load_processor(path_or_id, trust_remote_code=trust_remote_code)
    return model, processor
