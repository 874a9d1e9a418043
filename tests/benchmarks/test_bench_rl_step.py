"""bench_rl_step's timers on a tiny trainer: every part of a GRPO step is found and they add up."""

import json
import math
from pathlib import Path

import pytest
from trl import GRPOConfig

from rewards.backends.processors import load_processor
from rewards.prm import ProcessRewardModel
from rlvprm.rl.batch_credit import CreditSettings
from rlvprm.rl.data import load_prompt_dataset
from rlvprm.rl.scorers import PRMScorer
from rlvprm.rl.trainer import ProcessRewardGRPOTrainer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import bench_rl_step

    return bench_rl_step


def test_step_times_hold_every_part(bench, tiny_models, tmp_path):
    rows = [{"id": f"t{i}", "question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(2)]
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    policy = tiny_models("qwen2-vl")
    args = GRPOConfig(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, per_device_train_batch_size=4,
                      num_generations=4, max_completion_length=8, max_steps=2, beta=0.04, report_to="none",
                      save_strategy="no", seed=0, dataloader_num_workers=0)
    scorer = PRMScorer(ProcessRewardModel.from_pretrained(policy, device="cpu", batch_size=4))
    trainer = ProcessRewardGRPOTrainer(policy, scorer, CreditSettings(method="process"), args,
                                       train_dataset=load_prompt_dataset(data), processing_class=load_processor(policy))
    times = bench.StepTimes(trainer)
    both = bench.BothWays(scorer.prm, times)
    scorer.prm.score_groups = both
    trainer.train()

    assert len(times.steps) == 2
    for step in times.steps:
        assert set(bench.PARTS) | {"total"} <= set(step)
        assert all(step[p] > 0 for p in bench.PARTS if p != "other") and step["other"] >= 0
        assert math.isclose(sum(step[p] for p in bench.PARTS), step["total"], rel_tol=1e-9)
        # Both ways of PRM scoring ran inside the scorer's time.
        assert 0 < step["shared prefix on"] + step["shared prefix off"] <= step["PRM scoring"]
    on = bench.breakdown(times.steps, skip="shared prefix off")
    assert on["total"] == pytest.approx(sum(on[p] for p in bench.PARTS))
    assert both.max_diff < 1e-5
