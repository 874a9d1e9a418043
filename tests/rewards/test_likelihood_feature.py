"""The likelihood feature of a +/- PRM on tiny real architectures: step spans, the feature, the scorer."""

import doctest
import json

import pytest
import torch

from rewards import likelihood_feature
from rewards.backends.base import InputError
from rewards.conversation import build_conversation
from rewards.likelihood_feature import FEATURE_CONFIG, LikelihoodFeature, find_step_spans
from rewards.prm import ProcessRewardModel

QUESTION = "<image>\nWhat is the sum of the numbers?"
STEPS = ["The numbers are 3, 7 and 5.", "3 + 7 = 10 , so far .", "  10 + 5 = 15.  ", "The answer is \\boxed{15}."]


def test_docstring_examples():
    assert doctest.testmod(likelihood_feature).failed == 0


@pytest.fixture
def prm(tiny_models, arch):
    return ProcessRewardModel.from_pretrained(tiny_models(arch), dtype="float32", device="cpu")


def test_step_spans_hold_exactly_each_step_text(prm, images):
    be = prm.backend
    convs = [build_conversation(QUESTION, STEPS), build_conversation(QUESTION, STEPS[1:2])]
    batch = be.encode(convs, [[images[0]], [images[0]]], step_spans=True)
    for i, conv in enumerate(convs):
        ids = batch.inputs["input_ids"][i].tolist()
        spans = batch.step_spans[i]
        assert len(spans) == conv.num_steps
        for (start, end), step, read in zip(spans, conv.steps, batch.read_positions[i]):
            text = be.tokenizer.decode(ids[start:end], clean_up_tokenization_spaces=False)
            assert text.strip() == step.strip()
            assert end <= read  # the text ends before its own assistant header
        starts = [s for s, _ in spans]
        assert starts == sorted(starts) and spans[0][0] > 0


def test_plain_backend_finds_no_spans_unless_asked(prm, images):
    batch = prm.backend.encode([build_conversation(QUESTION, STEPS)], [[images[0]]])
    assert batch.step_spans is None


def test_a_step_the_template_rewrote_is_an_error():
    vocab = {1: "<u>", 2: "3+4", 3: "</u>", 4: "<a>", 5: "+"}
    dec = lambda ids: "".join(vocab[i] for i in ids)  # noqa: E731
    with pytest.raises(InputError, match="step 1's text was not found"):
        find_step_spans(dec, [1, 2, 3, 4, 5], [3], 1, ["3 + 4"])


def test_scores_with_the_feature_are_the_formula_on_a_full_forward_pass(prm, images):
    """P(+) = sigmoid(logit(+) - logit(-) + weight * f + bias), f the running min of each step's worst token."""
    be = prm.backend
    conv = build_conversation(QUESTION, STEPS)
    batch = be.encode([conv], [[images[0]]], step_spans=True)
    with torch.no_grad():
        full = be.model(**{k: v for k, v in batch.inputs.items() if isinstance(v, torch.Tensor)}, use_cache=False).logits[0]
    logp = full.float().log_softmax(-1)
    ids = batch.inputs["input_ids"][0]
    worst = [min(logp[t - 1, ids[t]].item() for t in range(s, e)) for s, e in batch.step_spans[0]]
    running = [min(worst[: k + 1]) for k in range(len(worst))]
    assert running[-1] < 0 and running == sorted(running, reverse=True)
    read = batch.read_positions[0]
    diff = [(full[p, be.good_id] - full[p, be.bad_id]).item() for p in read]
    plain = prm.score_group(QUESTION, [images[0]], [STEPS])[0].step_scores
    assert plain == pytest.approx([torch.sigmoid(torch.tensor(d)).item() for d in diff], abs=1e-5)
    be.feature = LikelihoodFeature(weight=0.5, bias=1.0)
    with_feature = prm.score_group(QUESTION, [images[0]], [STEPS])[0].step_scores
    expected = [torch.sigmoid(torch.tensor(d + 0.5 * f + 1.0)).item() for d, f in zip(diff, running)]
    assert with_feature == pytest.approx(expected, abs=1e-5)
    # Batching with other conversations does not change them.
    prm.batch_size = 2
    many = prm.score_group(QUESTION, [images[0]], [STEPS[:2], STEPS, ["x"]])
    assert many[1].step_scores == pytest.approx(with_feature, abs=1e-5)


def test_from_pretrained_reads_the_saved_feature(tiny_models, tmp_path, images):
    import shutil

    folder = tmp_path / "prm"
    shutil.copytree(tiny_models("qwen2-vl"), folder)
    assert ProcessRewardModel.from_pretrained(str(folder), device="cpu").backend.feature is None
    LikelihoodFeature(weight=2.0, bias=-0.5).save(folder)
    assert json.loads((folder / FEATURE_CONFIG).read_text()) == {"weight": 2.0, "bias": -0.5}
    prm = ProcessRewardModel.from_pretrained(str(folder), device="cpu", dtype="float32")
    assert prm.backend.feature == LikelihoodFeature(2.0, -0.5)
    scores = prm.score_group(QUESTION, [images[0]], [STEPS])[0].step_scores
    assert len(scores) == 4 and all(0 < s < 1 for s in scores)
    (folder / FEATURE_CONFIG).write_text(json.dumps({"weight": 1.0, "scale": 2}))
    with pytest.raises(ValueError, match="unknown keys"):
        ProcessRewardModel.from_pretrained(str(folder), device="cpu")


def quadratic_step_spans(decode, ids, read_positions, header_len, steps):
    """The former search (growing windows, O(n^2) decoded tokens a step), the reference for the new one."""
    spans, lower = [], 0
    for p, step in zip(read_positions, steps):
        stop, target = p - header_len + 1, step.strip()
        start = stop
        while start > lower and target not in decode(list(ids[start:stop])):
            start -= 1
        end = stop
        while end - 1 > start and target in decode(list(ids[start : end - 1])):
            end -= 1
        spans.append((start, end))
        lower = p + 2
    return spans


@pytest.mark.parametrize("arch", ["qwen2-vl"])
def test_long_steps_find_the_same_spans_in_linear_work(prm, images):
    """Steps of ~100 to ~800 tokens: the spans of the former search, with decoded tokens growing linearly."""
    tok = prm.backend.tokenizer
    decoded = [0]

    def decode(part):
        decoded[0] += len(part)
        return tok.decode(part, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    work = []
    for reps in (10, 20, 80):
        steps = [" ".join(f"{i} + {i + 1} = {2 * i + 1}," for i in range(reps)) + " é done", "short", "x " * reps]
        batch = prm.backend.encode([build_conversation(QUESTION, steps)], [[images[0]]])
        ids, read = batch.inputs["input_ids"][0].tolist(), batch.read_positions[0]
        decoded[0] = 0
        spans = find_step_spans(decode, ids, read, len(prm.backend.header_ids), steps)
        work.append((spans[0][1] - spans[0][0], decoded[0]))
        assert spans == quadratic_step_spans(decode, ids, read, len(prm.backend.header_ids), steps)
    (n1, w1), _, (n3, w3) = work
    assert n3 > 6 * n1  # the longest first step has ~8x the tokens ...
    assert w3 / w1 < 1.5 * n3 / n1  # ... and costs about 8x the decoding, not ~64x
