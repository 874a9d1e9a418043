"""Best-of-N selection strategies and subsampled accuracy against hand-computed values."""

import doctest

import pytest
from PIL import Image

from rlvprm.bon import select
from rlvprm.bon.select import (
    Candidate,
    Prompt,
    answer_key,
    best_of_n,
    default_ns,
    default_strategies,
    likelihood_best,
    oracle,
    orm_best,
    pass_at_1,
    plot_scaling,
    prm_best,
    prm_weighted_vote,
    self_consistency,
    strategy_accuracy,
    subsets,
)


def C(answer=None, correct=False, prm=None, orm=None, logprob=None):
    return Candidate(answer, correct, prm, orm, logprob)


def test_docstring_examples_hold():
    assert doctest.testmod(select).failed == 0


def test_argmax_strategies_and_their_ties():
    cands = [C("1", prm=0.2, orm=0.7, logprob=-1.0), C("2", prm=0.9, orm=0.1, logprob=-0.5),
             C("3", prm=0.9, orm=0.7, logprob=-0.5)]
    assert prm_best(cands) == 1  # 0.9 twice: the lower index
    assert orm_best(cands) == 0  # 0.7 twice
    assert likelihood_best(cands) == 1  # -0.5 twice
    assert prm_best([]) is None


def test_prm_scores_per_aggregation():
    cands = [C(prm={"mean": 0.8, "min": 0.1}), C(prm={"mean": 0.6, "min": 0.5})]
    assert prm_best(cands, "mean") == 0
    assert prm_best(cands, "min") == 1
    assert strategy_accuracy("prm_best:min", [C(prm={"min": 0.1}), C(correct=True, prm={"min": 0.5})]) == 1.0
    with pytest.raises(ValueError, match="name one"):
        prm_best(cands)
    with pytest.raises(ValueError, match="no 'last' entry"):
        prm_best(cands, "last")
    with pytest.raises(ValueError, match="one number"):
        prm_best([C(prm=0.5)], "mean")


def test_missing_scores_are_errors_not_zeros():
    with pytest.raises(ValueError, match="candidate 1: orm_score is None"):
        orm_best([C(orm=0.5), C()])
    with pytest.raises(ValueError, match="finite"):
        prm_best([C(prm=float("nan"))])


def test_self_consistency_majority_with_equivalent_answers():
    # "4", "4.0" and "$4$" are one answer (3 votes); three candidates without an answer never vote.
    cands = [C("3"), C(None), C("4", True), C(None), C("4.0", True), C(None), C("$4$", True)]
    assert self_consistency(cands) == 2


def test_self_consistency_tie_goes_to_first_occurrence():
    assert self_consistency([C("B"), C("A"), C("A"), C("B")]) == 0
    assert self_consistency([C(None), C("A"), C("B"), C("B"), C("A")]) == 1


def test_no_answer_never_wins_a_vote():
    assert self_consistency([C(None), C(None), C("  "), C("5")]) == 3
    assert prm_weighted_vote([C(None, prm=0.99), C(None, prm=0.98), C("3", prm=0.1)]) == 2
    assert self_consistency([C(None, True), C(None, True)]) is None
    assert strategy_accuracy("self_consistency", [C(None, True), C(None, True)]) == 0.0


def test_prm_weighted_vote():
    cands = [C("7", True, 0.9), C("8", False, 0.4), C("8", False, 0.4)]
    assert prm_weighted_vote(cands) == 0  # 0.9 against 0.8
    assert self_consistency(cands) == 1  # one vote against two
    cands[2].prm_score = 0.6
    assert prm_weighted_vote(cands) == 1  # 0.9 against 1.0: the first "8" is selected
    assert prm_weighted_vote([C("7", prm=0.5), C("8", prm=0.25), C("8", prm=0.25)]) == 0  # 0.5 = 0.5: first


def test_pass_at_1_and_oracle():
    cands = [C(correct=True), C(), C(), C(correct=True)]
    assert pass_at_1(cands) == 0.5
    assert oracle(cands) == 1.0
    assert oracle([C(), C()]) == 0.0
    assert strategy_accuracy("random", cands) == 0.5


