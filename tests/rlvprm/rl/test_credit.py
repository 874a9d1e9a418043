"""Credit assignment against hand-computed advantages.

Most cases use eps=0 so the expected numbers are the plain ratios worked out in the comments;
"sd" below is always the sample standard deviation (divide by n - 1), TRL's convention.
"""

import doctest
import math

import pytest
import torch

from rlvprm.rl import credit
from rlvprm.rl.credit import (
    aggregate_step_rewards,
    check_step_rewards,
    compute_advantages,
    flawed_process,
    min_form_advantages,
    min_form_returns,
    mix_advantages,
    outcome_advantages,
    prm_sequence_advantages,
    process_advantages,
    ps_grpo_advantages,
    sanitize_step_rewards,
)

NAN = float("nan")


def assert_close(actual, expected):
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype), atol=1e-4, rtol=0)


def test_docstring_examples_hold():
    assert doctest.testmod(credit).failed == 0


# --- a shared batch for the step-level methods -----------------------------------------------------
# Two groups of G = 2, T = 5.
#   row 0: steps (1.0, 0.0, 1.0) ending at tokens (0, 2, 3); 5 real tokens, token 4 after the last step.
#   row 1: one step 0.5 ending at token 1; 3 real tokens (token 2 after its step), tokens 3-4 padding.
#   row 2: steps (0.7, 0.7) ending at (1, 4): with row 3, a group of equal step scores.
#   row 3: no steps at all (no separator was found), 4 real tokens.
# Padding steps hold NaN to show they are never read.
STEP_REWARDS = torch.tensor([[1.0, 0.0, 1.0], [0.5, NAN, NAN], [0.7, 0.7, NAN], [NAN, NAN, NAN]])
STEP_MASK = torch.tensor([[True, True, True], [True, False, False], [True, True, False], [False, False, False]])
STEP_END = torch.tensor([[0, 2, 3], [1, 0, 0], [1, 4, 0], [0, 0, 0]])
COMPLETION_MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])


# --- outcome ----------------------------------------------------------------------------------------


def test_outcome_two_groups_with_ties_and_zero_variance():
    # Group 1 (1, 1, 0, 0): mean 0.5, sd = sqrt(4 * 0.25 / 3) = sqrt(1/3) = 0.57735 -> +-0.5 / 0.57735 = +-0.86603.
    # Group 2 (0.5 x 4): all equal -> exactly 0. Row 1's last token is padding.
    outcome = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5])
    mask = torch.ones(8, 2)
    mask[1, 1] = 0
    adv = outcome_advantages(outcome, mask, group_size=4, eps=0.0)
    a = 0.86603
    assert_close(adv, [[a, a], [a, 0], [-a, -a], [-a, -a], [0, 0], [0, 0], [0, 0], [0, 0]])
    assert torch.equal(adv[4:], torch.zeros(4, 2))


def test_outcome_uses_sample_std_plus_eps():
    # (1, 0): mean 0.5, sd = sqrt(0.5) = 0.70711 (population sd would be 0.5); adv = 0.5 / (0.70711 + 1e-4).
    adv = outcome_advantages(torch.tensor([1.0, 0.0]), torch.ones(2, 1), group_size=2)
    expected = 0.5 / (math.sqrt(0.5) + 1e-4)
    assert_close(adv, [[expected], [-expected]])


def test_outcome_equal_rewards_are_exactly_zero():
    # 0.1 is not exact in binary: the group mean may differ from 0.1 by a rounding step; still exactly 0.
    for value in (0.1, 0.7, 1 / 3):
        adv = outcome_advantages(torch.full((3,), value), torch.ones(3, 4), group_size=3)
        assert torch.equal(adv, torch.zeros(3, 4))


def test_outcome_group_of_one_is_zero_not_nan():
    adv = outcome_advantages(torch.tensor([1.0, 0.0]), torch.ones(2, 2), group_size=1)
    assert torch.equal(adv, torch.zeros(2, 2))


