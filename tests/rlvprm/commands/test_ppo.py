"""`rlvprm ppo`: options, recipes, num_generations 1, and a short run end to end on a tiny Qwen2-VL."""

import dataclasses
import json
from pathlib import Path

import pytest
from trl import GRPOConfig

from rlvprm.cli import main as cli
from rlvprm.commands.ppo import DensePPOConfig
from rlvprm.config import load_recipe, parse
from rlvprm.rl.ppo_trainer import PPOConfig
from rlvprm.world.write import write_world

ROOT = Path(__file__).resolve().parents[3]
RECIPES = sorted((ROOT / "recipes" / "ppo").glob("*.yaml"))

pytestmark = pytest.mark.usefixtures("one_thread")


def test_options_do_not_shadow_trl_options():
    ours = {f.name for f in dataclasses.fields(DensePPOConfig)}
    assert not ours & {f.name for f in dataclasses.fields(GRPOConfig)}
    assert {f.name for f in dataclasses.fields(PPOConfig)} == {f.name for f in dataclasses.fields(GRPOConfig)}


def test_one_generation_per_prompt_is_allowed_for_ppo_only(tmp_path):
    options = dict(output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=3, num_generations=1)
    args = PPOConfig(**options)
    assert args.num_generations == 1 and type(args.num_generations) is int
    assert args.generation_batch_size == 3
    with pytest.raises(ValueError, match="at least 2 generations"):
        GRPOConfig(**options)
    with pytest.raises(ValueError, match="divisible"):  # TRL's other checks still apply
        PPOConfig(**{**options, "num_generations": 2})


def test_contradictions_are_refused():
    with pytest.raises(ValueError, match="num_prompts"):
        DensePPOConfig(policy="p", data="d", prm="oracle", heldout_every=5)
    with pytest.raises(ValueError, match="step_reward"):
        DensePPOConfig(policy="p", data="d", prm="oracle", step_reward="sum").ppo_settings()


def test_recipes_exist_and_parse(tmp_path):
    """Every recipe's own options build; TRL's options of the GPU recipes (bf16) build only on a GPU,
    so there only the keys are checked (tests/test_recipes.py); the CPU recipe builds both."""
    names = {p.name for p in RECIPES}
    assert {"visual-arith-process-prm.yaml", "qwen2.5-vl-7b-visualprm-8b-zero3.yaml",
            "qwen2.5-vl-7b-visualprm-8b-lora.yaml"} <= names
    ours_fields = {f.name for f in dataclasses.fields(DensePPOConfig)}
    for path in RECIPES:
        values = load_recipe(path, [DensePPOConfig, PPOConfig], command="ppo")
        ours = DensePPOConfig(**{k: v for k, v in values.items() if k in ours_fields})
        assert ours.ppo_settings().step_reward == "delta"
        assert values["num_generations"] == 1 and values["num_iterations"] == 2
        assert ours.use_peft == ("lora" in path.name)
    ours, args = parse([DensePPOConfig, PPOConfig], ["--config", str(ROOT / "recipes/ppo/visual-arith-process-prm.yaml"),
                                                     "--output-dir", str(tmp_path)], command="ppo")
    assert args.use_cpu and not args.bf16 and ours.prm == "rlvprm/data/checkpoints/toy-prm"
    assert args.generation_batch_size == 128  # the GRPO arms' 16 prompts x 8 completions per rollout


