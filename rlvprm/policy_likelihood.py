"""The policy's own probability of each step: the training-free likelihood process scorer.

DESIGN.md section 7: in the visual-arith world the policy's per-step probability (running minimum
over steps) separates right from wrong steps far better than any trained tiny PRM, because a
misread digit is a token the policy itself finds unlikely. It is the baseline a trained PRM must
beat, and a Best-of-N strategy of its own.

How a solution maps to tokens: the prompt (:func:`rlvprm.generation.render_prompt`) and the solution
are tokenised together, in one go, as the policy would see them; the tokenizer's offset mapping
says which characters each token covers. A token belongs to the solution when its last character
does, and to the step whose region holds that last character. Step ``k``'s region runs from its
start (``rewards.steps.split_steps``) to the next step's start, so the separator after a step (the
policy's decision to end it) counts with that step, text before the first step with the first and
text after the last step with the last. Every solution token therefore belongs to exactly one step,
and the step sums add up to the solution's log-probability.

All solutions of a group are scored in one teacher-forced forward pass per batch (left-padded, so
the solution tokens sit at the end of every row and only those positions' logits are computed).
Log-probabilities are ``log_softmax`` of the raw logits (temperature 1), as the samplers return them.

Left out: the end-of-turn token (its probability belongs to no step), and PRIME-style implicit
rewards (a log-ratio against a reference model), which would reuse :func:`solution_logprobs`.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Sequence

import torch
from PIL import Image

from rewards.steps import Step, split_steps
from rlvprm.generation import render_prompt

SCORE_KINDS = ("step_prob", "mean_token_prob", "min_token_prob")


@dataclass
class StepLogprobs:
    """One solution's tokens, their log-probabilities and how they divide into steps.

    ``token_offsets`` are character spans inside the solution text (a token that starts in the
    prompt has a negative start); ``step_tokens[k]`` is the range of token indices of step ``k``.
    """

    steps: list[Step]
    token_ids: list[int]
    token_offsets: list[tuple[int, int]]
    token_logprobs: list[float]
    step_tokens: list[range]

    @property
    def step_sums(self) -> list[float]:
        """The summed log-probability of every step's tokens."""
        return [math.fsum(self.token_logprobs[i] for i in r) for r in self.step_tokens]

    def step_token_logprobs(self, k: int) -> list[float]:
        return [self.token_logprobs[i] for i in self.step_tokens[k]]


def step_token_map(
    offsets: Sequence[tuple[int, int]], solution_start: int, steps: Sequence[Step]
) -> tuple[int, list[range]]:
    """``(first solution token, token range of each step)`` from a token offset mapping.

    ``offsets`` are the character spans of the tokens of prompt + solution; ``solution_start`` is
    where the solution begins; step spans are relative to the solution.

    >>> # tokens: "P:" | "a" | "b\\n\\n" | "c"   (prompt "P:", solution "ab\\n\\nc", steps "ab", "c")
    >>> step_token_map([(0, 2), (2, 3), (3, 6), (6, 7)], 2, [Step("ab", 0, 2), Step("c", 4, 5)])
    (1, [range(1, 3), range(3, 4)])
    """
    first = next((i for i, (s, e) in enumerate(offsets) if max(e - 1, s) >= solution_start), len(offsets))
    if not steps:
        return first, []
    starts = [s.start for s in steps[1:]]
    owner = [bisect.bisect_right(starts, max(e - 1, s) - solution_start) for s, e in offsets[first:]]
    ranges = []
    for k in range(len(steps)):
        idx = [first + i for i, o in enumerate(owner) if o == k]
        ranges.append(range(idx[0], idx[-1] + 1) if idx else range(first, first))
    return first, ranges


def _encode_texts(processor, prompt: str, solutions: Sequence[str], max_steps: int | None):
    """Per solution: steps, solution token ids and offsets, and the step ranges (within the solution)."""
    tokenizer = processor.tokenizer
    items = []
    for solution in solutions:
        steps = split_steps(solution, max_steps)
        enc = tokenizer(prompt + solution, add_special_tokens=False, return_offsets_mapping=True)
        first, ranges = step_token_map(enc["offset_mapping"], len(prompt), steps)
        ids = enc["input_ids"][first:]
        offsets = [(s - len(prompt), e - len(prompt)) for s, e in enc["offset_mapping"][first:]]
        items.append((steps, ids, offsets, [range(r.start - first, r.stop - first) for r in ranges]))
    return items