def test_outcome_scale_batch_and_none():
    # Groups (1, 0) and (1, 1). Centred on the group mean: (0.5, -0.5, 0, 0).
    # Batch: mean 0.75, deviations (0.25, -0.75, 0.25, 0.25), squares sum 0.75, sd = sqrt(0.75 / 3) = 0.5.
    outcome = torch.tensor([1.0, 0.0, 1.0, 1.0])
    batch = outcome_advantages(outcome, torch.ones(4, 1), group_size=2, scale_rewards="batch", eps=0.0)
    assert_close(batch, [[1.0], [-1.0], [0.0], [0.0]])
    none = outcome_advantages(outcome, torch.ones(4, 1), group_size=2, scale_rewards="none")
    assert_close(none, [[0.5], [-0.5], [0.0], [0.0]])


def test_outcome_accepts_bool_and_int_rewards():
    adv = outcome_advantages(torch.tensor([True, False]), torch.ones(2, 1), group_size=2, eps=0.0)
    assert_close(adv, [[0.70711], [-0.70711]])


def test_outcome_rejects_bad_inputs():
    with pytest.raises(ValueError, match="not a whole number of groups"):
        outcome_advantages(torch.zeros(3), torch.ones(3, 2), group_size=2)
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        outcome_advantages(torch.tensor([1.0, NAN]), torch.ones(2, 2), group_size=2)
    with pytest.raises(ValueError, match="scale_rewards"):
        outcome_advantages(torch.zeros(2), torch.ones(2, 2), group_size=2, scale_rewards="global")


# --- aggregation and prm_sequence -------------------------------------------------------------------


def test_aggregations_by_hand():
    # Row 0 (0.9, 0.5, 0.7); row 1 one step 0.6; row 2 no steps (fill 0). NaN padding is never read.
    r = torch.tensor([[0.9, 0.5, 0.7], [0.6, NAN, NAN], [NAN, NAN, NAN]])
    m = torch.tensor([[True, True, True], [True, False, False], [False, False, False]])
    assert_close(aggregate_step_rewards(r, m, "mean"), [0.7, 0.6, 0.0])  # 2.1 / 3
    assert_close(aggregate_step_rewards(r, m, "min"), [0.5, 0.6, 0.0])
    assert_close(aggregate_step_rewards(r, m, "max"), [0.9, 0.6, 0.0])
    assert_close(aggregate_step_rewards(r, m, "last"), [0.7, 0.6, 0.0])
    assert_close(aggregate_step_rewards(r, m, "prod"), [0.315, 0.6, 0.0])  # 0.9 * 0.5 * 0.7
    # Softmin at T = 1: weights e^-0.9 = 0.40657, e^-0.5 = 0.60653, e^-0.7 = 0.49659 (sum 1.50969);
    # (0.9 * 0.40657 + 0.5 * 0.60653 + 0.7 * 0.49659) / 1.50969 = 1.01679 / 1.50969 = 0.67351.
    assert_close(aggregate_step_rewards(r, m, "softmin", temperature=1.0), [0.67351, 0.6, 0.0])
    # Same names as rewards.aggregate: "softmin" defaults to T = 1, "softmin:T" sets it.
    assert_close(aggregate_step_rewards(r, m, "softmin"), [0.67351, 0.6, 0.0])
    assert_close(aggregate_step_rewards(r, m, "softmin:1.0", temperature=5.0), [0.67351, 0.6, 0.0])
    assert_close(aggregate_step_rewards(r, m, "mean", empty_value=-1.0), [0.7, 0.6, -1.0])


@pytest.mark.parametrize("name", ["mean", "min", "max", "last", "prod", "softmin", "softmin:0.2"])
def test_aggregations_agree_with_the_reward_module(name):
    from rewards.aggregate import aggregate

    r = torch.tensor([[0.9, 0.5, 0.7], [0.6, NAN, NAN], [0.3, 0.8, NAN]])
    m = ~torch.isnan(r)
    expected = [aggregate([v for v in row if v == v], name) for row in r.tolist()]
    assert_close(aggregate_step_rewards(r, m, name), expected)


def test_softmin_aggregation_limits():
    r = torch.tensor([[0.9, 0.5, 0.7]])
    m = torch.ones(1, 3, dtype=torch.bool)
    assert_close(aggregate_step_rewards(r, m, "softmin", temperature=1e-3), [0.5])  # -> min
    assert_close(aggregate_step_rewards(r, m, "softmin", temperature=1e4), [0.7])  # -> mean
    for bad in ("median", "min:0.5"):
        with pytest.raises(ValueError, match="aggregation"):
            aggregate_step_rewards(r, m, bad)
    for bad in ("softmin:0", "softmin:inf", "softmin:x"):
        with pytest.raises(ValueError, match="temperature"):
            aggregate_step_rewards(r, m, bad)


