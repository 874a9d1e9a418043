"""`rlvprm compare` end to end on CPU: a tiny Qwen2-VL base policy and PRM, and an "RL policy".

The RL folder is a second tiny policy (other weights) saved with a hand-written
``grpo_summary.json``, so its training cost is known exactly; GRPO itself is tested in
``tests/rlvprm/rl``. The tiny models are random, so accuracies are mostly 0: these tests check the
counting, the files, resuming and the errors.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rlvprm.cli import main as cli
from rlvprm.compare import CompareConfig, run_compare
from rlvprm.compare.run import policy_names
from rlvprm.config import ConfigError, parse
from rlvprm.models.tiny import build_tiny_model
from rlvprm.world import write_set

pytestmark = pytest.mark.usefixtures("one_thread")

COMPUTE = {"tokens_generated": 6000, "prm_tokens_scored": 2500, "policy_tokens_trained": 9000}
BON = '{"chunk_size": 1, "prm_batch_size": 4}'


@pytest.fixture(scope="module")
def setup(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    data = write_set(root / "world", "prompts", seed=0, num=4, progress=False)
    rl = build_tiny_model("qwen2-vl", root / "rl-run", seed=1)
    summary = {"config": {"policy": tiny_models("qwen2-vl"), "prm": "oracle", "data": str(root / "elsewhere.jsonl")},
               "grpo": {}, "log_history": [{"step": 3, "loss": 0.1}], "compute": COMPUTE}
    (Path(rl) / "grpo_summary.json").write_text(json.dumps(summary))
    return data, tiny_models("qwen2-vl"), str(rl)


def args(setup, out: Path, *extra: str) -> list[str]:
    data, base, rl = setup
    return ["compare", "--base", base, "--rl", f"outcome={rl}", "--prm", base, "--data", str(data), "--n", "2",
            "--max-new-tokens", "12", "--served-prompts", "1000", "--threads", "1", "--out", str(out), "--bon", BON,
            *extra]


@pytest.fixture(scope="module")
def full(setup, tmp_path_factory):
    """An uninterrupted run, in a subprocess like the killed runs below."""
    out = tmp_path_factory.mktemp("full") / "out"
    subprocess.run([sys.executable, "-m", "rlvprm.cli", *args(setup, out)], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return out


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_end_to_end_counts_every_token(full):
    result = json.loads((full / "compare.json").read_text())
    assert list(result["policies"]) == ["base", "outcome"] and result["ns"] == [1, 2] and result["prompts"] == 4
    training = result["training"]["outcome"]
    assert training["total"] == 17500 and training["per_prompt"] == 17.5 and training["how"] == "counted"
    overall = {(r["policy"], r["method"], r["n"]): r for r in result["tables"]["overall"]}
    assert set(overall) == {("base", "greedy", 1), ("base", "pass@1", 1), ("base", "prm_best", 1),
                            ("base", "prm_best", 2), ("base", "self_consistency", 1), ("base", "self_consistency", 2),
                            ("outcome", "greedy", 1), ("outcome", "pass@1", 1), ("outcome", "prm_best", 1),
                            ("outcome", "prm_best", 2)}
    for name in ("base", "outcome"):
        cands, scores = lines(full / "bon" / name / "candidates.jsonl"), lines(full / "bon" / name / "scores.jsonl")
        extra = 17.5 if name == "outcome" else 0.0
        greedy = overall[(name, "greedy", 1)]
        assert greedy["policy_tokens"] == sum(c["greedy"]["num_tokens"] for c in cands) / 4
        assert greedy["training_tokens"] == extra
        best2 = overall[(name, "prm_best", 2)]  # N = n: both candidates of every prompt
        assert best2["policy_tokens"] == sum(c["num_tokens"] for line in cands for c in line["candidates"]) / 4
        assert best2["prm_tokens"] == sum(sum(s["prm_tokens"]) for s in scores) / 4
        assert best2["compute"] == pytest.approx(best2["policy_tokens"] + best2["prm_tokens"] + extra)
        assert all(t > 0 for s in scores for t, steps in zip(s["prm_tokens"], s["prm_step_scores"]) if steps)
    assert set(result["tables"]) == {"overall", "add", "count"}
    md = (full / "compare.md").read_text()
    assert "| outcome | `" in md and "| 6,000 | 2,500 | 9,000 | 0 | 17,500 | 17.5 | counted |" in md
    assert "## Family: add" in md and "| base | PRM Best-of-N (mean) | 2 |" in md
    assert "not from the base policy" not in md  # it says it was trained from the base
    for png in ("compute.png", "compute-add.png", "compute-count.png"):
        assert (full / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


def test_run_compare_returns_the_tables_and_refuses_other_settings(setup, full, tmp_path):
    import shutil

    data, base, rl = setup
    out = tmp_path / "copy"
    shutil.copytree(full, out)
    cfg = CompareConfig(base="/nonexistent/base", rl=[f"outcome={rl}"], prm="/nonexistent/prm", data=str(data),
                        out=str(out), n=2, max_new_tokens=12, served_prompts=1000, threads=1, bon=json.loads(BON))
    with pytest.raises(Exception, match="-> '/nonexistent/base'"):
        run_compare(cfg)  # the recorded base policy differs: refused before anything is loaded
    cfg.base, cfg.prm = base, base
    result = run_compare(cfg)  # every stage done: nothing is sampled or scored again, the tables come back
    assert result["tables"] == json.loads((full / "compare.json").read_text())["tables"]


@pytest.mark.parametrize("stage", ["base/candidates.jsonl", "outcome/scores.jsonl"])
def test_resume_after_kill_9_gives_identical_output(setup, full, tmp_path, kill_part_way, stage):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "rlvprm.cli", *args(setup, out)]
    done = kill_part_way(cmd, out / "bon" / stage, lines=2)
    assert 0 < done < 4, "the run should have been killed part way"
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for name in ("compare.json", "compare.md", "compute.png", *(f"bon/{p}/{f}" for p in ("base", "outcome")
                                                               for f in ("candidates.jsonl", "scores.jsonl"))):
        assert (out / name).read_bytes() == (full / name).read_bytes(), name


def test_a_policy_folder_without_a_run_summary_is_refused(setup, tmp_path, capsys):
    data, base, _ = setup
    assert cli(["compare", "--base", base, "--rl", base, "--prm", base, "--data", str(data), "--served-prompts", "10",
                "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "has no grpo_summary.json or ppo_summary.json: give the output folder of one finished `rlvprm grpo` or `rlvprm ppo` run" \
        in err and err.count("\n") == 1
    assert not (tmp_path / "o" / "bon").exists()  # refused before anything was sampled


def test_a_prompt_set_without_answers_is_refused(setup, tmp_path, capsys):
    data, base, rl = setup
    rows = [json.loads(x) for x in Path(data).read_text().splitlines()]
    bare = Path(data).parent / "no-answers.jsonl"
    bare.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "answer"}) + "\n" for r in rows))
    assert cli(args((bare, base, rl), tmp_path / "o")) == 1
    assert "(line 1): no answer to check the candidates against" in capsys.readouterr().err


def test_mismatched_prompt_sets_are_refused(setup, full, tmp_path, capsys):
    import shutil

    data, base, rl = setup
    out = tmp_path / "copy"
    shutil.copytree(full, out)
    other = Path(data).parent / "other.jsonl"
    other.write_text("".join(Path(data).read_text().splitlines(keepends=True)[:3]))
    assert cli(args((other, base, rl), out)) == 1  # the runs under --out answered another prompt set
    assert "was written with other sampling settings (data_sha256:" in capsys.readouterr().err

    trained = Path(rl).parent / "rl-trained-here"  # an RL policy whose training prompts are --data's
    shutil.copytree(rl, trained)
    summary = json.loads((trained / "grpo_summary.json").read_text())
    summary["config"]["data"] = str(data)
    (trained / "grpo_summary.json").write_text(json.dumps(summary))
    assert cli(args((data, base, str(trained)), tmp_path / "o")) == 1
    assert "4 prompts of --data (the first: prompts-000000) are training prompts of RL policy" in capsys.readouterr().err


def test_options_compare_owns_cannot_come_through_bon(setup, tmp_path):
    data, base, _ = setup
    common = dict(base=base, prm=base, data=str(data), out=str(tmp_path), served_prompts=1)
    with pytest.raises(ConfigError, match=r"--bon may not set 'n': compare sets it itself \(--n\)"):
        CompareConfig(**common, bon={"n": 4})
    with pytest.raises(ConfigError, match="--bon: .*unexpected keyword argument 'nonsense'"):
        CompareConfig(**common, bon={"nonsense": 1})
    with pytest.raises(ConfigError, match="--prm likelihood:POLICY"):
        CompareConfig(**{**common, "prm": "likelihood"})
    with pytest.raises(ConfigError, match=r"--bon may not set 'max_new_tokens'.*\(--max-new-tokens\)"):
        CompareConfig(**common, bon={"max_new_tokens": 4})
    with pytest.raises(ConfigError, match="the name 'rl' is taken"):
        run_compare(CompareConfig(**common, rl=[str(tmp_path / "a" / "rl"), str(tmp_path / "b" / "rl")]))
    with pytest.raises(ConfigError, match="the name 'base' is taken"):
        run_compare(CompareConfig(**common, rl=[f"base={tmp_path}"]))


def test_rl_policies_are_named_by_folder_or_given_name_and_add_up_when_repeated(setup, tmp_path):
    data, base, _ = setup
    (cfg,) = parse([CompareConfig], ["--base", base, "--prm", base, "--data", str(data), "--out", str(tmp_path),
                                     "--served-prompts", "1", "--rl", "runs/grpo/outcome-s0/", "--rl", "p=runs/x"])
    assert policy_names(cfg) == {"base": base, "outcome-s0": "runs/grpo/outcome-s0/", "p": "runs/x"}


def test_an_existing_bon_run_of_the_base_policy_is_reused_and_gives_the_same_tables(setup, full, tmp_path, capsys):
    data, base, _ = setup
    # What `rlvprm demo` does: a bon run with an ORM and the policy's log-probabilities, then compare.
    bon = tmp_path / "bon-base"
    assert cli(["bon", "--policy", base, "--data", str(data), "--prm", base, "--orm", base, "--n", "2",
                "--max-new-tokens", "12", "--threads", "1", "--chunk-size", "1", "--out", str(bon)]) == 0
    out = tmp_path / "reused"
    assert cli(args(setup, out, "--base-bon", str(bon))) == 0
    assert not (out / "bon" / "base").exists()
    reused, fresh = (json.loads((d / "compare.json").read_text()) for d in (out, full))
    assert reused["tables"] == fresh["tables"] and reused["policies"]["base"]["bon"] == str(bon)

    capsys.readouterr()
    assert cli(args(setup, tmp_path / "other", "--base-bon", str(bon), "--seed", "1")) == 1
    err = capsys.readouterr().err
    assert "--base-bon" in err and "seed: 0 (compare: 1)" in err
    assert cli(args(setup, tmp_path / "other", "--base-bon", str(bon), "--bon", '{"chunk_size": 2}')) == 1
    assert "chunk_size: 1 (compare: 2)" in capsys.readouterr().err
