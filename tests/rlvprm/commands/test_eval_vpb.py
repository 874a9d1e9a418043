"""`rlvprm eval-vpb` end to end: precomputed scores, a tiny real Qwen2-VL PRM, resume, bad input."""

import json
import os

import pytest
from PIL import Image

from rlvprm import cli
from rlvprm.commands.eval_vpb import match_scores, read_scores, write_rows
from rlvprm.data.jsonl import RecordError, read_jsonl
from rlvprm.models.tiny import build_tiny_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Four VisualProcessBench records (ids are line numbers 1..4), two sources.
RECORDS = [
    {"image": ["img/a.png"], "question": "<image>\nWhat is 3 + 4?", "answer": "7",
     "response": {"steps": ["The numbers are 3 and 4.", "3 + 4 = 7.", "The answer is 7."],
                  "process_correctness": [1, 1, 1]},
     "policy_model": "toy", "data_source": "MathVista"},
    {"image": ["img/a.png"], "question": "<image>\nWhat is 3 + 4?", "answer": "7",
     "response": {"steps": ["The numbers are 3 and 5.", "3 + 5 = 8."], "process_correctness": [-1, -1]},
     "policy_model": "toy", "data_source": "MathVista"},
    {"image": ["img/b.png", "img/a.png"], "question": "Which is bigger?", "answer": "B",
     "response": {"steps": ["Look at both.", "B is bigger.", "Answer: B"], "process_correctness": [0, 1, 1]},
     "policy_model": "toy", "data_source": "MMMU"},
    {"image": ["img/b.png"], "question": "<image>\nHow many squares?", "answer": "2",
     "response": {"steps": ["There are 3 squares.", "Answer: 3"], "process_correctness": [-1, -1]},
     "policy_model": "toy", "data_source": "MMMU"},
]

# Judge scores at threshold 0.5 (hand-computed metrics below).
SCORES = {"1": [0.9, 0.8, 0.4], "2": [0.3, 0.6], "3": [0.1, 0.7, 0.9], "4": [0.2, 0.5]}


@pytest.fixture
def vpb(tmp_path):
    (tmp_path / "img").mkdir()
    Image.new("RGB", (56, 56), "white").save(tmp_path / "img" / "a.png")
    Image.new("RGB", (84, 56), (20, 120, 200)).save(tmp_path / "img" / "b.png")
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    return path


def write_scores(path, scores):
    path.write_text("".join(json.dumps({"id": k, "step_scores": v, "score": 0.0}) + "\n" for k, v in scores.items()))
    return path


def run(*args):
    return cli.main(["--debug", "eval-vpb", *map(str, args)])  # --debug: errors raise, so tests see their type


def test_precomputed_scores_end_to_end(vpb, tmp_path, capsys):
    scores = write_scores(tmp_path / "judge.jsonl", SCORES)
    out = tmp_path / "out"
    assert run("--data", vpb, "--scores", scores, "--out", out) == 0  # the tuned threshold is reported by default
    m = json.loads((out / "metrics.json").read_text())
    # MathVista: correct 0.9, 0.8 | 0.4 ; wrong 0.3 | 0.6. correct TP 2 FN 1 FP 1 -> 2/3;
    # wrong TP 1 FP 1 FN 1 -> 1/2; macro 7/12. 5 labelled steps.
    assert m["sources"]["MathVista"]["macro_f1"] == pytest.approx(7 / 12)
    # MMMU (neutral first step left out): correct 0.7, 0.9 TP 2; wrong 0.2, 0.5 (== threshold) TP 2;
    # macro 1. 4 labelled steps, 1 neutral.
    assert m["sources"]["MMMU"]["macro_f1"] == 1.0
    assert m["sources"]["MMMU"]["n_neutral"] == 1
    # Pooled: correct TP 4 FN 1 FP 1 -> 8/10; wrong TP 3 FP 1 FN 1 -> 6/8; macro 0.775.
    assert m["overall"]["macro_f1"] == pytest.approx(0.775)
    assert m["step_weighted_macro_f1"] == pytest.approx((5 * 7 / 12 + 4 * 1.0) / 9)
    assert m["overall"]["n_records"] == 4 and m["n_skipped"] == 0
    assert m["threshold"] == 0.5 and "test set" in m["sweep"]["note"]
    # Pooled sweep, sorted: .2- .3- .4+ .5- .6- .7+ .8+ .9+ .9+. Judging <= 0.6 wrong misses only 0.4:
    # correct TP 4 FN 1 -> 8/9, wrong TP 4 FP 1 -> 8/9. The midpoint 0.65 ties; the lower cut wins.
    assert m["sweep"]["threshold"] == 0.6
    assert m["sweep"]["macro_f1"] == pytest.approx(8 / 9)
    md = (out / "metrics.md").read_text()
    assert "| MathVista | 2 | 5 |" in md and "| MMMU | 2 | 5 |" in md and "step-weighted" in md
    assert "tuned on the test set" in md
    printed = capsys.readouterr().out
    assert "at threshold 0.5" in printed and "TUNED ON THE TEST DATA (not a result): best threshold 0.6" in printed
    assert run("--data", vpb, "--scores", scores, "--out", tmp_path / "plain", "--sweep", "false") == 0
    assert "sweep" not in json.loads((tmp_path / "plain" / "metrics.json").read_text())


