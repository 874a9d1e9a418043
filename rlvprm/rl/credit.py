"""Credit assignment: per-token GRPO advantages from outcome rewards and PRM step scores.

Pure tensor functions, no trl: the GRPO subclass gathers whole groups onto one process, calls one of
these, and slices the rows back. Every function returns advantages of shape ``(B, T)``, zero on
padding tokens, which TRL's GRPO loss takes in place of its ``(B,)`` advantages.

Notation used in every docstring: B completions, G group size (consecutive blocks of G rows answer
the same prompt; B must be a multiple of G), S max steps per completion, T completion tokens.

    outcome          (B,)    verifiable reward of each completion
    step_rewards     (B, S)  PRM score of each step, read only where step_mask is True
    step_mask        (B, S)  bool, True for real steps, left-packed (a row's steps come first);
                             a row may have no steps at all
    step_end         (B, S)  long, index in 0..T-1 of the last completion token of each step,
                             non-decreasing along a row's real steps
    completion_mask  (B, T)  1 for completion tokens, 0 for padding

A token belongs to the first step whose end is at or after it; tokens after a row's last step end
(a trailing answer with no separator before it, say) belong to no step.

Methods (DESIGN.md section 5), in the dispatch table :data:`METHODS`:

- ``outcome``: plain GRPO on the verifiable reward.
- ``prm_sequence``: the aggregated PRM score as one scalar reward per completion.
- ``process``: DeepSeekMath process supervision (sum of normalised step rewards from a token on).
- ``min_form``: PURE (minimum, or softmin, of the step rewards from a token's step on).
- ``ps_grpo``: URSA (the outcome reward, less a penalty for a correct answer whose PRM scores
  drop sharply between two consecutive steps).

Group normalisation matches TRL 1.16's GRPO: ``(x - group mean) / (group std + eps)`` with the
*sample* standard deviation (Bessel's correction, as ``trl.trainer.utils.nanstd``). A group whose
values are all equal gets exactly 0, not ``rounding error / eps``. The step-level methods
(``process``, ``min_form``) normalise over every real step of every completion in the group.

Left out: gathering groups across processes (the trainer's job), the KL term and the loss (TRL's),
and per-token rewards for PPO with GAE (the PPO module's). Run the tests with
``pytest tests/rlvprm/rl/test_credit.py``; the examples below are run as doctests there too.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from rewards.aggregate import parse_aggregation

SCALE_REWARDS = ("group", "batch", "none")


# --- input checks ---------------------------------------------------------------------------------


def check_step_rewards(step_rewards: Tensor, step_mask: Tensor) -> None:
    """Raise ``ValueError`` naming the rows whose real steps hold a NaN or infinite score.

    Shapes: step_rewards (B, S), step_mask (B, S). Values under a False mask are never read, so
    padding may hold anything.
    """
    bad = _bad_step_rows(step_rewards, step_mask).nonzero().flatten().tolist()
    if bad:
        raise ValueError(
            f"step_rewards are NaN or infinite at real steps of rows {bad}; "
            "sanitize_step_rewards drops those rows' steps and returns which rows they were"
        )


def sanitize_step_rewards(step_rewards: Tensor, step_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Drop every step of the rows that hold a NaN or infinite score at a real step.

    Shapes: B completions, S max steps. step_rewards (B, S), step_mask (B, S) ->
    rewards (B, S) with 0 wherever the returned mask is False, mask (B, S), bad_rows (n_bad,) long.

    A dropped row then reads as a completion with no steps: 0 advantage from ``process`` and
    ``min_form``, the ``empty_value`` reward from ``prm_sequence``. The caller counts ``bad_rows``.

    >>> r = torch.tensor([[0.9, float("nan")], [0.5, float("nan")]])
    >>> m = torch.tensor([[True, True], [True, False]])
    >>> rewards, mask, bad = sanitize_step_rewards(r, m)
    >>> rewards, mask, bad
    (tensor([[0.0000, 0.0000],
            [0.5000, 0.0000]]), tensor([[False, False],
            [ True, False]]), tensor([0]))
    """
    bad = _bad_step_rows(step_rewards, step_mask)
    mask = step_mask & ~bad[:, None]
    rewards = torch.where(mask, step_rewards, torch.zeros_like(step_rewards))
    return rewards, mask, bad.nonzero().flatten()


