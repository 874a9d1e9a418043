"""Run curves: the moving average and the panels of several GRPO or PRM-training runs."""

import doctest

import pytest

from rlvprm import plots
from rlvprm.plots import moving_average, plot_runs, series


def test_docstring_examples_hold():
    assert doctest.testmod(plots).failed == 0


def test_moving_average_by_hand():
    assert moving_average([], 3) == []
    assert moving_average([2.0, 4.0, 6.0, 8.0], 3) == pytest.approx([2.0, 3.0, 4.0, 6.0])


GRPO = {"heldout": [{"step": 0, "greedy_accuracy": 0.5, "sample_accuracy": None}],
        "log_history": [{"step": s, "outcome/accuracy": 0.5, "kl": 0.01 * s} for s in range(1, 4)]}
PRM = {"log_history": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}, {"step": 2, "eval_macro_f1": 0.6},
                       {"step": 2, "train_loss": 1.5, "loss": 9.0}]}


def test_series_pick_their_points():
    assert series(GRPO, "greedy_accuracy", "grpo", 10) == [(0, 0.5)]
    assert series(GRPO, "sample_accuracy", "grpo", 10) == []
    steps, values = zip(*series(GRPO, "kl", "grpo", 2))
    assert steps == (1, 2, 3) and values == pytest.approx((0.01, 0.015, 0.025))
    assert series(PRM, "loss", "train-prm", 2) == [(1, 2.0), (2, 1.5)]  # the end-of-training summary is left out
    assert series(PRM, "eval_macro_f1", "train-prm", 2) == [(2, 0.6)]  # evaluations are not smoothed


@pytest.mark.parametrize("kind, summary", [("grpo", GRPO), ("train-prm", PRM)])
def test_plot_runs_writes_a_png(tmp_path, kind, summary):
    path = plot_runs([summary, summary], ["a", "b"], tmp_path / "c.png", kind=kind, smooth=2)
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="2 runs but 1 labels"):
        plot_runs([summary, summary], ["a"], tmp_path / "d.png", kind=kind)