def test_strategies_accept_plain_dicts():
    cands = [{"answer": "1", "correct": False, "prm_score": 0.1}, {"answer": "2", "correct": True, "prm_score": 0.3}]
    assert prm_best(cands) == 1
    assert strategy_accuracy("prm_best", cands) == 1.0


def test_answer_key():
    assert answer_key("\\dfrac{3}{4}") == answer_key("0.75") == answer_key("3/4")
    assert answer_key("1,000") == answer_key("1000") == answer_key("\\text{1000}.")
    assert answer_key("(C)") == answer_key("C") != answer_key("c")
    assert answer_key("North") == answer_key("north")
    assert answer_key("-0") == answer_key("0")
    assert answer_key("0.3333") != answer_key("1/3")
    assert answer_key(None) is None and answer_key(" $ $ ") is None


def test_unknown_strategies_are_rejected():
    with pytest.raises(ValueError, match="unknown strategy"):
        strategy_accuracy("best", [C()])
    with pytest.raises(ValueError, match="only prm_best and prm_weighted_vote"):
        strategy_accuracy("oracle:mean", [C()])


def test_default_strategies_follow_the_scores_present():
    plain = [Prompt("a", [C(prm=0.5, logprob=-1.0)])]
    assert default_strategies(plain) == ["pass@1", "self_consistency", "prm_best", "prm_weighted_vote",
                                         "likelihood_best", "oracle"]
    per_agg = [Prompt("a", [C(prm={"mean": 0.5, "min": 0.2}, orm=0.3)]), Prompt("b", [C(prm={"mean": 0.1}, orm=0.2)])]
    assert default_strategies(per_agg) == ["pass@1", "self_consistency", "prm_best:mean",
                                           "prm_weighted_vote:mean", "orm_best", "oracle"]


def test_default_ns():
    assert default_ns(16) == [1, 2, 4, 8, 16]
    assert default_ns(5) == [1, 2, 4, 5]
    assert default_ns(0) == []


def _tiny_prompts():
    return [
        # correct, wrong, wrong; answers 1, 2, 2
        Prompt("p1", [C("1", True, 0.9), C("2", False, 0.5), C("2", False, 0.6)], "A"),
        # no answer (wrong), correct
        Prompt("p2", [C(None, False, 0.7), C("5", True, 0.4)], "B"),
        Prompt("empty", [], "B"),
    ]


def test_subsampled_accuracy_by_hand():
    # Every C(k, n) <= num_subsets, so each subset is used once: exact expectations.
    #
    # p1, N=1: each candidate alone -> every strategy 1/3.
    # p1, N=2: subsets {0,1} {0,2} {1,2}. prm_best: 0, 0, 2 -> 2/3. self_consistency: 1-1 ties go to
    #   the first answer -> "1", "1", "2" -> 2/3. weighted: 0.9 > 0.5, 0.9 > 0.6, "2" -> 2/3.
    #   pass@1: 1/2, 1/2, 0 -> 1/3. oracle: 2/3.
    # p1, N=3: prm_best -> 0 (1). self_consistency: "2" twice (0). weighted: 0.9 < 1.1 (0). pass@1 1/3. oracle 1.
    # p2, N=1: {0} {1}. prm_best 1/2. self_consistency: {0} has no answer -> 0; {1} -> 1: 1/2. oracle 1/2.
    # p2, N=2: prm_best -> 0.7, wrong (0). votes: only "5" votes (1). pass@1 1/2. oracle 1.
    # p2, N=3: too few candidates, skipped. "empty": no candidates, skipped and listed.
    strategies = ["prm_best", "self_consistency", "prm_weighted_vote", "pass@1", "oracle"]
    r = best_of_n(_tiny_prompts(), strategies, ns=[1, 2, 3], num_subsets=8, seed=0)
    a, b, overall = r["sources"]["A"]["accuracy"], r["sources"]["B"]["accuracy"], r["overall"]["accuracy"]
    third = pytest.approx(1 / 3)
    assert a["prm_best"] == [third, pytest.approx(2 / 3), 1.0]
    assert a["self_consistency"] == [third, pytest.approx(2 / 3), 0.0]
    assert a["prm_weighted_vote"] == [third, pytest.approx(2 / 3), 0.0]
    assert a["pass@1"] == [third, third, third]
    assert a["oracle"] == [third, pytest.approx(2 / 3), 1.0]
    assert b["prm_best"] == [0.5, 0.0, None]
    assert b["self_consistency"] == [0.5, 1.0, None]
    assert b["oracle"] == [0.5, 1.0, None]
    # overall = mean over the prompts evaluated at that N
    assert overall["prm_best"] == [pytest.approx((1 / 3 + 1 / 2) / 2), pytest.approx(1 / 3), 1.0]
    assert overall["self_consistency"] == [pytest.approx((1 / 3 + 1 / 2) / 2), pytest.approx(5 / 6), 0.0]
    assert r["overall"]["num_prompts"] == [2, 2, 1]
    assert r["sources"]["B"]["num_prompts"] == [1, 1, 0]
    assert r["skipped"] == {"no_candidates": ["empty"], "too_few_candidates": [0, 0, 1]}


