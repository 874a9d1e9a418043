"""The visual-arith toy policy: a tiny Qwen2-VL trained by SFT on the world's reference solutions.

Two stages (DESIGN.md section 7): the reading step alone, then whole solutions. The tokenizer's
merges are learned from the world's own text, images are normalised so white maps to 0, and every
digit sits in its own 28-px cell (one merged vision token). ``train_toy_policy`` writes a folder
that loads with ``from_pretrained`` plus ``train_info.json`` (stages, seconds, loss history).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from PIL import Image

from rewards.loading import load_vlm
from rlvprm.data.jsonl import read_jsonl
from rlvprm.models.tiny import TinySize, build_tiny_model
from rlvprm.policy.sft import SFTRow, SFTStage, train_sft


def load_rows(path: str | Path, image_root: str | Path | None = None, limit: int | None = None):
    """World rows of a jsonl file and their images (opened as RGB)."""
    path = Path(path)
    root = Path(image_root) if image_root else path.parent
    rows, images = [], []
    for _, row in read_jsonl(path):
        if limit is not None and len(rows) >= limit:
            break
        paths = row["image"] if isinstance(row["image"], list) else [row["image"]]
        imgs = []
        for p in paths:
            with Image.open(root / p) as im:
                imgs.append(im.convert("RGB"))
        rows.append(row)
        images.append(imgs)
    return rows, images


def train_toy_policy(
    world_dir: str | Path,
    out_dir: str | Path,
    read_steps: int = 600,
    full_steps: int = 900,
    num_sft: int | None = None,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    seed: int = 0,
    size: TinySize | None = None,
    progress: bool = True,
    report_to: str = "none",
) -> dict:
    """Build and train the toy policy from ``world_dir/sft.jsonl``; returns ``train_info``."""
    world_dir, out_dir = Path(world_dir), Path(out_dir)
    rows, images = load_rows(world_dir / "sft.jsonl", world_dir, limit=num_sft)
    corpus = [r["question"] + "\n" + r["solution"] for r in rows[:2000]]
    size = size or TinySize(vocab_size=400)
    build_tiny_model("qwen2-vl", out_dir, seed=seed, size=size, corpus=corpus, white_is_zero=True)
    model, processor = load_vlm(str(out_dir), train=True)
    sft_rows = [SFTRow(r["question"], imgs, r["solution"]) for r, imgs in zip(rows, images)]
    stages = [SFTStage("read", "first_step", read_steps), SFTStage("full", "full", full_steps)]
    t0 = time.time()
    result = train_sft(model, processor, sft_rows, stages, out_dir / "trainer", batch_size=batch_size,
                       learning_rate=learning_rate, seed=seed, progress=progress, report_to=report_to)
    info = {
        "seconds": time.time() - t0, "stage_seconds": result["seconds"], "history": result["history"],
        "read_steps": read_steps, "full_steps": full_steps, "batch_size": batch_size,
        "learning_rate": learning_rate, "num_sft": len(rows), "seed": seed,
        "threads": torch.get_num_threads(), "parameters": sum(p.numel() for p in model.parameters()),
    }
    model.save_pretrained(out_dir)
    (out_dir / "train_info.json").write_text(json.dumps(info, indent=1) + "\n")
    return info
