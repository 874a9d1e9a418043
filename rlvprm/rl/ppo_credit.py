"""PPO credit: per-token rewards from step scores, GAE, advantage whitening, the clipped value loss.

Pure tensor functions, used by ``rlvprm.rl.ppo_trainer`` and unit tested with hand-computed values.

Notation: B completions, T completion tokens (right-padded: ``completion_mask`` (B, T) holds 1 on a
prefix of each row), S steps (``step_mask`` (B, S) left-packed, ``step_end`` (B, S) the index of
each step's last token, as ``rlvprm.rl.rollouts.StepBatch`` gives them).

The reward of token t is what the environment pays for writing token t; the value V_t estimates the
return from the state *before* token t (the prompt and tokens 0..t-1), so the last real token's
successor state is terminal (value 0).

Left out: per-token entropy bonuses (TRL's ``entropy_coef`` acts on the policy loss) and reward
normalisation across batches (running statistics); the rewards here are bounded already (step
scores in [0, 1], a 0/1 outcome).
"""

from __future__ import annotations

import torch
from torch import Tensor

# How a step's PRM score becomes its reward.
STEP_REWARDS = ("score", "centered", "delta")


def step_reward_values(step_scores: Tensor, step_mask: Tensor, kind: str, center: float = 0.5) -> Tensor:
    """Each step's reward from its score. Shapes: step_scores (B, S), step_mask (B, S) -> (B, S).

    - ``score``: the score s_k itself (Math-Shepherd's PPO). Every step earns, so writing more steps
      earns more: watch ``steps/per_completion``.
    - ``centered``: s_k - center. A step the PRM doubts costs; a confident one pays.
    - ``delta``: s_k - s_{k-1} with s_0 = center: the change the step makes to the PRM's belief. The
      rewards of a completion sum to s_K - center, so splitting a solution into more steps earns
      nothing.

    Masked steps get 0.

    >>> s = torch.tensor([[0.9, 0.6, 0.8], [0.2, 0.0, 0.0]])
    >>> m = torch.tensor([[True, True, True], [True, False, False]])
    >>> step_reward_values(s, m, "centered")
    tensor([[ 0.4000,  0.1000,  0.3000],
            [-0.3000,  0.0000,  0.0000]])
    >>> step_reward_values(s, m, "delta")
    tensor([[ 0.4000, -0.3000,  0.2000],
            [-0.3000,  0.0000,  0.0000]])
    """
    scores = torch.where(step_mask, step_scores, torch.zeros_like(step_scores))
    if kind == "score":
        values = scores
    elif kind == "centered":
        values = scores - center
    elif kind == "delta":
        previous = torch.cat([torch.full_like(scores[:, :1], center), scores[:, :-1]], dim=1)
        values = scores - previous
    else:
        raise ValueError(f"unknown step reward {kind!r}; choose one of {list(STEP_REWARDS)}")
    return torch.where(step_mask, values, torch.zeros_like(values))


def token_rewards(
    step_rewards: Tensor,
    step_mask: Tensor,
    step_end: Tensor,
    outcome: Tensor,
    completion_mask: Tensor,
    kl: Tensor | None = None,
    kl_coef: float = 0.0,
    step_weight: float = 1.0,
    outcome_weight: float = 1.0,
) -> Tensor:
    """Per-token rewards (B, T): each step's reward at its last token, the outcome at the last token,
    minus ``kl_coef`` x the per-token KL estimate on every real token.

    Shapes: step_rewards (B, S), step_mask (B, S) bool, step_end (B, S) long, outcome (B,),
    completion_mask (B, T), kl (B, T) or None.

    Two steps that end on the same token (a token that writes the end of one step and all of the
    next) add up there. A completion without steps (or whose scores were dropped as unscored) gets
    the outcome and the KL penalty only; a completion with no real token gets nothing.

    Worked example: one completion of 5 tokens, steps ending at tokens 1 and 4 with rewards 0.4 and
    0.3, outcome 1 (weight 0.5), KL 0.1 on every token with ``kl_coef`` 0.5:

    >>> r = token_rewards(torch.tensor([[0.4, 0.3]]), torch.tensor([[True, True]]), torch.tensor([[1, 4]]),
    ...                   torch.tensor([1.0]), torch.tensor([[1, 1, 1, 1, 1, 0]]),
    ...                   kl=torch.full((1, 6), 0.1), kl_coef=0.5, outcome_weight=0.5)
    >>> r
    tensor([[-0.0500,  0.3500, -0.0500, -0.0500,  0.7500,  0.0000]])
    """
    mask = completion_mask.to(step_rewards.dtype)
    rewards = torch.zeros_like(mask)
    weighted = torch.where(step_mask, step_weight * step_rewards, torch.zeros_like(step_rewards))
    ends = torch.where(step_mask, step_end, torch.zeros_like(step_end)).clamp(max=mask.shape[1] - 1)
    rewards.scatter_add_(1, ends, weighted)
    lengths = completion_mask.sum(dim=1).long()
    has_tokens = lengths > 0
    last = (lengths - 1).clamp(min=0)
    rows = torch.arange(mask.shape[0], device=mask.device)
    rewards[rows, last] += torch.where(has_tokens, outcome_weight * outcome.to(mask.dtype), torch.zeros_like(mask[:, 0]))
    if kl is not None and kl_coef:
        rewards = rewards - kl_coef * kl.to(mask.dtype)
    return torch.where(completion_mask.bool(), rewards, torch.zeros_like(rewards))


