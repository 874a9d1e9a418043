"""What `rlvprm grpo` and `rlvprm ppo` share (``rlvprm.commands.policy_rl``): both run under several
processes, launched by the recipes' own `accelerate launch` lines."""

import json
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from rlvprm.world.write import write_world

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.usefixtures("one_thread")


def launch_line(recipe: str) -> list[str]:
    """The `accelerate launch` line of a recipe's header, as words (continuation lines joined, the
    trailing remark in parentheses dropped)."""
    header = [line[1:].strip() for line in (ROOT / recipe).read_text().splitlines() if line.startswith("#")]
    header = [line.removeprefix("Launch:").strip() for line in header]
    joined = " ".join(header).replace("\\ ", " ")
    start = joined.index("accelerate launch")
    line = joined[start:joined.index(recipe, start) + len(recipe)]
    return shlex.split(line)


def test_launch_line_reads_the_recipe_header():
    words = launch_line("recipes/ppo/qwen2.5-vl-7b-visualprm-8b-zero3.yaml")
    assert words == ["accelerate", "launch", "--config_file", "recipes/launch/accelerate/zero3.yaml", "-m", "rlvprm.cli",
                     "ppo", "--config", "recipes/ppo/qwen2.5-vl-7b-visualprm-8b-zero3.yaml"]


# What turns a recipe into a two-step run of the tiny policy on this machine's CPU: the GPU recipes'
# checkpoints, bf16, vLLM and batch sizes are replaced, everything else is the recipe's.
GPU_TO_CPU = ["--prm", "oracle", "--prm-backend", "auto", "--prm-trust-remote-code", "false", "--prm-dtype", "float32",
              "--bf16", "false", "--model-init-kwargs", '{"dtype": "float32"}', "--use-vllm", "false", "--use-cpu", "true",
              "--gradient-accumulation-steps", "1", "--gradient-checkpointing", "false"]

CASES = {  # id: (recipe, options beyond the tiny policy and world)
    "grpo-ddp": ("recipes/grpo/visual-arith-process.yaml", ["--num-generations", "2"]),
    "ppo-ddp": ("recipes/ppo/visual-arith-process-prm.yaml", ["--prm", "oracle", "--value-warmup-steps", "0"]),
    "grpo-zero2-lora": ("recipes/grpo/qwen2.5-vl-7b-visualprm-8b-lora.yaml", [*GPU_TO_CPU, "--num-generations", "2"]),
    "grpo-zero3": ("recipes/grpo/qwen2.5-vl-7b-visualprm-8b-zero3.yaml", [*GPU_TO_CPU, "--num-generations", "2"]),
    "ppo-zero2-lora": ("recipes/ppo/qwen2.5-vl-7b-visualprm-8b-lora.yaml", [*GPU_TO_CPU, "--value-warmup-steps", "0"]),
    "ppo-zero3": ("recipes/ppo/qwen2.5-vl-7b-visualprm-8b-zero3.yaml", [*GPU_TO_CPU, "--value-warmup-steps", "0"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_two_processes_from_the_recipe_launch_line(case, tiny_models, tmp_path, free_port):
    """Each recipe's own `accelerate launch` line (its accelerate config: DDP over gloo for the CPU
    recipes, DeepSpeed ZeRO-2 or ZeRO-3 on DeepSpeed's CPU accelerator for the GPU ones) with two
    processes runs two steps end to end; PPO saves its critic, and the ZeRO-3 PPO run resumes from
    its checkpoint (the critic's DeepSpeed state with it)."""
    recipe, options = CASES[case]
    words = launch_line(recipe)
    command = words[words.index("-m") + 2]
    launch = [str(Path(sys.executable).parent / "accelerate"), "launch", *words[2:words.index("-m")], "--num_processes", "2",
              "--main_process_port", str(free_port())]
    world = write_world(tmp_path / "world", seed=0, num_prompts=10, num_vpb=1, num_sft=1, progress=False)
    out = tmp_path / "run"
    tiny = ["--policy", tiny_models("qwen2-vl"), "--data", str(world.prompts), "--image-root", str(world.prompts.parent),
            "--num-prompts", "8", "--heldout-every", "0", "--output-dir", str(out), "--max-steps", "2",
            "--per-device-train-batch-size", "2", "--max-completion-length", "12", "--logging-steps", "1",
            "--save-strategy", "steps", "--save-steps", "2", "--report-to", "none", "--threads", "1", *options]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "DS_ACCELERATOR": "cpu"}
    run = [*launch, *words[words.index("-m"):], *tiny]
    done = subprocess.run(run, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]

    summary = json.loads((out / f"{command}_summary.json").read_text())
    args = summary[command]
    assert args["generation_batch_size"] == 2 * args["per_device_train_batch_size"] * args["steps_per_generation"]
    zero = int(case.split("zero")[1][0]) if "zero" in case else None
    assert summary["launch"] == {"num_processes": 2, "distributed_type": "DEEPSPEED" if zero else "MULTI_CPU",
                                 "zero_stage": zero}
    logs = [h for h in summary["log_history"] if "loss" in h]
    assert len(logs) == 2 and all(math.isfinite(h["loss"]) for h in logs)
    if command == "ppo":
        assert all(math.isfinite(h["ppo/value_loss"]) for h in logs)
        critic = out / "critic"
        assert (critic / "latest").exists() if "zero" in case else (critic / "value_head.safetensors").exists()
    if case == "ppo-zero3":
        resumed = subprocess.run([*run, "--max-steps", "3", "--resume-from-checkpoint", str(out / "checkpoint-2")],
                                 env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert resumed.stderr.count(f"critic and its optimizer restored from {out / 'checkpoint-2' / 'critic'}") == 2  # both processes
        summary = json.loads((out / "ppo_summary.json").read_text())
        assert [h["step"] for h in summary["log_history"] if "loss" in h][-1] == 3
