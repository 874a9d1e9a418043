"""The shipped toy policy loads through from_pretrained and solves the world's problems."""

import json
import random

import pytest

from rewards.loading import load_vlm
from rlvprm.demo.stages import SHIPPED_POLICY
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
    # Two stages on reference solutions, then the flawed teacher's (rlvprm.world.teacher).
    assert info["init_info"]["read_steps"] == 600 and info["init_info"]["full_steps"] == 900
    assert info["flawed_steps"] == 300 and info["flaw_rates"] == {"carry": 0.5, "dice": 0.5, "glyph": 0.5, "sign": 0.5}


def test_flawed_stage_continues_a_policy(tmp_path):
    import torch
    from safetensors.torch import load_file

    from rlvprm.policy.toy import train_toy_policy
    from rlvprm.world import write_world

    world = write_world(tmp_path / "world", seed=0, num_prompts=2, num_vpb=0, num_sft=16, progress=False).root
    first = train_toy_policy(world, tmp_path / "base", read_steps=2, full_steps=2, flawed_steps=0, batch_size=4,
                             progress=False)
    assert first["init_info"] is None and first["total_seconds"] == first["seconds"]
    info = train_toy_policy(world, tmp_path / "flawed", read_steps=0, full_steps=0, flawed_steps=2, batch_size=4,
                            init_from=tmp_path / "base", progress=False)
    assert [h["stage"] for h in info["history"]] == ["flawed"] * len(info["history"])
    assert info["init_info"]["read_steps"] == 2 and info["flaw_rates"] == WorldConfig().flaw_rates
    assert info["total_seconds"] > info["seconds"]
    before, after = load_file(tmp_path / "base" / "model.safetensors"), load_file(tmp_path / "flawed" / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    model, processor = load_vlm(str(tmp_path / "flawed"))  # tokenizer and processor files came along
    assert processor.tokenizer.get_vocab() == load_vlm(str(tmp_path / "base"))[1].tokenizer.get_vocab()
