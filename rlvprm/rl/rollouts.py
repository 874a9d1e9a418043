"""Score one process's completions: outcome, steps, step scores, and each step's last policy token.

:func:`score_completions` decodes every completion from the policy's own token ids (so character
offsets are known per token), scores its steps with a step scorer (``rlvprm.rl.scorers``), checks its
final answer with ``rewards.outcome.outcome_reward`` against the row's ``answer``, and maps each
step to the index of its last token (``rlvprm.rl.step_tokens``). :func:`to_step_batch` packs the
results into the tensors the credit functions read.

Notation: B completions on this process, S the most steps of any of them (at least 1), T tokens.

Left out: gathering across processes and the credit itself (``rlvprm.rl.batch_credit``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from PIL import Image
from torch import Tensor

from rewards.outcome import outcome_reward
from rewards.steps import SEPARATOR, Step
from rlvprm.rl.scorers import Rollout, StepScorer
from rlvprm.rl.step_tokens import step_last_tokens, token_char_ends

# Columns of StepBatch.stats, per completion.
STATS = ("num_steps", "no_separator", "unscored", "step_tokens", "num_tokens")


@dataclass
class ScoredCompletion:
    """One completion, scored. ``scores`` is ``None`` when the scorer could not score it."""

    text: str
    outcome: float
    steps: list[Step]
    scores: list[float] | None
    step_end: list[int]  # per step, the index of its last completion token
    num_tokens: int


@dataclass
class StepBatch:
    """Tensors of a batch of scored completions.

    outcome (B,) float, step_rewards (B, S) float (NaN for every step of an unscored completion),
    step_mask (B, S) bool (left-packed), step_end (B, S) long, stats (B, len(STATS)) float.
    """

    outcome: Tensor
    step_rewards: Tensor
    step_mask: Tensor
    step_end: Tensor
    stats: Tensor


def score_completions(
    tokenizer,
    scorer: StepScorer,
    rows: Sequence[dict[str, Any]],
    images: Sequence[Sequence[Image.Image]],
    completion_ids: Sequence[Sequence[int]],
) -> list[ScoredCompletion]:
    """Score each completion (``completion_ids[i]`` answers ``rows[i]``, whose images are ``images[i]``).

    The text is the policy tokenizer's decode without special tokens, the same text TRL gives to
    reward functions; the stop token is part of ``completion_ids`` and writes no character.
    """
    decoded = [token_char_ends(tokenizer, ids) for ids in completion_ids]
    rollouts = [Rollout(row, imgs or [], text) for row, imgs, (text, _) in zip(rows, images, decoded, strict=True)]
    scored = scorer.score(rollouts)
    if len(scored) != len(rollouts):
        raise RuntimeError(f"scorer {scorer.name} returned {len(scored)} results for {len(rollouts)} completions")
    out = []
    for row, ids, (text, ends), result in zip(rows, completion_ids, decoded, scored, strict=True):
        scores = result.scores
        if scores is not None and len(scores) != len(result.steps):
            scores = None  # a scorer that lost steps: treat the completion as unscored, never misalign
        out.append(
            ScoredCompletion(
                text=text,
                outcome=float(outcome_reward(text, row["answer"], row.get("choices"))),
                steps=result.steps,
                scores=scores,
                step_end=step_last_tokens(result.steps, ends) if ends else [],
                num_tokens=len(ids),
            )
        )
    return out


def to_step_batch(completions: Sequence[ScoredCompletion], device: torch.device | str = "cpu") -> StepBatch:
    """Pack scored completions into tensors (shapes in :class:`StepBatch`)."""
    num_rows = len(completions)
    num_steps = max([len(c.steps) for c in completions] + [1])
    step_rewards = torch.zeros(num_rows, num_steps, dtype=torch.float32)
    step_mask = torch.zeros(num_rows, num_steps, dtype=torch.bool)
    step_end = torch.zeros(num_rows, num_steps, dtype=torch.long)
    stats = torch.zeros(num_rows, len(STATS), dtype=torch.float32)
    for i, c in enumerate(completions):
        n = len(c.steps)
        if n and c.step_end:
            step_mask[i, :n] = True
            step_end[i, :n] = torch.tensor(c.step_end)
            step_rewards[i, :n] = torch.tensor(c.scores) if c.scores is not None else math.nan
        unscored = c.scores is None or not all(math.isfinite(x) for x in c.scores)
        stats[i] = torch.tensor([
            n,
            float(SEPARATOR not in c.text.strip()),
            float(unscored and n > 0),
            (c.step_end[-1] + 1) if n and c.step_end else 0,
            c.num_tokens,
        ])
    outcome = torch.tensor([c.outcome for c in completions], dtype=torch.float32)
    return StepBatch(*(t.to(device) for t in (outcome, step_rewards, step_mask, step_end, stats)))
