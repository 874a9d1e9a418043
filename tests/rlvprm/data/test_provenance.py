"""Resumable outputs record what produced them and refuse to resume a different run."""

import json
import logging

import pytest

from rlvprm.data.provenance import RunMismatch, check_resume, file_sha256, record_info


def test_settings_are_recorded_and_a_different_run_refused(tmp_path):
    out, meta = tmp_path / "o.jsonl", tmp_path / "o.jsonl.run.json"
    settings = {"model": "m", "data_sha256": "abc", "max_steps": None}
    check_resume(meta, settings, out)
    assert json.loads(meta.read_text()) == settings
    out.write_text('{"id": "1"}\n')
    check_resume(meta, settings, out)  # same run: resumes
    with pytest.raises(RunMismatch, match=r"other settings \(data_sha256: 'abc' -> 'def', model: 'm' -> 'n';"):
        check_resume(meta, {**settings, "model": "n", "data_sha256": "def"}, out)
    out.write_text("")
    check_resume(meta, {**settings, "model": "n"}, out)  # nothing written yet: the new run starts over
    assert json.loads(meta.read_text())["model"] == "n"


def test_stages_share_one_file(tmp_path):
    meta = tmp_path / "run.json"
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    check_resume(meta, {"n": 2}, a, stage="sampling")
    check_resume(meta, {"prm": "p"}, b, stage="scoring")
    a.write_text("{}\n")
    with pytest.raises(RunMismatch, match=r"other sampling settings \(n: 2 -> 3"):
        check_resume(meta, {"n": 3}, a, stage="sampling")
    assert json.loads(meta.read_text()) == {"sampling": {"n": 2}, "scoring": {"prm": "p"}}


def test_an_output_without_a_record_is_adopted_with_a_warning(tmp_path, caplog):
    out = tmp_path / "o.jsonl"
    out.write_text('{"id": "1"}\n')
    with caplog.at_level(logging.WARNING):
        check_resume(tmp_path / "o.run.json", {"model": "m"}, out)
    assert "no record of what produced it" in caplog.text


def test_file_sha256(tmp_path):
    p = tmp_path / "d"
    p.write_bytes(b"abc")
    assert file_sha256(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_info_is_kept_beside_the_settings_and_never_compared(tmp_path):
    out, meta = tmp_path / "o.jsonl", tmp_path / "o.jsonl.run.json"
    check_resume(meta, {"model": "m"}, out)
    record_info(meta, prompt={"prm_prompt": "checkpoint"})
    out.write_text('{"id": "1"}\n')
    check_resume(meta, {"model": "m"}, out)  # the info is not a setting: the run resumes, the info stays
    assert json.loads(meta.read_text()) == {"model": "m", "info": {"prompt": {"prm_prompt": "checkpoint"}}}
    out.write_text("")
    check_resume(meta, {"model": "n"}, out)  # another run starts over: what the old one learned goes
    assert json.loads(meta.read_text()) == {"model": "n"}