def test_ppo_command_end_to_end(tiny_models, tmp_path):
    world = write_world(tmp_path / "world", seed=0, num_prompts=10, num_vpb=1, num_sft=1, progress=False)
    out = tmp_path / "run"
    rc = cli([
        "ppo", "--policy", tiny_models("qwen2-vl"), "--data", str(world.prompts), "--prm", "oracle",
        "--num-prompts", "6", "--step-reward", "centered", "--heldout-every", "1", "--heldout-prompts", "3",
        "--value-warmup-steps", "1", "--critic-learning-rate", "1e-3",
        "--output-dir", str(out), "--use-cpu", "--bf16", "false", "--max-steps", "2",
        "--per-device-train-batch-size", "3", "--num-generations", "1", "--max-completion-length", "12",
        "--beta", "0.05", "--gradient-checkpointing", "false", "--save-strategy", "no",
        "--logging-steps", "1", "--learning-rate", "1e-2",
    ])
    assert rc == 0
    summary = json.loads((out / "ppo_summary.json").read_text())
    assert [h["step"] for h in summary["heldout"]] == [0, 1, 2]
    assert summary["config"]["step_reward"] == "centered" and summary["ppo"]["num_generations"] == 1
    logs = [h for h in summary["log_history"] if "loss" in h]
    assert [h["ppo/warmup"] for h in logs] == [1.0, 0.0]
    assert "ppo/value_loss" in summary["last_log"] and "steps/per_completion" in summary["last_log"]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "critic" / "value_head.safetensors").exists() and (out / "model.safetensors").exists()
    from rlvprm.plots import main as plots

    assert plots(["grpo", str(out), "--out", str(tmp_path / "overlay.png"), "--smooth", "1"]).stat().st_size > 0

    # Training compute is counted as in `rlvprm grpo`, the critic's tokens too, and `rlvprm compare` reads it.
    from rlvprm.compare.training import training_cost

    cost = training_cost(out)
    generated = sum(h["completions/mean_length"] * 3 for h in summary["log_history"] if "completions/mean_length" in h)
    assert cost.how == "counted" and cost.tokens_generated == round(generated) > 0 and cost.prm_tokens_scored == 0
    assert cost.critic_tokens_trained == cost.policy_tokens_trained > cost.tokens_generated
    assert summary["launch"] == {"num_processes": 1, "distributed_type": "NO", "zero_stage": None}


def test_the_critic_can_start_from_the_prm_backbone(tmp_path):
    """`--critic-model prm`: the critic's backbone is the PRM's (the shipped toy PRM shares the toy
    policy's tokenizer); with a critic learning rate of 0 the saved critic is exactly that backbone."""
    import torch
    from transformers import AutoModel

    world = write_world(tmp_path / "world", seed=0, num_prompts=6, num_vpb=1, num_sft=1, progress=False)
    out = tmp_path / "run"
    rc = cli([
        "ppo", "--policy", str(ROOT / "rlvprm/data/checkpoints/toy-policy"), "--data", str(world.prompts),
        "--prm", str(ROOT / "rlvprm/data/checkpoints/toy-prm"), "--critic-model", "prm", "--critic-learning-rate", "0",
        "--output-dir", str(out), "--use-cpu", "--bf16", "false", "--max-steps", "1", "--per-device-train-batch-size", "2",
        "--num-generations", "1", "--max-completion-length", "8", "--beta", "0.0", "--gradient-checkpointing", "false",
        "--save-strategy", "no", "--logging-steps", "1",
    ])
    assert rc == 0
    critic = AutoModel.from_pretrained(out / "critic", dtype=torch.float32).state_dict()
    prm = AutoModel.from_pretrained(ROOT / "rlvprm/data/checkpoints/toy-prm", dtype=torch.float32).state_dict()
    policy = AutoModel.from_pretrained(ROOT / "rlvprm/data/checkpoints/toy-policy", dtype=torch.float32).state_dict()
    assert critic.keys() == prm.keys()
    assert all(torch.equal(critic[k], prm[k]) for k in prm)
    assert not all(torch.equal(critic[k], policy[k]) for k in policy)
    for prm in ("oracle", "likelihood:rlvprm/data/checkpoints/toy-policy"):
        with pytest.raises(ValueError, match="is not a model folder or hub id"):
            DensePPOConfig(policy="p", data="d", prm=prm, critic_model="prm")
