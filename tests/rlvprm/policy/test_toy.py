"""The shipped toy policy loads through from_pretrained and solves the world's problems."""

import json
import random

import pytest

from rewards.loading import load_vlm
from rlvprm.commands.demo import SHIPPED_POLICY
from rlvprm.generation import HFSampler
from rlvprm.world import WorldConfig
from rlvprm.world.evaluate import judge
from rlvprm.world.write import _row, make_example

pytestmark = pytest.mark.skipif(not (SHIPPED_POLICY / "model.safetensors").exists(), reason="no shipped policy")


def test_shipped_policy_reads_and_adds():
    model, processor = load_vlm(str(SHIPPED_POLICY))
    config = WorldConfig()
    rows, images = [], []
    for i in range(8):
        ex = make_example(1234, "prompts", i, config)
        rows.append(_row("prompts", ex, "unused.png"))
        images.append([ex.strip.image])
    out = HFSampler(model, processor, progress=False).sample(
        [(r["question"], imgs, None) for r, imgs in zip(rows, images)], 1, 96, temperature=0.0, batch_size=8
    )
    judged = [judge(r, o[0].text) for r, o in zip(rows, out)]
    # Reading is what a tiny model finds hardest; the shipped policy reads nearly every strip.
    assert sum(j.steps_correct[0] for j in judged if j.steps_correct) >= 7
    assert sum(j.correct for j in judged) >= 4
    info = json.loads((SHIPPED_POLICY / "train_info.json").read_text())
    assert info["read_steps"] == 600 and info["full_steps"] == 900
