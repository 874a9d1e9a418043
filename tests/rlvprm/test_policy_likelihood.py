"""The policy's per-step log-probabilities against a plain token-by-token computation."""

import doctest
import math
import os

import pytest
import torch
from PIL import Image, ImageDraw

from rewards.loading import load_vlm
from rlvprm import policy_likelihood
from rlvprm.data.records import Record, load_images
from rlvprm.generation import render_prompt
from rlvprm.models.tiny import build_tiny_model
from rlvprm.policy_likelihood import (
    likelihood_step_scores,
    solution_logprobs,
    step_logprobs,
    step_logprobs_batch,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUESTION = "<image>\nWhat is the sum of the numbers in the image?"
SOLUTIONS = [
    "The numbers are 3, 7 and 5.\n\n3 + 7 = 10.\n\n10 + 5 = 15.\n\nThe answer is \\boxed{15}.",
    "\nThe numbers are 3 and 8.  \n\n\n\n3 + 8 = 11.\n\n The answer is \\boxed{11}. \n",
    "Answer: 4",
]


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    path = build_tiny_model("qwen2-vl", tmp_path_factory.mktemp("policy"))
    return load_vlm(str(path))


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    im = Image.new("RGB", (84, 56), "white")
    ImageDraw.Draw(im).text((8, 20), "3 7 5", fill="black")
    im.save(root / "a.png")
    return load_images(Record(id="a", question=QUESTION, image_paths=["a.png"]), root)[0]


def reference_total(model, processor, question, images, solution):
    """Sum of log p(token | everything before it) over the solution's tokens, one token at a time."""
    prompt = render_prompt(processor, question, len(images))
    kwargs = {"images": [images]} if images else {}
    p_ids = processor(text=[prompt], return_tensors="pt", **kwargs)["input_ids"][0].tolist()
    full = processor(text=[prompt + solution], return_tensors="pt", **kwargs)
    ids = full["input_ids"][0].tolist()
    assert ids[: len(p_ids)] == p_ids  # the prompt's tokens are unchanged by the solution after them
    with torch.no_grad():
        logits = model(**full).logits[0]
    total = 0.0
    for t in range(len(p_ids), len(ids)):
        total += torch.log_softmax(logits[t - 1], dim=-1)[ids[t]].item()
    return total, len(ids) - len(p_ids)


def test_docstring_examples_hold():
    assert doctest.testmod(policy_likelihood).failed == 0


@pytest.mark.parametrize("solution", SOLUTIONS)
def test_steps_sum_to_the_solution_logprob(policy, image, solution):
    model, processor = policy
    total, n = reference_total(model, processor, QUESTION, [image], solution)
    result = solution_logprobs(model, processor, QUESTION, [image], [solution])[0]
    assert len(result.token_ids) == n
    assert math.fsum(result.step_sums) == pytest.approx(total, abs=1e-3)
    assert step_logprobs(model, processor, QUESTION, [image], solution) == pytest.approx(result.step_sums)
    assert all(lp < 0 for lp in result.step_sums)


@pytest.mark.parametrize("solution", SOLUTIONS)
def test_each_step_owns_exactly_its_tokens(policy, image, solution):
    model, processor = policy
    result = solution_logprobs(model, processor, QUESTION, [image], [solution])[0]
    steps, ranges, offsets = result.steps, result.step_tokens, result.token_offsets
    assert len(ranges) == len(steps) >= 1
    # The ranges partition the solution's tokens, in order.
    assert [i for r in ranges for i in r] == list(range(len(result.token_ids)))
    for k, (step, r) in enumerate(zip(steps, ranges)):
        start, end = offsets[r.start][0], offsets[r.stop - 1][1]
        assert start <= step.start and step.end <= end  # covers the whole step ...
        assert solution[step.start : step.end] in solution[max(start, 0) : end]
        if k > 0:
            assert start >= steps[k - 1].end  # ... and nothing of its neighbours
        if k + 1 < len(steps):
            assert end <= steps[k + 1].start
        # The tokens spell out exactly that stretch of the solution.
        assert processor.tokenizer.decode([result.token_ids[i] for i in r]) == solution[max(start, 0) : end]


def test_batched_equals_single(policy, image):
    model, processor = policy
    batched = step_logprobs_batch(model, processor, QUESTION, [image], SOLUTIONS, batch_size=3)
    single = [step_logprobs(model, processor, QUESTION, [image], s) for s in SOLUTIONS]
    assert [len(b) for b in batched] == [4, 3, 1]
    for b, s in zip(batched, single):
        assert b == pytest.approx(s, abs=1e-4)


def test_merged_steps_and_text_only_prompts(policy):
    model, processor = policy
    solution = SOLUTIONS[0]
    merged = step_logprobs(model, processor, "What is 3 + 7 + 5?", [], solution, max_steps=2)
    full = step_logprobs(model, processor, "What is 3 + 7 + 5?", [], solution)
    assert len(merged) == 2 and len(full) == 4
    assert math.fsum(merged) == pytest.approx(math.fsum(full), abs=1e-4)
    assert merged[0] == pytest.approx(full[0] + full[1], abs=1e-4)


def test_likelihood_scores(policy, image):
    model, processor = policy
    result = solution_logprobs(model, processor, QUESTION, [image], SOLUTIONS[:1])[0]
    for kind in ("step_prob", "mean_token_prob", "min_token_prob"):
        scores = likelihood_step_scores(result, kind)
        assert len(scores) == 4 and all(0 < s <= 1 for s in scores)
        running = likelihood_step_scores(result, kind, running_min=True)
        assert running == [min(scores[: k + 1]) for k in range(4)]
    assert likelihood_step_scores(result)[0] == pytest.approx(math.exp(result.step_sums[0]))
    with pytest.raises(ValueError, match="unknown likelihood score"):
        likelihood_step_scores(result, "entropy")
