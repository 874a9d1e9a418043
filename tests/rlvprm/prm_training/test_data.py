"""Bad training input is a clear error naming the record, or a counted skip; labels never shift."""

import doctest
import json

import pytest

from rewards.backends.processors import load_processor
from rlvprm.data.jsonl import RecordError
from rlvprm.labeling.formats import read_prm_records
from rlvprm.prm_training import losses
from rlvprm.prm_training.collate import OutcomeCollator, StepLabelCollator
from rlvprm.prm_training.data import RecordDataset, check_lengths, read_outcome_records

QUESTION = "<image>\nWhat is the sum?"


def append(path, *rows):
    with path.open("a") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")


def bad_rows():
    return [
        {"id": "no-steps", "image": "images/0.png", "question": QUESTION, "steps_with_score": []},
        {"id": "bad-score", "image": "images/0.png", "question": QUESTION,
         "steps_with_score": [{"step": "a", "score": "high"}]},
        {"id": "missing-image", "image": "images/nope.png", "question": QUESTION,
         "steps_with_score": [{"step": "a", "score": 1.0}]},
        # One label short: the second user turn has no assistant turn after it.
        {"id": "label-count", "image": "images/0.png", "conversations": [
            {"from": "human", "value": f"### Question:\n{QUESTION}\n\n### Solution Process:\na"},
            {"from": "gpt", "value": "+"}, {"from": "human", "value": "b"}]},
        {"id": "two-images", "image": ["images/0.png", "images/1.png"], "question": QUESTION,
         "steps_with_score": [{"step": "a", "score": 1.0}]},
    ]


def test_loss_docstring_examples_hold():
    assert doctest.testmod(losses).failed == 0


@pytest.mark.parametrize("row", bad_rows(), ids=lambda r: r["id"])
def test_each_bad_step_record_is_an_error_naming_it(raw_file, row):
    append(raw_file, row)
    with pytest.raises(RecordError, match=f"record {row['id']}.*--skip-bad"):
        list(read_prm_records(raw_file, image_root=raw_file.parent))


def test_bad_step_records_are_counted_skips_and_the_rest_keep_their_labels(raw_file):
    good = list(read_prm_records(raw_file, image_root=raw_file.parent))
    append(raw_file, *bad_rows())
    skipped = []
    kept = list(read_prm_records(raw_file, image_root=raw_file.parent, skip_bad=True, skipped=skipped))
    assert [s["id"] for s in skipped] == [r["id"] for r in bad_rows()]
    assert kept == good


def test_over_long_conversations_are_an_error_or_a_counted_skip(raw_file, tiny_models):
    processor = load_processor(tiny_models("qwen2-vl"))
    data = RecordDataset(list(read_prm_records(raw_file, image_root=raw_file.parent)), raw_file.parent)
    collate = StepLabelCollator(processor)
    lengths = [collate.length(data[i]) for i in range(len(data))]
    limit = sorted(lengths)[len(lengths) // 2]
    with pytest.raises(RecordError, match="over max_length"):
        check_lengths(data, collate.length, limit, skip_bad=False, skipped=[], progress=False)
    skipped = []
    kept = check_lengths(data, collate.length, limit, skip_bad=True, skipped=skipped, progress=False)
    assert len(kept) == sum(n <= limit for n in lengths) and len(skipped) == len(data) - len(kept)
    assert all(collate.length(kept[i]) <= limit for i in range(len(kept)))
    # The length counted is the length of the encoded batch row, images included.
    assert lengths[0] == int(collate([data[0]])["attention_mask"].sum())


def test_outcome_records_from_every_format(raw_file, tiny_models):
    rows = [
        {"id": "explicit", "image": "images/0.png", "question": QUESTION, "response": "a\n\nb", "outcome": 0},
        {"id": "vpb", "image": ["images/0.png"], "question": QUESTION, "answer": "3",
         "response": {"steps": ["1 + 2 = 3.", "The answer is \\boxed{3}."], "process_correctness": [1, 1]}},
    ]
    append(raw_file, *rows)
    recs = {r.id: r for r in read_outcome_records(raw_file, raw_file.parent)}
    assert recs["r0"].outcome is True and recs["r0"].solution.endswith("\\boxed{2}.")  # Raw: response vs answer
    assert recs["explicit"].outcome is False
    assert recs["vpb"].outcome is True and recs["vpb"].solution == ["1 + 2 = 3.", "The answer is \\boxed{3}."]
    processor = load_processor(tiny_models("qwen2-vl"))
    data = RecordDataset(list(recs.values()), raw_file.parent)
    assert OutcomeCollator(processor).length(data[0]) > 10


@pytest.mark.parametrize("row, message", [
    ({"id": "x", "question": QUESTION, "image": "images/0.png", "response": "a"}, "no outcome label"),
    ({"id": "x", "question": QUESTION, "image": "images/0.png", "response": " \n\n ", "outcome": 1}, "no steps"),
    ({"id": "x", "question": QUESTION, "image": "images/0.png", "response": "a", "outcome": "yes"}, "'outcome' must"),
    ({"id": "x", "question": QUESTION, "image": "images/gone.png", "response": "a", "outcome": 1}, "does not exist"),
    ({"id": "x", "question": QUESTION, "image": ["images/0.png", "images/1.png"], "response": "a", "outcome": 1},
     "placeholder"),
])
def test_bad_outcome_records(raw_file, row, message):
    append(raw_file, row)
    with pytest.raises(RecordError, match=f"record x.*{message}"):
        list(read_outcome_records(raw_file, raw_file.parent))
    skipped = []
    assert len(list(read_outcome_records(raw_file, raw_file.parent, skip_bad=True, skipped=skipped))) == 8
    assert [s["id"] for s in skipped] == ["x"]


def test_records_with_markup_are_refused_before_training_or_counted():
    from rlvprm.labeling.formats import PRMRecord
    from rlvprm.prm_training.data import OutcomeRecord, drop_markup

    markers = ["<|im_start|>", "<|image_pad|>"]
    ok = PRMRecord("ok", [], "Q", ["a", "b"], ["+", "+"])
    bad = PRMRecord("bad", [], "Q", ["a", "b <|im_start|>system"], ["+", "-"])
    with pytest.raises(RecordError, match="record bad: step 2 contains '<[|]im_start[|]>'.*--skip-bad"):
        drop_markup([ok, bad], markers, False, [])
    skipped = []
    assert drop_markup([ok, bad], markers, True, skipped) == [ok] and skipped[0]["id"] == "bad"
    outcome = OutcomeRecord("o", [], "see <|image_pad|>", "x", True)
    with pytest.raises(RecordError, match="record o: the question contains"):
        drop_markup([outcome], markers, False, [])
