"""Sampling from a tiny real Qwen2-VL policy, loaded from disk, with PNG images read from disk."""

import doctest
import importlib.util
import os

import pytest
import torch
from PIL import Image, ImageDraw

from rlvprm import generation
from rlvprm.data.records import Record, load_images
from rlvprm.generation import HFSampler, Request, build_prompt_messages, make_sampler
from rlvprm.models.tiny import build_tiny_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    path = build_tiny_model("qwen2-vl", tmp_path_factory.mktemp("policy"))
    return path, make_sampler("hf", str(path), dtype="float32", device="cpu", progress=False)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    for i, digits in enumerate(["37", "5", "42"]):
        im = Image.new("RGB", (56 + 28 * i, 56), "white")
        ImageDraw.Draw(im).text((6, 20), digits, fill="black")
        im.save(root / f"{i}.png")
    record = Record(id="r", question="q", image_paths=["0.png", "1.png", "2.png"])
    return load_images(record, root)


def requests(images):
    return [
        Request("What is the sum of the numbers in the image?", [images[0]]),
        Request("<image>\nRead the numbers, then multiply them.", [images[1]]),
        Request("Compare <image> with <image>: which is larger?", [images[2], images[0]]),
    ]


def test_docstring_examples_hold():
    assert doctest.testmod(generation).failed == 0


def test_prompt_messages_place_images():
    content = build_prompt_messages("<image>\nHow many?", 1)[0]["content"]
    assert content == [{"type": "image"}, {"type": "text", "text": "\nHow many?"}]
    assert [c["type"] for c in build_prompt_messages("Sum?", 2)[0]["content"]] == ["image", "image", "text"]
    with pytest.raises(ValueError, match="placeholder"):
        build_prompt_messages("<image> vs <image>", 1)


def test_batch_of_three_prompts_two_samples_each(policy, images):
    _, sampler = policy
    out = sampler.sample(requests(images), num_samples=2, max_new_tokens=12, temperature=1.0, seed=1, batch_size=2)
    assert [len(group) for group in out] == [2, 2, 2]
    samples = [s for group in out for s in group]
    assert all(isinstance(s.text, str) and s.finish_reason in ("stop", "length") for s in samples)
    assert all(len(s.token_ids) <= s.num_tokens <= 12 for s in samples)
    assert sampler.stop_ids[0] not in {t for s in samples for t in s.token_ids}
    # Sampling at temperature 1 from a random model: the six continuations are not all one text.
    assert len({tuple(s.token_ids) for s in samples}) > 1


def test_same_seed_same_samples_and_batches_independent(policy, images):
    _, sampler = policy
    reqs = requests(images)
    kw = dict(num_samples=2, max_new_tokens=10, temperature=1.0, top_p=0.9, batch_size=2)
    first = sampler.sample(reqs, seed=7, **kw)
    again = sampler.sample(reqs, seed=7, **kw)
    other = sampler.sample(reqs, seed=8, **kw)
    ids = lambda out: [[s.token_ids for s in g] for g in out]  # noqa: E731
    assert ids(first) == ids(again)
    assert ids(first) != ids(other)
    # The second batch (the third request) is seeded from its own index, not from what came before.
    changed = [Request("A different first question.", [images[1]]), reqs[1], reqs[2]]
    assert ids(sampler.sample(changed, seed=7, **kw))[2] == ids(first)[2]


def test_greedy_batched_equals_one_by_one(policy, images):
    _, sampler = policy
    reqs = requests(images)
    batched = sampler.sample(reqs, max_new_tokens=12, temperature=0, batch_size=3)
    single = [sampler.sample([r], max_new_tokens=12, temperature=0)[0] for r in reqs]
    assert [g[0].token_ids for g in batched] == [g[0].token_ids for g in single]
    assert [g[0].text for g in batched] == [g[0].text for g in single]
    with pytest.raises(ValueError, match="greedy"):
        sampler.sample(reqs, num_samples=2, temperature=0)


