"""`rlvprm demo --quick` runs every stage end to end and re-uses finished stages."""

import json

from rlvprm.cli import main as cli
from rlvprm.commands.demo import DemoConfig
from rlvprm.config import load_recipe

STAGES = ("world", "policy", "mc-labels", "prm", "prm-eval", "bon", "policy-eval", "grpo", "compare")


def test_quick_demo_end_to_end_and_reuse(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli(["demo", "--quick", "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    for stage in STAGES:
        assert f"| {stage} | ran live |" in report
    for heading in ("Held-out evaluation", "Monte Carlo step labels", "The PRM on the exact-label set",
                    "Best-of-4 on held-out prompts", "GRPO: outcome against process credit", "Test time, train time"):
        assert heading in report
    assert "| ORM best |" in report and "| Self-consistency |" in report and "| Policy likelihood best" in report
    assert (out / "policy_eval.png").stat().st_size > 1000 and (out / "bon" / "scaling.png").exists()
    for model in ("policy/model", "prm/model", "grpo/outcome", "grpo/process-prm"):
        assert (out / model / "model.safetensors").exists(), model

    labels = json.loads((out / "mc-labels" / "done.json").read_text())["result"]
    assert labels["prompts"] == 3 and labels["rollouts"] == 6
    assert sum(1 for _ in (out / "mc-labels" / "labels.jsonl").open()) == 6
    metrics = json.loads((out / "policy-eval" / "metrics.json").read_text())
    assert metrics["prompts"] == 8 and metrics["k"] == 4
    grpo = json.loads((out / "grpo" / "done.json").read_text())["result"]
    assert grpo["full_recipe"] is False and [r["steps"] for r in grpo["runs"].values()] == [2, 2]
    # The quick run trains its own RL policies, so compare weighs those, not the shipped ones.
    compare = json.loads((out / "compare" / "done.json").read_text())["settings"]
    assert set(compare["rl"]) == {"grpo-outcome", "grpo-process-prm"}
    assert all(str(out) in p for p in compare["rl"].values())

    capsys.readouterr()
    assert cli(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for stage in STAGES:
        assert f"[{stage}] reused" in printed


def test_default_recipe_matches_defaults():
    from pathlib import Path

    recipe = Path(__file__).resolve().parents[3] / "recipes" / "demo" / "visual-arith.yaml"
    values = load_recipe(recipe, [DemoConfig], "demo")
    assert DemoConfig(**values) == DemoConfig()


def test_sizes_that_contradict_are_refused():
    import pytest

    with pytest.raises(ValueError, match="eval_prompts"):
        DemoConfig(eval_prompts=301)
    with pytest.raises(ValueError, match="label_prompts"):
        DemoConfig(train_prompts=10, label_prompts=16)
