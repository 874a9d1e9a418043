"""ProcessRewardPPOTrainer on a tiny real Qwen2-VL with image prompts, on the CPU, for a few steps.

The scorer cuts each completion into 8-character steps scored 0.9, 0.1, ... (as in ``test_trainer``),
so every completion has steps whatever the random policy writes.
"""

import math
import os
from pathlib import Path

import pytest
import torch

from rewards.backends.processors import load_processor
from rlvprm.rl.critic import HEAD_FILE, OPTIMIZER_FILE, load_critic
from rlvprm.rl.data import load_prompt_dataset
from rlvprm.rl.ppo_trainer import PPOConfig, PPOSettings, ProcessRewardPPOTrainer

from .test_trainer import ChunkScorer, grpo_args, world  # noqa: F401 (world: the shared prompt-set fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


class Recording(ProcessRewardPPOTrainer):
    """Keeps every rollout batch's PPO tensors."""

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        keep = ("advantages", "old_values", "returns", "completion_mask", "completion_ids")
        self.batches = getattr(self, "batches", []) + [{k: output[k].clone() for k in keep}]
        return output


def ppo_args(tmp_path, **overrides) -> PPOConfig:
    return grpo_args(tmp_path, PPOConfig, **{"num_generations": 1, "max_completion_length": 12, "beta": 0.05, **overrides})


def critic_params(trainer):
    return {n: p.detach().clone() for n, p in trainer.critic.critic.named_parameters()}


def test_ppo_trainer_steps_saves_and_resumes_the_critic(tiny_models, world, tmp_path):
    torch.manual_seed(0)
    policy = tiny_models("qwen2-vl")
    settings = PPOSettings(step_reward="delta", critic_learning_rate=1e-2, lam=0.9)
    args = ppo_args(tmp_path, num_iterations=2, save_strategy="steps", save_steps=2, max_steps=2)
    trainer = Recording(policy, ChunkScorer(), settings, args, train_dataset=load_prompt_dataset(world.prompts),
                        processing_class=load_processor(policy))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    critic_before = critic_params(trainer)
    trainer.train()

    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 2 and all(math.isfinite(h["loss"]) for h in logs)
    for key in ("ppo/value_loss", "ppo/return_mean", "ppo/explained_variance", "kl", "steps/per_completion",
                "prm/outcome_agreement", "advantages/within_completion_std"):
        assert key in logs[0], key
    assert [n for n, p in trainer.model.named_parameters() if not torch.equal(p.detach(), before[n])]
    critic_after = critic_params(trainer)
    assert not torch.equal(critic_after["value_head.weight"], critic_before["value_head.weight"])

    # num_iterations=2: one rollout batch serves both steps; advantages are whitened and vary per token.
    assert len(trainer.batches) == 1
    batch = trainer.batches[0]
    mask = batch["completion_mask"].bool()
    advantages = batch["advantages"][mask]
    assert advantages.mean().abs() < 1e-4 and advantages.std(unbiased=False) == pytest.approx(1, abs=1e-3)
    assert (batch["old_values"][mask] == 0).all()  # the new head starts at zero
    assert (batch["advantages"][~mask] == 0).all() and (batch["returns"][~mask] == 0).all()

    # The checkpoint holds the critic and its optimizer; resuming restores them in place.
    saved = tmp_path / "out" / "checkpoint-2" / "critic"
    assert (saved / HEAD_FILE).exists() and (saved / OPTIMIZER_FILE).exists()
    reloaded = load_critic(saved)
    for name, value in reloaded.state_dict().items():
        torch.testing.assert_close(value, critic_after[name], rtol=0, atol=0)

    class Resumed(ProcessRewardPPOTrainer):
        def _load_optimizer_and_scheduler(self, checkpoint):
            super()._load_optimizer_and_scheduler(checkpoint)
            self.restored = critic_params(self)
            self.restored_state = bool(self.critic.optimizer.state_dict()["state"])

    resumed = Resumed(policy, ChunkScorer(), settings, ppo_args(tmp_path, max_steps=3),
                      train_dataset=load_prompt_dataset(world.prompts), processing_class=load_processor(policy))
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-2"))
    assert resumed.state.global_step == 3
    for name, value in resumed.restored.items():
        torch.testing.assert_close(value, critic_after[name], rtol=0, atol=0)
    assert resumed.restored_state, "the critic's optimizer state was not restored"


