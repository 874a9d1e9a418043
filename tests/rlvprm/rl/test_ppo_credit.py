"""PPO credit against hand-computed tensors; rewards placed on the policy's tokens, read back by decoding."""

import doctest

import pytest
import torch

from rewards.backends.processors import load_processor
from rewards.steps import split_steps
from rlvprm.rl import credit, ppo_credit
from rlvprm.rl.rollouts import score_completions, to_step_batch
from rlvprm.rl.scorers import OracleScorer

from .test_rollouts import RIGHT, ROW, WRONG, encode

NAN = float("nan")


def test_docstring_examples():
    assert doctest.testmod(ppo_credit).failed == 0


def test_rewards_then_gae_by_hand_with_padding_and_an_unscored_completion():
    """Three completions of at most 4 tokens, gamma 0.9 and lambda 0.8 (so gamma * lambda = 0.72):
    row 0 has two scored steps, row 1 one step and two padding tokens, row 2 a NaN step score, so
    its steps are dropped and only the outcome pays (values at padding are garbage and must not leak)."""
    step_scores = torch.tensor([[0.9, 0.6], [0.2, 0.0], [NAN, 0.8]])
    step_mask = torch.tensor([[True, True], [True, False], [True, True]])
    step_end = torch.tensor([[1, 3], [1, 0], [0, 2]])
    outcome = torch.tensor([1.0, 0.0, 1.0])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]])
    values = torch.tensor([[0.2, 0.4, 0.1, 0.3], [0.5, 0.1, 7.0, 7.0], [0.0, 0.0, 0.0, 9.0]])

    scores, kept, bad = credit.sanitize_step_rewards(step_scores, step_mask)
    assert bad.tolist() == [2]
    step_rewards = ppo_credit.step_reward_values(scores, kept, "centered", center=0.5)
    torch.testing.assert_close(step_rewards, torch.tensor([[0.4, 0.1], [-0.3, 0.0], [0.0, 0.0]]))
    rewards = ppo_credit.token_rewards(step_rewards, kept, step_end, outcome, mask)
    torch.testing.assert_close(rewards, torch.tensor([[0.0, 0.4, 0.0, 1.1], [0.0, -0.3, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]))

    advantages, returns = ppo_credit.gae(rewards, values, mask, gamma=0.9, lam=0.8)
    # Row 0: deltas (0.16, 0.09, 0.17, 0.8); A3 = 0.8, A2 = 0.17 + 0.72 * 0.8 = 0.746,
    #        A1 = 0.09 + 0.72 * 0.746 = 0.62712, A0 = 0.16 + 0.72 * 0.62712 = 0.6115264.
    # Row 1: deltas (-0.41, -0.4); A1 = -0.4, A0 = -0.41 + 0.72 * -0.4 = -0.698.
    # Row 2: values 0: A2 = 1, A1 = 0.72, A0 = 0.72^2 = 0.5184.
    expected = torch.tensor([[0.6115264, 0.62712, 0.746, 0.8], [-0.698, -0.4, 0.0, 0.0], [0.5184, 0.72, 1.0, 0.0]])
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(returns, expected + torch.tensor([[0.2, 0.4, 0.1, 0.3], [0.5, 0.1, 0, 0], [0, 0, 0, 0]]))


def test_gae_limits():
    """lambda 1: Monte Carlo return minus the value; lambda 0: the one-step TD error."""
    rewards = torch.tensor([[1.0, 0.0, 2.0]])
    values = torch.tensor([[0.5, 1.0, 1.5]])
    mask = torch.ones(1, 3)
    advantages, returns = ppo_credit.gae(rewards, values, mask, gamma=0.5, lam=1.0)
    # returns: G2 = 2, G1 = 0 + 0.5 * 2 = 1, G0 = 1 + 0.5 * 1 = 1.5
    torch.testing.assert_close(returns, torch.tensor([[1.5, 1.0, 2.0]]))
    torch.testing.assert_close(advantages, torch.tensor([[1.0, 0.0, 0.5]]))
    advantages, _ = ppo_credit.gae(rewards, values, mask, gamma=0.5, lam=0.0)
    torch.testing.assert_close(advantages, torch.tensor([[1.0 + 0.5 - 0.5, 0.0 + 0.75 - 1.0, 2.0 - 1.5]]))


def test_step_rewards_and_kl():
    scores = torch.tensor([[0.8, 0.2]])
    mask = torch.tensor([[True, True]])
    torch.testing.assert_close(ppo_credit.step_reward_values(scores, mask, "score"), scores)
    # delta telescopes: the rewards sum to the last score minus the centre
    delta = ppo_credit.step_reward_values(scores, mask, "delta", center=0.5)
    torch.testing.assert_close(delta, torch.tensor([[0.3, -0.6]]))
    assert delta.sum().item() == pytest.approx(0.2 - 0.5)
    with pytest.raises(ValueError, match="step reward"):
        ppo_credit.step_reward_values(scores, mask, "sum")
    # Two steps ending on one token add up; the KL penalty is on every real token only.
    rewards = ppo_credit.token_rewards(torch.tensor([[0.3, 0.2]]), mask, torch.tensor([[1, 1]]), torch.tensor([0.0]),
                                       torch.tensor([[1, 1, 0]]), kl=torch.tensor([[0.2, -0.4, 5.0]]), kl_coef=0.5,
                                       outcome_weight=2.0, step_weight=2.0)
    torch.testing.assert_close(rewards, torch.tensor([[-0.1, 1.0 + 0.2, 0.0]]))
    # A completion with no real token gets nothing (not even the outcome).
    empty = ppo_credit.token_rewards(torch.zeros(1, 1), torch.zeros(1, 1, dtype=torch.bool), torch.zeros(1, 1, dtype=torch.long),
                                     torch.tensor([1.0]), torch.zeros(1, 2))
    assert (empty == 0).all()


def test_whitening_over_two_processes_equals_one():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    whole = ppo_credit.whiten(x, mask, ppo_credit.masked_moments(x, mask))
    moments = ppo_credit.masked_moments(x[:1], mask[:1]) + ppo_credit.masked_moments(x[1:], mask[1:])
    torch.testing.assert_close(torch.cat([ppo_credit.whiten(x[:1], mask[:1], moments),
                                          ppo_credit.whiten(x[1:], mask[1:], moments)]), whole)
    real = whole[mask.bool()]
    assert real.mean().abs() < 1e-6 and real.std(unbiased=False) == pytest.approx(1, abs=1e-5)


def test_clipped_value_loss_by_hand():
    values, old = torch.tensor([[0.5, 0.1, 3.0]]), torch.tensor([[0.0, 0.0, 0.0]])
    returns, mask = torch.tensor([[1.0, -1.0, 9.0]]), torch.tensor([[1, 1, 0]])
    loss, frac = ppo_credit.clipped_value_loss(values, old, returns, mask, clip=0.2)
    # token 0: unclipped (0.5-1)^2 = 0.25, clipped (0.2-1)^2 = 0.64 -> 0.64 (clipped binds)
    # token 1: unclipped (0.1+1)^2 = 1.21, clipped equal (0.1 inside the clip) -> 1.21
    assert loss.item() == pytest.approx(0.5 * (0.64 + 1.21) / 2)
    assert frac.item() == pytest.approx(0.5)
    plain, _ = ppo_credit.clipped_value_loss(values, old, returns, mask, clip=None)
    assert plain.item() == pytest.approx(0.5 * (0.25 + 1.21) / 2)
    # Over a given token count (a multi-process batch's tokens per process): the sum, divided by it.
    spread, _ = ppo_credit.clipped_value_loss(values, old, returns, mask, clip=0.2, num_tokens=torch.tensor(5.0))
    assert spread.item() == pytest.approx(0.5 * (0.64 + 1.21) / 5)


def test_step_rewards_land_on_each_steps_last_token(tiny_models):
    """Through the real path (policy tokenizer, oracle, step spans): the tokens up to each rewarded
    position decode to text that holds the whole step, one token fewer does not; the outcome sits on
    the stop token."""
    tok = load_processor(tiny_models("qwen2-vl")).tokenizer
    ids = [encode(tok, RIGHT), encode(tok, WRONG)]
    scored = score_completions(tok, OracleScorer(), [ROW, ROW], [[], []], ids)
    batch = to_step_batch(scored)
    width = max(map(len, ids))
    mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids])
    step_rewards = ppo_credit.step_reward_values(batch.step_rewards, batch.step_mask, "centered")
    rewards = ppo_credit.token_rewards(step_rewards, batch.step_mask, batch.step_end, batch.outcome, mask,
                                       outcome_weight=10.0)
    for row, (text, token_ids) in enumerate(zip([RIGHT, WRONG], ids)):
        steps = split_steps(text)
        rewarded = rewards[row].nonzero().flatten().tolist()
        assert len(rewarded) == len(steps) + (row == 0)  # row 0's outcome is 1; the wrong answer's is 0
        for step, position in zip(steps, rewarded):
            # The rewarded token is the first whose text completes the step (this tokenizer merges a
            # step's final "." with the blank line after it, so the token may write a little more).
            upto = tok.decode(token_ids[: position + 1], skip_special_tokens=True)
            assert upto[step.start : step.end] == step.text
            assert len(tok.decode(token_ids[:position], skip_special_tokens=True)) < step.end
        assert rewards[row, : len(token_ids)].nonzero().flatten().tolist() == rewarded
        if row == 0:
            assert rewarded[-1] == len(token_ids) - 1 and token_ids[-1] == tok.eos_token_id
            assert rewards[0, len(token_ids) - 1].item() == pytest.approx(10.0)
    # The wrong solution: its first step is right (+0.5), the three after it wrong (-0.5 each).
    assert rewards[1][rewards[1] != 0].tolist() == [0.5, -0.5, -0.5, -0.5]
