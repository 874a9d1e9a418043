"""`rlvprm label` end to end: exact Raw output, resume after a kill, shards and merge, bad input,
convert, and a real tiny Qwen2-VL policy."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from rewards.conversation import parse_visualprm_conversations
from rlvprm.cli import main as cli
from rlvprm.commands.label import LabelConfig, main as label_main
from rlvprm.config import ConfigError, parse
from rlvprm.data.jsonl import RecordError, ResumableWriter
from rlvprm.generation import Sample, make_sampler

_spec = importlib.util.spec_from_file_location(
    "scripted_policy", Path(__file__).parents[1] / "labeling" / "scripted_policy.py")
scripted = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scripted)

RAW_KEYS = ["id", "image", "question", "question_orig", "answer", "response", "num_mc_sequences", "steps_with_score", "data_source"]


def question(i: int) -> str:
    return f"What is the sum of the numbers? ({i})"


def write_data(root: Path, n: int = 5) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        img = Image.new("RGB", (56, 28), "white")
        ImageDraw.Draw(img).text((4, 8), str(i), fill="black")
        img.save(root / "images" / f"{i}.png")
        rows.append({"id": f"p{i}", "image": f"images/{i}.png", "question": question(i), "answer": "7",
                     "data_source": "sum"})
    path = root / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def policy(n: int = 5) -> "scripted.ScriptedPolicy":
    # Seed-dependent outcomes ([rand]) make any change in how records are seeded show in the output.
    table = {question(i): [f"Read {i}. [rand]\n\n{i} + 1 = {i + 1}. [rand]\n\nSo \\boxed{{7}}.",
                           f"Read {i}. [2/4]\n\n\\boxed{{{i}}}.",
                           f"Read {i}. [rand]\n\nA guess. [1/4]\n\n\\boxed{{7}}."]
             for i in range(n)}
    return scripted.ScriptedPolicy(table, seeded_rollouts=True)


def config(data, out, **kw) -> LabelConfig:
    return LabelConfig(**{"policy": "scripted", "data": str(data), "out": str(out), "num_rollouts": 3,
                          "num_mc": 4, "progress": False, **kw})


def read(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_raw_output_is_exactly_the_published_format(tmp_path):
    data = write_data(tmp_path, n=2)
    out = tmp_path / "labels.jsonl"
    fake = scripted.ScriptedPolicy({question(0): ["Read 0. [3/4]\n\n0 + 7 = 7. [1/4]\n\nSo \\boxed{7}."],
                                    question(1): ["Read 1. [0/4]\n\n\\boxed{1}."]})
    stats = label_main(config(data, out, num_rollouts=2), sampler=fake)
    rows = read(out)
    assert [list(r) for r in rows] == [RAW_KEYS] * 4
    assert rows[0] == {
        "id": "p0-r0", "image": "images/0.png", "question": "<image>\n" + question(0), "question_orig": question(0),
        "answer": "7",
        "response": "Read 0. [3/4]\n\n0 + 7 = 7. [1/4]\n\nSo \\boxed{7}.", "num_mc_sequences": 4,
        "steps_with_score": [
            {"step": "Read 0. [3/4]", "score": 0.75, "num_mc_correct": 3, "num_mc_total": 4},
            {"step": "0 + 7 = 7. [1/4]", "score": 0.25, "num_mc_correct": 1, "num_mc_total": 4},
            {"step": "So \\boxed{7}.", "score": 1.0, "num_mc_correct": 1, "num_mc_total": 1},
        ],
        "data_source": "sum",
    }
    assert [r["id"] for r in rows] == ["p0-r0", "p0-r1", "p1-r0", "p1-r1"]
    assert rows[2]["steps_with_score"] == [
        {"step": "Read 1. [0/4]", "score": 0.0, "num_mc_correct": 0, "num_mc_total": 4},
        {"step": "\\boxed{1}.", "score": 0.0, "num_mc_correct": 0, "num_mc_total": 1},
    ]
    # The policy got the question as given, with the record's one image.
    assert fake.calls[0]["questions"] == [question(0)] and fake.calls[0]["num_images"] == [1]
    assert stats["rollouts_written"] == 4 and stats["continuations"] == 12  # p0: 2 prefixes shared, p1: 1
    assert stats["continuations_per_s"] > 0


def test_resume_after_a_kill_gives_the_same_file(tmp_path, monkeypatch):
    data = write_data(tmp_path)
    full = tmp_path / "full.jsonl"
    label_main(config(data, full), sampler=policy())

    part = tmp_path / "part.jsonl"
    calls = {"n": 0}
    real_write = ResumableWriter.write

    def dying_write(self, record):
        calls["n"] += 1
        if calls["n"] == 5:  # in the middle of the second record's rollouts
            raise KeyboardInterrupt("simulated kill")
        real_write(self, record)

    monkeypatch.setattr(ResumableWriter, "write", dying_write)
    with pytest.raises(KeyboardInterrupt):
        label_main(config(data, part), sampler=policy())
    monkeypatch.setattr(ResumableWriter, "write", real_write)
    assert len(read(part)) == 4
    with part.open("a") as fh:
        fh.write('{"id": "p1-r1", "ima')  # a torn line, as a kill during a write leaves
    resumed = policy()
    stats = label_main(config(data, part), sampler=resumed)
    assert part.read_text() == full.read_text()
    assert stats["labelled_now"] == 4  # p0 was finished and not redone
    assert all(q != [question(0)] for q in (c["questions"] for c in resumed.calls))
    # A finished file is not touched and nothing is sampled.
    again = policy()
    assert label_main(config(data, part), sampler=again)["labelled_now"] == 0 and again.calls == []


def test_shards_merge_into_the_unsharded_file(tmp_path):
    data = write_data(tmp_path)
    single = tmp_path / "single.jsonl"
    label_main(config(data, single), sampler=policy())
    out = tmp_path / "labels.jsonl"
    for shard in (1, 0):
        label_main(config(data, out, shard=shard, num_shards=2), sampler=policy())
    assert (tmp_path / "labels.shard-0-of-2.jsonl").exists()
    assert cli(["label", "--merge", "--out", str(out)]) == 0
    assert out.read_text() == single.read_text()
    # --limit is applied before sharding: 3 records split 1 + 2.
    lim = tmp_path / "lim.jsonl"
    for shard in (0, 1):
        label_main(config(data, lim, shard=shard, num_shards=2, limit=3), sampler=policy())
    assert len(read(tmp_path / "lim.shard-0-of-2.jsonl")) == 3
    assert len(read(tmp_path / "lim.shard-1-of-2.jsonl")) == 6


def test_bad_records_stop_or_are_counted_and_empty_rollouts_are_listed(tmp_path):
    data = write_data(tmp_path, n=3)
    rows = read(data)
    rows[1]["image"] = "images/missing.png"
    rows.append({"id": "p9", "image": "images/0.png", "question": question(0)})  # no answer
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fake = policy(3)
    fake.rollouts[question(2)] = ["\n\n  ", "Read 2. [1/4]\n\n\\boxed{7}."]
    fake.seeded_rollouts = False
    out = tmp_path / "labels.jsonl"
    with pytest.raises(RecordError, match="record p1: image .*missing.png does not exist.*--skip-bad"):
        label_main(config(data, out, num_rollouts=2), sampler=fake)
    stats = label_main(config(data, out, num_rollouts=2, skip_bad=True), sampler=fake)
    assert [r["id"] for r in read(out)] == ["p0-r0", "p0-r1", "p2-r1"]
    skipped = read(tmp_path / "labels.jsonl.skipped.jsonl")
    assert [s["id"] for s in skipped] == ["p1", "p2-r0", "p9"]
    assert "no answer" in skipped[2]["reason"] and "no steps" in skipped[1]["reason"]
    assert (stats["bad_records"], stats["empty_rollouts"]) == (2, 1)
    # Listed items count as done: a re-run samples nothing.
    fresh = policy(3)
    assert label_main(config(data, out, num_rollouts=2, skip_bad=True), sampler=fresh)["labelled_now"] == 0
    assert fresh.calls == []


def test_duplicate_ids_and_contradictory_options_are_rejected(tmp_path):
    data = write_data(tmp_path, n=2)
    rows = read(data)
    rows[1]["id"] = "p0"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(RecordError, match="'p0' appears on lines 1 and 2"):
        label_main(config(data, tmp_path / "o.jsonl"), sampler=policy())
    for argv, message in [
        (["--out", "o", "--data", "d"], "--policy is required"),
        (["--out", "o", "--convert", "--merge"], "two different modes"),
        (["--out", "o", "--data", "d", "--policy", "p", "--shard", "2", "--num-shards", "2"], "shard must be"),
        (["--out", "o", "--data", "d", "--policy", "p", "--temperature", "0"], "greedy"),
        (["--out", "o", "--data", "d", "--convert", "--threshold", "1"], "threshold"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse([LabelConfig], argv)


def test_convert_through_the_cli_round_trips(tmp_path):
    data = write_data(tmp_path, n=2)
    raw = tmp_path / "labels.jsonl"
    label_main(config(data, raw), sampler=policy(2))
    conv = tmp_path / "conv.jsonl"
    assert cli(["label", "--convert", "--data", str(raw), "--out", str(conv), "--threshold", "0.3",
                "--image-root", str(tmp_path)]) == 0
    raws, convs = read(raw), read(conv)
    assert [c["id"] for c in convs] == [r["id"] for r in raws]
    for r, c in zip(raws, convs):
        assert c["image"] == r["image"]
        q, steps, labels = parse_visualprm_conversations(c["conversations"])
        assert q == r["question"]
        assert steps == [s["step"] for s in r["steps_with_score"]]
        assert labels == ["+" if s["score"] > 0.3 else "-" for s in r["steps_with_score"]]


class _RealContinuations:
    """Fixed multi-step rollouts; every continuation comes from the real model (a random tiny
    model rarely writes a blank line within 24 tokens, so its own rollouts are mostly one step)."""

    def __init__(self, real, rollouts):
        self.real, self.rollouts, self.continued = real, rollouts, 0

    def sample(self, requests, num_samples=1, **kw):
        if requests[0].prefix is None:
            return [[Sample(t, [], "stop", 1) for t in self.rollouts[:num_samples]]]
        self.continued += len(requests) * num_samples
        return self.real.sample(requests, num_samples, **kw)


@pytest.fixture
def one_thread():
    # Two threads on two cores shared with other work can make generate a hundred times slower.
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_real_tiny_qwen2_vl_policy(tiny_models, tmp_path, one_thread):
    data = write_data(tmp_path, n=2)
    model = tiny_models("qwen2-vl")
    out = tmp_path / "labels.jsonl"
    argv = ["label", "--policy", model, "--data", str(data), "--out", str(out), "--num-rollouts", "2",
            "--num-mc", "2", "--max-new-tokens", "24", "--device", "cpu", "--dtype", "float32", "--batch-size", "4",
            "--progress", "false", "--threads", "1"]
    assert cli(argv) == 0
    rows = read(out)
    ids = ["p0-r0", "p0-r1", "p1-r0", "p1-r1"]
    assert rows and [r["id"] for r in rows] == [i for i in ids if i in {r["id"] for r in rows}]
    for r in rows:
        assert list(r) == RAW_KEYS and r["num_mc_sequences"] == 2
        steps = r["steps_with_score"]
        assert steps and "\n\n".join(s["step"] for s in steps).strip()
        for s in steps[:-1]:
            assert s["num_mc_total"] == 2 and s["score"] == s["num_mc_correct"] / 2
        assert steps[-1]["num_mc_total"] == 1
    # Continuations of known prefixes through the real model, batched, deterministic per record.
    real = make_sampler("hf", model, dtype="float32", device="cpu", progress=False)
    wrapped = _RealContinuations(real, ["Read 3 and 4.\n\n3 + 4 = 7.\n\nSo \\boxed{7}.", "Read 3.\n\n\\boxed{3}."])
    cfg = dict(policy=model, num_rollouts=2, num_mc=2, max_new_tokens=24, batch_size=4, progress=False)
    first = label_main(LabelConfig(data=str(data), out=str(tmp_path / "a.jsonl"), **cfg), sampler=wrapped)
    assert first["continuations"] == wrapped.continued == 2 * 3 * 2  # 2 prompts x 3 unique prefixes x 2
    rows = read(tmp_path / "a.jsonl")
    assert [s["num_mc_total"] for s in rows[0]["steps_with_score"]] == [2, 2, 1]
    assert rows[0]["steps_with_score"][2]["score"] == 1.0 and rows[1]["steps_with_score"][1]["score"] == 0.0
    label_main(LabelConfig(data=str(data), out=str(tmp_path / "b.jsonl"), **cfg),
               sampler=_RealContinuations(real, wrapped.rollouts))
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()


def test_resume_after_kill_9_is_byte_identical(tiny_models, tmp_path, kill_part_way):
    import subprocess
    import sys

    data = write_data(tmp_path, n=8)
    args = ["--policy", tiny_models("qwen2-vl"), "--data", str(data), "--num-rollouts", "2", "--num-mc", "2",
            "--max-new-tokens", "16", "--device", "cpu", "--dtype", "float32", "--batch-size", "4",
            "--progress", "false", "--threads", "1"]
    cmd = lambda out: [sys.executable, "-m", "rlvprm.cli", "label", *args, "--out", str(out)]  # noqa: E731
    full, killed = tmp_path / "full.jsonl", tmp_path / "killed.jsonl"
    subprocess.run(cmd(full), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done = kill_part_way(cmd(killed), killed, lines=3)
    assert 0 < done < len(read(full)), "the run should have been killed part way"
    subprocess.run(cmd(killed), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert killed.read_bytes() == full.read_bytes()