@torch.no_grad()
def solution_logprobs(
    model,
    processor,
    question: str,
    images: Sequence[Image.Image],
    solutions: Sequence[str],
    max_steps: int | None = None,
    batch_size: int = 8,
) -> list[StepLogprobs]:
    """Token log-probabilities of each solution under the policy, divided into steps.

    One teacher-forced forward pass per batch of ``batch_size`` solutions; the solutions share the
    question and images (a Best-of-N or RL group).
    """
    prompt = render_prompt(processor, question, len(images))
    items = _encode_texts(processor, prompt, solutions, max_steps)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    results: list[StepLogprobs] = []
    try:
        for start in range(0, len(solutions), batch_size):
            chunk = items[start : start + batch_size]
            texts = [prompt + s for s in solutions[start : start + batch_size]]
            kwargs = {"images": [list(images)] * len(texts)} if images else {}
            enc = processor(text=texts, padding=True, padding_side="left", return_tensors="pt", **kwargs)
            ids = enc["input_ids"]
            for row, (_, sol_ids, _, _) in zip(ids.tolist(), chunk):
                # The processor expands image placeholders, which all come before the solution, so the
                # solution's tokens must be the last ones of its row.
                if sol_ids and row[-len(sol_ids) :] != sol_ids:
                    raise ValueError("the processor tokenised the solution differently from the tokenizer")
            keep = max(len(c[1]) for c in chunk) + 1
            inputs = {
                k: v.to(device, model.dtype) if torch.is_floating_point(v) else v.to(device)
                for k, v in enc.items()
                if isinstance(v, torch.Tensor)
            }
            # (B, keep, V): logits of the last `keep` positions; position j predicts token j + 1.
            logits = model(**inputs, logits_to_keep=keep, use_cache=False).logits
            for b, (steps, sol_ids, offsets, ranges) in enumerate(chunk):
                n = len(sol_ids)
                if n == 0:
                    lp: list[float] = []
                else:
                    rows = logits[b, keep - n - 1 : keep - 1].float()
                    target = torch.tensor(sol_ids, device=rows.device).unsqueeze(1)
                    lp = torch.log_softmax(rows, dim=-1).gather(1, target).squeeze(1).tolist()
                results.append(StepLogprobs(steps, list(sol_ids), offsets, lp, ranges))
    finally:
        model.train(was_training)
    return results


def step_logprobs(
    model, processor, question: str, images: Sequence[Image.Image], solution: str, max_steps: int | None = None
) -> list[float]:
    """The policy's summed log-probability of each step of ``solution`` (one forward pass)."""
    return solution_logprobs(model, processor, question, images, [solution], max_steps)[0].step_sums


def step_logprobs_batch(
    model,
    processor,
    question: str,
    images: Sequence[Image.Image],
    solutions: Sequence[str],
    max_steps: int | None = None,
    batch_size: int = 8,
) -> list[list[float]]:
    """:func:`step_logprobs` for a group of solutions sharing the question and images."""
    found = solution_logprobs(model, processor, question, images, solutions, max_steps, batch_size)
    return [r.step_sums for r in found]


def likelihood_step_scores(result: StepLogprobs, kind: str = "step_prob", running_min: bool = False) -> list[float]:
    """Step scores in [0, 1] from the policy's token log-probabilities.

    ``kind``: ``step_prob`` (the probability of the whole step), ``mean_token_prob`` (the mean
    probability of its tokens, not penalising long steps) or ``min_token_prob`` (its least likely
    token: one misread digit is enough). ``running_min`` replaces each score by the minimum over
    this and all earlier steps, so a step after an unlikely one cannot look good again.

    >>> r = StepLogprobs([], [], [], [math.log(0.5), math.log(0.5), math.log(0.9)], [range(0, 2), range(2, 3)])
    >>> [round(x, 2) for x in likelihood_step_scores(r)]
    [0.25, 0.9]
    >>> [round(x, 2) for x in likelihood_step_scores(r, running_min=True)]
    [0.25, 0.25]
    """
    if kind not in SCORE_KINDS:
        raise ValueError(f"unknown likelihood score {kind!r}; use one of {', '.join(SCORE_KINDS)}")
    scores = []
    for k in range(len(result.step_tokens)):
        lp = result.step_token_logprobs(k)
        if not lp:
            scores.append(1.0)  # a step with no tokens of its own (cannot happen for split steps)
        elif kind == "step_prob":
            scores.append(math.exp(math.fsum(lp)))
        elif kind == "mean_token_prob":
            scores.append(sum(math.exp(x) for x in lp) / len(lp))
        else:
            scores.append(math.exp(min(lp)))
    if running_min:
        for k in range(1, len(scores)):
            scores[k] = min(scores[k], scores[k - 1])
    return scores
