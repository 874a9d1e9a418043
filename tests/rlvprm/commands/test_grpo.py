"""`rlvprm grpo`: options, recipes, launch configs, and a short run end to end on a tiny Qwen2-VL."""

import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from trl import GRPOConfig

from rlvprm.cli import main as cli
from rlvprm.commands.grpo import DenseGRPOConfig
from rlvprm.config import parse
from rlvprm.world.write import write_world

ROOT = Path(__file__).resolve().parents[3]
RECIPES = sorted((ROOT / "recipes" / "grpo").glob("*.yaml"))
CPU_RECIPES = [p for p in RECIPES if p.name.startswith("visual-arith")]


def test_options_do_not_shadow_trl_options():
    ours = {f.name for f in dataclasses.fields(DenseGRPOConfig)}
    assert not ours & {f.name for f in dataclasses.fields(GRPOConfig)}


def test_contradictions_are_refused():
    with pytest.raises(ValueError, match="outcome_weight"):
        DenseGRPOConfig(policy="p", data="d", prm="oracle", credit="outcome", outcome_weight=1.0)
    with pytest.raises(ValueError, match="num_prompts"):
        DenseGRPOConfig(policy="p", data="d", prm="oracle", heldout_every=5)


def test_recipes_exist_for_each_setting():
    names = {p.name for p in RECIPES}
    assert {"visual-arith-outcome.yaml", "visual-arith-process.yaml", "qwen2.5-vl-7b-visualprm-8b-zero3.yaml",
            "qwen2.5-vl-7b-visualprm-8b-zero3-multinode.yaml", "qwen2.5-vl-7b-visualprm-8b-lora.yaml"} <= names


@pytest.mark.parametrize("path", CPU_RECIPES, ids=lambda p: p.name)
def test_cpu_recipes_build_both_configs(path, tmp_path):
    ours, trl_args = parse([DenseGRPOConfig, GRPOConfig], ["--config", str(path), "--output-dir", str(tmp_path)],
                           command="grpo")
    # Every CPU arm scores steps with the world's oracle, except the one whose PRM is trained on MC labels.
    assert ours.prm == ("runs/train-prm/visual-arith" if "mc-prm" in path.name else "oracle")
    assert trl_args.use_cpu and not trl_args.bf16
    assert ours.credit_settings().method == ours.credit


def test_cpu_recipes_differ_only_in_credit_and_output():
    """The arms of the comparison share prompts, seed, budget and optimiser: only the credit may differ."""
    base = yaml.safe_load((ROOT / "recipes" / "grpo" / "visual-arith-outcome.yaml").read_text())
    for path in CPU_RECIPES:
        other = yaml.safe_load(path.read_text())
        differing = {k for k in base.keys() | other.keys() if base.get(k) != other.get(k)}
        assert differing <= {"credit", "outcome_weight", "output_dir", "prm", "prm_batch_size"}, (path.name, differing)


def test_launch_configs_load():
    from accelerate.commands.config.config_args import ClusterConfig

    for path in sorted((ROOT / "recipes" / "launch" / "accelerate").glob("*.yaml")):
        config = ClusterConfig.from_yaml_file(path)
        assert config.num_processes == 8 * config.num_machines
        if path.name == "ddp.yaml":  # plain data parallel
            assert config.distributed_type == "MULTI_GPU" and not config.deepspeed_config
            continue
        ds_file = ROOT / config.deepspeed_config["deepspeed_config_file"]
        stage = json.loads(ds_file.read_text())["zero_optimization"]["stage"]
        assert f"zero{stage}" in path.name
    for name, stage in (("zero2.json", 2), ("zero3.json", 3)):
        assert json.loads((ROOT / "recipes" / "launch" / "deepspeed" / name).read_text())["zero_optimization"]["stage"] == stage


def test_grpo_command_end_to_end(tiny_models, tmp_path):
    world = write_world(tmp_path / "world", seed=0, num_prompts=10, num_vpb=1, num_sft=1, progress=False)
    out = tmp_path / "run"
    rc = cli([
        "grpo", "--policy", tiny_models("qwen2-vl"), "--data", str(world.prompts), "--prm", "oracle",
        "--num-prompts", "6", "--credit", "min_form", "--outcome-weight", "0.5", "--heldout-every", "1",
        "--heldout-prompts", "4", "--output-dir", str(out), "--use-cpu", "--bf16", "false", "--max-steps", "2",
        "--per-device-train-batch-size", "4", "--num-generations", "4", "--max-completion-length", "12",
        "--beta", "0.0", "--gradient-checkpointing", "false", "--save-strategy", "no",
        "--logging-steps", "1", "--freeze-vision", "--learning-rate", "1e-2",
    ])
    assert rc == 0
    summary = json.loads((out / "grpo_summary.json").read_text())
    assert [h["step"] for h in summary["heldout"]] == [0, 1, 2]
    assert all(0 <= h["greedy_accuracy"] <= 1 and h["prompts"] == 4 for h in summary["heldout"])
    assert len((out / "heldout.jsonl").read_text().splitlines()) == 3
    assert summary["config"]["credit"] == "min_form" and summary["grpo"]["max_steps"] == 2
    assert "steps/per_completion" in summary["last_log"] and "heldout/greedy_accuracy" in summary["last_log"]
    assert len([h for h in summary["log_history"] if "loss" in h]) == 2
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from rlvprm.plots import main as plots

    overlay = plots(["grpo", str(out), str(out), "--labels", "a,b", "--out", str(tmp_path / "both.png"), "--smooth", "1"])
    assert overlay.stat().st_size > 0
    with pytest.raises(SystemExit, match="grpo_summary.json"):
        plots(["grpo", str(tmp_path), "--out", str(tmp_path / "x.png")])
    from safetensors.torch import load_file

    before = load_file(str(Path(tiny_models("qwen2-vl")) / "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    vision = [k for k in before if ".visual." in f".{k}"]
    assert vision and all(before[k].equal(after[k]) for k in vision)  # --freeze-vision kept them


def test_freeze_vision_stops_only_the_vision_side(tiny_models):
    from rewards.loading import load_vlm
    from rlvprm.commands.policy_rl import freeze_vision

    model, _ = load_vlm(tiny_models("qwen2-vl"), train=True)
    assert freeze_vision(model) > 0
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(".visual." in f".{name}" for name in frozen)
    assert any(p.requires_grad for name, p in model.named_parameters() if "language_model" in name)
