"""The stacked scorer: its combination rule, step agreement between components, and loading."""

import doctest
import json
import math

import pytest

from rewards import stacked
from rewards.prm import Group, ScoredSolution
from rewards.stacked import LOGIT_CLIP, StackedScorer, combine, logit
from rewards.steps import split_steps


class Fixed:
    """A scorer that gives every step of every solution the same scores, in order."""

    batch_size = 4

    def __init__(self, scores, split_at="\n\n", num_tokens=0):
        self.scores = scores
        self.split_at = split_at
        self.num_tokens = num_tokens

    def split(self, solution):
        return split_steps(solution) if self.split_at == "\n\n" else split_steps(solution.replace(self.split_at, "\n\n"))

    def score_groups(self, groups):
        return [[ScoredSolution(self.split(s), self.scores[: len(self.split(s))], 0.0, self.num_tokens) for s in g.solutions]
                for g in groups]


def test_docstring_examples_hold():
    assert doctest.testmod(stacked).failed == 0


def test_logit_is_clipped_and_inverts_the_sigmoid():
    assert logit(0.5) == 0.0
    assert logit(0.8) == pytest.approx(math.log(4))
    assert logit(0.0) == pytest.approx(-LOGIT_CLIP) and logit(1.0) == pytest.approx(LOGIT_CLIP)


def test_combine_by_hand():
    # z = 0.5 + 2 * logit(0.9) - 1 * logit(0.2) = 0.5 + 2 * 2.1972 + 1.3863
    got = combine([[0.9, 0.5], [0.2, 0.5]], [2.0, -1.0], 0.5)
    assert got[0] == pytest.approx(1 / (1 + math.exp(-(0.5 + 2 * math.log(9) + math.log(4)))))
    assert got[1] == pytest.approx(1 / (1 + math.exp(-0.5)))
    with pytest.raises(ValueError, match="2 components but 1 weights"):
        combine([[0.5], [0.5]], [1.0], 0.0)


def test_stacked_scorer_combines_and_aggregates():
    scorer = StackedScorer([Fixed([0.9, 0.1], num_tokens=30), Fixed([0.5, 0.5], num_tokens=12)], [1.0, 3.0], 0.0,
                           aggregation="min")
    (res,) = scorer.score_group("q", [], ["a\n\nb"])
    assert [st.text for st in res.steps] == ["a", "b"]
    assert res.step_scores == pytest.approx([0.9, 0.1])  # the second component's logit is 0
    assert res.score == pytest.approx(0.1)
    assert res.num_tokens == 42  # every component read the solution


def test_components_that_split_differently_are_an_error():
    scorer = StackedScorer([Fixed([0.9, 0.1]), Fixed([0.5, 0.5, 0.5], split_at=" ")], [1.0, 1.0], 0.0)
    with pytest.raises(ValueError, match="different steps"):
        scorer.score_groups([Group("q", [], ["a b\n\nc"])])
    with pytest.raises(ValueError, match="one weight per component"):
        StackedScorer([Fixed([0.5])], [1.0, 2.0], 0.0)


def test_load_scorer_reads_a_stacked_folder(tiny_models, tmp_path):
    from rewards import load_scorer
    from rewards.likelihood import PolicyLikelihoodScorer
    from rewards.prm import ProcessRewardModel

    policy = tiny_models("qwen2-vl")
    (tmp_path / "stacked_scorer.json").write_text(json.dumps({
        "components": [{"name": "prm", "kind": "scorer", "path": policy},
                       {"name": "lik", "kind": "likelihood", "path": policy}],
        "weights": [0.5, 1.5], "bias": -0.25}))
    scorer = load_scorer(str(tmp_path), device="cpu", dtype="float32")
    assert isinstance(scorer, StackedScorer) and scorer.names == ["prm", "lik"]
    assert isinstance(scorer.components[0], ProcessRewardModel)
    assert isinstance(scorer.components[1], PolicyLikelihoodScorer)
    (res,) = scorer.score_group("How much is 2 + 2?", [], ["2 + 2 = 4.\n\nThe answer is \\boxed{4}."])
    a = scorer.components[0].score_group("How much is 2 + 2?", [], ["2 + 2 = 4.\n\nThe answer is \\boxed{4}."])[0]
    b = scorer.components[1].score_group("How much is 2 + 2?", [], ["2 + 2 = 4.\n\nThe answer is \\boxed{4}."])[0]
    assert res.step_scores == pytest.approx(combine([a.step_scores, b.step_scores], [0.5, 1.5], -0.25))
    with pytest.raises(ValueError, match="no ORM mode"):
        load_scorer(str(tmp_path), orm=True)
    (tmp_path / "stacked_scorer.json").write_text(json.dumps(
        {"components": [{"name": "x", "kind": "magic", "path": policy}], "weights": [1.0], "bias": 0.0}))
    with pytest.raises(ValueError, match="unknown component kind"):
        load_scorer(str(tmp_path), device="cpu")
