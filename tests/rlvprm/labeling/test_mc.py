"""Monte Carlo step scores on a scripted policy whose continuation outcomes are known exactly."""

import doctest
import importlib.util
from pathlib import Path

import pytest

from rlvprm.generation import Request, Sample
from rlvprm.labeling import mc
from rlvprm.labeling.mc import MCSettings, StepScore, call_seed, label_prompt

_spec = importlib.util.spec_from_file_location("scripted_policy", Path(__file__).with_name("scripted_policy.py"))
scripted = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scripted)

Q = "<image>\nWhat is 3 + 4?"
ROLLOUTS = {
    Q: [
        "Read 3 and 4. [4/4]\n\n3 + 4 = 7. [2/4]\n\nThe answer is \\boxed{7}.",
        "Read 3 and 5. [0/4]\n\n3 + 5 = 8. [1/4]\n\nThe answer is \\boxed{8}.",
    ]
}


def run(rollouts=ROLLOUTS, question=Q, **kw):
    policy = scripted.ScriptedPolicy(rollouts)
    settings = MCSettings(**{"num_rollouts": 2, "num_mc": 4, **kw})
    return policy, label_prompt(policy, Request(question, ["img"]), "7", "rec-1", settings)


def test_docstring_examples_hold():
    assert doctest.testmod(mc).failed == 0


def test_exact_scores_and_last_step_from_the_rollout():
    policy, result = run()
    r0, r1 = result.rollouts
    assert r0.steps == [
        StepScore("Read 3 and 4. [4/4]", 1.0, 4, 4),
        StepScore("3 + 4 = 7. [2/4]", 0.5, 2, 4),
        StepScore("The answer is \\boxed{7}.", 1.0, 1, 1),  # the rollout itself is right
    ]
    assert r1.steps == [
        StepScore("Read 3 and 5. [0/4]", 0.0, 0, 4),
        StepScore("3 + 5 = 8. [1/4]", 0.25, 1, 4),
        StepScore("The answer is \\boxed{8}.", 0.0, 0, 1),
    ]
    assert (r0.correct, r1.correct) == (True, False)
    assert r0.response == ROLLOUTS[Q][0]
    # One call for the rollouts, one for every prefix of every rollout; the prefixes end in a blank line.
    rollout_call, mc_call = policy.calls
    assert rollout_call["prefixes"] == [None] and rollout_call["num_samples"] == 2
    assert mc_call["num_samples"] == 4
    assert mc_call["prefixes"] == [
        "Read 3 and 4. [4/4]\n\n",
        "Read 3 and 4. [4/4]\n\n3 + 4 = 7. [2/4]\n\n",
        "Read 3 and 5. [0/4]\n\n",
        "Read 3 and 5. [0/4]\n\n3 + 5 = 8. [1/4]\n\n",
    ]
    assert result.num_continuations == 16
    assert rollout_call["seed"] == call_seed(0, "rec-1", "rollouts") != mc_call["seed"]


def test_shared_prefixes_are_sampled_once():
    rollouts = {Q: ["Read 3 and 4. [3/4]\n\n3 + 4 = 7. [2/4]\n\n\\boxed{7}",
                    "Read 3 and 4. [3/4]\n\n3 * 4 = 12. [0/4]\n\n\\boxed{12}"]}
    policy, result = run(rollouts)
    assert policy.calls[1]["prefixes"] == [
        "Read 3 and 4. [3/4]\n\n", "Read 3 and 4. [3/4]\n\n3 + 4 = 7. [2/4]\n\n", "Read 3 and 4. [3/4]\n\n3 * 4 = 12. [0/4]\n\n",
    ]
    assert result.num_continuations == 12
    assert [s.score for s in result.rollouts[0].steps] == [0.75, 0.5, 1.0]
    assert [s.score for s in result.rollouts[1].steps] == [0.75, 0.0, 0.0]
    policy, again = run(rollouts, dedupe_prefixes=False)
    assert len(policy.calls[1]["prefixes"]) == 4 and again.num_continuations == 16
    assert [r.steps for r in again.rollouts] == [r.steps for r in result.rollouts]


