"""The critic: a tiny Qwen2-VL backbone with a value head; its loss falls on a fixed batch; save and load;
two gloo processes step it as one process does."""

import os

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


def _captured_gradients(trainer: CriticOptimizer) -> dict:
    """Wrap the critic optimizer's step so the gradients it steps on are kept."""
    grads: dict = {}
    step = trainer.optimizer.step

    def capture(*args, **kwargs):
        grads.update({n: p.grad.detach().clone() for n, p in trainer.critic.named_parameters() if p.grad is not None})
        return step(*args, **kwargs)

    trainer.optimizer.step = capture
    return grads


def _critic_worker(rank: int, port: int, model: str, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2", LOCAL_WORLD_SIZE="2")
    torch.set_num_threads(1)
    accelerator = Accelerator(cpu=True)
    torch.manual_seed(0)
    trainer = CriticOptimizer(load_critic(model, dtype=torch.float32), accelerator, 1e-3, max_grad_norm=None)
    grads = _captured_gradients(trainer)
    input_ids, attention_mask, returns = fixed_batch()
    rows = slice(2 * rank, 2 * rank + 2)  # process 1 holds the row with padding
    values = trainer.critic(input_ids[rows], attention_mask[rows])
    loss, _ = ppo_credit.clipped_value_loss(values, torch.zeros_like(values), returns[rows], attention_mask[rows], clip=None)
    assert trainer.backward(loss)
    queue.put((rank, {n: g.tolist() for n, g in grads.items() if n.startswith("value_head") or "layers.0." in n}))
    accelerator.state.destroy_process_group()


def test_two_processes_step_the_critic_as_one_accumulating_both_halves(tiny_models, free_port):
    """Each process's micro-batch loss is its own token mean; the step averages the gradients over
    processes, which is what one process accumulating the same two micro-batches steps on."""
    import multiprocessing as mp

    model = tiny_models("qwen2-vl")
    port = free_port()
    context = mp.get_context("spawn")
    queue = context.Queue()
    procs = [context.Process(target=_critic_worker, args=(rank, port, model, queue)) for rank in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=180) for _ in range(2))
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0

    torch.manual_seed(0)
    trainer = CriticOptimizer(load_critic(model, dtype=torch.float32), Accelerator(cpu=True), 1e-3, max_grad_norm=None,
                              accumulation=2)
    grads = _captured_gradients(trainer)
    input_ids, attention_mask, returns = fixed_batch()
    for rows in (slice(0, 2), slice(2, 4)):
        values = trainer.critic(input_ids[rows], attention_mask[rows])
        loss, _ = ppo_credit.clipped_value_loss(values, torch.zeros_like(values), returns[rows], attention_mask[rows],
                                                clip=None)
        trainer.backward(loss)
    assert results[0].keys() == results[1].keys() and results[0]
    for name, grad in results[0].items():
        torch.testing.assert_close(torch.tensor(grad), torch.tensor(results[1][name]), rtol=0, atol=0)
        torch.testing.assert_close(torch.tensor(grad), grads[name], rtol=1e-5, atol=1e-8)


def test_a_critic_must_share_the_policys_tokenizer(tiny_models, tmp_path):
    from rewards.backends.processors import load_processor
    from rlvprm.rl.critic import check_same_tokenizer

    toy = load_processor("rlvprm/data/checkpoints/toy-policy").tokenizer
    check_same_tokenizer("rlvprm/data/checkpoints/toy-prm", toy)  # the toy PRM was trained from the toy policy's vocabulary
    with pytest.raises(ValueError, match=r"does not share the policy's tokenizer \(\d+ tokens differ"):
        check_same_tokenizer(tiny_models("qwen2-vl"), toy)
    critic = load_critic(tiny_models("qwen2-vl"), dtype=torch.float32)
    critic.save(tmp_path / "critic")  # a saved critic has no tokenizer: said, not refused
    check_same_tokenizer(tmp_path / "critic", toy)