def test_prm_sequence_min_with_no_step_row():
    # Min scores: (1.0, 0.5) -> 0.5; (1.0) -> 1.0; no steps -> 0.0. Mean 0.5, deviations (0, 0.5, -0.5),
    # sd = sqrt(0.5 / 2) = 0.5 -> (0, 1, -1). Row 1's last token is padding.
    r = torch.tensor([[1.0, 0.5], [1.0, NAN], [NAN, NAN]])
    m = torch.tensor([[True, True], [True, False], [False, False]])
    mask = torch.tensor([[1, 1], [1, 0], [1, 1]])
    adv = prm_sequence_advantages(r, m, mask, group_size=3, aggregation="min", eps=0.0)
    assert_close(adv, [[0.0, 0.0], [1.0, 0.0], [-1.0, -1.0]])


def test_prm_sequence_empty_value_is_configurable():
    # Same rows, empty_value 0.5: scores (0.5, 1.0, 0.5), mean 2/3, deviations (-1/6, 1/3, -1/6),
    # squares sum 1/6, sd = sqrt(1/12) = 0.28868 -> (-0.57735, 1.15470, -0.57735).
    r = torch.tensor([[1.0, 0.5], [1.0, NAN], [NAN, NAN]])
    m = torch.tensor([[True, True], [True, False], [False, False]])
    adv = prm_sequence_advantages(r, m, torch.ones(3, 1), 3, aggregation="min", empty_value=0.5, eps=0.0)
    assert_close(adv, [[-0.57735], [1.15470], [-0.57735]])


def test_prm_sequence_two_groups_mean():
    # Group 1: means (0.5, 1.0) -> +-0.70711 (sd sqrt(0.125) = 0.35355, deviation 0.25).
    # Group 2: means (0.6, 0.6) -> 0.
    r = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.6, NAN], [0.4, 0.8]])
    m = torch.tensor([[True, True], [True, True], [True, False], [True, True]])
    adv = prm_sequence_advantages(r, m, torch.ones(4, 1), group_size=2, eps=0.0)
    assert_close(adv, [[-0.70711], [0.70711], [0.0], [0.0]])


# --- process ----------------------------------------------------------------------------------------


def test_process_by_hand():
    # Group 1 steps (1, 0, 1, 0.5): mean 0.625, deviations (0.375, -0.625, 0.375, -0.125), squares sum
    # 0.6875, sd = sqrt(0.6875 / 3) = 0.47871; normalised (0.78335, -1.30558, 0.78335, -0.26112).
    # Row 0: token 0 -> all three steps 0.78335 - 1.30558 + 0.78335 = 0.26112; tokens 1-2 -> steps 1-2
    # = -0.52223; token 3 -> step 2 = 0.78335; token 4 after the last step -> 0.
    # Row 1: tokens 0-1 -> -0.26112; token 2 after its step -> 0; tokens 3-4 padding -> 0.
    # Group 2: steps (0.7, 0.7) all equal -> 0; row 3 has no steps -> 0.
    adv = process_advantages(STEP_REWARDS, STEP_MASK, STEP_END, COMPLETION_MASK, group_size=2, eps=0.0)
    assert_close(
        adv,
        [
            [0.26112, -0.52223, -0.52223, 0.78335, 0.0],
            [-0.26112, -0.26112, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.0],
        ],
    )
    assert torch.equal(adv[2:], torch.zeros(2, 5))


def test_process_eps_in_denominator():
    # Steps (1) and (0): mean 0.5, sd 0.70711; normalised +-0.5 / (0.70711 + 1e-4).
    r = torch.tensor([[1.0], [0.0]])
    m = torch.tensor([[True], [True]])
    adv = process_advantages(r, m, torch.tensor([[1], [0]]), torch.ones(2, 2), group_size=2)
    a = 0.5 / (math.sqrt(0.5) + 1e-4)
    assert_close(adv, [[a, a], [-a, 0.0]])


def test_process_single_step_in_group_is_zero():
    # One real step in the whole group: no spread to normalise by -> 0, not NaN.
    r = torch.tensor([[0.9], [NAN]])
    m = torch.tensor([[True], [False]])
    adv = process_advantages(r, m, torch.tensor([[2], [0]]), torch.ones(2, 3), group_size=2)
    assert torch.equal(adv, torch.zeros(2, 3))


