"""The shipped toy PRM loads through both loaders, with its likelihood feature, and judges the dropped carry."""

from pathlib import Path

import pytest

from rewards import load_scorer
from rewards.prm import ProcessRewardModel
from rlvprm.world import WorldConfig
from rlvprm.world.write import make_example

TOY_PRM = Path(__file__).resolve().parents[3] / "rlvprm" / "data" / "checkpoints" / "toy-prm"
pytestmark = pytest.mark.skipif(not (TOY_PRM / "model.safetensors").exists(), reason="no shipped toy PRM")


def _add_problem_with_a_carry():
    for i in range(200):
        ex = make_example(4321, "prompts", i, WorldConfig())
        p = ex.problem
        if p.family == "add" and p.values[0] % 10 + p.values[1] % 10 >= 10:
            return ex
    raise AssertionError("no add problem with a first carry")


def test_toy_prm_loads_both_ways_and_scores_the_same():
    ex = _add_problem_with_a_carry()
    p = ex.problem
    a, b = p.values[0], p.values[1]
    right = ex.solution.text
    dropped = right.replace(f"{a} + {b} = {a + b}.", f"{a} + {b} = {a + b - 10}.", 1)
    assert dropped != right
    by_loader = load_scorer(str(TOY_PRM), device="cpu", dtype="float32")
    direct = ProcessRewardModel.from_pretrained(str(TOY_PRM), device="cpu", dtype="float32")
    assert direct.backend.feature is not None  # likelihood_feature.json was read
    got = by_loader.score_group(p.question, [ex.strip.image], [right, dropped])
    want = direct.score_group(p.question, [ex.strip.image], [right, dropped])
    for g, w in zip(got, want):
        assert g.step_scores == pytest.approx(w.step_scores, abs=1e-6)
    # The policy's commonest mistake, the dropped carry, is what the MC labels taught it (recipes/train_prm/visual-arith.yaml).
    assert got[1].step_scores[1] < got[0].step_scores[1]
