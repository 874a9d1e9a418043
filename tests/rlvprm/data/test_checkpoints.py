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


GRPO_POLICIES = {"toy-policy-grpo-outcome": ("oracle", "read from the log history"),
                 "toy-policy-grpo-process-prm": ("runs/train-prm/visual-arith", "counted")}


@pytest.mark.parametrize("name", sorted(GRPO_POLICIES))
def test_shipped_grpo_policies_load_and_carry_their_training_cost(name):
    """What the demo's compare stage weighs: each loads with its processor and states what training cost."""
    from rewards.loading import load_vlm
    from rlvprm.compare.training import training_cost

    folder = TOY_PRM.parent / name
    model, processor = load_vlm(str(folder), device="cpu")
    assert getattr(processor, "image_processor", None) is not None
    cost = training_cost(folder)
    prm, how = GRPO_POLICIES[name]
    assert (cost.prm, cost.how, cost.steps, cost.trained_from) == (prm, how, 30, "rlvprm/data/checkpoints/toy-policy")
    assert cost.tokens_generated > 100_000 and cost.policy_tokens_trained > cost.tokens_generated
    assert cost.prm_tokens_scored == (0 if prm == "oracle" else 2_462_113)
