"""VisualPRM400K-v1.1-Raw and conversation records: writing, reading either, converting, bad input."""

import doctest
import json
from pathlib import Path

import pytest

from rewards.conversation import SYSTEM_PROMPT, parse_visualprm_conversations
from rlvprm.data.jsonl import RecordError
from rlvprm.labeling import formats
from rlvprm.labeling.formats import (
    PRMRecord,
    conversation_record,
    policy_question,
    raw_record,
    read_prm_records,
)
from rlvprm.labeling.mc import Rollout, StepScore

RAW_KEYS = {"id", "image", "question", "answer", "response", "num_mc_sequences", "steps_with_score", "data_source"}


def raw(rid, scores, image="images/a.png", question="<image>\nWhat is 3 + 4?"):
    steps = [{"step": f"Step {i + 1}.", "score": s, "num_mc_correct": round(s * 16), "num_mc_total": 16}
             for i, s in enumerate(scores)]
    return {"id": rid, "image": image, "question": question, "answer": "7",
            "response": "\n\n".join(x["step"] for x in steps), "num_mc_sequences": 16, "steps_with_score": steps}


def write(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_docstring_examples_hold():
    assert doctest.testmod(formats).failed == 0


def test_raw_record_has_exactly_the_published_keys():
    rollout = Rollout(2, "a\n\nb", [StepScore("a", 0.5, 8, 16), StepScore("b", 1.0, 1, 1)], True, "stop")
    rec = raw_record("p-1", rollout, "img/p-1.png", "<image>\nQ", "7", 16, "sum")
    assert set(rec) == RAW_KEYS
    assert rec["id"] == "p-1-r2" and rec["num_mc_sequences"] == 16 and rec["response"] == "a\n\nb"
    assert rec["steps_with_score"] == [{"step": "a", "score": 0.5, "num_mc_correct": 8, "num_mc_total": 16},
                                       {"step": "b", "score": 1.0, "num_mc_correct": 1, "num_mc_total": 1}]
    assert "data_source" not in raw_record("p-1", rollout, "x.png", "Q", "7", 16)
    with_orig = raw_record("p-1", rollout, "x.png", "<image>\nQ", "7", 16, question_orig="Q")
    assert list(with_orig)[:4] == ["id", "image", "question", "question_orig"] and with_orig["question_orig"] == "Q"


def test_question_orig_reads_back_and_converting_drops_it(tmp_path):
    rows = [{**raw("a", [1.0, 0.0]), "question_orig": "What is 3 + 4?"}, raw("b", [1.0])]
    records = list(read_prm_records(write(tmp_path / "raw.jsonl", rows)))
    assert [r.question_orig for r in records] == ["What is 3 + 4?", None]
    conv = conversation_record(records[0])
    assert set(conv) == {"id", "image", "conversations"}  # the published conversation format's keys
    assert "### Question:\n<image>\nWhat is 3 + 4?\n\n" in conv["conversations"][1]["value"]
    bad = [{**raw("c", [1.0]), "question_orig": 3}]
    with pytest.raises(RecordError, match="question_orig"):
        list(read_prm_records(write(tmp_path / "bad.jsonl", bad)))
    assert policy_question("How many?", 1) == "<image>\nHow many?"
    assert policy_question("<image>\nHow many?", 1) == "<image>\nHow many?"
    assert policy_question("How many?", 0) == "How many?"


@pytest.mark.parametrize("threshold", [0.0, 0.5])
def test_raw_to_conversation_and_back_keeps_steps_and_labels(tmp_path, threshold):
    rows = [raw("a", [1.0, 0.5, 0.0625, 0.0]), raw("b", [0.0, 1.0], image=["x.png", "y.png"],
                                                   question="Compare <image> and <image>.")]
    records = list(read_prm_records(write(tmp_path / "raw.jsonl", rows), threshold=threshold))
    expected = {
        0.0: [["+", "+", "+", "-"], ["-", "+"]],
        0.5: [["+", "-", "-", "-"], ["-", "+"]],
    }[threshold]
    assert [r.labels for r in records] == expected
    conv = [conversation_record(r) for r in records]
    assert [set(c) for c in conv] == [{"id", "image", "conversations"}] * 2
    assert conv[0]["image"] == "images/a.png" and conv[1]["image"] == ["x.png", "y.png"]
    turns = conv[0]["conversations"]
    assert turns[0] == {"from": "system", "value": SYSTEM_PROMPT}
    assert turns[1] == {"from": "human", "value": "### Question:\n<image>\nWhat is 3 + 4?\n\n### Solution Process:\nStep 1."}
    assert [t["from"] for t in turns[1:]] == ["human", "gpt"] * 4
    for row, c in zip(rows, conv):
        question, steps, labels = parse_visualprm_conversations(c["conversations"])
        assert question == row["question"]
        assert steps == [s["step"] for s in row["steps_with_score"]]
        assert labels == [("+" if s["score"] > threshold else "-") for s in row["steps_with_score"]]
    # The conversation file reads back to the same records (either format reads).
    again = list(read_prm_records(write(tmp_path / "conv.jsonl", conv)))
    assert again == records


def test_a_folder_of_files_and_rows_without_ids(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    r = raw("x", [1.0])
    del r["id"]
    write(tmp_path / "d" / "b.jsonl", [r])
    write(tmp_path / "d" / "sub" / "a.jsonl", [raw("named", [0.0]), r])
    ids = [rec.id for rec in read_prm_records(tmp_path / "d")]
    assert ids == ["b.jsonl:1", "named", "sub/a.jsonl:2"]


BAD = {
    "no steps": (raw("e", []), "no steps"),
    "empty step": ({**raw("e", [1.0]), "steps_with_score": [{"step": "  ", "score": 1.0}]}, "empty"),
    "score missing": ({**raw("e", [1.0]), "steps_with_score": [{"step": "a"}]}, "numeric 'score'"),
    "score is text": ({**raw("e", [1.0]), "steps_with_score": [{"step": "a", "score": "0.5"}]}, "numeric 'score'"),
    "neither format": ({"id": "e", "image": "a.png", "question": "Q"}, "neither"),
    "image count": (raw("e", [1.0], image=["a.png", "b.png"]), "placeholder"),
    "turns do not alternate": ({"id": "e", "image": "a.png", "conversations": [
        {"from": "system", "value": SYSTEM_PROMPT},
        {"from": "human", "value": "### Question:\n<image>\nQ\n\n### Solution Process:\nA"},
        {"from": "human", "value": "B"}, {"from": "gpt", "value": "+"}]}, "alternat"),
    "label missing": ({"id": "e", "image": "a.png", "conversations": [
        {"from": "human", "value": "### Question:\n<image>\nQ\n\n### Solution Process:\nA"},
        {"from": "gpt", "value": "+"}, {"from": "human", "value": "B"}]}, "turns"),
    "label not +/-": ({"id": "e", "image": "a.png", "conversations": [
        {"from": "human", "value": "### Question:\n<image>\nQ\n\n### Solution Process:\nA"},
        {"from": "gpt", "value": "yes"}]}, "neither"),
    "VPB neutral step": ({"id": "e", "image": "a.png", "question": "<image>\nQ",
                          "response": {"steps": ["a", "b"], "process_correctness": [1, 0]}}, "neutral"),
    "VPB label count": ({"id": "e", "image": "a.png", "question": "<image>\nQ",
                         "response": {"steps": ["a", "b"], "process_correctness": [1]}}, "2 steps, 1 labels"),
    # MC scores and counts (issue 15): a NaN would silently become '-', 3.5 or 9 of 4 are not MC results.
    "NaN score": ({**raw("e", [1.0, 0.0]), "steps_with_score": [{"step": "a", "score": float("nan")}]},
                  r"step 1: MC score nan is not a finite number in \[0, 1\]"),
    "score above 1": ({**raw("e", [1.0]), "steps_with_score": [{"step": "a", "score": 3.5}]},
                      r"MC score 3.5 is not a finite number in \[0, 1\]"),
    "correct above total": ({**raw("e", [1.0]), "steps_with_score": [
        {"step": "a", "score": 1.0, "num_mc_correct": 9, "num_mc_total": 4}]}, "num_mc_correct 9 is more than num_mc_total 4"),
    "total above num_mc_sequences": ({**raw("e", [1.0]), "steps_with_score": [
        {"step": "a", "score": 1.0, "num_mc_correct": 20, "num_mc_total": 20}]},
        "num_mc_total 20 is more than the record's num_mc_sequences 16"),
    "negative count": ({**raw("e", [1.0]), "steps_with_score": [
        {"step": "a", "score": 0.5, "num_mc_correct": -1, "num_mc_total": 2}]}, r"num_mc_correct must be a count"),
    "fractional num_mc_sequences": ({**raw("e", [1.0]), "num_mc_sequences": 2.5}, "num_mc_sequences must be a count"),
}


def test_visualprocessbench_rows_read_with_their_labels(tmp_path):
    row = {"id": "v", "image": "a.png", "question": "<image>\nQ",
           "response": {"steps": ["a", "b", "c"], "process_correctness": [1, -1, -1]}}
    (rec,) = read_prm_records(write(tmp_path / "vpb.jsonl", [row]))
    assert (rec.id, rec.images, rec.question, rec.steps, rec.labels) == (
        "v", ["a.png"], "<image>\nQ", ["a", "b", "c"], ["+", "-", "-"])


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_records_raise_naming_them_or_are_counted(tmp_path, case):
    bad, message = BAD[case]
    path = write(tmp_path / "in.jsonl", [raw("good-1", [1.0, 0.0]), bad, raw("good-2", [0.0, 1.0])])
    with pytest.raises(RecordError, match=message) as err:
        list(read_prm_records(path))
    assert "record e" in str(err.value) and "--skip-bad" in str(err.value)
    skipped = []
    records = list(read_prm_records(path, skip_bad=True, skipped=skipped))
    # The good records around it keep their own labels: nothing shifts.
    assert [(r.id, r.labels) for r in records] == [("good-1", ["+", "-"]), ("good-2", ["-", "+"])]
    assert len(skipped) == 1 and skipped[0]["id"] == "e"


def test_missing_image_is_an_error_only_when_an_image_root_is_given(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"")
    path = write(tmp_path / "in.jsonl", [raw("ok", [1.0]), raw("gone", [1.0], image="images/gone.png")])
    assert len(list(read_prm_records(path))) == 2
    with pytest.raises(RecordError, match="record gone.*does not exist"):
        list(read_prm_records(path, image_root=tmp_path))
    skipped = []
    assert [r.id for r in read_prm_records(path, image_root=tmp_path, skip_bad=True, skipped=skipped)] == ["ok"]
    assert skipped[0]["id"] == "gone"


def test_a_source_that_is_neither_a_file_nor_a_hub_dataset(tmp_path):
    with pytest.raises(RecordError, match="neither an existing file"):
        list(read_prm_records(str(tmp_path / "nope.jsonl")))


def test_images_held_in_a_dataset_cannot_be_written_as_paths():
    rec = PRMRecord("h", [object()], "Q", ["a"], ["+"])
    with pytest.raises(RecordError, match="paths"):
        conversation_record(rec)
