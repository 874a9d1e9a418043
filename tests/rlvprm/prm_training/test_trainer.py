"""The PRM trainer's auxiliary bag-of-tokens target, on hand-made tensors."""

import math

import pytest
import torch

from rlvprm.prm_training.trainer import bag_of_tokens_loss


def test_bag_of_tokens_loss_by_hand():
    # One row, two read positions: step 0 holds tokens {1, 2}, step 1 holds token {3}.
    input_ids = torch.tensor([[5, 1, 2, 9, 3, 9]])
    step_index = torch.tensor([[-1, 0, 0, -1, 1, -1]])
    rows = torch.tensor([0, 0])
    zero = torch.zeros(2, 8)
    assert bag_of_tokens_loss(zero, input_ids, step_index, rows).item() == pytest.approx(8 * math.log(2))
    right = torch.full((2, 8), -20.0)
    right[0, [1, 2]] = 20.0
    right[1, 3] = 20.0
    assert bag_of_tokens_loss(right, input_ids, step_index, rows).item() == pytest.approx(0.0, abs=1e-6)
    swapped = right.flip(0)  # each position predicting the other step's bag
    assert bag_of_tokens_loss(swapped, input_ids, step_index, rows).item() == pytest.approx(3 * 20.0, rel=1e-3)


def test_read_positions_of_several_rows_find_their_own_steps():
    input_ids = torch.tensor([[4, 1, 9, 0], [2, 9, 3, 9]])
    step_index = torch.tensor([[0, 0, -1, -1], [0, -1, 1, -1]])
    rows = torch.tensor([0, 1, 1])
    logits = torch.full((3, 5), -20.0)
    logits[0, [4, 1]] = 20.0
    logits[1, 2] = 20.0
    logits[2, 3] = 20.0
    assert bag_of_tokens_loss(logits, input_ids, step_index, rows).item() == pytest.approx(0.0, abs=1e-6)
