"""`rlvprm demo --quick` runs every stage end to end and re-uses finished stages."""

import json

from rlvprm.cli import main as cli
from rlvprm.commands.demo import DemoConfig
from rlvprm.config import load_recipe


def test_quick_demo_end_to_end_and_reuse(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli(["demo", "--quick", "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "Held-out evaluation" in report and "| overall |" in report
    assert (out / "policy_eval.png").stat().st_size > 1000
    assert (out / "bon-likelihood" / "scaling.png").exists() and "## Best-of-4" in report
    assert (out / "policy" / "model" / "model.safetensors").exists()
    metrics = json.loads((out / "policy-eval" / "metrics.json").read_text())
    assert metrics["prompts"] == 12 and metrics["k"] == 4
    samples = [json.loads(x) for x in (out / "policy-eval" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 12 and all(len(s["samples"]) == 4 for s in samples)
    capsys.readouterr()
    assert cli(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for stage in ("world", "policy", "bon-likelihood", "policy-eval"):
        assert f"[{stage}] reused" in printed


def test_default_recipe_matches_defaults():
    from pathlib import Path

    recipe = Path(__file__).resolve().parents[3] / "recipes" / "demo" / "visual-arith.yaml"
    values = load_recipe(recipe, [DemoConfig], "demo")
    assert DemoConfig(**values) == DemoConfig()
