"""The model a PRM is trained from, what is trainable in it, and how it is saved for scoring.

- Loaded through ``AutoModelForImageTextToText`` from ``--init`` (any transformers image-text-to-text
  model; DESIGN.md section 7 initialises the toy PRM from the trained policy). The processor is the
  init checkpoint's (``rewards.backends.processors.load_processor``).
- ``freeze_vision_tower`` freezes the vision encoder and keeps its projector into the language model
  trainable (InternVL's recipe: ViT frozen, MLP and LLM trained). Qwen2-VL's projector
  (``visual.merger``) lives inside its vision module and stays trainable too.
- LoRA (peft) adds adapters to the modules named in ``lora_target_modules`` (names or a regex,
  peft's rules). Saving merges the adapters into the weights, so the saved folder is an ordinary
  checkpoint that ``ProcessRewardModel.from_pretrained`` loads. Checkpoints written during a LoRA
  run hold the adapter (for resuming), not a merged model.

Left out: merging LoRA adapters of a model sharded by DeepSpeed ZeRO-3 (gather the weights or train
LoRA under ZeRO-2), and QLoRA.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText

from rewards.backends.processors import load_processor, save_processor

log = logging.getLogger(__name__)

# Module-name pieces of vision encoders across transformers VLMs, and of their projectors.
VISION_MODULES = ("visual.", "vision_tower.", "vision_model.", "image_encoder.")
PROJECTOR_MODULES = ("merger.", "multi_modal_projector.", "connector.", "mm_projector.")


def load_model(path: str, dtype: torch.dtype, trust_remote_code: bool = False):
    """``(model, processor)`` of ``path`` for training (no device move: the Trainer places it)."""
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code)
    processor = load_processor(path, trust_remote_code=trust_remote_code)
    return model, processor


def freeze_vision_tower(model) -> int:
    """Stop gradients into the vision encoder (projector excluded); returns how many tensors froze."""
    frozen = 0
    for name, param in model.named_parameters():
        if any(v in name for v in VISION_MODULES) and not any(p in name for p in PROJECTOR_MODULES):
            param.requires_grad_(False)
            frozen += 1
    if not frozen:
        raise ValueError(f"freeze_vision_tower: no parameter of {type(model).__name__} is under a vision "
                         f"module ({', '.join(VISION_MODULES)})")
    return frozen


def add_lora(model, r: int, alpha: int, dropout: float, target_modules: list[str] | str):
    """Wrap ``model`` with LoRA adapters; every other weight is frozen."""
    from peft import LoraConfig, get_peft_model

    targets = target_modules[0] if isinstance(target_modules, list) and len(target_modules) == 1 and \
        any(c in target_modules[0] for c in "*.|()[]") else target_modules  # one regex, as peft takes it
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none")
    return get_peft_model(model, config)


def trainable_summary(model) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"parameters": total, "trainable_parameters": trainable}


def save_for_scoring(trainer, processor, out_dir: str | Path, lora: bool) -> None:
    """Write a folder that ``from_pretrained`` loads: the (merged) model and the processor."""
    out = Path(out_dir)
    if lora:
        if trainer.is_deepspeed_enabled and trainer.accelerator.state.deepspeed_plugin.zero_stage == 3:
            raise NotImplementedError("merging LoRA adapters under ZeRO-3 is not supported: train LoRA under ZeRO-2")
        if trainer.args.should_save:
            merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
            merged.save_pretrained(out)
    else:
        trainer.save_model(str(out))  # gathers ZeRO-3 shards when the DeepSpeed config allows it
    if trainer.args.should_save:
        save_processor(processor, out)