def test_process_batch_without_any_step():
    r = torch.zeros(2, 0)
    m = torch.zeros(2, 0, dtype=torch.bool)
    adv = process_advantages(r, m, torch.zeros(2, 0, dtype=torch.long), torch.ones(2, 3), group_size=2)
    assert torch.equal(adv, torch.zeros(2, 3))


def test_process_steps_sharing_an_end_token():
    # Row 0 steps (1, 0) both end at token 1: both cover tokens 0-1. Row 1 step (0.5) ends at 0.
    # Steps (1, 0, 0.5): mean 0.5, deviations (0.5, -0.5, 0), sd 0.5 -> (1, -1, 0).
    # Row 0 tokens 0-1: 1 - 1 = 0; token 2 after -> 0. Row 1 token 0: 0.
    r = torch.tensor([[1.0, 0.0], [0.5, NAN]])
    m = torch.tensor([[True, True], [True, False]])
    adv = process_advantages(r, m, torch.tensor([[1, 1], [0, 0]]), torch.ones(2, 3), group_size=2, eps=0.0)
    assert_close(adv, [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])


# --- min_form ---------------------------------------------------------------------------------------


def test_min_form_returns_hard_and_soft():
    r = torch.tensor([[1.0, 0.0, 1.0], [0.5, NAN, NAN]])
    m = torch.tensor([[True, True, True], [True, False, False]])
    assert_close(min_form_returns(r, m), [[0.0, 0.0, 1.0], [0.5, 0.0, 0.0]])
    # Softmin at T = 1 over (1, 0, 1): (e^-1 + e^-1) / (2 e^-1 + 1) = 0.73576 / 1.73576 = 0.42388;
    # over (0, 1): e^-1 / (1 + e^-1) = 0.36788 / 1.36788 = 0.26894; over (1): 1.
    assert_close(min_form_returns(r, m, temperature=1.0), [[0.42388, 0.26894, 1.0], [0.5, 0.0, 0.0]])
    # A low temperature recovers the minimum.
    assert_close(min_form_returns(r, m, temperature=1e-3), [[0.0, 0.0, 1.0], [0.5, 0.0, 0.0]])


def test_min_form_hard_by_hand():
    # Returns: row 0 (0, 0, 1), row 1 (0.5). Group 1: mean 0.375, deviations (-0.375, -0.375, 0.625,
    # 0.125), squares sum 0.6875, sd 0.47871 -> (-0.78335, -0.78335, 1.30558, 0.26112).
    # Row 0: token 0 step 0, tokens 1-2 step 1, token 3 step 2, token 4 after -> 0.
    # Row 1: tokens 0-1 its step, token 2 after, 3-4 padding. Group 2: returns (0.7, 0.7) -> 0.
    adv = min_form_advantages(STEP_REWARDS, STEP_MASK, STEP_END, COMPLETION_MASK, group_size=2, eps=0.0)
    assert_close(
        adv,
        [
            [-0.78335, -0.78335, -0.78335, 1.30558, 0.0],
            [0.26112, 0.26112, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.0],
        ],
    )
    assert torch.equal(adv[2:], torch.zeros(2, 5))


def test_min_form_softmin_by_hand():
    # Returns at T = 1: row 0 (0.42388, 0.26894, 1), row 1 (0.5). Sum 2.19282, mean 0.54821;
    # deviations (-0.12433, -0.27927, 0.45180, -0.04821), squares (0.01546, 0.07799, 0.20412, 0.00232)
    # sum 0.29989, sd = sqrt(0.29989 / 3) = 0.31617 -> (-0.39322, -0.88328, 1.42896, -0.15247).
    adv = min_form_advantages(
        STEP_REWARDS, STEP_MASK, STEP_END, COMPLETION_MASK, group_size=2, temperature=1.0, eps=0.0
    )
    assert_close(
        adv[:2],
        [
            [-0.39322, -0.88328, -0.88328, 1.42896, 0.0],
            [-0.15247, -0.15247, 0.0, 0.0, 0.0],
        ],
    )
    assert torch.equal(adv[2:], torch.zeros(2, 5))


def test_min_form_rejects_bad_temperature():
    with pytest.raises(ValueError, match="temperature"):
        min_form_advantages(STEP_REWARDS, STEP_MASK, STEP_END, COMPLETION_MASK, 2, temperature=0.0)