def gae(rewards: Tensor, values: Tensor, completion_mask: Tensor, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over each completion's tokens: ``(advantages, returns)``, both (B, T).

    Shapes: rewards (B, T), values (B, T) (V_t before token t), completion_mask (B, T).

    delta_t = r_t + gamma * V_{t+1} - V_t, with V_{t+1} = 0 after the last real token;
    A_t = delta_t + gamma * lam * A_{t+1}; returns R_t = A_t + V_t (the critic's target). Padding
    gets 0 in both.

    Worked example: 3 tokens and one of padding, reward 1 at the last real token, every value 0.5,
    gamma 1, lambda 0.5: delta = (0, 0, 0.5), so A = (0.125, 0.25, 0.5) and R = A + 0.5.

    >>> a, r = gae(torch.tensor([[0.0, 0.0, 1.0, 0.0]]), torch.tensor([[0.5, 0.5, 0.5, 9.0]]),
    ...            torch.tensor([[1, 1, 1, 0]]), gamma=1.0, lam=0.5)
    >>> a, r
    (tensor([[0.1250, 0.2500, 0.5000, 0.0000]]), tensor([[0.6250, 0.7500, 1.0000, 0.0000]]))
    """
    mask = completion_mask.to(rewards.dtype)
    values = values * mask
    num_tokens = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(num_tokens)):
        # The next state counts only when token t+1 is real: a masked next token is the end.
        follows = mask[:, t + 1] if t + 1 < num_tokens else torch.zeros_like(running)
        next_value = values[:, t + 1] * follows if t + 1 < num_tokens else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * follows * running
        advantages[:, t] = running
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def masked_moments(x: Tensor, mask: Tensor) -> Tensor:
    """``(sum, sum of squares, count)`` of the real tokens of x, shape (3,), so processes can add theirs.

    Shapes: x (B, T), mask (B, T).
    """
    m = mask.to(x.dtype)
    return torch.stack([(x * m).sum(), (x * x * m).sum(), m.sum()])


def whiten(x: Tensor, mask: Tensor, moments: Tensor, eps: float = 1e-8) -> Tensor:
    """(x - mean) / std over the real tokens the moments count; padding stays 0. Shapes: x (B, T),
    mask (B, T), moments (3,) from :func:`masked_moments` (summed over processes for a global whitening).

    >>> x, m = torch.tensor([[1.0, 3.0, 7.0]]), torch.tensor([[1, 1, 0]])
    >>> whiten(x, m, masked_moments(x, m))
    tensor([[-1.,  1.,  0.]])
    """
    total, total_sq, count = moments.unbind()
    count = count.clamp(min=1)
    mean = total / count
    var = (total_sq / count - mean * mean).clamp(min=0)
    return (x - mean) * torch.rsqrt(var + eps) * mask.to(x.dtype)


def clipped_value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, completion_mask: Tensor, clip: float | None,
    num_tokens: Tensor | float | None = None,
) -> tuple[Tensor, Tensor]:
    """PPO's clipped value loss and the fraction of tokens where clipping bound: ``(loss, clip_frac)``, scalars.

    Shapes: values (B, T) (the critic now), old_values (B, T) (at rollout), returns (B, T), completion_mask (B, T).

    loss = 0.5 * sum over real tokens of max((V - R)^2, (V_clipped - R)^2) / ``num_tokens`` (default:
    the batch's real tokens, a mean), where V_clipped = V_old + clamp(V - V_old, -clip, clip);
    ``clip=None`` is the plain squared error. A multi-process run passes the tokens of the whole
    batch over the number of processes, so that averaging the processes' gradients gives the
    gradient of the mean over all tokens, whatever each process holds.

    >>> loss, frac = clipped_value_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]]),
    ...                                 torch.tensor([[2.0, 0.0]]), torch.tensor([[1, 0]]), clip=0.2)
    >>> loss, frac  # clipped 0.2 is further from 2 than 1 is: 0.5 * 1.8^2
    (tensor(1.6200), tensor(1.))
    """
    mask = completion_mask.to(values.dtype)
    count = mask.sum().clamp(min=1)
    total = count if num_tokens is None else num_tokens
    unclipped = (values - returns) ** 2
    if clip is None:
        return 0.5 * (unclipped * mask).sum() / total, torch.zeros((), device=values.device)
    clipped_values = old_values + (values - old_values).clamp(-clip, clip)
    clipped = (clipped_values - returns) ** 2
    loss = 0.5 * (torch.maximum(unclipped, clipped) * mask).sum() / total
    clip_frac = ((clipped > unclipped).to(values.dtype) * mask).sum() / count
    return loss, clip_frac.detach()
