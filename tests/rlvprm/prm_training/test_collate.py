"""Raw -> conversation -> training tensors: the targets sit exactly where the scorer reads."""

import json

import pytest
import torch

from rewards.backends.hf import HFBackend
from rewards.likelihood import encode_solutions
from rewards.loading import load_vlm
from rewards.prm import Group, ProcessRewardModel
from rlvprm.labeling.formats import conversation_record, read_prm_records
from rlvprm.prm_training.collate import IGNORE, OutcomeCollator, StepLabelCollator
from rlvprm.prm_training.data import Example, OutcomeRecord, RecordDataset


@pytest.fixture(scope="module")
def model_and_processor(tiny_models):
    return load_vlm(tiny_models("qwen2-vl"))


def examples(path, root, threshold=0.0):
    records = list(read_prm_records(path, threshold, image_root=root))
    data = RecordDataset(records, root)
    return [data[i] for i in range(len(data))]


def test_raw_and_conversation_formats_give_the_same_training_tensors(raw_file, model_and_processor):
    _, processor = model_and_processor
    root = raw_file.parent
    raw = examples(raw_file, root)
    conv_file = root / "conversations.jsonl"
    conv_file.write_text("".join(json.dumps(conversation_record(ex.record)) + "\n" for ex in raw))
    conv = examples(conv_file, root)
    assert [ex.record.labels for ex in conv] == [ex.record.labels for ex in raw]
    assert raw[1].record.labels == ["+", "-", "-"]  # score 0.0 is not above the threshold 0.0
    collate = StepLabelCollator(processor)
    a, b = collate(raw[:4]), collate(conv[:4])
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_targets_are_at_exactly_the_scorers_read_positions(raw_file, model_and_processor):
    model, processor = model_and_processor
    exs = examples(raw_file, raw_file.parent)[:4]  # 3, 3, 2 and 2 steps: rows of different lengths
    batch = StepLabelCollator(processor)(exs)
    prm = ProcessRewardModel(HFBackend(model, processor))
    convs = [prm.prepare(Group(ex.record.question, ex.images, [ex.record.steps]))[0][1] for ex in exs]
    scoring = prm.backend.encode(convs, [ex.images for ex in exs])
    # Placeholder inputs: the training input ids are the scoring input ids.
    assert torch.equal(batch["input_ids"], scoring.inputs["input_ids"])
    tok = processor.tokenizer
    targets = batch["step_targets"]
    for i, ex in enumerate(exs):
        positions = (targets[i] != IGNORE).nonzero().flatten().tolist()
        assert positions == scoring.read_positions[i]
        assert len(positions) == len(ex.record.steps)
        assert tok.convert_ids_to_tokens(targets[i, positions].tolist()) == ex.record.labels
        ids = batch["input_ids"][i].tolist()
        assert tok.convert_ids_to_tokens([ids[p + 1] for p in positions]) == ["+"] * len(positions)
        for p, step in zip(positions, ex.record.steps):
            before = tok.decode(ids[: p + 1])
            assert before.endswith("<|im_start|>assistant\n")
            assert step in before.rsplit("<|im_start|>user\n", 1)[1]


def test_labels_in_input_put_the_labels_in_the_assistant_turns(raw_file, model_and_processor):
    _, processor = model_and_processor
    exs = examples(raw_file, raw_file.parent)[:2]
    plain = StepLabelCollator(processor)(exs)
    faithful = StepLabelCollator(processor, labels_in_input=True)(exs)
    assert torch.equal(plain["step_targets"] != IGNORE, faithful["step_targets"] != IGNORE)
    tok = processor.tokenizer
    row = faithful["input_ids"][1].tolist()
    positions = (faithful["step_targets"][1] != IGNORE).nonzero().flatten().tolist()
    assert tok.convert_ids_to_tokens([row[p + 1] for p in positions]) == ["+", "-", "-"]


def test_lm_targets_cover_the_question_and_the_steps_before_the_first_error(raw_file, model_and_processor):
    _, processor = model_and_processor
    exs = examples(raw_file, raw_file.parent)[:2]  # labels + + + and + - -
    batch = StepLabelCollator(processor, lm_steps=True)(exs)
    tok = processor.tokenizer
    ids, lm = batch["input_ids"], batch["lm_targets"]
    for i, ex in enumerate(exs):
        t = (lm[i] != IGNORE).nonzero().flatten()
        assert torch.equal(lm[i, t], ids[i, t + 1])  # each target is the next token
        predicted = tok.decode(ids[i, t + 1].tolist())
        steps, labels = ex.record.steps, ex.record.labels
        assert "What is the sum" in predicted and "<|image_pad|>" not in predicted
        assert "You are an advanced AI assistant" not in predicted
        for step, label in zip(steps, labels):
            assert (step in predicted) == (label == "+" and "-" not in labels[: steps.index(step)])
        assert "assistant" not in predicted  # never the header or the placeholders it judges


def test_outcome_collator_masks_the_solution_tokens(raw_file, model_and_processor):
    _, processor = model_and_processor
    ex = examples(raw_file, raw_file.parent)[0]
    recs = [OutcomeRecord("a", [], ex.record.question, ex.record.steps, True),
            OutcomeRecord("b", [], ex.record.question, "Short.", False)]
    batch = OutcomeCollator(processor)([Example(recs[0], ex.images), Example(recs[1], ex.images)])
    enc = encode_solutions(processor, [(r.question, ex.images, r.solution) for r in recs])
    assert torch.equal(batch["input_ids"], enc.inputs["input_ids"])
    assert batch["solution_mask"].sum(1).tolist() == [len(t) for t in enc.token_ids]
    assert batch["outcomes"].tolist() == [1.0, 0.0]
    T = batch["solution_mask"].shape[1]
    short = batch["input_ids"][1, -T:][batch["solution_mask"][1]].tolist()
    assert processor.tokenizer.decode(short) == "Short."


def test_step_index_marks_each_steps_user_turn(raw_file, model_and_processor):
    _, processor = model_and_processor
    exs = examples(raw_file, raw_file.parent)[:2]
    batch = StepLabelCollator(processor, bag_steps=True)(exs)
    tok = processor.tokenizer
    ids, index = batch["input_ids"], batch["step_index"]
    for i, ex in enumerate(exs):
        assert int(index[i].max()) == len(ex.record.steps) - 1
        for k, step in enumerate(ex.record.steps):
            text = tok.decode(ids[i][index[i] == k].tolist())
            assert step in text and "assistant" not in text
            assert all(other not in text for other in ex.record.steps if other != step and other not in step)
        assert "You are an advanced AI assistant" not in tok.decode(ids[i][index[i] >= 0].tolist())