# --- ps_grpo ----------------------------------------------------------------------------------------


def test_flawed_process_is_a_strict_drop_between_real_steps():
    r = torch.tensor([[1.0, 0.75, NAN], [1.0, 0.5, 1.0], [0.5, 1.0, 0.9], [0.9, NAN, NAN]])
    m = torch.tensor([[True, True, False], [True, True, True], [True, True, True], [True, False, False]])
    # Drop of exactly 0.25 is not "more than" 0.25; 0.5 is; rises do not count; one step has no pair.
    assert flawed_process(r, m, drop_threshold=0.25).tolist() == [False, True, False, False]


def test_ps_grpo_two_groups():
    # Group 1: row 0 correct, no sharp drop -> 1; row 1 correct, drop 0.5 > 0.3 -> 0.5; row 2 wrong with
    # a drop -> 0 (no penalty); row 3 wrong, no steps -> 0. Rewards (1, 0.5, 0, 0): mean 0.375,
    # deviations (0.625, 0.125, -0.375, -0.375), sd 0.47871 -> (1.30558, 0.26112, -0.78335, -0.78335).
    # Group 2: all correct, none flawed -> rewards (1, 1, 1, 1) -> 0. Row 4's second token is padding.
    outcome = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    r = torch.tensor(
        [[0.9, 0.8, 0.7], [0.9, 0.4, 0.9], [0.9, 0.1, NAN], [NAN] * 3]
        + [[0.9, 0.9, 0.9], [0.2, 0.4, NAN], [0.5, NAN, NAN], [0.8, 0.7, 0.6]]
    )
    m = ~torch.isnan(r)
    mask = torch.ones(8, 2)
    mask[4, 1] = 0
    adv = ps_grpo_advantages(outcome, r, m, mask, group_size=4, eps=0.0)
    assert_close(
        adv,
        [[1.30558] * 2, [0.26112] * 2, [-0.78335] * 2, [-0.78335] * 2, [0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]],
    )


def test_ps_grpo_penalty_can_tie_with_wrong_answers():
    # Penalty 1.0: a correct but flawed answer scores 0, the same as a wrong one -> group (0, 0) -> 0.
    outcome = torch.tensor([1.0, 0.0])
    r = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    m = torch.ones(2, 2, dtype=torch.bool)
    adv = ps_grpo_advantages(outcome, r, m, torch.ones(2, 1), group_size=2, penalty=1.0)
    assert torch.equal(adv, torch.zeros(2, 1))


# --- mixing and dispatch ----------------------------------------------------------------------------


def test_mix_weights():
    a = torch.tensor([[1.0, 2.0]])
    b = torch.tensor([[-1.0, 0.0]])
    assert_close(mix_advantages({"process": a, "outcome": b}, {"process": 1.0, "outcome": 0.5}), [[0.5, 2.0]])
    # A part without a weight counts as 0; a zero weight among non-zero ones is fine.
    assert_close(mix_advantages({"process": a, "outcome": b}, {"outcome": 2.0, "process": 0.0}), [[-2.0, 0.0]])
    with pytest.raises(ValueError, match=r"not computed: \['min_form'\]"):
        mix_advantages({"process": a}, {"process": 1.0, "min_form": 1.0})
    with pytest.raises(ValueError, match="all advantage weights are zero"):
        mix_advantages({"process": a, "outcome": b}, {"process": 0.0, "outcome": 0.0})
    with pytest.raises(ValueError, match="all advantage weights are zero"):
        mix_advantages({"process": a}, {})
    with pytest.raises(ValueError, match="finite"):
        mix_advantages({"process": a}, {"process": float("inf")})
    with pytest.raises(ValueError, match="different shapes"):
        mix_advantages({"process": a, "outcome": torch.zeros(1, 3)}, {"process": 1.0, "outcome": 1.0})


