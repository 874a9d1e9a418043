"""Shared data for the PRM-training tests: Raw records with real PNG images on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

QUESTION = "<image>\nWhat is the sum of the numbers in the image?"


@pytest.fixture(scope="module", autouse=True)
def _one_thread_here(one_thread):
    """Every test in this folder runs on one thread (``one_thread`` in tests/conftest.py)."""
    yield


def raw_row(i: int, scores: list[float], image: str) -> dict:
    steps = [f"The numbers are {i} and 2.", f"{i} + 2 = {i + 2}.", f"The answer is \\boxed{{{i + 2}}}."][: len(scores)]
    return {
        "id": f"r{i}",
        "image": image,
        "question": QUESTION,
        "answer": str(i + 2),
        "response": "\n\n".join(steps),
        "num_mc_sequences": 4,
        "steps_with_score": [
            {"step": s, "score": sc, "num_mc_correct": round(4 * sc), "num_mc_total": 4} for s, sc in zip(steps, scores)
        ],
    }


def write_raw(root: Path, n: int = 8) -> Path:
    """``n`` Raw records (2 or 3 steps, some '-' labels), images of different widths."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    rows = []
    for i in range(n):
        img = Image.new("RGB", (56 + 28 * (i % 2), 28), "white")
        ImageDraw.Draw(img).text((4, 8), f"{i} 2", fill="black")
        img.save(root / "images" / f"{i}.png")
        scores = [[1.0, 0.5, 0.25], [1.0, 0.0, 0.0], [0.0, 0.0], [0.75, 0.5]][i % 4]
        rows.append(raw_row(i, scores, f"images/{i}.png"))
    path = root / "raw.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def raw_file(tmp_path) -> Path:
    return write_raw(tmp_path / "data")
