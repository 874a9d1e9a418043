"""VisualProcessBench metrics against hand-computed values.

Notation in the comments: TP/FP/FN of the "correct" class (positive = label 1) and of the "wrong"
class (positive = label -1); F1 = 2TP / (2TP + FP + FN). Threshold 0.5 unless said otherwise.
"""

import doctest
import math

import numpy as np
import pytest

from rlvprm.evaluation import vpb
from rlvprm.evaluation.vpb import (
    ScoredSteps,
    auc,
    evaluate,
    position_matched_auc,
    render_markdown,
    step_auc,
    step_metrics,
    step_weighted_macro_f1,
    sweep_candidates,
    sweep_threshold,
)


def test_docstring_examples_hold():
    assert doctest.testmod(vpb).failed == 0


def test_mixed_case():
    # judged correct: 0.9, 0.6, 0.7. correct: TP 2, FP 1 (0.7), FN 1 (0.4) -> 4/6.
    # wrong: TP 1 (0.3), FP 1 (0.4), FN 1 (0.7) -> 2/4. macro = (2/3 + 1/2) / 2 = 7/12.
    m = step_metrics([1, 1, 1, -1, -1], [0.9, 0.6, 0.4, 0.3, 0.7], 0.5)
    assert m["f1_correct"] == pytest.approx(2 / 3)
    assert m["precision_correct"] == pytest.approx(2 / 3)
    assert m["recall_correct"] == pytest.approx(2 / 3)
    assert m["f1_wrong"] == pytest.approx(0.5)
    assert m["precision_wrong"] == pytest.approx(0.5)
    assert m["recall_wrong"] == pytest.approx(0.5)
    assert m["macro_f1"] == pytest.approx(7 / 12)
    assert (m["n_steps"], m["n_correct"], m["n_wrong"], m["n_neutral"]) == (5, 3, 2, 0)


def test_all_correct_with_a_step_judged_wrong():
    # correct: TP 2, FN 1 -> 4/5. wrong: never occurs but predicted once (FP 1) -> F1 0.
    m = step_metrics([1, 1, 1], [0.9, 0.8, 0.3], 0.5)
    assert m["f1_correct"] == pytest.approx(0.8)
    assert m["f1_wrong"] == 0.0
    assert m["precision_wrong"] == 0.0
    assert m["recall_wrong"] is None  # the class never occurs
    assert m["macro_f1"] == pytest.approx(0.4)


def test_all_correct_all_judged_correct_leaves_wrong_f1_undefined():
    # The wrong class neither occurs nor is predicted: F1 None, macro is the correct class's F1.
    m = step_metrics([1, 1], [0.9, 0.8], 0.5)
    assert m["f1_wrong"] is None and m["precision_wrong"] is None and m["recall_wrong"] is None
    assert m["f1_correct"] == 1.0
    assert m["macro_f1"] == 1.0


def test_all_wrong():
    # wrong: TP 1 (0.2), FN 1 (0.7) -> 2/3. correct: FP 1 only -> 0. macro = 1/3.
    m = step_metrics([-1, -1], [0.2, 0.7], 0.5)
    assert m["f1_wrong"] == pytest.approx(2 / 3)
    assert m["f1_correct"] == 0.0
    assert m["macro_f1"] == pytest.approx(1 / 3)


def test_neutral_steps_are_counted_but_excluded():
    with_neutral = step_metrics([1, 0, -1, 0], [0.9, 0.1, 0.2, 0.9], 0.5)
    without = step_metrics([1, -1], [0.9, 0.2], 0.5)
    assert with_neutral["n_neutral"] == 2 and with_neutral["n_steps"] == 4
    for key in ("f1_correct", "f1_wrong", "macro_f1", "precision_correct", "recall_wrong"):
        assert with_neutral[key] == without[key] == 1.0