def test_compute_advantages_dispatches_each_method():
    outcome = torch.tensor([1.0, 0.0, 1.0, 1.0])
    common = dict(completion_mask=COMPLETION_MASK, group_size=2)
    steps = dict(step_rewards=STEP_REWARDS, step_mask=STEP_MASK)
    assert torch.equal(
        compute_advantages("outcome", outcome=outcome, **common), outcome_advantages(outcome, COMPLETION_MASK, 2)
    )
    assert torch.equal(
        compute_advantages("prm_sequence", aggregation="min", **steps, **common),
        prm_sequence_advantages(STEP_REWARDS, STEP_MASK, COMPLETION_MASK, 2, aggregation="min"),
    )
    assert torch.equal(
        compute_advantages("process", step_end=STEP_END, **steps, **common),
        process_advantages(STEP_REWARDS, STEP_MASK, STEP_END, COMPLETION_MASK, 2),
    )
    assert torch.equal(
        compute_advantages("min_form", step_end=STEP_END, temperature=0.5, **steps, **common),
        min_form_advantages(STEP_REWARDS, STEP_MASK, STEP_END, COMPLETION_MASK, 2, temperature=0.5),
    )
    assert torch.equal(
        compute_advantages("ps_grpo", outcome=outcome, **steps, **common),
        ps_grpo_advantages(outcome, STEP_REWARDS, STEP_MASK, COMPLETION_MASK, 2),
    )


def test_compute_advantages_mixes_outcome():
    # Process advantages from test_process_by_hand plus 0.5 x outcome: group 1 outcome (1, 0) -> +-0.70711
    # on real tokens, so +-0.35355 added; group 2 outcome (1, 1) -> 0 added.
    outcome = torch.tensor([1.0, 0.0, 1.0, 1.0])
    adv = compute_advantages(
        "process",
        completion_mask=COMPLETION_MASK,
        group_size=2,
        outcome=outcome,
        step_rewards=STEP_REWARDS,
        step_mask=STEP_MASK,
        step_end=STEP_END,
        outcome_weight=0.5,
        eps=0.0,
    )
    h = 0.35355
    assert_close(
        adv,
        [
            [0.26112 + h, -0.52223 + h, -0.52223 + h, 0.78335 + h, h],
            [-0.26112 - h, -0.26112 - h, -h, 0.0, 0.0],
            [0.0] * 5,
            [0.0] * 5,
        ],
    )


def test_compute_advantages_errors():
    with pytest.raises(ValueError, match="unknown credit method"):
        compute_advantages("sum_form", completion_mask=COMPLETION_MASK, group_size=2)
    with pytest.raises(ValueError, match=r"needs \['step_end'\]"):
        compute_advantages(
            "process", completion_mask=COMPLETION_MASK, group_size=2, step_rewards=STEP_REWARDS, step_mask=STEP_MASK
        )
    with pytest.raises(ValueError, match="needs outcome"):
        compute_advantages(
            "prm_sequence",
            completion_mask=COMPLETION_MASK,
            group_size=2,
            step_rewards=STEP_REWARDS,
            step_mask=STEP_MASK,
            outcome_weight=1.0,
        )
    # For "outcome" itself the weight is not used.
    outcome = torch.tensor([1.0, 0.0, 1.0, 1.0])
    alone = compute_advantages("outcome", completion_mask=COMPLETION_MASK, group_size=2, outcome=outcome)
    weighted = compute_advantages(
        "outcome", completion_mask=COMPLETION_MASK, group_size=2, outcome=outcome, outcome_weight=3.0
    )
    assert torch.equal(weighted, alone)


# --- NaN and layout checks --------------------------------------------------------------------------


def test_nan_at_real_steps_names_rows():
    r = STEP_REWARDS.clone()
    r[1, 0] = NAN
    r[2, 1] = float("inf")
    with pytest.raises(ValueError, match=r"rows \[1, 2\]"):
        check_step_rewards(r, STEP_MASK)
    for call in (
        lambda: process_advantages(r, STEP_MASK, STEP_END, COMPLETION_MASK, 2),
        lambda: min_form_advantages(r, STEP_MASK, STEP_END, COMPLETION_MASK, 2),
        lambda: prm_sequence_advantages(r, STEP_MASK, COMPLETION_MASK, 2),
        lambda: ps_grpo_advantages(torch.ones(4), r, STEP_MASK, COMPLETION_MASK, 2),
    ):
        with pytest.raises(ValueError, match=r"rows \[1, 2\]"):
            call()


