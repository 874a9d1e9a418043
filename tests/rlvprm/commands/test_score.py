"""`rlvprm score` end to end on a small VisualProcessBench-format file with real PNG images."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from rlvprm.cli import main as cli
from rlvprm.commands.score import ScoreConfig, main as score_main
from rlvprm.data.jsonl import RecordError, ResumableWriter


def write_data(root: Path, n: int = 6) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    recs = []
    for i in range(n):
        img = Image.new("RGB", (56 + 28 * (i % 3), 28), "white")
        ImageDraw.Draw(img).text((4, 8), str(i), fill="black")
        img.save(root / "images" / f"{i}.png")
        steps = [f"The number is {i}.", f"{i} + 1 = {i + 1}.", f"The answer is \\boxed{{{i + 1}}}."][: 1 + i % 3]
        recs.append({"image": [f"images/{i}.png"], "question": f"<image>\nAdd one to the number.", "answer": str(i + 1),
                     "response": {"steps": steps, "process_correctness": [1] * len(steps)},
                     "policy_model": "test", "data_source": "MathVista" if i % 2 else "MMMU"})
    recs.append({"id": "prompt-1", "image": "images/0.png", "question": "What is shown?", "answer": "0",
                 "response": "I see 0.\n\nSo \\boxed{0}."})
    path = root / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def read(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_score_end_to_end(tiny_models, tmp_path):
    data = write_data(tmp_path)
    out = tmp_path / "scores.jsonl"
    rc = cli(["score", "--model", tiny_models("qwen2-vl"), "--data", str(data), "--out", str(out), "--batch-size", "3"])
    assert rc == 0
    rows = read(out)
    assert [r["id"] for r in rows] == ["1", "2", "3", "4", "5", "6", "prompt-1"]
    assert [r["num_steps"] for r in rows] == [1, 2, 3, 1, 2, 3, 2]
    for r in rows:
        assert len(r["step_scores"]) == r["num_steps"]
        assert r["score"] == pytest.approx(sum(r["step_scores"]) / r["num_steps"])


def test_resume_after_simulated_crash_matches_uninterrupted(tiny_models, tmp_path, monkeypatch):
    data = write_data(tmp_path)
    model = tiny_models("qwen2-vl")
    full = tmp_path / "full.jsonl"
    score_main(ScoreConfig(model=model, data=str(data), out=str(full), batch_size=2))

    part = tmp_path / "part.jsonl"
    calls = {"n": 0}
    real_write = ResumableWriter.write

    def crashing_write(self, record):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("simulated kill")
        real_write(self, record)

    monkeypatch.setattr(ResumableWriter, "write", crashing_write)
    with pytest.raises(KeyboardInterrupt):
        score_main(ScoreConfig(model=model, data=str(data), out=str(part), batch_size=2))
    monkeypatch.setattr(ResumableWriter, "write", real_write)
    assert len(read(part)) == 3
    with part.open("a") as fh:
        fh.write('{"id": "4", "step_sco')  # a torn line, as a kill during a write leaves
    score_main(ScoreConfig(model=model, data=str(data), out=str(part), batch_size=2))
    assert part.read_text() == full.read_text()


def test_resume_after_real_kill(tiny_models, tmp_path):
    data = write_data(tmp_path, n=30)
    model = tiny_models("qwen2-vl")
    full = tmp_path / "full.jsonl"
    score_main(ScoreConfig(model=model, data=str(data), out=str(full), batch_size=1))
    out = tmp_path / "killed.jsonl"
    cmd = [sys.executable, "-m", "rlvprm.cli", "score", "--model", model, "--data", str(data), "--out", str(out),
           "--batch-size", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if out.exists() and len(out.read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(out.read_text().splitlines()) if out.exists() else 0
    assert 0 < done < 31, "the run should have been killed part way"
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert out.read_text() == full.read_text()


@pytest.mark.parametrize(
    "record, message",
    [
        ({"image": ["images/missing.png"], "question": "<image>\nQ", "response": "a"}, "does not exist"),
        ({"image": ["images/corrupt.png"], "question": "<image>\nQ", "response": "a"}, "cannot be read"),
        ({"image": ["images/0.png"], "question": "<image>\nQ", "response": "  \n\n "}, "empty response"),
        ({"image": ["images/0.png"], "response": "a"}, "no question"),
        ({"image": ["images/0.png"], "question": "<image> <image> Q", "response": "a"}, "placeholder"),
    ],
)
def test_bad_record_is_named_or_skipped(tiny_models, tmp_path, record, message):
    data = write_data(tmp_path, n=2)
    (tmp_path / "images" / "corrupt.png").write_bytes(b"not a png at all")
    with data.open("a") as fh:
        fh.write(json.dumps(record) + "\n")
    out = tmp_path / "s.jsonl"
    cfg = ScoreConfig(model=tiny_models("qwen2-vl"), data=str(data), out=str(out))
    with pytest.raises(RecordError, match=rf"record 4 \(line 4\).*{message}|record 4: .*{message}"):
        score_main(cfg)
    cfg.skip_bad = True
    summary = score_main(cfg)
    assert summary["skipped"] == 1
    assert [r["id"] for r in read(out)] == ["1", "2", "prompt-1"]
    skipped = read(str(out) + ".skipped.jsonl")
    assert skipped[0]["id"] == "4" and message in skipped[0]["reason"]


def test_malformed_line_names_the_line(tiny_models, tmp_path):
    data = write_data(tmp_path, n=1)
    with data.open("a") as fh:
        fh.write("{not json\n")
    with pytest.raises(RecordError, match=r"test.jsonl:3: not valid JSON"):
        score_main(ScoreConfig(model=tiny_models("qwen2-vl"), data=str(data), out=str(tmp_path / "o.jsonl")))


def test_config_validation():
    with pytest.raises(ValueError, match="unknown aggregation|aggregation"):
        ScoreConfig(model="m", data="d", out="o", aggregate="median")


def test_the_prompt_choice_is_recorded_beside_the_scores(tmp_path, remote_internvl):
    from rlvprm.data.provenance import RunMismatch

    data = write_data(tmp_path, n=2)
    ckpt = remote_internvl(tmp_path / "score_remote_prompt", tile=28)
    runs = {}
    for prompt in ("checkpoint", "training"):
        out = tmp_path / f"{prompt}.jsonl"
        score_main(ScoreConfig(model=str(ckpt), data=str(data), out=str(out), trust_remote_code=True, dtype="float32",
                               device="cpu", prm_prompt=prompt))
        runs[prompt] = (json.loads(Path(str(out) + ".run.json").read_text()), read(out))
    meta, rows = runs["checkpoint"]
    assert meta["prm_prompt"] == "checkpoint"
    assert meta["info"]["prompt"]["system_message_from"] == "the internvl2_5 template's default"
    assert runs["training"][0]["info"]["prompt"]["prm_prompt"] == "training"
    assert rows[0]["step_scores"] != runs["training"][1][0]["step_scores"]
    # The choice decides the scores: a started output refuses the other one, and keeps its info.
    with pytest.raises(RunMismatch, match="prm_prompt: 'checkpoint' -> 'training'"):
        score_main(ScoreConfig(model=str(ckpt), data=str(data), out=str(tmp_path / "checkpoint.jsonl"),
                               trust_remote_code=True, dtype="float32", device="cpu", prm_prompt="training"))
    assert json.loads((tmp_path / "checkpoint.jsonl.run.json").read_text())["info"] == meta["info"]


def test_an_hf_prm_records_its_chat_template_prompt(tiny_models, tmp_path):
    data = write_data(tmp_path, n=1)
    out = tmp_path / "scores.jsonl"
    score_main(ScoreConfig(model=tiny_models("qwen2-vl"), data=str(data), out=str(out)))
    info = json.loads(Path(str(out) + ".run.json").read_text())["info"]["prompt"]
    assert (info["prm_prompt"], info["template"]) == ("checkpoint", "the processor's chat template")


def test_a_model_error_on_one_record_is_named_or_skipped(tiny_models, tmp_path, monkeypatch):
    """The model's own error for one record (here: out of memory on any batch holding it) goes the
    record-error path: named without --skip-bad, counted and skipped with it, the rest scored."""
    from rewards.backends.hf import HFBackend

    real = HFBackend.step_logits

    def failing(self, batch):
        if any("number is 1." in self.processor.tokenizer.decode(row) for row in batch.inputs["input_ids"]):
            raise RuntimeError("out of memory (for the test)")
        return real(self, batch)

    monkeypatch.setattr(HFBackend, "step_logits", failing)
    data = write_data(tmp_path, n=3)
    out = tmp_path / "s.jsonl"
    cfg = ScoreConfig(model=tiny_models("qwen2-vl"), data=str(data), out=str(out), batch_size=4)
    with pytest.raises(RecordError, match=r"record 2: model error \(RuntimeError\): out of memory"):
        score_main(cfg)
    cfg.skip_bad = True
    assert score_main(cfg)["skipped"] == 1
    assert [r["id"] for r in read(out)] == ["1", "3", "prompt-1"]
    assert read(str(out) + ".skipped.jsonl")[0]["id"] == "2"