def test_early_stop_skips_steps_after_a_zero():
    rollouts = {Q: ["A [1/4]\n\nB [0/4]\n\nC [4/4]\n\n\\boxed{7}", "A2 [4/4]\n\nB2 [4/4]\n\nC2 [2/4]\n\n\\boxed{7}"]}
    policy, result = run(rollouts, early_stop=True)
    assert [(s.score, s.num_mc_correct, s.num_mc_total) for s in result.rollouts[0].steps] == [
        (0.25, 1, 4), (0.0, 0, 4), (0.0, 0, 0), (0.0, 0, 0)]  # the right final answer is not looked at
    assert [(s.score, s.num_mc_total) for s in result.rollouts[1].steps] == [(1.0, 4), (1.0, 4), (0.5, 4), (1.0, 1)]
    # Rounds: step 1 of both, step 2 of both, step 3 of the second only.
    assert [len(c["prefixes"]) for c in policy.calls] == [1, 2, 2, 1]
    assert result.num_continuations == 20
    # Without early stop, step 3 of the first rollout is sampled and its last step is its outcome.
    _, full = run(rollouts)
    assert [(s.score, s.num_mc_total) for s in full.rollouts[0].steps] == [(0.25, 4), (0.0, 4), (1.0, 4), (1.0, 1)]


def test_max_steps_merges_before_prefixes_are_built():
    rollouts = {Q: ["a [4/4]\n\nb [1/4]\n\nc [3/4]\n\nd \\boxed{7}"]}
    policy, result = run(rollouts, num_rollouts=1, max_steps=2)
    assert [s.step for s in result.rollouts[0].steps] == ["a [4/4]\n\nb [1/4]", "c [3/4]\n\nd \\boxed{7}"]
    assert policy.calls[1]["prefixes"] == ["a [4/4]\n\nb [1/4]\n\n"]
    assert [s.score for s in result.rollouts[0].steps] == [0.25, 1.0]


def test_a_continuation_is_judged_with_its_prefix():
    # The continuation states no new answer, so the prefix's \boxed{7} is the solution's answer.
    class Quiet(scripted.ScriptedPolicy):
        def sample(self, requests, num_samples=1, **kw):
            out = super().sample(requests, num_samples, **kw)
            if requests[0].prefix is not None:
                out = [[Sample("Done.", [], "stop", 1)] * num_samples for _ in requests]
            return out

    rollouts = {Q: ["So \\boxed{7} [1/2]\n\nDone.", "So \\boxed{9} [1/2]\n\nDone."]}
    policy = Quiet(rollouts)
    result = label_prompt(policy, Request(Q, ["img"]), "7", "r", MCSettings(num_rollouts=2, num_mc=2))
    assert [r.steps[0].score for r in result.rollouts] == [1.0, 0.0]


def test_seeds_come_from_the_record_id_not_the_call_order():
    _, first = run()
    policy, _ = run()
    other = scripted.ScriptedPolicy(ROLLOUTS)
    label_prompt(other, Request(Q, ["img"]), "7", "rec-2", MCSettings(num_rollouts=2, num_mc=4))
    assert [c["seed"] for c in policy.calls] == [call_seed(0, "rec-1", "rollouts"), call_seed(0, "rec-1", "mc")]
    assert [c["seed"] for c in other.calls] != [c["seed"] for c in policy.calls]
    assert call_seed(1, "rec-1", "mc") != call_seed(0, "rec-1", "mc")


def test_empty_rollout_has_no_steps_and_a_sampler_that_miscounts_is_caught():
    _, result = run({Q: ["   ", "Read. [1/4]\n\n\\boxed{7}"]})
    assert result.rollouts[0].steps == [] and not result.rollouts[0].correct
    assert [s.score for s in result.rollouts[1].steps] == [0.25, 1.0]

    class Short(scripted.ScriptedPolicy):
        def sample(self, requests, num_samples=1, **kw):
            return [group[:-1] for group in super().sample(requests, num_samples, **kw)]

    with pytest.raises(RuntimeError, match="returned"):
        label_prompt(Short(ROLLOUTS), Request(Q, ["img"]), "7", "r", MCSettings(num_rollouts=2, num_mc=4))