def test_sanitize_drops_bad_rows():
    # Row 1's only step is NaN: the row loses its steps. Group 1 then has row 0's steps (1, 0, 1) alone:
    # mean 2/3, sd sqrt((1/9 + 4/9 + 1/9) / 2) = 0.57735 -> (0.57735, -1.15470, 0.57735).
    # Row 0: token 0 -> 0; tokens 1-2 -> -0.57735; token 3 -> 0.57735; token 4 -> 0.
    r = STEP_REWARDS.clone()
    r[1, 0] = NAN
    rewards, mask, bad = sanitize_step_rewards(r, STEP_MASK)
    assert bad.tolist() == [1]
    assert mask[1].tolist() == [False, False, False]
    assert mask[0].tolist() == [True, True, True] and mask[2].tolist() == [True, True, False]
    assert not torch.isnan(rewards).any()
    adv = process_advantages(rewards, mask, STEP_END, COMPLETION_MASK, group_size=2, eps=0.0)
    assert_close(adv[:2], [[0.0, -0.57735, -0.57735, 0.57735, 0.0], [0.0] * 5])


def test_layout_errors():
    with pytest.raises(ValueError, match="left-packed"):
        process_advantages(
            torch.zeros(2, 2), torch.tensor([[False, True], [True, True]]), torch.tensor([[0, 1], [0, 1]]),
            torch.ones(2, 2), 2,
        )
    with pytest.raises(ValueError, match=r"outside the 2 completion tokens in rows \[1\]"):
        process_advantages(
            torch.zeros(2, 1), torch.ones(2, 1, dtype=torch.bool), torch.tensor([[1], [2]]), torch.ones(2, 2), 2
        )
    with pytest.raises(ValueError, match=r"must not decrease.*rows \[0\]"):
        min_form_advantages(
            torch.zeros(2, 2), torch.ones(2, 2, dtype=torch.bool), torch.tensor([[1, 0], [0, 1]]), torch.ones(2, 2), 2
        )
    with pytest.raises(ValueError, match="not a whole number of groups of 3"):
        process_advantages(STEP_REWARDS, STEP_MASK, STEP_END, COMPLETION_MASK, group_size=3)


def _random_batch(seed, num_rows=6, max_steps=4, num_tokens=12):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.rand(num_rows, max_steps, generator=g)
    counts = torch.randint(0, max_steps + 1, (num_rows,), generator=g)
    mask = torch.arange(max_steps)[None, :] < counts[:, None]
    ends = torch.zeros(num_rows, max_steps, dtype=torch.long)
    completion_mask = torch.zeros(num_rows, num_tokens)
    for row in range(num_rows):
        n = int(counts[row])
        ends[row, :n] = torch.randperm(num_tokens - 2, generator=g)[:n].sort().values
        length = int(ends[row, n - 1]) + 2 if n else num_tokens // 2
        completion_mask[row, :length] = 1
    return rewards, mask, ends, completion_mask


@pytest.mark.parametrize("seed", range(5))
def test_step_methods_match_a_loop_over_tokens(seed):
    # A slow, literal reading of the definitions, with torch.std (n - 1) for the group spread.
    rewards, mask, ends, completion_mask = _random_batch(seed)
    group_size = 3
    process = process_advantages(rewards, mask, ends, completion_mask, group_size, eps=1e-4)
    min_form = min_form_advantages(rewards, mask, ends, completion_mask, group_size, eps=1e-4)
    for start in range(0, rewards.shape[0], group_size):
        rows = range(start, start + group_size)
        steps = [(b, j) for b in rows for j in range(int(mask[b].sum()))]
        suffix_min = {(b, j): min(float(rewards[b, k]) for k in range(j, int(mask[b].sum()))) for b, j in steps}

        def normalise(values):
            x = torch.tensor([values[s] for s in steps], dtype=torch.float64)
            if len(steps) < 2 or bool((x == x[0]).all()):
                return {s: 0.0 for s in steps}
            return {s: float(v) for s, v in zip(steps, (x - x.mean()) / (x.std() + 1e-4))}

        norm_reward = normalise({s: float(rewards[s]) for s in steps})
        norm_return = normalise(suffix_min)
        for b in rows:
            for t in range(completion_mask.shape[1]):
                mine = [(b, j) for (r, j) in steps if r == b and int(ends[b, j]) >= t]
                real = bool(completion_mask[b, t])
                expected_process = sum(norm_reward[s] for s in mine) if real else 0.0
                expected_min = norm_return[mine[0]] if real and mine else 0.0
                assert process[b, t].item() == pytest.approx(expected_process, abs=1e-4)
                assert min_form[b, t].item() == pytest.approx(expected_min, abs=1e-4)
