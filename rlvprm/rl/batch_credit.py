"""Per-token advantages for a generation batch whose groups may span processes, and its metrics.

TRL hands each process a contiguous slice of the generation batch (process ``p`` holds rows
``p * B .. (p + 1) * B - 1``), and a group of ``G`` completions of one prompt can straddle two
processes. So :func:`batch_advantages` pads every process's tensors to the same shape, gathers them
(process order is row order), computes the credit on the whole batch with ``rlvprm.rl.credit``, and
keeps this process's rows and its own number of tokens. One process gives the same advantages as
many, bit for bit (tested with two gloo processes).

Notation: B completions on this process, N = B x processes, S steps, T tokens on this process.

Completions whose step scores are NaN or missing lose their steps (``credit.sanitize_step_rewards``)
and are counted: ``process`` and ``min_form`` then give them 0, ``ps_grpo`` no penalty, and
``prm_sequence`` 0 (its group statistics still count them at ``empty_value``). The outcome part, if
mixed in, is untouched.

Left out: PPO's per-token rewards with GAE (the PPO module's).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlvprm.rl import credit
from rlvprm.rl.rollouts import STATS, StepBatch

METHODS = tuple(credit.METHODS)


@dataclass
class CreditSettings:
    """How advantages are built (the recipe's credit options)."""

    method: str = "process"
    outcome_weight: float = 0.0
    aggregation: str = "mean"  # prm_sequence, and the PRM/outcome agreement metric
    empty_value: float = 0.0  # prm_sequence: the reward of a completion with no steps
    min_form_temperature: float | None = None  # None: hard minimum
    drop_threshold: float = 0.3  # ps_grpo
    penalty: float = 0.5  # ps_grpo
    scale_rewards: str = "group"  # outcome, prm_sequence, ps_grpo: TRL's scale_rewards
    agreement_threshold: float = 0.5  # a response score above it counts as "PRM says right"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown credit method {self.method!r}; choose one of {list(METHODS)}")
        if self.method == "outcome" and self.outcome_weight:
            raise ValueError("credit 'outcome' is the outcome advantage already; leave outcome_weight at 0")
        if self.scale_rewards not in credit.SCALE_REWARDS:
            raise ValueError(f"scale_rewards must be one of {credit.SCALE_REWARDS}, got {self.scale_rewards!r}")

    def method_options(self) -> dict:
        return {
            "outcome": {"scale_rewards": self.scale_rewards},
            "prm_sequence": {"aggregation": self.aggregation, "empty_value": self.empty_value,
                             "scale_rewards": self.scale_rewards},
            "process": {},
            "min_form": {"temperature": self.min_form_temperature},
            "ps_grpo": {"drop_threshold": self.drop_threshold, "penalty": self.penalty,
                        "scale_rewards": self.scale_rewards},
        }[self.method]


def gather_batch(batch: StepBatch, completion_mask: Tensor) -> tuple[StepBatch, Tensor]:
    """Every process's batch, concatenated in process order, padded to common S and T.

    Shapes: this process's tensors (B, ...) and completion_mask (B, T) -> (N, ...) and (N, T_max).
    Without a distributed run this returns its inputs.
    """
    from accelerate.utils import gather, pad_across_processes

    def all_rows(x: Tensor, dim1: bool = True) -> Tensor:
        # gloo cannot all-gather bool tensors: move them as long and back.
        as_long = x.dtype == torch.bool
        x = x.long() if as_long else x
        if dim1:
            x = pad_across_processes(x.contiguous(), dim=1, pad_index=0)
        x = gather(x.contiguous())
        return x.bool() if as_long else x

    gathered = StepBatch(
        outcome=all_rows(batch.outcome, dim1=False),
        step_rewards=all_rows(batch.step_rewards),
        step_mask=all_rows(batch.step_mask),
        step_end=all_rows(batch.step_end),
        stats=all_rows(batch.stats, dim1=False),
    )
    return gathered, all_rows(completion_mask)


def credit_for_batch(
    batch: StepBatch, completion_mask: Tensor, group_size: int, settings: CreditSettings, eps: float = 1e-4
) -> tuple[Tensor, Tensor]:
    """``(advantages (N, T), unscored (N,) bool)`` for a whole batch on one process."""
    step_rewards, step_mask, bad = credit.sanitize_step_rewards(batch.step_rewards, batch.step_mask)
    advantages = credit.compute_advantages(
        settings.method,
        completion_mask=completion_mask,
        group_size=group_size,
        outcome=batch.outcome,
        step_rewards=step_rewards,
        step_mask=step_mask,
        step_end=batch.step_end,
        eps=eps,
        **settings.method_options(),
    )
    unscored = torch.zeros(completion_mask.shape[0], dtype=torch.bool, device=completion_mask.device)
    unscored[bad] = True
    if settings.method == "prm_sequence":
        advantages = torch.where(unscored[:, None], torch.zeros_like(advantages), advantages)
    if settings.outcome_weight:
        parts = {
            settings.method: advantages,
            "outcome": credit.outcome_advantages(
                batch.outcome, completion_mask, group_size, scale_rewards=settings.scale_rewards, eps=eps
            ),
        }
        advantages = credit.mix_advantages(parts, {settings.method: 1.0, "outcome": settings.outcome_weight})
    return advantages, unscored


@dataclass
class BatchCredit:
    """This process's advantages, and the whole gathered batch they were computed from (for metrics)."""

    advantages: Tensor  # (B, T): this process's rows and tokens
    batch: StepBatch  # (N, ...)
    all_advantages: Tensor  # (N, T_max)
    completion_mask: Tensor  # (N, T_max)
    unscored: Tensor  # (N,) bool: NaN or missing step scores

    def metrics(self, settings: "CreditSettings") -> dict[str, float]:
        return batch_metrics(self.batch, self.all_advantages, self.completion_mask, self.unscored, settings)


def batch_advantages(
    local: StepBatch,
    completion_mask: Tensor,
    group_size: int,
    settings: CreditSettings,
    process_index: int = 0,
    eps: float = 1e-4,
) -> BatchCredit:
    """This process's advantages, with the credit computed over the whole gathered batch.

    Shapes: local tensors (B, ...), completion_mask (B, T) -> advantages (B, T) (see :class:`BatchCredit`).
    """
    num_rows, num_tokens = completion_mask.shape
    everything, all_masks = gather_batch(local, completion_mask)
    advantages, unscored = credit_for_batch(everything, all_masks, group_size, settings, eps)
    mine = advantages[process_index * num_rows : (process_index + 1) * num_rows, :num_tokens].contiguous()
    return BatchCredit(mine, everything, advantages, all_masks, unscored)


def batch_metrics(
    batch: StepBatch, advantages: Tensor, completion_mask: Tensor, unscored: Tensor, settings: CreditSettings
) -> dict[str, float]:
    """The signals that show PRM reward hacking early (DESIGN.md section 5), over a gathered batch.

    Shapes: batch tensors (N, ...), advantages (N, T), completion_mask (N, T), unscored (N,).
    KL and completion length are TRL's own metrics (``kl``, ``completions/mean_length``).
    """
    stats = {name: batch.stats[:, i] for i, name in enumerate(STATS)}
    steps = stats["num_steps"]
    scored = batch.step_mask & ~unscored[:, None]
    step_scores = batch.step_rewards[scored]
    has_steps = scored.any(dim=1)
    response = credit.aggregate_step_rewards(
        torch.where(scored, batch.step_rewards, torch.zeros_like(batch.step_rewards)), scored, settings.aggregation
    )
    prm_says_right = response > settings.agreement_threshold
    agree = (prm_says_right == (batch.outcome > 0))[has_steps]
    mask = completion_mask.bool()
    token_counts = mask.sum(dim=1).clamp(min=1)
    mean = (advantages * mask).sum(dim=1) / token_counts
    within = ((advantages - mean[:, None]) ** 2 * mask).sum(dim=1) / token_counts

    def average(x: Tensor) -> float:
        return x.float().mean().item() if x.numel() else float("nan")

    return {
        "prm/step_score_mean": average(step_scores),
        "prm/response_score_mean": average(response[has_steps]),
        "prm/outcome_agreement": average(agree),
        "prm/unscored": float(unscored.sum().item()),
        "outcome/accuracy": average(batch.outcome > 0),
        "steps/per_completion": average(steps),
        "steps/tokens_per_step": (stats["step_tokens"].sum() / steps.sum().clamp(min=1)).item(),
        "steps/no_separator_frac": average(stats["no_separator"]),
        "steps/no_steps_frac": average(steps == 0),
        "advantages/within_completion_std": average(within.sqrt()),
        "advantages/abs_mean": (advantages.abs() * mask).sum().item() / max(1, int(mask.sum().item())),
    }
