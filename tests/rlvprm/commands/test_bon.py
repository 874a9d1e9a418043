"""`rlvprm bon` end to end with a tiny Qwen2-VL policy and PRM on visual-arith world prompts.

The tiny models are random, so their candidates rarely state an answer; these tests check the
files, their shapes and resuming. Hand-made candidates with known winners are in
``tests/rlvprm/bon/test_run.py``.
"""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from rewards.outcome import extract_answer
from rewards.steps import split_steps
from rlvprm.cli import main as cli
from rlvprm.data.jsonl import ResumableWriter
from rlvprm.world import write_set

AGGREGATIONS = ["mean", "min", "max", "last", "prod", "softmin:0.1"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    return write_set(root, "prompts", seed=0, num=3, progress=False)


def bon_args(model: str, data: Path, out: Path) -> list[str]:
    return ["bon", "--policy", model, "--data", str(data), "--prm", model, "--orm", model, "--n", "4",
            "--max-new-tokens", "12", "--chunk-size", "2", "--prm-batch-size", "4", "--out", str(out)]


@pytest.fixture(scope="module")
def full_run(tiny_models, world, tmp_path_factory):
    out = tmp_path_factory.mktemp("bon") / "full"
    assert cli(bon_args(tiny_models("qwen2-vl"), world, out)) == 0
    return out


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_end_to_end_writes_every_strategy(full_run):
    result = json.loads((full_run / "results.json").read_text())
    expected = {"greedy", "pass@1", "self_consistency", "orm_best", "likelihood_best", "oracle",
                "oracle_prm:all_steps", "oracle_prm:step_fraction"}
    expected |= {f"{s}:{a}" for s in ("prm_best", "prm_weighted_vote") for a in AGGREGATIONS}
    assert set(result["strategies"]) == expected
    assert result["ns"] == [1, 2, 4] and result["world"] is True
    acc = result["overall"]["accuracy"]
    for name in expected:
        assert len(acc[name]) == 3 and all(0.0 <= a <= 1.0 for a in acc[name]), name
    for j in range(3):
        assert acc["oracle"][j] >= acc["pass@1"][j]
    assert set(result["sources"]) == {"add", "count"}  # the data_source of the three world rows
    assert result["overall"]["num_prompts"] == [3, 3, 3]

    cands = lines(full_run / "candidates.jsonl")
    scores = lines(full_run / "scores.jsonl")
    assert [c["id"] for c in cands] == [s["id"] for s in scores] == ["prompts-000000", "prompts-000001", "prompts-000002"]
    texts = [c["text"] for line in cands for c in line["candidates"]]
    assert len(texts) == 12 and all(line["greedy"]["finish_reason"] in ("stop", "length") for line in cands)
    for line, s in zip(cands, scores):
        for c, prm, orm in zip(line["candidates"], s["prm_step_scores"], s["orm_scores"]):
            n_steps = len(split_steps(c["text"]))
            assert len(c["step_logprobs"]) == n_steps == len(prm)
            assert (orm is None) == (n_steps == 0)
    assert result["counts"]["candidates"] == 12
    assert result["counts"]["no_answer"] == sum(extract_answer(t) is None for t in texts)

    md = (full_run / "results.md").read_text()
    assert "## Best-of-4 accuracy (%)" in md and "| Strategy | add | count | Overall |" in md
    assert "Perfect PRM (all steps right)" in md and "| N=1 | N=2 | N=4 |" in md
    assert (full_run / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_after_kill_gives_identical_files(tiny_models, world, full_run, tmp_path, monkeypatch):
    out = tmp_path / "killed"
    args = bon_args(tiny_models("qwen2-vl"), world, out)
    real_write = ResumableWriter.write

    def kill_at(n: int):
        calls = {"n": 0}

        def write(self, record):
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt("simulated kill")
            real_write(self, record)

        monkeypatch.setattr(ResumableWriter, "write", write)

    kill_at(2)  # inside the first chunk of sampling: one prompt's candidates written
    assert cli(args) == 130  # the interrupt ends the command with one line, as Ctrl-C would
    assert len(lines(out / "candidates.jsonl")) == 1
    with (out / "candidates.jsonl").open("a") as fh:
        fh.write('{"id": "prompts-000001", "greedy": {"te')  # the torn line a kill during a write leaves
    kill_at(4)  # sampling finishes (2 lines), then scoring dies after its first line
    assert cli(args) == 130  # the interrupt ends the command with one line, as Ctrl-C would
    assert len(lines(out / "candidates.jsonl")) == 3 and len(lines(out / "scores.jsonl")) == 1
    monkeypatch.setattr(ResumableWriter, "write", real_write)
    assert cli(args) == 0

    for name in ("candidates.jsonl", "scores.jsonl"):
        assert (out / name).read_text() == (full_run / name).read_text(), name
    resumed = json.loads((out / "results.json").read_text())
    full = json.loads((full_run / "results.json").read_text())
    assert resumed["overall"] == full["overall"] and resumed["sources"] == full["sources"]


def test_changed_sampling_settings_are_refused(tiny_models, world, full_run, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(full_run, out)
    assert cli(bon_args(tiny_models("qwen2-vl"), world, out) + ["--temperature", "0.7"]) == 1
    assert re.search(r"temperature: 1\.0 -> 0\.7", capsys.readouterr().err)


def _bon_cmd(model: str, data: Path, out: Path) -> list[str]:
    import sys

    return [sys.executable, "-m", "rlvprm.cli", *bon_args(model, data, out), "--chunk-size", "1", "--threads", "1"]


@pytest.fixture(scope="module")
def uninterrupted(tiny_models, tmp_path_factory):
    """A world of 6 prompts and the files an uninterrupted subprocess run writes for it."""
    import subprocess

    root = tmp_path_factory.mktemp("bon-kill")
    data = write_set(root / "world", "prompts", seed=1, num=6, progress=False)
    subprocess.run(_bon_cmd(tiny_models("qwen2-vl"), data, root / "full"), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return data, root / "full"


@pytest.mark.parametrize("stage", ["candidates.jsonl", "scores.jsonl"])
def test_resume_after_kill_9_is_byte_identical(tiny_models, uninterrupted, tmp_path, kill_part_way, stage):
    import subprocess

    data, full = uninterrupted
    cmd = _bon_cmd(tiny_models("qwen2-vl"), data, tmp_path / "killed")
    done = kill_part_way(cmd, tmp_path / "killed" / stage, lines=2)
    assert 0 < done < 6, "the run should have been killed part way"
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for name in ("candidates.jsonl", "scores.jsonl"):
        assert (tmp_path / "killed" / name).read_bytes() == (full / name).read_bytes(), name
