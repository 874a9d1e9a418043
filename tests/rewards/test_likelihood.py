"""Likelihood process scorers on tiny real Qwen2-VL models loaded from disk."""

import doctest
import math
from pathlib import Path

import pytest
import torch

from rewards import likelihood
from rewards.likelihood import (
    ImplicitPRM,
    PolicyLikelihoodScorer,
    encode_solutions,
    implicit_scores,
    likelihood_step_scores,
    running_minimum,
    solution_logprobs,
    token_logprobs,
)
from rewards.loading import load_vlm
from rewards.prm import Group
from rewards.prompt import render_prompt
from rlvprm.models.tiny import build_tiny_model

QUESTION = "<image>\nWhat is the sum of the numbers in the image?"
SOLUTIONS = [
    "The numbers are 3, 7 and 5.\n\n3 + 7 = 10.\n\n10 + 5 = 15.\n\nThe answer is \\boxed{15}.",
    "The numbers are 3 and 8.\n\n3 + 8 = 11.\n\nThe answer is \\boxed{11}.",
]
GIVEN = ["The numbers are 3, 7 and 5.", "3 + 7 = 10.\n\nstill the same step", "The answer is \\boxed{10}."]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def policy(tiny_models):
    return load_vlm(tiny_models("qwen2-vl"))


@pytest.fixture(scope="module")
def other_path(tmp_path_factory):
    """A second model with the same tokenizer and processor but other weights (a 'trained' model)."""
    return str(build_tiny_model("qwen2-vl", tmp_path_factory.mktemp("other"), seed=1))


@pytest.fixture(scope="module")
def other(other_path):
    return load_vlm(other_path)


def test_docstring_examples_hold():
    assert doctest.testmod(likelihood).failed == 0


def test_policy_scorer_equals_policy_likelihood_step_probabilities(policy, images):
    model, processor = policy
    from rlvprm.policy_likelihood import likelihood_step_scores as pl_scores, solution_logprobs as pl_logprobs

    for kind in ("step_prob", "mean_token_prob", "min_token_prob"):
        for running_min in (False, True):
            scorer = PolicyLikelihoodScorer(model, processor, kind=kind, running_min=running_min, batch_size=2)
            scored = scorer.score_group(QUESTION, [images[0]], SOLUTIONS)
            expected = [pl_scores(r, kind, running_min) for r in pl_logprobs(model, processor, QUESTION, [images[0]], SOLUTIONS)]
            for got, want, solution in zip(scored, expected, SOLUTIONS):
                assert got.step_scores == pytest.approx(want, rel=1e-5)
                assert got.score == pytest.approx(min(want))
                assert got.steps == scorer.split(solution)
    # Step probabilities: exp of the summed log-probability of each step's tokens.
    r = solution_logprobs(model, processor, QUESTION, [images[0]], SOLUTIONS[:1])[0]
    plain = PolicyLikelihoodScorer(model, processor, running_min=False).score_group(QUESTION, [images[0]], SOLUTIONS[:1])[0]
    assert plain.step_scores == pytest.approx([math.exp(s) for s in r.step_sums], rel=1e-5)


def test_given_steps_are_scored_as_given_and_groups_batch(policy, images):
    model, processor = policy
    scorer = PolicyLikelihoodScorer(model, processor, aggregation="mean")
    alone = scorer.score_group(QUESTION, [images[0]], [GIVEN])[0]
    assert [s.text for s in alone.steps] == GIVEN  # the blank line inside step 2 does not split it
    both = scorer.score_groups([Group(QUESTION, [images[1]], SOLUTIONS), Group(QUESTION, [images[0]], [GIVEN])])
    assert [len(g) for g in both] == [2, 1]
    assert both[1][0].step_scores == pytest.approx(alone.step_scores, rel=1e-5)
    with pytest.raises(ValueError, match="no steps"):
        scorer.score_group(QUESTION, [images[0]], ["  \n\n "])


def test_token_logprobs_keep_the_gradient_and_match_the_no_grad_path(policy, images):
    model, processor = policy
    enc = encode_solutions(processor, [(QUESTION, [images[0]], s) for s in SOLUTIONS])
    mask = enc.solution_mask()
    lp = token_logprobs(model, enc.inputs, enc.num_tokens)
    assert lp.shape == mask.shape and lp.requires_grad
    assert mask.sum(1).tolist() == [len(t) for t in enc.token_ids]
    lp.masked_fill(~mask, 0).sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.zero_grad(set_to_none=True)
    sums = [r.step_sums for r in solution_logprobs(model, processor, QUESTION, [images[0]], SOLUTIONS)]
    assert (lp * mask).sum(1).tolist() == pytest.approx([math.fsum(s) for s in sums], abs=1e-3)