def test_score_equal_to_threshold_counts_as_wrong():
    # Both judged wrong. correct: FN 1 -> F1 0. wrong: TP 1, FP 1 -> 2/3. macro 1/3.
    m = step_metrics([1, -1], [0.5, 0.5], 0.5)
    assert m["f1_correct"] == 0.0
    assert m["f1_wrong"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx(1 / 3)
    assert step_metrics([1], [0.5], 0.4999)["f1_correct"] == 1.0


def test_only_neutral_steps_give_no_macro():
    m = step_metrics([0, 0], [0.1, 0.9], 0.5)
    assert m["macro_f1"] is None and m["f1_correct"] is None and m["f1_wrong"] is None
    assert step_metrics([], [], 0.5)["macro_f1"] is None


def _three_sources():
    return [
        # A: perfect; 2 labelled steps.
        ScoredSteps("1", [1, -1], [0.9, 0.1], "A"),
        # B: correct TP 2, FN 1 (0.2), FP 1 (0.8) -> 2/3; wrong TP 0 -> 0; macro 1/3; 4 labelled.
        ScoredSteps("2", [1, 1], [0.9, 0.9], "B"),
        ScoredSteps("3", [1, -1], [0.2, 0.8], "B"),
        # C: neutral only -> no macro, no weight.
        ScoredSteps("4", [0, 0], [0.4, 0.6], "C"),
    ]


def test_per_source_pooled_and_step_weighted():
    m = evaluate(_three_sources(), 0.5)
    assert list(m["sources"]) == ["A", "B", "C"]
    assert m["sources"]["A"]["macro_f1"] == 1.0
    assert m["sources"]["B"]["macro_f1"] == pytest.approx(1 / 3)
    assert m["sources"]["C"]["macro_f1"] is None
    assert m["sources"]["C"]["n_neutral"] == 2 and m["sources"]["C"]["n_records"] == 1
    # Weighted by labelled steps: (2 * 1 + 4 * 1/3) / 6 = 5/9.
    assert m["step_weighted_macro_f1"] == pytest.approx(5 / 9)
    # Pooled: correct TP 3, FN 1, FP 1 -> 6/8; wrong TP 1, FP 1, FN 1 -> 1/2; macro 5/8.
    assert m["overall"]["macro_f1"] == pytest.approx(0.625)
    assert m["overall"]["n_records"] == 4 and m["overall"]["n_steps"] == 8
    assert "sweep" not in m


def test_step_weighted_skips_sources_without_labelled_steps():
    assert step_weighted_macro_f1({"x": {"n_correct": 0, "n_wrong": 0, "macro_f1": None}}) is None


def test_missing_source_is_grouped_under_a_name():
    m = evaluate([ScoredSteps("1", [1], [0.9])], 0.5)
    assert list(m["sources"]) == [vpb.NO_SOURCE]


def test_sweep_picks_the_best_threshold_and_keeps_the_fixed_numbers():
    # Sorted: 0.2(-) 0.3(+) 0.55(-) 0.6(+) 0.9(+). At 0.55: correct TP 2, FN 1 -> 0.8;
    # wrong TP 2, FP 1 -> 0.8; macro 0.8, which no other cut reaches. Its midpoint with 0.6 ties:
    # the lower threshold wins.
    labels, scores = [1, 1, -1, 1, -1], [0.9, 0.6, 0.55, 0.3, 0.2]
    best = sweep_threshold(labels, scores)
    assert best["threshold"] == 0.55
    assert best["macro_f1"] == pytest.approx(0.8)
    m = evaluate([ScoredSteps("1", labels, scores, "S")], 0.5, sweep=True)
    assert m["overall"]["macro_f1"] == pytest.approx(7 / 12)  # fixed threshold, unchanged
    assert m["threshold"] == 0.5
    assert m["sweep"]["threshold"] == 0.55 and m["sweep"]["step_weighted_macro_f1"] == pytest.approx(0.8)
    assert "test set" in m["sweep"]["note"]


def test_sweep_can_judge_every_step_correct():
    best = sweep_threshold([1, 1], [0.3, 0.4])
    assert best["threshold"] < 0.3 and best["macro_f1"] == 1.0


def test_sweep_agrees_with_step_metrics_at_every_candidate():
    rng = np.random.default_rng(0)
    labels = rng.choice([1, 1, 0, -1], size=60).tolist()
    scores = np.round(rng.random(60), 1).tolist()  # rounding makes ties
    cands = sweep_candidates([s for lab, s in zip(labels, scores) if lab != 0])
    brute = [step_metrics(labels, scores, float(t))["macro_f1"] for t in cands]
    best = sweep_threshold(labels, scores)
    assert best["macro_f1"] == pytest.approx(max(brute))
    assert best["threshold"] == float(cands[int(np.argmax(brute))])


def test_sweep_candidates_are_scores_midpoints_and_one_below():
    c = sweep_candidates([0.5, 0.1, 0.5])
    assert c[0] < 0.1 and c[1:].tolist() == [0.1, 0.3, 0.5]
    assert sweep_threshold([0, 0], [0.1, 0.2]) is None


def test_auc_hand_cases():
    assert auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert auc([0.1], [0.9]) == 0.0
    assert auc([0.5], [0.5]) == 0.5  # a tie earns half
    # pairs (h, l): (0.9,0.5) win, (0.9,0.1) win, (0.5,0.5) tie, (0.5,0.1) win, (0.3,0.5) loss, (0.3,0.1) win
    assert auc([0.9, 0.5, 0.3], [0.5, 0.1]) == pytest.approx(4.5 / 6)
    assert auc([], [0.1]) is None and auc([0.1], []) is None


def test_step_auc_leaves_neutral_steps_out():
    recs = [ScoredSteps("1", [1, 0, -1], [0.6, 0.0, 0.4]), ScoredSteps("2", [-1, 0], [0.6, 1.0])]
    # correct {0.6} against wrong {0.4, 0.6}: a win and a tie.
    assert step_auc(recs) == pytest.approx(0.75)


def test_position_matched_auc():
    recs = [
        ScoredSteps("a", [1, 1, -1], [0.9, 0.8, 0.4]),  # first wrong at index 2: 0.4
        ScoredSteps("b", [1, -1, -1], [0.7, 0.5, 0.1]),  # index 1: 0.5 (later wrong steps ignored)
        ScoredSteps("c", [1, 1, 1], [0.6, 0.5, 0.3]),  # correct record
        ScoredSteps("d", [1, 0, 1], [0.8, 0.2, 0.6]),  # correct record; its neutral step is no reference
        ScoredSteps("e", [-1], [0.4]),  # index 0: 0.4
        ScoredSteps("f", [1, 1, 1, -1], [0.9, 0.9, 0.9, 0.0]),  # index 3: nothing to compare with
    ]
    # index 0: refs 0.6, 0.8 vs 0.4 -> 2 wins; index 1: ref 0.5 vs 0.5 -> tie;
    # index 2: refs 0.3, 0.6 vs 0.4 -> 1 win. (2 + 0.5 + 1) / 5 pairs = 0.7.
    r = position_matched_auc(recs)
    assert r["auc"] == pytest.approx(0.7)
    assert (r["pairs"], r["first_wrong_steps"], r["unmatched"]) == (5, 4, 1)
    assert position_matched_auc([ScoredSteps("x", [1], [0.5])])["auc"] is None


def test_bad_records_are_rejected():
    with pytest.raises(ValueError, match="2 scores for 1"):
        ScoredSteps("x", [1], [0.5, 0.5])
    with pytest.raises(ValueError, match="finite"):
        ScoredSteps("x", [1], [math.nan])
    with pytest.raises(ValueError, match="1, 0 or -1"):
        ScoredSteps("x", [2], [0.5])


def test_markdown_has_a_row_per_source_and_both_overall_rows():
    md = render_markdown(evaluate(_three_sources(), 0.5))
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert [r.split(" | ")[0] for r in rows[1:]] == [
        "| A", "| B", "| C", "| **overall, pooled steps**", "| **overall, step-weighted mean of sources**"
    ]
    assert "0.6250" in rows[4] and "0.5556" in rows[5] and "n/a" in rows[3]
    assert "sweep" not in md.lower()
    swept = render_markdown(evaluate(_three_sources(), 0.5, sweep=True))
    assert "tuned on the test set" in swept and swept.startswith(md.rstrip("\n"))