def _bad_step_rows(step_rewards: Tensor, step_mask: Tensor) -> Tensor:
    return (step_mask & ~torch.isfinite(step_rewards)).any(dim=1)


def _check_batch(
    completion_mask: Tensor,
    group_size: int,
    outcome: Tensor | None = None,
    step_rewards: Tensor | None = None,
    step_mask: Tensor | None = None,
    step_end: Tensor | None = None,
) -> None:
    if completion_mask.dim() != 2:
        raise ValueError(f"completion_mask must be (B, T), got shape {tuple(completion_mask.shape)}")
    num_rows, num_tokens = completion_mask.shape
    if group_size < 1 or num_rows % group_size:
        raise ValueError(f"a batch of {num_rows} completions is not a whole number of groups of {group_size}")
    if outcome is not None:
        if outcome.shape != (num_rows,):
            raise ValueError(f"outcome must be (B,) = ({num_rows},), got {tuple(outcome.shape)}")
        bad = (~torch.isfinite(outcome.float())).nonzero().flatten().tolist()
        if bad:
            raise ValueError(f"outcome is NaN or infinite at rows {bad}")
    if step_mask is None:
        return
    if step_mask.dtype != torch.bool or step_mask.dim() != 2 or step_mask.shape[0] != num_rows:
        raise ValueError(f"step_mask must be a bool (B, S) tensor with B = {num_rows}")
    if step_rewards is not None:
        if step_rewards.shape != step_mask.shape:
            raise ValueError(f"step_rewards {tuple(step_rewards.shape)} and step_mask {tuple(step_mask.shape)} differ")
        check_step_rewards(step_rewards, step_mask)
    not_packed = (step_mask[:, 1:] & ~step_mask[:, :-1]).any(dim=1).nonzero().flatten().tolist()
    if not_packed:
        raise ValueError(f"step_mask must be left-packed (real steps first); rows {not_packed} are not")
    if step_end is None:
        return
    if step_end.shape != step_mask.shape or step_end.is_floating_point():
        raise ValueError(f"step_end must be an integer tensor shaped like step_mask {tuple(step_mask.shape)}")
    outside = (step_mask & ((step_end < 0) | (step_end >= num_tokens))).any(dim=1).nonzero().flatten().tolist()
    if outside:
        raise ValueError(f"step_end lies outside the {num_tokens} completion tokens in rows {outside}")
    both = step_mask[:, 1:] & step_mask[:, :-1]
    decreasing = (both & (step_end[:, 1:] < step_end[:, :-1])).any(dim=1).nonzero().flatten().tolist()
    if decreasing:
        raise ValueError(f"step_end must not decrease along a row's steps; rows {decreasing} do")


def _check_scale(scale_rewards: str) -> None:
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards must be one of {SCALE_REWARDS}, got {scale_rewards!r}")


# --- shared pieces --------------------------------------------------------------------------------


def _as_float(x: Tensor) -> Tensor:
    # Statistics in float32 at least, so bf16 scores do not lose the small differences within a group.
    return x if x.dtype == torch.float64 else x.to(torch.float32)


