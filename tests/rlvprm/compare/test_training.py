"""Training cost read from hand-written ``grpo_summary.json`` / ``ppo_summary.json`` files, counted and older ones."""

import json

import pytest

from rlvprm.compare.training import training_cost
from rlvprm.config import ConfigError
from rlvprm.data.jsonl import RecordError

ARGS = {"num_iterations": 1, "steps_per_generation": 1, "gradient_accumulation_steps": 1, "generation_batch_size": 4}


def write(folder, command="grpo", **summary):
    folder.mkdir(parents=True, exist_ok=True)
    base = {"config": {"policy": "base", "prm": "oracle", "data": "p.jsonl"}, command: ARGS, "log_history": []}
    (folder / f"{command}_summary.json").write_text(json.dumps({**base, **summary}))
    return folder


HISTORY = [{"step": 1, "completions/mean_length": 50.5, "num_tokens": 450.0},
           {"step": 2, "completions/mean_length": 49.0, "num_tokens": 900.0},
           {"step": 2, "train_runtime": 3.0}]


def test_a_counted_summary_is_taken_as_counted(tmp_path):
    run = write(tmp_path / "rl", log_history=HISTORY,
                compute={"tokens_generated": 398, "prm_tokens_scored": 1234, "policy_tokens_trained": 900})
    cost = training_cost(run)
    assert (cost.tokens_generated, cost.prm_tokens_scored, cost.policy_tokens_trained) == (398, 1234, 900)
    assert cost.critic_tokens_trained == 0  # GRPO has no critic
    assert cost.total == 2532 and cost.per_prompt(100) == 25.32 and cost.how == "counted" and cost.notes == []
    assert (cost.trained_from, cost.prm, cost.steps) == ("base", "oracle", 2)


def test_a_ppo_summary_counts_the_critic(tmp_path):
    counted = {"tokens_generated": 398, "prm_tokens_scored": 1234, "policy_tokens_trained": 900,
               "critic_tokens_trained": 900}
    cost = training_cost(write(tmp_path / "ppo", "ppo", log_history=HISTORY, compute=counted))
    assert cost.critic_tokens_trained == 900 and cost.total == 3432 and cost.how == "counted"
    older = training_cost(write(tmp_path / "older", "ppo", log_history=HISTORY))
    assert older.critic_tokens_trained == older.policy_tokens_trained == 900  # the critic trains on the policy's batches
    both = write(write(tmp_path / "both", log_history=HISTORY), "ppo", log_history=HISTORY)
    with pytest.raises(ConfigError, match="has both grpo_summary.json and ppo_summary.json"):
        training_cost(both)


def test_an_older_oracle_summary_is_read_from_its_log_history(tmp_path):
    cost = training_cost(write(tmp_path / "rl", log_history=HISTORY))
    assert cost.tokens_generated == 398  # (50.5 + 49.0) x 4 completions per step
    assert cost.prm_tokens_scored == 0  # the oracle runs no model
    assert cost.policy_tokens_trained == 900  # TRL's cumulative num_tokens at the last step
    assert cost.total == 1298 and cost.how == "read from the log history"
    assert not any("lower bound" in n for n in cost.notes)


def test_unknown_counts_are_said_not_invented(tmp_path):
    summary = {"config": {"policy": "base", "prm": "runs/prm"}, "log_history": HISTORY[:1] + HISTORY[2:]}
    cost = training_cost(write(tmp_path / "rl", **summary))
    assert (cost.tokens_generated, cost.prm_tokens_scored, cost.policy_tokens_trained) == (None, None, None)
    assert cost.total == 0
    notes = " ".join(cost.notes)
    assert "PRM tokens scored in training: not logged" in notes and "lower bound" in notes
    assert "last step was not logged" in notes


def test_a_folder_without_a_summary_is_refused(tmp_path):
    (tmp_path / "policy").mkdir()
    with pytest.raises(ConfigError, match=r"RL policy .*policy has no grpo_summary.json or ppo_summary.json: give the "
                                          r"output folder of one finished `rlvprm grpo` or `rlvprm ppo` run"):
        training_cost(tmp_path / "policy")
    with pytest.raises(ConfigError, match="no such folder"):
        training_cost(tmp_path / "missing")
    (tmp_path / "policy" / "grpo_summary.json").write_text("{not json")
    with pytest.raises(RecordError, match="not valid JSON"):
        training_cost(tmp_path / "policy")
    (tmp_path / "policy" / "grpo_summary.json").write_text("{}")
    with pytest.raises(RecordError, match="lacks config, grpo, log_history"):
        training_cost(tmp_path / "policy")