def test_default_ns_stop_at_the_smallest_candidate_count():
    r = best_of_n(_tiny_prompts(), ["oracle"])
    assert r["ns"] == [1, 2]
    assert r["skipped"]["too_few_candidates"] == [0, 0]


def test_no_candidates_anywhere_is_reported_not_crashed():
    r = best_of_n([Prompt("x", []), Prompt("y", [])], ["oracle"])
    assert r["ns"] == [] and r["skipped"]["no_candidates"] == ["x", "y"] and r["sources"] == {}


def _random_prompts():
    out = []
    for p in range(6):
        cands = [C(str((p + i) % 3), (p * 7 + i) % 3 == 0, ((p * 13 + i * 5) % 11) / 10, logprob=-((p + i * 3) % 5))
                 for i in range(10)]
        out.append(Prompt(f"p{p}", cands, "A" if p % 2 else "B"))
    return out


def test_subsampling_is_deterministic_under_the_seed():
    strategies = ["prm_best", "self_consistency", "likelihood_best", "pass@1", "oracle"]
    one = best_of_n(_random_prompts(), strategies, ns=[1, 2, 4, 10], num_subsets=5, seed=3)
    two = best_of_n(_random_prompts(), strategies, ns=[1, 2, 4, 10], num_subsets=5, seed=3)
    assert one == two
    other = best_of_n(_random_prompts(), strategies, ns=[1, 2, 4, 10], num_subsets=5, seed=4)
    assert other["overall"]["accuracy"] != one["overall"]["accuracy"]
    # the full set is used once whatever the seed
    assert other["overall"]["accuracy"]["prm_best"][-1] == one["overall"]["accuracy"]["prm_best"][-1]
    # every strategy sees the same subsets: dropping some changes nothing for the rest
    fewer = best_of_n(_random_prompts(), ["oracle", "prm_best"], ns=[1, 2, 4, 10], num_subsets=5, seed=3)
    assert fewer["overall"]["accuracy"]["prm_best"] == one["overall"]["accuracy"]["prm_best"]


def test_random_subsets_are_distinct_indices_in_order():
    import numpy as np

    subs = subsets(10, 4, 7, np.random.default_rng(0))
    assert len(subs) == 7
    assert all(len(set(s)) == 4 and list(s) == sorted(s) and max(s) < 10 for s in subs)
    assert subsets(4, 4, 1, np.random.default_rng(0)) == [(0, 1, 2, 3)]
    assert len(subsets(4, 2, 6, np.random.default_rng(0))) == 6  # C(4, 2) = 6: all of them


def test_scaling_plot(tmp_path):
    r = best_of_n(_random_prompts(), ["prm_best", "self_consistency", "pass@1", "oracle"], num_subsets=4)
    path = plot_scaling(r, tmp_path / "plots" / "scaling.png")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 300
    assert plot_scaling(r, tmp_path / "a.png", source="A").exists()