def test_error_types_get_their_own_position_matched_auc(vpb, tmp_path):
    # Record 1 is error-free (reference: 0.9, 0.8, 0.4 at steps 1-3); record 2's first wrong step is step 1
    # (0.3 < 0.9: a win), record 4's too (0.2 < 0.9: a win); record 4 scored 0.95 instead is a loss.
    rows = [dict(r, error_type=t) for r, t in zip(RECORDS, ["none", "perception", None, "arithmetic"])]
    vpb.write_text("".join(json.dumps(r) + "\n" for r in rows))
    scores = write_scores(tmp_path / "judge.jsonl", {**SCORES, "4": [0.95, 0.5]})
    assert run("--data", vpb, "--scores", scores, "--out", tmp_path / "out") == 0
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["error_types"] == {"arithmetic": 0.0, "perception": 1.0}
    assert "by error type" in (tmp_path / "out" / "metrics.md").read_text()
    vpb.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))  # no error types: no such section
    assert run("--data", vpb, "--scores", scores, "--out", tmp_path / "plain") == 0
    assert "error_types" not in json.loads((tmp_path / "plain" / "metrics.json").read_text())


def test_ids_are_line_numbers_and_blank_lines_keep_numbering(vpb, tmp_path):
    lines = vpb.read_text().splitlines()
    vpb.write_text("\n".join([lines[0], "", *lines[1:]]) + "\n")  # record 2 is now on line 3
    shifted = {"1": SCORES["1"], "3": SCORES["2"], "4": SCORES["3"], "5": SCORES["4"]}
    out = tmp_path / "out"
    assert run("--data", vpb, "--scores", write_scores(tmp_path / "s.jsonl", shifted), "--out", out) == 0
    assert json.loads((out / "metrics.json").read_text())["overall"]["macro_f1"] == pytest.approx(0.775)


def test_step_count_mismatch_is_an_error_or_a_counted_skip(vpb, tmp_path):
    scores = write_scores(tmp_path / "s.jsonl", {**SCORES, "2": [0.3]})
    with pytest.raises(RecordError, match=r"record 2 \(line 2\): 1 step scores for 2 steps"):
        run("--data", vpb, "--scores", scores, "--out", tmp_path / "o1")
    assert run("--data", vpb, "--scores", scores, "--out", tmp_path / "o2", "--skip-bad") == 0
    m = json.loads((tmp_path / "o2" / "metrics.json").read_text())
    assert m["n_skipped"] == 1 and m["skipped"][0]["id"] == "2"
    assert m["overall"]["n_records"] == 3


def test_missing_and_stray_ids(vpb, tmp_path):
    rows = list(read_jsonl(vpb))
    partial = {k: v for k, v in SCORES.items() if k != "4"}
    with pytest.raises(RecordError, match="record 4 .*no step scores"):
        match_scores(rows, partial)
    with pytest.raises(RecordError, match="match no record.*: 9"):
        match_scores(rows, {**SCORES, "9": [0.5]})
    recs, skipped = match_scores(rows, {**partial, "9": [0.5]}, skip_bad=True)
    assert [r.id for r in recs] == ["1", "2", "3"] and len(skipped) == 2