def test_implicit_prm_rewards_are_beta_times_the_step_log_ratio(policy, other, images):
    (ref, processor), (trained, _) = policy, other
    prm = ImplicitPRM(trained, ref, processor, beta=0.1, running_min=False)
    rewards = prm.step_rewards(QUESTION, [images[0]], SOLUTIONS)
    for sol, got in zip(SOLUTIONS, rewards):
        a = solution_logprobs(trained, processor, QUESTION, [images[0]], [sol])[0].step_sums
        b = solution_logprobs(ref, processor, QUESTION, [images[0]], [sol])[0].step_sums
        assert got == pytest.approx([0.1 * (x - y) for x, y in zip(a, b)], abs=1e-4)
    scored = prm.score_group(QUESTION, [images[0]], SOLUTIONS)
    for res, r in zip(scored, rewards):
        assert res.step_scores == pytest.approx(implicit_scores(r, "step"))
        assert res.score == pytest.approx(min(res.step_scores))
    cumulative = ImplicitPRM(trained, ref, processor, beta=0.1, score="cumulative", running_min=False)
    last = cumulative.score_group(QUESTION, [images[0]], SOLUTIONS)[0].step_scores[-1]
    assert last == pytest.approx(1 / (1 + math.exp(-sum(rewards[0]))))
    running = ImplicitPRM(trained, ref, processor, beta=0.1).score_group(QUESTION, [images[0]], SOLUTIONS)
    for res, r in zip(running, rewards):
        assert res.step_scores == pytest.approx(running_minimum(implicit_scores(r, "step")))


def test_num_tokens_counts_the_prompt_and_solution_per_model(policy, other, images):
    # By hand: the policy prompt plus the solution, tokenised alone with its image; two models read
    # it for an implicit PRM.
    (model, processor), (trained, _) = policy, other
    prompt = render_prompt(processor, QUESTION, 1)
    want = [processor(text=[prompt + s], images=[[images[0]]], return_tensors="pt")["input_ids"].shape[1]
            for s in SOLUTIONS]
    plain = PolicyLikelihoodScorer(model, processor, batch_size=2).score_group(QUESTION, [images[0]], SOLUTIONS)
    implicit = ImplicitPRM(trained, model, processor, batch_size=2).score_group(QUESTION, [images[0]], SOLUTIONS)
    assert [r.num_tokens for r in plain] == want
    assert [r.num_tokens for r in implicit] == [2 * n for n in want]


def test_implicit_prm_against_itself_scores_one_half(policy, images):
    model, processor = policy
    scored = ImplicitPRM(model, model, processor).score_group(QUESTION, [images[0]], SOLUTIONS + [GIVEN])
    assert all(s == pytest.approx(0.5) for r in scored for s in r.step_scores)


def test_orm_mode_scores_the_whole_response_as_one_step(policy, other, images):
    (ref, processor), (trained, _) = policy, other
    rewards = ImplicitPRM(trained, ref, processor, beta=0.1).step_rewards(QUESTION, [images[0]], SOLUTIONS)
    orm = ImplicitPRM(trained, ref, processor, beta=0.1, orm=True)
    scored = orm.score_group(QUESTION, [images[0]], SOLUTIONS + [GIVEN])
    for res, sol, r in zip(scored, SOLUTIONS, rewards):
        assert [st.text for st in res.steps] == [sol]
        # PRIME: the whole response's implicit reward is the outcome reward.
        assert res.step_scores == pytest.approx([1 / (1 + math.exp(-sum(r)))], abs=1e-4)
        assert res.score == res.step_scores[0]
    assert [st.text for st in scored[2].steps] == ["\n\n".join(GIVEN)]
    with pytest.raises(ValueError, match="no steps"):
        orm.score_group(QUESTION, [images[0]], ["  "])


