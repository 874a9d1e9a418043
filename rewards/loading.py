"""Load a transformers VLM and its processor the ordinary way (local folder or hub id)."""

from __future__ import annotations

import torch
from transformers import AutoModelForImageTextToText

from rewards.backends.processors import load_processor
from rewards.scorer_files import hub_kwargs


def load_vlm(
    path_or_id: str,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    trust_remote_code: bool = False,
    train: bool = False,
    revision: str | None = None,
    token: str | bool | None = None,
):
    """``(model, processor)`` for an image-text-to-text model; the model in eval mode unless ``train``.

    ``revision`` and ``token`` apply to a hub id, as in ``from_pretrained``.
    """
    hub = hub_kwargs(revision, token)
    model = AutoModelForImageTextToText.from_pretrained(path_or_id, dtype=dtype, trust_remote_code=trust_remote_code, **hub)
    model.to(device)
    model.train(train)
    processor = load_processor(path_or_id, trust_remote_code=trust_remote_code, **hub)
    return model, processor
