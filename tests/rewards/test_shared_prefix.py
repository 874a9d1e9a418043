"""Shared-prefix group scoring equals whole-sequence scoring, per backend, on tiny real architectures."""

import doctest
import logging

import pytest

from rewards import shared_prefix
from rewards.likelihood_feature import LikelihoodFeature
from rewards.prm import Group, ProcessRewardModel
from tests.conftest import digit_image

pytestmark = pytest.mark.usefixtures("one_thread")

# Different step counts and lengths; two start alike, so the common prefix runs into the first step.
SOLUTIONS = [
    "The numbers are 3, 7 and 5.\n\n3 + 7 = 10.\n\n10 + 5 = 15.\n\nThe answer is \\boxed{15}.",
    "The numbers are 3, 1 and 5.\n\n3 + 1 = 4.\n\nThe answer is \\boxed{9}.",
    "Only one step: \\boxed{15}",
    "The numbers are 3, 7 and 5.\n\n3 + 7 = 10.",
]
CASES = {  # question, images
    "one image": ("<image>\nWhat is the sum of the numbers?", [digit_image("3 7 5")]),
    "two images": ("Left: <image> right: <image> What is the sum?", [digit_image("3 7 5"), digit_image("8 1", (56, 56))]),
    "text only": ("What is 3 + 7 + 5?", []),
}


def test_docstring_examples():
    assert doctest.testmod(shared_prefix).failed == 0


def scores(prm, group, shared):
    prm.shared_prefix = shared
    return [r.step_scores for r in prm.score_groups([group])[0]]


@pytest.mark.parametrize("feature", [None, LikelihoodFeature(weight=0.5, bias=1.0)], ids=["plain", "feature"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_shared_prefix_equals_whole_sequences(tiny_models, arch, case, feature):
    prm = ProcessRewardModel.from_pretrained(tiny_models(arch), dtype="float32", device="cpu", batch_size=3)
    prm.backend.feature = feature
    question, images = CASES[case]
    group = Group(question, images, SOLUTIONS)
    convs = [c for _, c in prm.prepare(group)]
    assert prm.backend.group_step_logits(convs, images, 3) is not None  # the shared path, not a fallback
    whole, shared = scores(prm, group, False), scores(prm, group, True)
    assert [len(s) for s in shared] == [4, 3, 1, 2]
    for a, b in zip(whole, shared):
        assert b == pytest.approx(a, abs=1e-5)


def test_suffix_positions_matter(tiny_models, monkeypatch):
    """The check above has teeth: suffix positions shifted by 10 change the scores well past 1e-5."""
    prm = ProcessRewardModel.from_pretrained(tiny_models("qwen2-vl"), dtype="float32", device="cpu")
    group = Group(*CASES["one image"], SOLUTIONS)
    whole = scores(prm, group, False)
    real_init = shared_prefix.SharedPrefix.__init__

    def shifted(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self.next_position += 10

    monkeypatch.setattr(shared_prefix.SharedPrefix, "__init__", shifted)
    off = scores(prm, group, True)
    assert max(abs(x - y) for a, b in zip(whole, off) for x, y in zip(a, b)) > 1e-4


def test_groups_of_one_and_several_groups_keep_their_order(tiny_models):
    prm = ProcessRewardModel.from_pretrained(tiny_models("qwen2-vl"), dtype="float32", device="cpu", batch_size=2)
    groups = [Group(*CASES["one image"], SOLUTIONS[:1]), Group(*CASES["two images"], SOLUTIONS),
              Group(*CASES["text only"], SOLUTIONS[1:])]
    prm.shared_prefix = False
    whole = [[r.step_scores for r in g] for g in prm.score_groups(groups)]
    prm.shared_prefix = True
    shared = [[r.step_scores for r in g] for g in prm.score_groups(groups)]
    for a, b in zip(whole, shared):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert y == pytest.approx(x, abs=1e-5)


def test_unverified_model_type_falls_back_and_says_so(tiny_models, monkeypatch, caplog):
    prm = ProcessRewardModel.from_pretrained(tiny_models("qwen2-vl"), dtype="float32", device="cpu")
    monkeypatch.setattr(shared_prefix, "VERIFIED_MODEL_TYPES", ())
    shared_prefix._said.clear()
    group = Group(*CASES["one image"], SOLUTIONS)
    with caplog.at_level(logging.WARNING, logger="rewards.shared_prefix"):
        convs = [c for _, c in prm.prepare(group)]
        assert prm.backend.group_step_logits(convs, group.images, 8) is None
        prm.score_groups([group])
    assert sum("not verified for model type 'qwen2_vl'" in r.message for r in caplog.records) == 1


def test_cut_keeps_image_blocks_whole():
    # The rows differ inside the image block (cannot happen for one set of images, but the rule holds).
    assert shared_prefix.shared_cut([[5, 9, 9, 6, 1], [5, 9, 6, 1, 2]], limit=5, image_token_ids={9}) == 0
    # The first read position bounds the cut even when the rows agree further.
    assert shared_prefix.shared_cut([[5, 9, 6, 1, 2], [5, 9, 6, 1, 3]], limit=3, image_token_ids={9}) == 3
