"""The losses of PRM training, as tensor functions.

Notation: N label positions in a batch, V the vocabulary, B rows, T solution tokens.

- :func:`step_label_loss`: cross-entropy of the ``+``/``-`` label at each read position, over the
  full vocabulary (``full_vocab``, the default: VisualPRM's ordinary next-token loss on the label
  token) or over the two logits ``[+, -]`` only (``two_way``: exactly the softmax the scorer reads).
  The scorer renormalises ``+`` against ``-`` either way; ``full_vocab`` also pushes every other
  token down, ``two_way`` leaves the rest of the vocabulary alone.
- :func:`implicit_outcome_loss`: PRIME's loss for an implicit PRM, binary cross-entropy between
  ``sigmoid(beta * sum_t (log pi_theta - log pi_ref))`` over the whole response and the outcome.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LABEL_LOSSES = ("full_vocab", "two_way")


def step_label_loss(
    logits: torch.Tensor, targets: torch.Tensor, good_id: int, bad_id: int, mode: str = "full_vocab"
) -> torch.Tensor:
    """Mean cross-entropy of the label tokens.

    ``logits``: ``(N, V)`` at the read positions; ``targets``: ``(N,)`` label token ids (``good_id``
    or ``bad_id``). Worked example (two-way): logits of ``+``/``-`` of ``(0, 0)`` and target ``+``
    give ``log 2``.

    >>> logits = torch.zeros(1, 5)
    >>> round(step_label_loss(logits, torch.tensor([3]), 3, 4, "two_way").item(), 4)  # log 2
    0.6931
    >>> round(step_label_loss(logits, torch.tensor([3]), 3, 4).item(), 4)  # log 5
    1.6094
    """
    if mode == "full_vocab":
        return F.cross_entropy(logits.float(), targets)
    if mode == "two_way":
        pair = logits[:, [good_id, bad_id]].float()  # (N, 2)
        return F.cross_entropy(pair, (targets == bad_id).long())
    raise ValueError(f"unknown label loss {mode!r}; use one of {', '.join(LABEL_LOSSES)}")


def implicit_outcome_loss(
    policy_logprobs: torch.Tensor,
    reference_logprobs: torch.Tensor,
    mask: torch.Tensor,
    outcomes: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean loss, sequence rewards (B,))`` of PRIME's outcome cross-entropy.

    ``policy_logprobs``, ``reference_logprobs``: ``(B, T)`` token log-probabilities of the
    trained model and its frozen reference; ``mask``: ``(B, T)`` solution tokens; ``outcomes``:
    ``(B,)`` 1 for a right final answer, 0 for a wrong one. The sequence reward is
    ``r = beta * sum_t mask * (policy - reference)``; the loss is ``-y log sigmoid(r) - (1 - y)
    log(1 - sigmoid(r))``. Worked example: equal models give ``r = 0`` and the loss ``log 2``.

    >>> lp = torch.tensor([[-1.0, -2.0]])
    >>> loss, r = implicit_outcome_loss(lp, lp, torch.ones(1, 2, dtype=torch.bool), torch.tensor([1.0]), 0.1)
    >>> round(loss.item(), 4), r.tolist()
    (0.6931, [0.0])
    >>> loss, r = implicit_outcome_loss(lp + 1, lp, torch.tensor([[True, False]]), torch.tensor([1.0]), 0.5)
    >>> r.tolist(), round(loss.item(), 4)  # r = 0.5 * 1; -log sigmoid(0.5)
    ([0.5], 0.4741)
    """
    ratio = (policy_logprobs - reference_logprobs) * mask.to(policy_logprobs.dtype)
    rewards = beta * ratio.sum(dim=-1)  # (B,)
    loss = F.binary_cross_entropy_with_logits(rewards, outcomes.to(rewards.dtype))
    return loss, rewards
