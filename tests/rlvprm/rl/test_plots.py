"""Run curves: the moving average and the panels of several runs."""

import doctest

import pytest

from rlvprm.rl import plots
from rlvprm.rl.plots import moving_average, plot_runs


def test_docstring_examples_hold():
    assert doctest.testmod(plots).failed == 0


def test_moving_average_by_hand():
    assert moving_average([], 3) == []
    assert moving_average([2.0, 4.0, 6.0, 8.0], 3) == pytest.approx([2.0, 3.0, 4.0, 6.0])


def test_plot_runs_writes_a_png(tmp_path):
    summary = {"heldout": [{"step": 0, "greedy_accuracy": 0.5, "sample_accuracy": 0.4}],
               "log_history": [{"step": s, "outcome/accuracy": 0.5, "kl": 0.01 * s} for s in range(1, 4)]}
    path = plot_runs([summary, summary], ["a", "b"], tmp_path / "c.png", smooth=2)
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="2 runs but 1 labels"):
        plot_runs([summary, summary], ["a"], tmp_path / "d.png")