def test_scores_file_is_checked(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text('{"id": 1, "step_scores": [0.5]}\n{"id": "1", "step_scores": [0.4]}\n')
    with pytest.raises(RecordError, match="appears twice"):
        read_scores(p)
    p.write_text('{"id": 1, "step_scores": "high"}\n')
    with pytest.raises(RecordError, match="list of numbers"):
        read_scores(p)


def test_config_needs_exactly_one_judge(vpb, tmp_path, capsys):
    assert cli.main(["eval-vpb", "--data", str(vpb), "--out", str(tmp_path / "o")]) == 1
    assert "exactly one of --model" in capsys.readouterr().err
    s = write_scores(tmp_path / "s.jsonl", SCORES)
    assert cli.main(["eval-vpb", "--data", str(vpb), "--out", str(tmp_path / "o"), "--scores", str(s),
                     "--model", str(tmp_path)]) == 1


def test_hub_rows_are_written_with_their_images(tmp_path):
    import io

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, format="PNG")
    rows = [{**RECORDS[0], "image": [Image.new("RGB", (8, 8), "blue"), "img/kept.png"]},
            {**RECORDS[1], "image": [{"bytes": buf.getvalue(), "path": None}]}]
    path = write_rows(rows, tmp_path)
    back = [r for _, r in read_jsonl(path)]
    assert back[0]["image"] == ["images/1_0.png", "img/kept.png"]
    assert back[1]["image"] == ["images/2_0.png"]
    assert Image.open(tmp_path / "images" / "2_0.png").getpixel((0, 0)) == (255, 0, 0)
    assert back[0]["response"] == RECORDS[0]["response"]


@pytest.fixture(scope="module")
def tiny_prm(tmp_path_factory):
    return build_tiny_model("qwen2-vl", tmp_path_factory.mktemp("prm"))


def test_scoring_with_a_tiny_prm_and_resume(vpb, tmp_path, tiny_prm, capsys):
    out = tmp_path / "out"
    args = ("--data", vpb, "--model", tiny_prm, "--out", out, "--device", "cpu", "--batch-size", 2)
    assert run(*args) == 0
    lines = (out / "scores.jsonl").read_text().splitlines()
    scored = {json.loads(x)["id"]: json.loads(x)["step_scores"] for x in lines}
    assert sorted(scored) == ["1", "2", "3", "4"]
    assert [len(scored[str(i + 1)]) for i in range(4)] == [3, 2, 3, 2]
    assert all(0.0 <= s <= 1.0 for v in scored.values() for s in v)
    first = json.loads((out / "metrics.json").read_text())
    assert first["overall"]["n_records"] == 4 and first["judge"]["model"] == str(tiny_prm)
    # The prompt the scorer wrote, as `rlvprm score` recorded it beside the scores.
    assert first["judge"]["prompt"]["prm_prompt"] == "checkpoint"
    assert first["judge"]["prompt"]["template"] == "the processor's chat template"

    # The same scores read back as a judge's file give the same metrics.
    again = tmp_path / "again"
    assert run("--data", vpb, "--scores", out / "scores.jsonl", "--out", again) == 0
    assert json.loads((again / "metrics.json").read_text())["overall"] == first["overall"]

    # Kill mid-run: three lines survive (one marked so a re-score would show), the fourth is torn.
    kept = [json.loads(x) for x in lines[:3]]
    kept[0]["step_scores"] = [0.0] * len(kept[0]["step_scores"])
    (out / "scores.jsonl").write_text("".join(json.dumps(k) + "\n" for k in kept) + lines[3][:10])
    capsys.readouterr()
    assert run(*args) == 0
    assert "1 scored, 3 already done" in capsys.readouterr().out
    resumed = [json.loads(x) for x in (out / "scores.jsonl").read_text().splitlines()]
    assert len(resumed) == 4 and resumed[0] == kept[0]
    assert resumed[3]["step_scores"] == pytest.approx(json.loads(lines[3])["step_scores"], abs=1e-5)


def test_resume_after_kill_9_is_byte_identical(vpb, tmp_path, tiny_prm, kill_part_way):
    """kill -9 while scoring, re-run: scores.jsonl and metrics.json as an uninterrupted run's."""
    import shutil
    import subprocess
    import sys

    vpb.write_text("".join(json.dumps(r) + "\n" for r in RECORDS * 3))  # 12 records: room to stop part way
    out = tmp_path / "out"  # both runs write here: metrics.json names its scores file
    cmd = [sys.executable, "-m", "rlvprm.cli", "eval-vpb", "--data", str(vpb), "--model", str(tiny_prm),
           "--out", str(out), "--device", "cpu", "--dtype", "float32", "--batch-size", "1"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    full = tmp_path / "full"
    shutil.move(out, full)
    done = kill_part_way(cmd, out / "scores.jsonl", lines=2)
    assert 0 < done < 12 and not (out / "metrics.json").exists(), "the run should have been killed part way"
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for name in ("scores.jsonl", "metrics.json"):
        assert (out / name).read_bytes() == (full / name).read_bytes(), name
