"""Scoring one process's completions: the oracle and PRM scorers, bad input, the prompt dataset."""

import json
import math

import pytest
import torch

from rewards.backends.processors import load_processor
from rewards.prm import ProcessRewardModel
from rlvprm.data.jsonl import RecordError
from rlvprm.rl.data import load_prompt_dataset
from rlvprm.rl.rollouts import STATS, score_completions, to_step_batch
from rlvprm.rl.scorers import OracleScorer, PRMScorer, Rollout, StepScores
from rlvprm.world.write import write_world

ROW = {"id": "p", "question": "<image>\nLet a, b and c be the numbers in the image from left to right. What is a + b * c?",
       "answer": "38", "form": "a + b * c", "values": [3, 7, 5], "data_source": "mixed", "choices": None}
RIGHT = "The numbers are 3, 7 and 5.\n\n7 * 5 = 35.\n\n3 + 35 = 38.\n\n\\boxed{38}"
WRONG = "The numbers are 3, 7 and 5.\n\n3 + 7 = 10.\n\n10 * 5 = 50.\n\n\\boxed{50}"


@pytest.fixture(scope="module")
def policy(tiny_models):
    path = tiny_models("qwen2-vl")
    return path, load_processor(path).tokenizer


def encode(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


def test_oracle_scores_are_the_exact_labels(policy):
    _, tok = policy
    texts = [RIGHT, WRONG, "", "no separator at all"]
    scored = score_completions(tok, OracleScorer(), [ROW] * 4, [[]] * 4, [encode(tok, t) for t in texts])
    assert [c.scores for c in scored] == [[1.0] * 4, [1.0, 0.0, 0.0, 0.0], [], [0.0]]
    assert [c.outcome for c in scored] == [1.0, 0.0, 0.0, 0.0]
    assert [c.text for c in scored] == texts
    assert scored[0].step_end == sorted(scored[0].step_end) and scored[0].step_end[-1] < scored[0].num_tokens - 1
    batch = to_step_batch(scored)
    stats = {name: batch.stats[:, i].tolist() for i, name in enumerate(STATS)}
    assert stats["num_steps"] == [4, 4, 0, 1]
    assert stats["no_separator"] == [0, 0, 1, 1]
    assert batch.step_mask.sum(1).tolist() == [4, 4, 0, 1]
    assert batch.step_rewards[1].tolist() == [1.0, 0.0, 0.0, 0.0]


def test_oracle_needs_the_world_columns():
    with pytest.raises(ValueError, match="form"):
        OracleScorer().score([Rollout({"id": "x", "answer": "1"}, [], "1")])


class Broken:
    """Returns a NaN score, a missing score (one fewer than steps) and no scores at all."""

    name = "broken"

    def score(self, rollouts):
        out = []
        for i, r in enumerate(rollouts):
            steps = OracleScorer().score([r])[0].steps
            scores = [[math.nan] + [1.0] * (len(steps) - 1), [1.0] * (len(steps) - 1), None][i]
            out.append(StepScores(steps, scores))
        return out

    def prepare(self, accelerator, deepspeed):
        pass


def test_nan_and_missing_scores_become_unscored_rows(policy):
    _, tok = policy
    scored = score_completions(tok, Broken(), [ROW] * 3, [[]] * 3, [encode(tok, RIGHT)] * 3)
    assert [c.scores is None for c in scored] == [False, True, True]  # a short list is never misaligned
    batch = to_step_batch(scored)
    assert torch.isnan(batch.step_rewards[batch.step_mask]).view(3, 4).any(dim=1).tolist() == [True, True, True]
    assert batch.stats[:, STATS.index("unscored")].tolist() == [1.0, 1.0, 1.0]


def test_prm_scorer_with_images(policy, images):
    path, tok = policy
    prm = ProcessRewardModel.from_pretrained(path, device="cpu")
    rollouts = [Rollout(ROW, images[:1], RIGHT), Rollout(ROW, images[:1], "  "), Rollout(ROW, images[:1], WRONG)]
    results = PRMScorer(prm).score(rollouts)
    assert [len(r.steps) for r in results] == [4, 0, 4]
    assert results[1].scores is None  # nothing to score
    expected = prm.score_group(ROW["question"], images[:1], [RIGHT, WRONG])
    for got, want in zip([results[0], results[2]], expected):
        assert got.scores == pytest.approx(want.step_scores, abs=1e-5)
        assert all(0 <= x <= 1 for x in got.scores)


def test_prm_scorer_scores_a_prompts_completions_as_one_group(policy, images):
    """Side by side with equal images (TRL decodes them once per completion), one group: the PRM's
    shared prefix; another question or image starts a new group."""
    path, _ = policy
    prm = ProcessRewardModel.from_pretrained(path, device="cpu")
    seen = []
    score_groups = prm.score_groups
    prm.score_groups = lambda groups: seen.extend(len(g.solutions) for g in groups) or score_groups(groups)
    other = {**ROW, "question": ROW["question"] + " Again."}
    rollouts = [Rollout(ROW, images[:1], RIGHT), Rollout(ROW, [images[0].copy()], WRONG),
                Rollout(ROW, images[1:2], RIGHT), Rollout(other, images[1:2], WRONG)]
    results = PRMScorer(prm).score(rollouts)
    assert seen == [2, 1, 1]
    alone = [PRMScorer(prm).score([r])[0] for r in rollouts]
    for got, want in zip(results, alone):
        assert got.scores == pytest.approx(want.scores, abs=1e-5)


def test_prompt_dataset(tmp_path):
    world = write_world(tmp_path / "w", seed=0, num_prompts=3, num_vpb=1, num_sft=1, progress=False)
    dataset = load_prompt_dataset(world.prompts)
    row = dataset[0]
    assert row["prompt"][0]["content"][0]["type"] == "image" and len(row["images"]) == 1
    assert row["images"][0].mode == "RGB" and row["form"] and row["values"]
    mixed = tmp_path / "mixed.jsonl"
    lines = [json.loads(x) for x in world.prompts.read_text().splitlines()]
    del lines[1]["image"]
    mixed.write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pytest.raises(RecordError, match="placeholder"):
        load_prompt_dataset(mixed, image_root=world.root)
    lines[1]["question"] = lines[1]["question"].replace("<image>", "")
    mixed.write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pytest.raises(RecordError, match="mixes rows"):
        load_prompt_dataset(mixed, image_root=world.root)
    lines[1]["image"] = "images/nowhere.png"
    mixed.write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pytest.raises(RecordError, match="does not exist"):
        load_prompt_dataset(mixed, image_root=world.root)