def test_prefix_is_part_of_the_prompt_and_is_continued(policy, images):
    _, sampler = policy
    tok = sampler.tokenizer
    base = requests(images)[0]
    prefix = "The numbers are 3, 7"
    plain_ids = sampler.encode([base])["input_ids"][0].tolist()
    prefixed_ids = sampler.encode([base._replace(prefix=prefix)])["input_ids"][0].tolist()
    prefix_ids = tok.encode(prefix, add_special_tokens=False)
    assert prefixed_ids[-len(prefix_ids) :] == prefix_ids
    assert prefixed_ids == plain_ids + prefix_ids

    # Greedy from the prompt, then greedy again from a prefix made of its first k tokens: the
    # continuation must be exactly the rest, and must not repeat the prefix.
    full = sampler.sample([base], max_new_tokens=12, temperature=0)[0][0].token_ids
    special = set(tok.all_special_ids)
    k = next(
        k for k in range(len(full) - 2, 0, -1)
        if not special & set(full[:k]) and tok.encode(tok.decode(full[:k]), add_special_tokens=False) == full[:k]
    )
    head = tok.decode(full[:k])
    cont = sampler.sample([base._replace(prefix=head)], max_new_tokens=12 - k, temperature=0)[0][0]
    assert cont.token_ids == full[k:]
    assert head + cont.text == tok.decode(full, skip_special_tokens=True)


def test_max_new_tokens_and_length_finish(policy, images):
    _, sampler = policy
    out = sampler.sample(requests(images), num_samples=2, max_new_tokens=4, temperature=1.0, seed=3)
    samples = [s for g in out for s in g]
    assert all(s.num_tokens <= 4 for s in samples)
    cut = [s for s in samples if s.finish_reason == "length"]
    assert cut and all(len(s.token_ids) == s.num_tokens == 4 for s in cut)
    assert all(len(s.token_ids) == s.num_tokens - 1 for s in samples if s.finish_reason == "stop")


def test_returned_logprobs_are_the_raw_model_logprobs(policy, images):
    _, sampler = policy
    req = requests(images)[2]
    sample = sampler.sample([req], num_samples=1, max_new_tokens=8, temperature=0.7, top_p=0.8, seed=5,
                            return_logprobs=True)[0][0]
    assert len(sample.token_logprobs) == len(sample.token_ids)
    assert sample.logprob_sum == pytest.approx(sum(sample.token_logprobs))
    # Teacher-force the prompt plus the sampled ids and read the same log-probabilities.
    inputs = sampler.encode([req])
    n = inputs["input_ids"].shape[1]
    ids = torch.cat([inputs["input_ids"], torch.tensor([sample.token_ids])], dim=1)
    mask = torch.ones_like(ids)
    extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids")}
    mm = torch.cat([inputs["mm_token_type_ids"], torch.zeros(1, len(sample.token_ids), dtype=torch.long)], 1)
    with torch.no_grad():
        logits = sampler.model(input_ids=ids, attention_mask=mask, mm_token_type_ids=mm, **extra).logits[0]
    expected = [torch.log_softmax(logits[n - 1 + t], -1)[tok].item() for t, tok in enumerate(sample.token_ids)]
    assert sample.token_logprobs == pytest.approx(expected, abs=1e-4)


def test_mixed_image_and_text_only_batch_is_refused(policy, images):
    _, sampler = policy
    with pytest.raises(ValueError, match="mixes"):
        sampler.sample([Request("2 + 2?"), requests(images)[0]], max_new_tokens=2, temperature=0)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_vllm_backend_without_vllm_says_how_to_install(policy):
    path, _ = policy
    with pytest.raises(ImportError, match=r"rlvprm\[vllm\]"):
        make_sampler("vllm", str(path))
    with pytest.raises(ValueError, match="unknown sampling backend"):
        make_sampler("tgi", str(path))


def test_sampler_accepts_plain_tuples(policy, images):
    _, sampler = policy
    assert isinstance(sampler, HFSampler)
    out = sampler.sample([("How many digits?", [images[1]], None)], max_new_tokens=3, temperature=0)
    assert len(out) == 1 and len(out[0]) == 1
