"""The critic: a tiny Qwen2-VL backbone with a value head; its loss falls on a fixed batch; save and load."""

import pytest
import torch
from accelerate import Accelerator

from rlvprm.rl import ppo_credit
from rlvprm.rl.critic import HEAD_FILE, OPTIMIZER_FILE, CriticOptimizer, load_critic

pytestmark = pytest.mark.usefixtures("one_thread")


def fixed_batch():
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(20, 200, (4, 10), generator=generator)
    attention_mask = torch.ones(4, 10, dtype=torch.long)
    attention_mask[2, 7:] = 0
    returns = torch.tensor([[0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0, 1.0, 1.0]]).repeat(4, 1)
    returns[1] = -returns[1]
    return input_ids, attention_mask, returns


def test_value_loss_falls_on_a_fixed_batch(tiny_models):
    torch.manual_seed(0)
    critic = load_critic(tiny_models("qwen2-vl"), dtype=torch.float32)
    input_ids, attention_mask, returns = fixed_batch()
    assert (critic(input_ids, attention_mask) == 0).all()  # the new head starts at zero
    trainer = CriticOptimizer(critic, Accelerator(cpu=True), learning_rate=3e-3, max_grad_norm=1.0, accumulation=2)
    old_values = torch.zeros_like(returns)
    losses, stepped = [], []
    for _ in range(20):
        values = critic(input_ids, attention_mask)
        # A clip wide enough not to bind every update away from the rollout's values.
        loss, _ = ppo_credit.clipped_value_loss(values, old_values, returns, attention_mask, clip=10.0)
        losses.append(loss.item())
        stepped.append(trainer.backward(loss))
    assert stepped == [False, True] * 10  # one optimiser step per accumulation window of 2
    assert losses[-1] < 0.5 * losses[0]


def test_critic_saves_and_loads(tiny_models, tmp_path):
    torch.manual_seed(0)
    critic = load_critic(tiny_models("qwen2-vl"), dtype=torch.float32)
    trainer = CriticOptimizer(critic, Accelerator(cpu=True), learning_rate=1e-2)
    input_ids, attention_mask, returns = fixed_batch()
    loss, _ = ppo_credit.clipped_value_loss(critic(input_ids, attention_mask), torch.zeros_like(returns), returns,
                                            attention_mask, clip=None)
    trainer.backward(loss)
    trainer.save(tmp_path / "critic")
    assert (tmp_path / "critic" / HEAD_FILE).exists() and (tmp_path / "critic" / OPTIMIZER_FILE).exists()
    reloaded = load_critic(tmp_path / "critic", dtype=torch.float32)
    torch.testing.assert_close(reloaded(input_ids, attention_mask), critic(input_ids, attention_mask), rtol=0, atol=0)
    assert reloaded.value_head.weight.abs().sum() > 0

    fresh = CriticOptimizer(load_critic(tiny_models("qwen2-vl"), dtype=torch.float32), Accelerator(cpu=True), 1e-2)
    fresh.load(tmp_path / "critic")
    torch.testing.assert_close(fresh.critic(input_ids, attention_mask), critic(input_ids, attention_mask), rtol=0, atol=0)
    assert fresh.optimizer.state_dict()["state"].keys() == trainer.optimizer.state_dict()["state"].keys()
