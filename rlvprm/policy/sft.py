"""Supervised fine-tuning of a vision-language policy on (image, question, solution) rows.

Runs on transformers' ``Trainer``. The prompt is the policy's own chat prompt
(``rlvprm.generation.render_prompt``, the one sampling uses); the loss covers only the assistant's
answer and its end-of-turn token. ``target="first_step"`` trains on the first step alone (the
reading step in the visual-arith world): DESIGN.md section 7 found that a tiny model learns to read
digits only with such a first stage, before full solutions.

Left out: packing, LoRA for the policy (use ``peft`` on the model before calling), multi-GPU
launch recipes for SFT (the Trainer supports ``accelerate launch`` unchanged).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset
from transformers import Trainer, TrainerCallback, TrainingArguments

from rewards.backends.hf import assistant_header
from rewards.steps import split_steps
from rlvprm.generation import render_prompt

log = logging.getLogger(__name__)

IGNORE = -100


@dataclass
class SFTRow:
    question: str
    images: list[Image.Image]
    solution: str


class SFTDataset(Dataset):
    def __init__(self, rows: Sequence[SFTRow], target: str = "full"):
        if target not in ("full", "first_step"):
            raise ValueError("target must be 'full' or 'first_step'")
        self.rows = list(rows)
        self.target = target

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> SFTRow:
        row = self.rows[i]
        if self.target == "first_step":
            steps = split_steps(row.solution)
            return SFTRow(row.question, row.images, steps[0].text if steps else row.solution)
        return row


class SFTCollator:
    """Processor inputs for a batch of rows, with labels only on the answer tokens."""

    def __init__(self, processor, max_length: int | None = None):
        self.processor = processor
        tok = processor.tokenizer
        self.header = tok.encode(assistant_header(processor), add_special_tokens=False)
        self.end_text = tok.eos_token
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.max_length = max_length

    def __call__(self, rows: Sequence[SFTRow]) -> dict[str, torch.Tensor]:
        texts = [render_prompt(self.processor, r.question, len(r.images)) + r.solution + self.end_text for r in rows]
        kwargs = {}
        if any(r.images for r in rows):
            kwargs["images"] = [r.images for r in rows]
        enc = self.processor(text=texts, padding=True, padding_side="right", return_tensors="pt", **kwargs)
        ids, mask = enc["input_ids"], enc["attention_mask"]
        labels = torch.full_like(ids, IGNORE)
        for i in range(len(rows)):
            n = int(mask[i].sum())
            if self.max_length is not None and n > self.max_length:
                raise ValueError(f"SFT row {i} has {n} tokens, over max_length={self.max_length}")
            start = _after_last(ids[i, :n].tolist(), self.header)
            labels[i, start:n] = ids[i, start:n]
        enc["labels"] = labels
        return dict(enc)


def _after_last(ids: list[int], header: list[int]) -> int:
    """Index right after the last occurrence of ``header`` in ``ids``."""
    h = len(header)
    for i in range(len(ids) - h, -1, -1):
        if ids[i : i + h] == header:
            return i + h
    raise ValueError("no assistant header in the SFT sequence")


class _LossLog(TrainerCallback):
    def __init__(self, stage: str, history: list):
        self.stage, self.history = stage, history

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.history.append({"stage": self.stage, "step": state.global_step, "loss": float(logs["loss"])})


@dataclass
class SFTStage:
    name: str
    target: str  # "full" | "first_step"
    max_steps: int
    rows: Sequence[SFTRow] | None = None  # this stage's rows (default: the rows given to train_sft)
    learning_rate: float | None = None  # this stage's peak learning rate (default: train_sft's)


def train_sft(
    model,
    processor,
    rows: Sequence[SFTRow],
    stages: Sequence[SFTStage],
    out_dir: str | Path,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    weight_decay: float = 0.1,
    warmup_steps: int = 30,
    max_grad_norm: float = 1.0,
    seed: int = 0,
    logging_steps: int = 25,
    report_to: str | list[str] = "none",
    use_cpu: bool | None = None,
    bf16: bool = False,
    progress: bool = True,
) -> dict:
    """Train ``model`` through ``stages`` in order; returns the loss history and timings."""
    history: list[dict] = []
    timings = {}
    collator = SFTCollator(processor)
    if use_cpu is None:
        use_cpu = not torch.cuda.is_available()
    for stage in stages:
        if stage.max_steps <= 0:
            continue
        args = TrainingArguments(
            output_dir=str(Path(out_dir) / f"trainer-{stage.name}"),
            per_device_train_batch_size=batch_size,
            learning_rate=stage.learning_rate or learning_rate,
            weight_decay=weight_decay,
            warmup_steps=min(warmup_steps, max(1, stage.max_steps // 5)),
            max_grad_norm=max_grad_norm,
            max_steps=stage.max_steps,
            lr_scheduler_type="cosine",
            logging_steps=max(1, min(logging_steps, stage.max_steps // 10)),
            save_strategy="no",
            report_to=report_to,
            run_name=f"sft-{stage.name}",
            seed=seed,
            data_seed=seed,
            use_cpu=use_cpu,
            bf16=bf16,
            remove_unused_columns=False,
            dataloader_num_workers=0,
            disable_tqdm=not progress,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=SFTDataset(rows if stage.rows is None else stage.rows, stage.target),
            data_collator=collator,
            callbacks=[_LossLog(stage.name, history)],
        )
        t0 = time.time()
        result = trainer.train()
        timings[stage.name] = time.time() - t0
        log.info("SFT stage %s: %d steps, final loss %.4f, %.0f s", stage.name, stage.max_steps,
                 result.training_loss, timings[stage.name])
        if not math.isfinite(result.training_loss):
            raise RuntimeError(f"SFT stage {stage.name} diverged (loss {result.training_loss})")
    model.eval()
    return {"history": history, "seconds": timings}