def _group_normalise(
    values: Tensor, valid: Tensor, group_size: int, scale_rewards: str = "group", eps: float = 1e-4
) -> Tensor:
    """(values - group mean) / (std + eps) over the valid entries of each group; 0 where not valid.

    Shapes: values (B, K), valid (B, K) bool -> (B, K). A group's entries are the K values of each of
    its G rows together. ``scale_rewards="batch"`` divides by the std over every valid entry of the
    batch (TRL's choice), still centring on the group mean.
    """
    values = _as_float(values)
    if values.numel() == 0:
        return torch.zeros_like(values)
    grouped = values.reshape(values.shape[0] // group_size, -1)
    grouped_valid = valid.reshape(grouped.shape)
    mean, std, constant = _masked_stats(grouped, grouped_valid)
    # A group of equal values gets exactly 0: x - mean can be one rounding step off 0, and dividing
    # that by eps would hand out advantages of about 1e-4 for nothing.
    centred = torch.where(grouped_valid & ~constant, grouped - mean, torch.zeros_like(grouped))
    if scale_rewards == "batch":
        _, std, _ = _masked_stats(values.reshape(1, -1), valid.reshape(1, -1))
    if scale_rewards != "none":
        denominator = std + eps
        centred = centred / torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    return centred.reshape(values.shape)


def _masked_stats(x: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per row of ``x`` (R, K) over its valid entries: mean, sample std (0 with < 2 entries), and
    whether all entries are equal (True with < 2 entries); each (R, 1)."""
    zeros = torch.zeros_like(x)
    count = valid.sum(dim=1, keepdim=True)
    mean = torch.where(valid, x, zeros).sum(dim=1, keepdim=True) / count.clamp(min=1)
    squares = torch.where(valid, (x - mean) ** 2, zeros).sum(dim=1, keepdim=True)
    std = (squares / (count - 1).clamp(min=1)).sqrt()
    high = torch.where(valid, x, torch.full_like(x, -math.inf)).amax(dim=1, keepdim=True)
    low = torch.where(valid, x, torch.full_like(x, math.inf)).amin(dim=1, keepdim=True)
    return mean, std, high <= low


def _per_token(advantages: Tensor, completion_mask: Tensor) -> Tensor:
    """(B,) -> (B, T): the same advantage for every token of a completion, 0 on padding."""
    per_token = advantages[:, None].expand(completion_mask.shape)
    return torch.where(completion_mask.bool(), per_token, torch.zeros_like(per_token))


def _steps_to_tokens(step_values: Tensor, step_mask: Tensor, step_end: Tensor, completion_mask: Tensor) -> Tensor:
    """(B, S) -> (B, T): each token takes the value of its step (the first step whose end is at or
    after it); tokens after the last step's end, and padding tokens, get 0."""
    num_rows, num_tokens = completion_mask.shape
    num_steps = step_values.shape[1]
    if num_steps == 0:
        return step_values.new_zeros(num_rows, num_tokens)
    # Padding steps end "at T" so that each row stays sorted for searchsorted.
    ends = torch.where(step_mask, step_end.long(), torch.full_like(step_end.long(), num_tokens)).contiguous()
    tokens = torch.arange(num_tokens, device=ends.device).expand(num_rows, num_tokens).contiguous()
    step_of_token = torch.searchsorted(ends, tokens)  # first index with ends[index] >= token
    in_a_step = step_of_token < step_mask.sum(dim=1, keepdim=True)
    values = step_values.gather(1, step_of_token.clamp(max=num_steps - 1))
    keep = in_a_step & completion_mask.bool()
    return torch.where(keep, values, torch.zeros_like(values))


def _softmin(values: Tensor, include: Tensor, temperature: float) -> Tensor:
    """sum_k softmax(-v / temperature)_k * v_k over the included entries of the last dim; 0 if none."""
    logits = torch.where(include, -values / temperature, torch.full_like(values, -math.inf))
    weights = torch.softmax(logits, dim=-1)
    weighted = torch.where(include, weights * values, torch.zeros_like(values))
    return weighted.sum(dim=-1)


def _check_temperature(temperature: float | None) -> None:
    if temperature is not None and not (0 < temperature < math.inf):
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")


# --- methods --------------------------------------------------------------------------------------


def outcome_advantages(
    outcome: Tensor,
    completion_mask: Tensor,
    group_size: int,
    scale_rewards: str = "group",
    eps: float = 1e-4,
) -> Tensor:
    """Plain GRPO: the group-normalised verifiable reward, the same for every token.

    Shapes: B completions, G = group_size, T completion tokens.
    outcome (B,), completion_mask (B, T) -> advantages (B, T).

    ``(r - group mean) / (std + eps)`` with the sample std (Bessel's correction), as TRL 1.16's GRPO.
    ``scale_rewards``: ``"group"`` divides by the group's std, ``"batch"`` by the std of the whole
    batch (still centred on the group mean), ``"none"`` does not divide. A group of equal rewards
    gets 0 everywhere.

    Example, two groups of G = 2 (eps = 0 to keep the numbers round). Group 1 rewards (1, 0): mean
    0.5, sample std sqrt((0.25 + 0.25) / 1) = 0.7071, so +-0.5 / 0.7071 = +-0.7071. Group 2
    rewards (1, 1): all equal, 0. Row 1's last token is padding.

    >>> outcome = torch.tensor([1.0, 0.0, 1.0, 1.0])
    >>> completion_mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 1], [1, 1, 1]])
    >>> outcome_advantages(outcome, completion_mask, group_size=2, eps=0.0)
    tensor([[ 0.7071,  0.7071,  0.7071],
            [-0.7071, -0.7071,  0.0000],
            [ 0.0000,  0.0000,  0.0000],
            [ 0.0000,  0.0000,  0.0000]])
    """
    _check_scale(scale_rewards)
    _check_batch(completion_mask, group_size, outcome=outcome)
    rewards = _as_float(outcome)[:, None]
    advantages = _group_normalise(rewards, torch.ones_like(rewards, dtype=torch.bool), group_size, scale_rewards, eps)
    return _per_token(advantages[:, 0], completion_mask)


def aggregate_step_rewards(
    step_rewards: Tensor,
    step_mask: Tensor,
    aggregation: str = "mean",
    temperature: float = 1.0,
    empty_value: float = 0.0,
) -> Tensor:
    """One score per completion from its step scores (DESIGN.md section 2, "Response score").

    Shapes: B completions, S max steps. step_rewards (B, S), step_mask (B, S) -> scores (B,).

    ``aggregation``: a name from ``rewards.aggregate`` (the tensor form of its ``aggregate``):
    ``mean`` (VisualPRM's), ``min``, ``max``, ``last``, ``prod``, or ``softmin``
    (``sum softmax(-r / temperature) * r``), also written ``"softmin:T"``; ``T`` in the name
    overrides ``temperature``, which only ``softmin`` reads. A row with no steps scores
    ``empty_value`` (``rewards.aggregate`` refuses an empty list; here a row may have no steps).

    >>> r = torch.tensor([[0.9, 0.5, 0.7], [0.8, 0.0, 0.0], [0.0, 0.0, 0.0]])
    >>> m = torch.tensor([[True, True, True], [True, False, False], [False, False, False]])
    >>> aggregate_step_rewards(r, m, "mean"), aggregate_step_rewards(r, m, "min")
    (tensor([0.7000, 0.8000, 0.0000]), tensor([0.5000, 0.8000, 0.0000]))
    >>> aggregate_step_rewards(r, m, "last", empty_value=-1.0)
    tensor([ 0.7000,  0.8000, -1.0000])
    """
    # The names (and "softmin:T") are rewards.aggregate's, so a recipe value means the same in
    # Best-of-N and in RL.
    aggregation, named_temperature = parse_aggregation(aggregation)
    temperature = temperature if named_temperature is None else named_temperature
    _check_temperature(temperature)
    check_step_rewards(step_rewards, step_mask)
    rewards = _as_float(step_rewards)
    num_steps = step_mask.sum(dim=1)
    if rewards.shape[1] == 0:
        return rewards.new_full((rewards.shape[0],), empty_value)
    if aggregation == "mean":
        scores = torch.where(step_mask, rewards, torch.zeros_like(rewards)).sum(dim=1) / num_steps.clamp(min=1)
    elif aggregation == "min":
        scores = torch.where(step_mask, rewards, torch.full_like(rewards, math.inf)).amin(dim=1)
    elif aggregation == "max":
        scores = torch.where(step_mask, rewards, torch.full_like(rewards, -math.inf)).amax(dim=1)
    elif aggregation == "last":
        scores = rewards.gather(1, (num_steps - 1).clamp(min=0)[:, None])[:, 0]
    elif aggregation == "prod":
        scores = torch.where(step_mask, rewards, torch.ones_like(rewards)).prod(dim=1)
    else:
        scores = _softmin(rewards, step_mask, temperature)
    return torch.where(num_steps > 0, scores, torch.full_like(scores, empty_value))


def prm_sequence_advantages(
    step_rewards: Tensor,
    step_mask: Tensor,
    completion_mask: Tensor,
    group_size: int,
    aggregation: str = "mean",
    temperature: float = 1.0,
    empty_value: float = 0.0,
    scale_rewards: str = "group",
    eps: float = 1e-4,
) -> Tensor:
    """The aggregated PRM score as the completion's reward, group-normalised like ``outcome``.

    Shapes: B completions, G = group_size, S max steps, T completion tokens.
    step_rewards (B, S), step_mask (B, S), completion_mask (B, T) -> advantages (B, T).

    A completion with no steps takes ``empty_value`` (default 0.0, the lowest PRM score) as its
    reward and takes part in its group's mean and std like any other: a policy that stops writing
    steps is marked down, not ignored. See :func:`aggregate_step_rewards` for the aggregations.

    Example, one group of G = 3 with the mean. Scores: (1 + 0) / 2 = 0.5, (1 + 1) / 2 = 1.0, and
    0.0 for the row with no steps. Group mean 0.5, sample std sqrt((0 + 0.25 + 0.25) / 2) = 0.5,
    so advantages (0, +1, -1).

    >>> step_rewards = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    >>> step_mask = torch.tensor([[True, True], [True, True], [False, False]])
    >>> completion_mask = torch.ones(3, 2)
    >>> prm_sequence_advantages(step_rewards, step_mask, completion_mask, group_size=3, eps=0.0)
    tensor([[ 0.,  0.],
            [ 1.,  1.],
            [-1., -1.]])
    """
    _check_scale(scale_rewards)
    _check_batch(completion_mask, group_size, step_rewards=step_rewards, step_mask=step_mask)
    scores = aggregate_step_rewards(step_rewards, step_mask, aggregation, temperature, empty_value)[:, None]
    advantages = _group_normalise(scores, torch.ones_like(scores, dtype=torch.bool), group_size, scale_rewards, eps)
    return _per_token(advantages[:, 0], completion_mask)


def process_advantages(
    step_rewards: Tensor,
    step_mask: Tensor,
    step_end: Tensor,
    completion_mask: Tensor,
    group_size: int,
    eps: float = 1e-4,
) -> Tensor:
    """DeepSeekMath process supervision: a token's advantage is the sum of the group-normalised
    rewards of the steps that end at or after it.

    Shapes: B completions, G = group_size, S max steps, T completion tokens.
    step_rewards (B, S), step_mask (B, S), step_end (B, S), completion_mask (B, T) -> advantages (B, T).

    Every real step of every completion in a group is normalised together: (r - mean) / (sample
    std + eps) over those steps. Tokens after a row's last step end, rows with no steps, and padding
    get 0. A group with one step in all, or all steps equal, gets 0.

    Example, one group of G = 2, T = 4. Row 0 has steps scored (1, 0) ending at tokens (1, 3); row 1
    one step scored 1 ending at token 2. The group's steps (1, 0, 1): mean 2/3, sample std
    sqrt((1/9 + 4/9 + 1/9) / 2) = 0.5774, normalised (0.5774, -1.1547, 0.5774). Row 0: tokens 0-1
    sum both steps, 0.5774 - 1.1547 = -0.5774; tokens 2-3 only the second, -1.1547. Row 1: tokens 0-2
    get 0.5774, token 3 (after its last step) 0.

    >>> step_rewards = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    >>> step_mask = torch.tensor([[True, True], [True, False]])
    >>> step_end = torch.tensor([[1, 3], [2, 0]])
    >>> completion_mask = torch.ones(2, 4)
    >>> process_advantages(step_rewards, step_mask, step_end, completion_mask, group_size=2, eps=0.0)
    tensor([[-0.5774, -0.5774, -1.1547, -1.1547],
            [ 0.5774,  0.5774,  0.5774,  0.0000]])
    """
    _check_batch(completion_mask, group_size, step_rewards=step_rewards, step_mask=step_mask, step_end=step_end)
    normalised = _group_normalise(step_rewards, step_mask, group_size, "group", eps)
    from_step_on = normalised.flip(1).cumsum(dim=1).flip(1)  # padding steps hold 0, so add nothing
    return _steps_to_tokens(from_step_on, step_mask, step_end, completion_mask)


def min_form_returns(step_rewards: Tensor, step_mask: Tensor, temperature: float | None = None) -> Tensor:
    """PURE's min-form return of each step: the minimum of the step rewards from that step on.

    Shapes: B completions, S max steps. step_rewards (B, S), step_mask (B, S) -> returns (B, S), 0 at
    padding steps.

    With a ``temperature``, the hard minimum becomes a softmin over the same steps,
    ``sum_k softmax(-r_k / temperature) * r_k`` for k from the step on: it tends to the minimum as
    the temperature falls and to the mean as it grows.

    Example, steps (0.2, 0.9, 0.5): minimum from each step on (0.2, 0.5, 0.5). Softmin at 0.1 from
    step 0: weights proportional to (e^-2, e^-9, e^-5) = (0.13534, 0.00012, 0.00674), so
    (0.2 * 0.13534 + 0.9 * 0.00012 + 0.5 * 0.00674) / 0.14220 = 0.2148; from step 1:
    (0.9 * 0.00012 + 0.5 * 0.00674) / 0.00686 = 0.5072; from step 2: 0.5.

    >>> r = torch.tensor([[0.2, 0.9, 0.5]])
    >>> m = torch.ones(1, 3, dtype=torch.bool)
    >>> min_form_returns(r, m)
    tensor([[0.2000, 0.5000, 0.5000]])
    >>> min_form_returns(r, m, temperature=0.1)
    tensor([[0.2148, 0.5072, 0.5000]])
    """
    _check_temperature(temperature)
    rewards = _as_float(step_rewards)
    if temperature is None:
        # Suffix minimum: reverse, running minimum, reverse back.
        filled = torch.where(step_mask, rewards, torch.full_like(rewards, math.inf))
        returns = filled.flip(1).cummin(dim=1).values.flip(1)
    else:
        num_steps = rewards.shape[1]
        index = torch.arange(num_steps, device=rewards.device)
        from_step_on = index[None, :] >= index[:, None]  # (S, S): [j, k] is k >= j
        include = from_step_on[None] & step_mask[:, None, :]  # (B, S, S)
        returns = _softmin(rewards[:, None, :].expand(include.shape), include, temperature)
    return torch.where(step_mask, returns, torch.zeros_like(rewards))


def min_form_advantages(
    step_rewards: Tensor,
    step_mask: Tensor,
    step_end: Tensor,
    completion_mask: Tensor,
    group_size: int,
    temperature: float | None = None,
    eps: float = 1e-4,
) -> Tensor:
    """PURE min-form credit: a token's return is the minimum (or softmin) of the step rewards from
    its step on, group-normalised.

    Shapes: B completions, G = group_size, S max steps, T completion tokens.
    step_rewards (B, S), step_mask (B, S), step_end (B, S), completion_mask (B, T) -> advantages (B, T).

    The per-step returns of :func:`min_form_returns` are normalised over every real step of every
    completion in the group (as ``process`` normalises rewards), then each token takes its step's
    value. Normalising per step rather than per token keeps long steps from weighing more in the
    group's mean and std, so writing fewer, longer steps does not move the baseline. Tokens after a
    row's last step end, rows with no steps, and padding get 0.

    Example, one group of G = 2, T = 4. Row 0: steps (0.2, 0.9, 0.5) ending at tokens (0, 1, 3), so
    returns (0.2, 0.5, 0.5). Row 1: one step 0.8 ending at token 2, return 0.8. The group's returns
    (0.2, 0.5, 0.5, 0.8): mean 0.5, sample std sqrt((0.09 + 0 + 0 + 0.09) / 3) = 0.2449, normalised
    (-1.2247, 0, 0, 1.2247). Row 0 token 0 is in step 0, tokens 1-3 in steps 1-2; row 1 tokens 0-2
    in its step, token 3 after it.

    >>> step_rewards = torch.tensor([[0.2, 0.9, 0.5], [0.8, 0.0, 0.0]])
    >>> step_mask = torch.tensor([[True, True, True], [True, False, False]])
    >>> step_end = torch.tensor([[0, 1, 3], [2, 0, 0]])
    >>> completion_mask = torch.ones(2, 4)
    >>> min_form_advantages(step_rewards, step_mask, step_end, completion_mask, group_size=2, eps=0.0)
    tensor([[-1.2247,  0.0000,  0.0000,  0.0000],
            [ 1.2247,  1.2247,  1.2247,  0.0000]])
    """
    _check_batch(completion_mask, group_size, step_rewards=step_rewards, step_mask=step_mask, step_end=step_end)
    returns = min_form_returns(step_rewards, step_mask, temperature)
    normalised = _group_normalise(returns, step_mask, group_size, "group", eps)
    return _steps_to_tokens(normalised, step_mask, step_end, completion_mask)


def flawed_process(step_rewards: Tensor, step_mask: Tensor, drop_threshold: float = 0.3) -> Tensor:
    """Whether a completion's PRM score falls by more than ``drop_threshold`` between two
    consecutive steps (URSA's sign of a flawed process).

    Shapes: B completions, S max steps. step_rewards (B, S), step_mask (B, S) -> flawed (B,) bool.

    >>> r = torch.tensor([[0.9, 0.8, 0.7], [0.9, 0.4, 0.9], [0.9, 0.6, 0.0]])
    >>> flawed_process(r, torch.tensor([[True] * 3, [True] * 3, [True, True, False]]))
    tensor([False,  True, False])
    """
    rewards = _as_float(step_rewards)
    both_real = step_mask[:, 1:] & step_mask[:, :-1]
    drops = both_real & ((rewards[:, :-1] - rewards[:, 1:]) > drop_threshold)
    return drops.any(dim=1)


def ps_grpo_advantages(
    outcome: Tensor,
    step_rewards: Tensor,
    step_mask: Tensor,
    completion_mask: Tensor,
    group_size: int,
    drop_threshold: float = 0.3,
    penalty: float = 0.5,
    scale_rewards: str = "group",
    eps: float = 1e-4,
) -> Tensor:
    """URSA's PS-GRPO: the outcome reward, less ``penalty`` for a correct answer reached through a
    flawed process, group-normalised; the same advantage for every token.

    Shapes: B completions, G = group_size, S max steps, T completion tokens.
    outcome (B,), step_rewards (B, S), step_mask (B, S), completion_mask (B, T) -> advantages (B, T).

    A completion is correct when ``outcome > 0``; its process is flawed when its PRM score drops by
    more than ``drop_threshold`` between two consecutive steps (:func:`flawed_process`). Wrong
    answers keep their outcome: the penalty only separates good from lucky correct answers.

    Example, one group of G = 4, T = 1. Row 0 correct, steps (0.9, 0.8, 0.7), no sharp drop: 1.
    Row 1 correct, (0.9, 0.4, 0.9) drops by 0.5 > 0.3: 1 - 0.5 = 0.5. Row 2 wrong with a drop: 0.
    Row 3 wrong, no steps: 0. Rewards (1, 0.5, 0, 0): mean 0.375, sample std
    sqrt((0.390625 + 0.015625 + 0.140625 + 0.140625) / 3) = 0.4787, advantages
    (0.625, 0.125, -0.375, -0.375) / 0.4787.

    >>> outcome = torch.tensor([1.0, 1.0, 0.0, 0.0])
    >>> step_rewards = torch.tensor([[0.9, 0.8, 0.7], [0.9, 0.4, 0.9], [0.9, 0.1, 0.0], [0.0, 0.0, 0.0]])
    >>> step_mask = torch.tensor([[True] * 3, [True] * 3, [True, True, False], [False] * 3])
    >>> ps_grpo_advantages(outcome, step_rewards, step_mask, torch.ones(4, 1), group_size=4, eps=0.0)
    tensor([[ 1.3056],
            [ 0.2611],
            [-0.7833],
            [-0.7833]])
    """
    _check_scale(scale_rewards)
    _check_batch(completion_mask, group_size, outcome=outcome, step_rewards=step_rewards, step_mask=step_mask)
    outcome = _as_float(outcome)
    penalised = (outcome > 0) & flawed_process(step_rewards, step_mask, drop_threshold)
    rewards = (outcome - penalty * penalised.to(outcome.dtype))[:, None]
    advantages = _group_normalise(rewards, torch.ones_like(rewards, dtype=torch.bool), group_size, scale_rewards, eps)
    return _per_token(advantages[:, 0], completion_mask)


# --- mixing and dispatch --------------------------------------------------------------------------


def mix_advantages(parts: dict[str, Tensor], weights: dict[str, float]) -> Tensor:
    """Weighted sum of advantages: ``sum(weights[name] * parts[name])``.

    Shapes: each part (B, T) -> (B, T).

    Every name in ``weights`` must be a part; a part with no weight counts with weight 0 (so callers
    may compute extra parts for logging). Weights must be finite and not all zero.

    >>> a, b = torch.tensor([[1.0, 2.0]]), torch.tensor([[-1.0, 0.0]])
    >>> mix_advantages({"process": a, "outcome": b}, {"process": 1.0, "outcome": 0.5})
    tensor([[0.5000, 2.0000]])
    """
    unknown = sorted(set(weights) - set(parts))
    if unknown:
        raise ValueError(f"weights name advantages that were not computed: {unknown}; computed: {sorted(parts)}")
    not_finite = sorted(name for name, weight in weights.items() if not math.isfinite(weight))
    if not_finite:
        raise ValueError(f"weights must be finite numbers; {not_finite} are not")
    used = {name: weight for name, weight in weights.items() if weight != 0}
    if not used:
        raise ValueError(f"all advantage weights are zero ({weights}); give at least one a non-zero weight")
    shapes = {name: tuple(parts[name].shape) for name in used}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"advantages to mix have different shapes: {shapes}")
    return sum(weight * parts[name] for name, weight in used.items())


# Each method: its function and the tensors it reads besides completion_mask and group_size.
METHODS: dict[str, tuple[Callable[..., Tensor], tuple[str, ...]]] = {
    "outcome": (outcome_advantages, ("outcome",)),
    "prm_sequence": (prm_sequence_advantages, ("step_rewards", "step_mask")),
    "process": (process_advantages, ("step_rewards", "step_mask", "step_end")),
    "min_form": (min_form_advantages, ("step_rewards", "step_mask", "step_end")),
    "ps_grpo": (ps_grpo_advantages, ("outcome", "step_rewards", "step_mask")),
}


def compute_advantages(
    method: str,
    *,
    completion_mask: Tensor,
    group_size: int,
    outcome: Tensor | None = None,
    step_rewards: Tensor | None = None,
    step_mask: Tensor | None = None,
    step_end: Tensor | None = None,
    outcome_weight: float = 0.0,
    eps: float = 1e-4,
    **options,
) -> Tensor:
    """Advantages by method name, plus ``outcome_weight`` times the outcome advantage.

    Shapes: B completions, S max steps, T completion tokens. outcome (B,), step_rewards (B, S),
    step_mask (B, S), step_end (B, S), completion_mask (B, T) -> advantages (B, T). Pass the tensors
    the method reads (:data:`METHODS` lists them); ``options`` go to the method's function
    (``aggregation``, ``temperature``, ``drop_threshold``, ...).

    For any method but ``outcome``, a non-zero ``outcome_weight`` adds ``outcome_weight *
    outcome_advantages(outcome, ...)`` (group-scaled, same eps) to the method's advantages, which keep
    weight 1. For ``outcome`` itself ``outcome_weight`` is not used.

    >>> outcome = torch.tensor([1.0, 0.0])
    >>> step_rewards, step_mask = torch.tensor([[1.0], [0.0]]), torch.tensor([[True], [True]])
    >>> compute_advantages("prm_sequence", completion_mask=torch.ones(2, 1), group_size=2, outcome=outcome,
    ...                    step_rewards=step_rewards, step_mask=step_mask, outcome_weight=0.5, eps=0.0)
    tensor([[ 1.0607],
            [-1.0607]])
    """
    if method not in METHODS:
        raise ValueError(f"unknown credit method {method!r}; choose one of {sorted(METHODS)}")
    function, needs = METHODS[method]
    given = {"outcome": outcome, "step_rewards": step_rewards, "step_mask": step_mask, "step_end": step_end}
    missing = [name for name in needs if given[name] is None]
    if missing:
        raise ValueError(f"credit method {method!r} needs {missing}")
    inputs = {name: given[name] for name in needs}
    advantages = function(**inputs, completion_mask=completion_mask, group_size=group_size, eps=eps, **options)
    if method == "outcome" or outcome_weight == 0:
        return advantages
    if outcome is None:
        raise ValueError(f"outcome_weight={outcome_weight} mixes in the outcome advantage, so it needs outcome")
    parts = {method: advantages, "outcome": outcome_advantages(outcome, completion_mask, group_size, eps=eps)}
    return mix_advantages(parts, {method: 1.0, "outcome": outcome_weight})
