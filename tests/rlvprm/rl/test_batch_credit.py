"""Credit over a batch spread across processes: two gloo processes give the one-process advantages.

The batch has groups that straddle the two processes (G = 4, B = 6 rows per process), different
step counts and token counts on each process (so gathering must pad S and T), a completion with no
steps, and one with a NaN score.
"""

import math
import os

import pytest
import torch
import torch.multiprocessing as mp

from rlvprm.rl.batch_credit import CreditSettings, batch_advantages, credit_for_batch
from rlvprm.rl.rollouts import STATS, StepBatch

GROUP = 4
ROWS = 6  # per process; 12 in all = 3 groups, the middle one split 2 + 2
NAN = float("nan")


def steps(r: int) -> int:
    return min(r % 4, 2) if r < ROWS else r % 4  # process 0 has at most 2 steps, process 1 up to 3


def make_batch(rows: range, num_tokens: int) -> tuple[StepBatch, torch.Tensor]:
    """Deterministic rows: row r has steps(r) steps, scores from r, a token count below num_tokens."""
    max_steps = max(steps(r) for r in rows) or 1
    outcome = torch.tensor([float(r % 3 == 0) for r in rows])
    rewards = torch.zeros(len(rows), max_steps)
    mask = torch.zeros(len(rows), max_steps, dtype=torch.bool)
    ends = torch.zeros(len(rows), max_steps, dtype=torch.long)
    completion = torch.zeros(len(rows), num_tokens, dtype=torch.long)
    for i, r in enumerate(rows):
        length = num_tokens - (r % 2)
        completion[i, :length] = 1
        n = steps(r)
        for k in range(n):
            rewards[i, k] = ((r * 7 + k * 3) % 10) / 10
            mask[i, k] = True
            ends[i, k] = min(length - 1, 2 * k + 1)
        if r == 7:
            rewards[i, 0] = NAN
    stats = torch.zeros(len(rows), len(STATS))
    stats[:, 0] = mask.sum(1)
    stats[:, -1] = completion.sum(1)
    return StepBatch(outcome, rewards, mask, ends, stats), completion


CASES = [("process", 0.5), ("min_form", 0.0), ("prm_sequence", 0.0), ("ps_grpo", 0.0)]


def _worker(rank: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2", LOCAL_WORLD_SIZE="2")
    from accelerate import PartialState

    state = PartialState(cpu=True)
    # Process 1 has longer completions and more steps than process 0.
    batch, completion = make_batch(range(rank * ROWS, (rank + 1) * ROWS), num_tokens=9 + 3 * rank)
    for method, outcome_weight in CASES:
        settings = CreditSettings(method=method, outcome_weight=outcome_weight)
        result = batch_advantages(batch, completion, GROUP, settings, process_index=state.process_index)
        queue.put((rank, method, result.advantages.tolist(), result.unscored.tolist(), result.metrics(settings)))
    state.destroy_process_group()


def one_process(method: str, outcome_weight: float):
    parts = [make_batch(range(p * ROWS, (p + 1) * ROWS), num_tokens=9 + 3 * p) for p in range(2)]
    width = max(c.shape[1] for _, c in parts)
    steps = max(b.step_mask.shape[1] for b, _ in parts)

    def pad(x, size):
        return torch.nn.functional.pad(x, (0, size - x.shape[1]))

    batch = StepBatch(
        torch.cat([b.outcome for b, _ in parts]),
        torch.cat([pad(b.step_rewards, steps) for b, _ in parts]),
        torch.cat([pad(b.step_mask, steps) for b, _ in parts]),
        torch.cat([pad(b.step_end, steps) for b, _ in parts]),
        torch.cat([b.stats for b, _ in parts]),
    )
    completion = torch.cat([pad(c, width) for _, c in parts])
    advantages, unscored = credit_for_batch(batch, completion, GROUP, CreditSettings(method=method, outcome_weight=outcome_weight))
    return [advantages[p * ROWS : (p + 1) * ROWS, : parts[p][1].shape[1]] for p in range(2)], unscored


def test_two_processes_equal_one(free_port):
    context = mp.get_context("spawn")
    queue = context.Queue()
    port = free_port()
    procs = [context.Process(target=_worker, args=(rank, port, queue)) for rank in range(2)]
    for p in procs:
        p.start()
    results = {}
    for _ in range(2 * len(CASES)):
        rank, method, advantages, unscored, metrics = queue.get(timeout=120)
        results[rank, method] = (torch.tensor(advantages), unscored, metrics)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for method, outcome_weight in CASES:
        expected, unscored = one_process(method, outcome_weight)
        for rank in range(2):
            torch.testing.assert_close(results[rank, method][0], expected[rank], rtol=0, atol=0)
            assert results[rank, method][1] == unscored.tolist()
        assert unscored.tolist() == [r == 7 for r in range(2 * ROWS)]  # the NaN row, found on process 1
        assert results[0, method][2] == results[1, method][2]  # every process logs the same batch metrics
        assert results[0, method][2]["prm/unscored"] == 1.0
        # The split group (rows 4-7) really was normalised as one: its values are not all zero.
        assert any(v != 0 for row in expected[0][4:] for v in row.tolist()), method


def test_nan_row_gets_zero_process_advantage_and_keeps_outcome():
    batch, completion = make_batch(range(4, 8), num_tokens=9)  # one group, row 7 has a NaN
    only_process, unscored = credit_for_batch(batch, completion, GROUP, CreditSettings(method="process"))
    assert unscored.tolist() == [False, False, False, True]
    assert only_process[3].abs().sum() == 0
    assert torch.isfinite(only_process).all()
    mixed, _ = credit_for_batch(batch, completion, GROUP, CreditSettings(method="process", outcome_weight=1.0))
    outcome_only, _ = credit_for_batch(batch, completion, GROUP, CreditSettings(method="outcome"))
    torch.testing.assert_close(mixed[3], outcome_only[3])
    prm_seq, unscored = credit_for_batch(batch, completion, GROUP, CreditSettings(method="prm_sequence"))
    assert prm_seq[3].abs().sum() == 0 and unscored[3]


def test_settings_reject_contradictions():
    with pytest.raises(ValueError, match="unknown credit method"):
        CreditSettings(method="sum_form")
    with pytest.raises(ValueError, match="outcome_weight"):
        CreditSettings(method="outcome", outcome_weight=1.0)
    assert math.isfinite(CreditSettings().drop_threshold)
