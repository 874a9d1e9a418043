"""Arms over seeds: mean and standard error by hand, steps to the baseline's final accuracy, the table."""

import json

import pytest

from rlvprm.rl.arms import compare_arms, main, markdown, mean_se, steps_to_reach, up_to


def _run(samples, greedy, kl=0.01):
    heldout = [{"step": 5 * i, "greedy_accuracy": g, "sample_accuracy": s} for i, (s, g) in enumerate(zip(samples, greedy))]
    logs = [{"step": step, "outcome/accuracy": 0.5, "kl": kl, "steps/per_completion": 4.0} for step in range(1, 5 * len(samples))]
    return {"heldout": heldout, "log_history": logs, "train": {"train_runtime": 100.0}}


def test_mean_and_standard_error_by_hand():
    assert mean_se([0.2]) == (0.2, 0.0)
    # mean 0.4, sample variance ((0.1)^2 + (0.1)^2) / 1 = 0.02, SE sqrt(0.02 / 2) = 0.1
    assert mean_se([0.3, 0.5]) == (0.4, 0.1)
    assert steps_to_reach([(0, 0.3, 0.0), (5, 0.4, 0.0)], 0.5) is None


def test_dense_arm_reaches_the_baseline_earlier():
    arms = {
        "outcome": [_run([0.30, 0.35, 0.40, 0.45], [0.5] * 4), _run([0.30, 0.33, 0.41, 0.45], [0.5] * 4)],
        "process": [_run([0.30, 0.42, 0.46, 0.50], [0.5] * 4), _run([0.30, 0.40, 0.44, 0.48], [0.5] * 4)],
    }
    result = compare_arms(arms, "outcome")
    assert result["target"] == {"sample_accuracy": 0.45, "step": 15}
    # process means by step: 0.30, 0.41, 0.45, 0.49: reaches 0.45 at step 10, 10 / 15 of the baseline's steps.
    assert result["arms"]["process"]["steps_to_baseline_final"] == 10
    assert result["arms"]["process"]["fraction_of_baseline_steps"] == pytest.approx(0.667)
    assert result["arms"]["outcome"]["steps_to_baseline_final"] == 15
    assert result["arms"]["process"]["gain_sample"] == (0.19, 0.01)
    assert "| process | 2 |" in markdown(result)
    with pytest.raises(ValueError, match="baseline"):
        compare_arms(arms, "min_form")


def test_up_to_cuts_a_longer_run_and_main_writes_the_files(tmp_path):
    long = _run([0.3, 0.35, 0.4, 0.45, 0.5], [0.5] * 5)
    cut = up_to(long, 15)
    assert [h["step"] for h in cut["heldout"]] == [0, 5, 10, 15] and max(h["step"] for h in cut["log_history"]) == 15
    assert cut["train"] == {}
    with pytest.raises(ValueError, match="step 12"):
        up_to(long, 12)
    for name, run in (("a", long), ("b", _run([0.3, 0.4, 0.45, 0.5], [0.5] * 4))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "grpo_summary.json").write_text(json.dumps(run))
    main(["--arm", f"outcome={tmp_path / 'a'}", "--arm", f"process={tmp_path / 'b'}", "--baseline", "outcome",
          "--out", str(tmp_path / "out"), "--max-step", "15"])
    result = json.loads((tmp_path / "out" / "arms.json").read_text())
    assert result["arms"]["process"]["steps_to_baseline_final"] == 10
    assert (tmp_path / "out" / "arms.png").stat().st_size > 0


def test_ppo_and_grpo_compare_at_the_same_number_of_sampled_completions(tmp_path):
    # GRPO: 128 new completions a step; PPO: batches of 64 used for 2 epochs, 32 new completions a step.
    grpo = {**_run([0.30, 0.40, 0.45], [0.5] * 3), "grpo": {"per_device_train_batch_size": 128, "num_iterations": 1}}
    ppo = _run([0.30, 0.38, 0.42, 0.44, 0.46], [0.5] * 5)
    ppo = {**ppo, "heldout": [{**h, "step": 20 * i} for i, h in enumerate(ppo["heldout"])],
           "ppo": {"per_device_train_batch_size": 64, "num_iterations": 2}}
    for name, run in (("grpo", grpo), ("ppo", ppo)):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}_summary.json").write_text(json.dumps(run))
    result = main(["--arm", f"grpo={tmp_path / 'grpo'}", "--arm", f"ppo={tmp_path / 'ppo'}", "--baseline", "grpo",
                   "--x", "completions", "--max-step", "1280", "--out", str(tmp_path / "out")])
    # GRPO held out at steps 0, 5, 10 = 0, 640, 1280 completions; PPO at steps 0, 20, 40 = 0, 640, 1280.
    assert [c[0] for c in result["arms"]["ppo"]["curves"]["sample_accuracy"]] == [0, 640, 1280]
    assert result["target"] == {"sample_accuracy": 0.45, "step": 1280}
    assert result["arms"]["ppo"]["steps_to_baseline_final"] is None
