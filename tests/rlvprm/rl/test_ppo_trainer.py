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
def test_critic_under_deepspeed_on_the_cpu(stage, tiny_models, world, tmp_path, free_port):
    """The critic as a DeepSpeed engine of its own (ZeRO-2 and ZeRO-3 configs of recipes/launch), one
    CPU process: PPO steps, the checkpoint holds the critic's DeepSpeed state, and resuming restores it."""
    import multiprocessing as mp

    port = free_port()
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


class TextScorer:
    """Steps are the completion's lines, scored by their text alone (0.9 if the line's sum is right,
    0.2 if not), so a completion scores the same in whichever process scores it."""

    name = "lines"
    tokens_scored = 0

    def score(self, rollouts):
        from rewards.steps import Step
        from rlvprm.rl.scorers import StepScores

        out = []
        for r in rollouts:
            steps, start = [], 0
            for line in r.text.split("\n\n"):
                steps.append(Step(line, start, start + len(line)))
                start += len(line) + 2
            out.append(StepScores(steps, [0.9 if "= 5" in s.text else 0.2 for s in steps]))
        return out

    def prepare(self, accelerator, deepspeed):
        pass


class FixedRollouts(ProcessRewardPPOTrainer):
    """Each prompt's completion is fixed by its tokens (one to three lines, some right, some wrong),
    so one process and two sample the same completions; everything after generation is the real
    trainer. Records the gradient every optimiser step applies (after the processes' average and
    clipping) and each rollout's completions (by prompt id) with their advantages and returns."""

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        tokenizer = self.processing_class.tokenizer
        completions = []
        for ids in prompt_ids:
            k = sum(i * j for j, i in enumerate(ids)) % 3
            lines = [f"{i} + {k} = {i + k}" for i in range(1, k + 3)] + [f"Answer: {k + 4}"]
            completions.append(tokenizer.encode("\n\n".join(lines), add_special_tokens=False) + [tokenizer.eos_token_id])
        return completions, None

    def create_optimizer(self, *args, **kwargs):
        optimizer = super().create_optimizer(*args, **kwargs)
        self.grads = {"policy": [], "critic": []}
        names = {p: n for n, p in self.model.named_parameters()}
        critic_names = {p: n for n, p in self.critic.critic.named_parameters()}

        def recorder(kind, table):
            def hook(opt, args, kwargs):
                self.grads[kind].append({table[p]: p.grad.detach().clone() for group in opt.param_groups
                                         for p in group["params"] if p.grad is not None})
            return hook

        optimizer.register_step_pre_hook(recorder("policy", names))
        self.critic.optimizer.register_step_pre_hook(recorder("critic", critic_names))
        return optimizer

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        self.rollouts = getattr(self, "rollouts", []) + [[
            (row["id"], ids[m.bool()].tolist(), adv[m.bool()].tolist(), ret[m.bool()].tolist())
            for row, ids, m, adv, ret in zip(inputs, output["completion_ids"], output["completion_mask"],
                                             output["advantages"], output["returns"])
        ]]
        return output


def _update_worker(world_size: int, rank: int, port: int, policy: str, prompts: str, out: str, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    # 4 prompts a rollout in all (4 in one process, 2 in each of two), 2 PPO epochs: 4 optimiser steps.
    args = grpo_args(Path(out), PPOConfig, num_generations=1, per_device_train_batch_size=4 // world_size,
                     num_iterations=2, max_steps=4, beta=0.05, max_completion_length=48, learning_rate=1e-3)
    settings = PPOSettings(step_reward="delta", critic_learning_rate=1e-3, lam=0.9, value_clip=0.2)
    trainer = FixedRollouts(policy, TextScorer(), settings, args, train_dataset=load_prompt_dataset(prompts),
                            processing_class=load_processor(policy))
    trainer.train()
    torch.save((trainer.grads, trainer.rollouts), Path(out) / f"rank{rank}.pt")  # tensors by value, not shared memory
    queue.put(rank)


def _run_update(world_size: int, port: int, tmp_path, policy: str, prompts: str) -> tuple[dict, list]:
    import multiprocessing as mp

    context = mp.get_context("spawn")
    queue = context.Queue()
    procs = [context.Process(target=_update_worker, args=(world_size, rank, port, policy, prompts,
                                                          str(tmp_path / f"p{world_size}"), queue))
             for rank in range(world_size)]
    for proc in procs:
        proc.start()
    assert sorted(queue.get(timeout=600) for _ in procs) == list(range(world_size))
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    results = [torch.load(tmp_path / f"p{world_size}" / f"rank{rank}.pt") for rank in range(world_size)]
    grads = results[0][0]
    rollouts = [sum((r[1][i] for r in results), []) for i in range(len(results[0][1]))]  # both shards of each
    return grads, rollouts


def test_two_processes_make_the_update_of_one(tiny_models, world, tmp_path, free_port):
    """A whole PPO run (rewards, values, GAE, whitening, the clipped policy loss, the critic's value
    loss, 2 rollouts x 2 epochs) under two gloo processes applies the same gradients to the policy and
    the critic as one process with the same completions; the completions' token counts differ, so a
    loss normalised per process would not."""
    policy = tiny_models("qwen2-vl")
    one_grads, one_rollouts = _run_update(1, free_port(), tmp_path, policy, str(world.prompts))
    two_grads, two_rollouts = _run_update(2, free_port(), tmp_path, policy, str(world.prompts))

    assert len(one_rollouts) == len(two_rollouts) == 2
    for one, two in zip(one_rollouts, two_rollouts):
        assert sorted(r[:2] for r in one) == sorted(r[:2] for r in two)  # the same prompts and completions
        assert len({len(r[1]) for r in one}) > 1  # completions of different lengths
        by_id = {r[0]: r for r in two}
        for prompt_id, _, advantages, returns in one:
            torch.testing.assert_close(torch.tensor(by_id[prompt_id][2]), torch.tensor(advantages), atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(torch.tensor(by_id[prompt_id][3]), torch.tensor(returns), atol=1e-5, rtol=1e-4)
    for kind in ("policy", "critic"):
        assert len(one_grads[kind]) == len(two_grads[kind]) == 4
        for step, (one, two) in enumerate(zip(one_grads[kind], two_grads[kind])):
            assert one.keys() == two.keys()
            scale = max(g.abs().max().item() for g in one.values())
            assert scale > 0, (kind, step)
            for name in one:
                torch.testing.assert_close(two[name], one[name], atol=1e-5 * scale, rtol=1e-3, msg=f"{kind} step {step} {name}")
