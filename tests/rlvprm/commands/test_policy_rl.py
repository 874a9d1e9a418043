"""What `rlvprm grpo` and `rlvprm ppo` share (``rlvprm.commands.policy_rl``): both run under two processes."""

import json
from pathlib import Path

import pytest

from rlvprm.world.write import write_world

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow
@pytest.mark.parametrize("command", ["ppo", "grpo"])
def test_two_processes_end_to_end(command, tiny_models, tmp_path):
    """`rlvprm ppo` and `rlvprm grpo` under two gloo processes on the CPU (torch.distributed.run: on
    this machine `accelerate launch --cpu --num_processes 2` started one process only)."""
    import os
    import socket
    import subprocess
    import sys

    world = write_world(tmp_path / "world", seed=0, num_prompts=10, num_vpb=1, num_sft=1, progress=False)
    out = tmp_path / "run"
    options = {"ppo": ["--num-generations", "1", "--step-reward", "centered", "--save-strategy", "steps", "--save-steps", "2"],
               "grpo": ["--num-generations", "2", "--credit", "process", "--save-strategy", "no"]}[command]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           "-m", "rlvprm.cli", command, "--policy", tiny_models("qwen2-vl"), "--data", str(world.prompts),
           "--prm", "oracle", "--num-prompts", "8", "--output-dir", str(out), "--use-cpu", "--bf16", "false",
           "--max-steps", "2", "--per-device-train-batch-size", "2", "--max-completion-length", "12", "--beta", "0.05",
           "--gradient-checkpointing", "false", "--logging-steps", "1", "--learning-rate", "1e-2", "--threads", "1",
           *options]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / f"{command}_summary.json").read_text())
    assert summary[command]["generation_batch_size"] == 4  # 2 processes x 2 completions
    logs = [h for h in summary["log_history"] if "loss" in h]
    assert len(logs) == 2 and all(h["loss"] == h["loss"] for h in logs)
    if command == "ppo":
        assert (out / "checkpoint-2" / "critic" / "value_head.safetensors").exists()
        assert (out / "critic" / "value_head.safetensors").exists()