def test_value_warmup_keeps_the_policy_still(tiny_models, world, tmp_path):
    policy = tiny_models("qwen2-vl")
    trainer = Recording(policy, ChunkScorer(), PPOSettings(value_warmup_steps=2, critic_learning_rate=1e-2),
                        ppo_args(tmp_path), train_dataset=load_prompt_dataset(world.prompts),
                        processing_class=load_processor(policy))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    critic_before = critic_params(trainer)
    trainer.train()
    assert all(torch.equal(p.detach(), before[n]) for n, p in trainer.model.named_parameters())
    assert len(trainer.batches) == 2 and all((b["advantages"] == 0).all() for b in trainer.batches)
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 2 and all(h["ppo/warmup"] == 1 for h in logs)
    assert any(not torch.equal(p.detach(), critic_before[n]) for n, p in trainer.critic.critic.named_parameters())


def _deepspeed_worker(stage: int, port: int, policy: str, prompts: str, out: str, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", LOCAL_RANK="0", WORLD_SIZE="1",
                      LOCAL_WORLD_SIZE="1", DS_ACCELERATOR="cpu")
    torch.set_num_threads(1)
    config = str(Path(__file__).resolve().parents[3] / "recipes" / "launch" / "deepspeed" / f"zero{stage}.json")
    settings = PPOSettings(step_reward="centered", critic_learning_rate=1e-3)
    results = []
    for max_steps, resume in ((2, None), (3, str(Path(out) / "checkpoint-2"))):
        args = grpo_args(Path(out).parent, PPOConfig, num_generations=1, max_completion_length=8, beta=0.05,
                         per_device_train_batch_size=2, max_steps=max_steps, save_strategy="steps", save_steps=2,
                         deepspeed=config)
        trainer = ProcessRewardPPOTrainer(policy, ChunkScorer(), settings, args,
                                          train_dataset=load_prompt_dataset(prompts), processing_class=load_processor(policy))
        loaded, load = [], trainer.critic.load
        trainer.critic.load = lambda folder: (loaded.append(Path(folder).name), load(folder))
        trainer.train(resume_from_checkpoint=resume)
        logs = [h for h in trainer.state.log_history if "loss" in h]
        results.append((type(trainer.critic.module).__name__, trainer.state.global_step,
                        [(h["loss"], h["ppo/value_loss"]) for h in logs], loaded))
    queue.put(results)


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_critic_under_deepspeed_on_the_cpu(stage, tiny_models, world, tmp_path):
    """The critic as a DeepSpeed engine of its own (ZeRO-2 and ZeRO-3 configs of recipes/launch), one
    CPU process: PPO steps, the checkpoint holds the critic's DeepSpeed state, and resuming restores it."""
    import multiprocessing as mp
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = mp.get_context("spawn")
    queue = context.Queue()
    out = tmp_path / "out"
    proc = context.Process(target=_deepspeed_worker,
                           args=(stage, port, tiny_models("qwen2-vl"), str(world.prompts), str(out), queue))
    proc.start()
    first, resumed = queue.get(timeout=600)
    proc.join(timeout=60)
    assert proc.exitcode == 0
    assert first[0] == "DeepSpeedEngine" and first[1] == 2 and resumed[1] == 3
    assert first[3] == [] and resumed[3] == ["critic"]  # the resumed run restored the critic's DeepSpeed state
    assert all(math.isfinite(loss) and math.isfinite(value) for loss, value in first[2] + resumed[2])
    assert (out / "checkpoint-2" / "critic" / "latest").exists()