def test_load_scorer_picks_the_scorer_from_the_folder(tiny_models, other_path, images):
    import json

    from rewards import load_scorer
    from rewards.prm import ProcessRewardModel

    assert isinstance(load_scorer(tiny_models("qwen2-vl"), device="cpu"), ProcessRewardModel)
    (Path(other_path) / "implicit_prm.json").write_text(json.dumps(
        {"reference": tiny_models("qwen2-vl"), "beta": 0.1, "score": "step", "running_min": False}))
    prm = load_scorer(other_path, device="cpu", dtype="float32", aggregation="mean", backend="auto")
    assert isinstance(prm, ImplicitPRM) and prm.beta == 0.1 and prm.aggregation == "mean" and not prm.orm
    assert load_scorer(other_path, device="cpu", orm=True).orm
    got = prm.score_group(QUESTION, [images[0]], SOLUTIONS[:1])[0].step_scores
    trained, ref = load_vlm(other_path)[0], load_vlm(tiny_models("qwen2-vl"))
    want = ImplicitPRM(trained, ref[0], ref[1], beta=0.1, running_min=False).score_group(
        QUESTION, [images[0]], SOLUTIONS[:1])[0].step_scores
    assert got == pytest.approx(want)
    with pytest.raises(ValueError, match="max_length"):
        load_scorer(other_path, device="cpu", max_length=512)


def test_load_scorer_likelihood_prefix_gives_the_policy_likelihood(tiny_models, images):
    from rewards import load_scorer

    path = tiny_models("qwen2-vl")
    scorer = load_scorer(f"likelihood:{path}", device="cpu", dtype="float32", aggregation="min", backend="auto")
    assert isinstance(scorer, PolicyLikelihoodScorer) and scorer.aggregation == "min" and scorer.running_min
    model, processor = load_vlm(path)
    want = PolicyLikelihoodScorer(model, processor).score_group(QUESTION, [images[0]], SOLUTIONS[:1])[0].step_scores
    assert scorer.score_group(QUESTION, [images[0]], SOLUTIONS[:1])[0].step_scores == pytest.approx(want)
    assert load_scorer(f"likelihood:{path}", device="cpu", orm=True).orm
    with pytest.raises(ValueError, match="max_length"):
        load_scorer(f"likelihood:{path}", device="cpu", max_length=512)


def test_implicit_prm_needs_its_config_file(tiny_models):
    with pytest.raises(ValueError, match="implicit_prm.json"):
        ImplicitPRM.from_pretrained(tiny_models("qwen2-vl"), device="cpu")


def test_bad_options():
    with pytest.raises(ValueError, match="unknown likelihood score"):
        PolicyLikelihoodScorer(None, None, kind="entropy")
    with pytest.raises(ValueError, match="aggregation"):
        PolicyLikelihoodScorer(None, None, aggregation="median")
    with pytest.raises(ValueError, match="beta"):
        ImplicitPRM(None, None, None, beta=0)
    with pytest.raises(ValueError, match="unknown implicit score"):
        implicit_scores([0.0], "q")


def test_likelihood_step_scores_still_reexported():
    from rlvprm import policy_likelihood

    assert policy_likelihood.likelihood_step_scores is likelihood_step_scores
    assert policy_likelihood.solution_logprobs is solution_logprobs


@pytest.mark.parametrize("arch", ["qwen2-vl", "qwen2.5-vl", "internvl"])
def test_shared_prefix_equals_whole_sequences(tiny_models, arch, images):
    """Both likelihood scorers give the same token values on the group's shared prefix (several
    images, given steps, different lengths, batches with padding)."""
    model, processor = load_vlm(tiny_models(arch))
    other_model = load_vlm(str(build_tiny_model(arch, Path(tiny_models(arch)).parent / f"{arch}-seed1", seed=1)))[0]
    sols = SOLUTIONS + [GIVEN, "Only one step: \\boxed{3}"]
    for question, imgs in ((QUESTION, [images[0]]), ("<image> and <image>: the sum?", images), ("2 + 2?", [])):
        assert likelihood.shared_prefix_values([model], processor, question, imgs, sols, None, 3) is not None
        # Token log-probabilities (a random model's step probabilities are too small to compare).
        shared = solution_logprobs(model, processor, question, imgs, sols, batch_size=3)
        whole = solution_logprobs(model, processor, question, imgs, sols, batch_size=3, shared_prefix=False)
        assert [len(r.step_tokens) for r in shared] == [4, 3, 3, 1]
        for a, b in zip(whole, shared):
            assert (b.token_ids, b.step_tokens) == (a.token_ids, a.step_tokens)
            assert b.token_logprobs == pytest.approx(a.token_logprobs, abs=1e-5)
        implicit = ImplicitPRM(other_model, model, processor, beta=0.5, batch_size=3)
        want = implicit.step_rewards(question, imgs, sols)
        implicit.shared_prefix = False
        for a, b in zip(implicit.step_rewards(question, imgs, sols), want):
            assert b == pytest.approx(a, abs=1e-5)
