"""The Best-of-N pipeline on hand-made candidates with known winners, and on bad input.

Candidates are written to ``candidates.jsonl`` by hand (world solutions whose every step the exact
checker judges) with hand-chosen step log-probabilities, and scored with ``--prm likelihood``, so
no model is loaded: the policy path below does not exist, and a stage that tried to load it fails.
"""

import json
import math
from pathlib import Path

import pytest

from rewards.steps import split_steps
from rlvprm.bon.candidates import mean_logprob, sampled_step_logprobs, token_char_spans
from rlvprm.bon.run import BonConfig, run_bon
from rlvprm.bon.scoring import likelihood_scores
from rlvprm.data.jsonl import RecordError, read_jsonl
from rlvprm.generation import Sample
from rlvprm.world import problem_from_row, reference_solution, write_set

NO_POLICY = "/nonexistent/policy"


def cand(text: str, logprobs: list[list[float]] | None = None) -> dict:
    return {"text": text, "finish_reason": "stop", "num_tokens": 1, "step_logprobs": logprobs}


@pytest.fixture
def world(tmp_path):
    return write_set(tmp_path / "world", "prompts", seed=0, num=3, progress=False)


def handmade(world: Path, out: Path) -> list[dict]:
    """Prompt 0: a wrong answer, a right answer from a wrong chain, no answer, the reference.
    Prompt 1: four candidates without an answer, one of them empty. Prompt 2: no candidates."""
    rows = [r for _, r in read_jsonl(world)]
    ref = reference_solution(problem_from_row(rows[0])).text
    values = ", ".join(map(str, rows[0]["values"]))
    answer = int(rows[0]["answer"])
    wrong = f"The numbers are {values}.\n\n\\boxed{{{answer - 1}}}"  # steps: right, wrong
    lucky = f"The numbers are 1, 2.\n\n\\boxed{{{answer}}}"  # steps: wrong, wrong; answer right
    n_ref = len(split_steps(ref))
    lines = [
        {"id": rows[0]["id"], "greedy": cand(ref), "candidates": [
            cand(wrong, [[-0.1], [-0.1]]),  # the policy likes the wrong one best
            cand(lucky, [[-2.0], [-1.0]]),
            cand("I cannot tell.", [[-3.0]]),
            cand(ref, [[-0.5]] * n_ref),
        ]},
        {"id": rows[1]["id"], "greedy": cand("hmm"), "candidates": [
            cand("", []), cand("hmm", [[-1.0]]), cand("hmm", [[-1.0]]), cand("no idea", [[-1.0]]),
        ]},
        {"id": rows[2]["id"], "greedy": None, "candidates": []},
    ]
    out.mkdir(parents=True, exist_ok=True)
    (out / "candidates.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return rows


def config(world: Path, out: Path, **kw) -> BonConfig:
    return BonConfig(policy=NO_POLICY, data=str(world), prm="likelihood", out=str(out), n=4, **kw)


def test_known_winners_on_handmade_candidates(world, tmp_path):
    out = tmp_path / "run"
    rows = handmade(world, out)
    result = run_bon(config(world, out))
    acc = {k: v[-1] for k, v in result["overall"]["accuracy"].items()}  # N = 4, over prompts 0 and 1
    assert acc["greedy"] == 0.5
    assert acc["pass@1"] == 0.25  # 2 of 4 right, then 0 of 4
    assert acc["self_consistency"] == 0.5  # two votes for the right answer beat one; nobody answers prompt 1
    assert acc["oracle"] == 0.5
    assert acc["oracle_prm:all_steps"] == acc["oracle_prm:step_fraction"] == 0.5  # the reference's chain
    for agg in ("mean", "min", "max", "last", "prod", "softmin:0.1"):
        assert acc[f"prm_best:{agg}"] == 0.0  # the likelihood critic prefers the wrong candidate
        assert acc[f"prm_weighted_vote:{agg}"] == 0.0  # exp(-0.1) for the wrong answer beats exp(-2) + exp(-0.5)
    assert acc["likelihood_best"] == 0.0
    assert result["overall"]["accuracy"]["oracle"][0] == pytest.approx(0.25)  # N = 1: a random candidate
    assert result["skipped"]["no_candidates"] == [rows[2]["id"]]
    assert result["overall"]["num_prompts"] == [2, 2, 2]
    counts = result["counts"]
    assert (counts["candidates"], counts["no_answer"], counts["no_steps"], counts["fully_correct_chains"]) == (8, 5, 1, 1)

    scores = [json.loads(x) for x in (out / "scores.jsonl").read_text().splitlines()]
    assert scores[0]["prm_step_scores"][0] == pytest.approx([math.exp(-0.1)] * 2)
    assert scores[0]["prm_step_scores"][1] == pytest.approx([math.exp(-2.0)] * 2)  # running minimum
    assert scores[1]["prm_step_scores"][0] == []  # the empty candidate: no steps, scored lowest
    assert scores[2] == {"id": rows[2]["id"], "num_candidates": 0, "prm_step_scores": [], "unscored": []}
    md = (out / "results.md").read_text()
    assert "5 without an extractable answer" in md and "Likelihood best (mean)" in md


def test_rerun_selects_again_without_loading_anything(world, tmp_path):
    out = tmp_path / "run"
    handmade(world, out)
    run_bon(config(world, out))
    again = run_bon(config(world, out, aggregations=["min"], num_subsets=4))
    assert [s for s in again["strategies"] if s.startswith("prm_")] == ["prm_best:min", "prm_weighted_vote:min"]
    assert again["this_run"]["sampled_prompts"] == again["this_run"]["scored_prompts"] == 0


def test_scores_of_an_unknown_prompt_are_an_error_or_a_counted_skip(world, tmp_path):
    out = tmp_path / "run"
    handmade(world, out)
    run_bon(config(world, out))
    with (out / "scores.jsonl").open("a") as fh:
        fh.write(json.dumps({"id": "ghost", "num_candidates": 1, "prm_step_scores": [[0.5]], "unscored": []}) + "\n")
    with pytest.raises(RecordError, match="scores.jsonl has prompt ghost.*do not belong together"):
        run_bon(config(world, out))
    result = run_bon(config(world, out, skip_bad=True))
    assert [s["id"] for s in result["skipped_records"]] == ["ghost"]
    assert result["overall"]["num_prompts"] == [2, 2, 2]


def test_a_different_number_of_scores_than_candidates_is_an_error(world, tmp_path):
    out = tmp_path / "run"
    rows = handmade(world, out)
    (out / "scores.jsonl").write_text(json.dumps(
        {"id": rows[0]["id"], "num_candidates": 3, "prm_step_scores": [[0.5]] * 3, "unscored": []}) + "\n")
    with pytest.raises(RecordError, match="4 candidates in candidates.jsonl but 3 PRM scores"):
        run_bon(config(world, out))
    result = run_bon(config(world, out, skip_bad=True))
    assert [s["id"] for s in result["skipped_records"]] == [rows[0]["id"]]
    assert result["overall"]["num_prompts"] == [1, 1, 1]


def test_candidates_of_a_prompt_not_in_the_data_are_an_error(world, tmp_path):
    out = tmp_path / "run"
    handmade(world, out)
    with (out / "candidates.jsonl").open("a") as fh:
        fh.write(json.dumps({"id": "elsewhere", "greedy": None, "candidates": [cand("\\boxed{1}", [[-1.0]])]}) + "\n")
    with pytest.raises(RecordError, match="candidates.jsonl has prompt elsewhere, which is not in --data"):
        run_bon(config(world, out))


def test_bad_prompts_are_named_or_counted(world, tmp_path):
    rows = [r for _, r in read_jsonl(world)]
    rows[1]["image"] = "images/prompts/missing.png"
    del rows[2]["answer"]
    data = world.parent / "bad.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    handmade(world, out)
    with pytest.raises(RecordError, match=r"record prompts-000001 \(line 2\): image .*missing.png does not exist"):
        run_bon(config(data, out))
    out.joinpath("candidates.jsonl").write_text(out.joinpath("candidates.jsonl").read_text().splitlines()[0] + "\n")
    result = run_bon(config(data, out, skip_bad=True))
    assert [s["id"] for s in result["skipped_records"]] == [rows[1]["id"], rows[2]["id"]]
    assert "no answer" in result["skipped_records"][1]["reason"]
    assert result["counts"]["prompts_in_data"] == 3 and result["counts"]["prompts"] == 1


def test_config_contradictions_say_what_to_change():
    with pytest.raises(ValueError, match="logprobs=none"):
        BonConfig(policy="p", data="d", prm="likelihood", out="o", logprobs="none")
    with pytest.raises(ValueError, match="logprobs=sampler"):
        BonConfig(policy="p", data="d", prm="m", out="o", sampler="vllm", logprobs="policy")
    with pytest.raises(ValueError, match="unknown aggregation"):
        BonConfig(policy="p", data="d", prm="m", out="o", aggregations=["median"])
    with pytest.raises(ValueError, match="temperature 0"):
        BonConfig(policy="p", data="d", prm="m", out="o", temperature=0.0)


def test_likelihood_scores_and_mean_logprob():
    lp = [[math.log(0.5), math.log(0.5)], [math.log(0.9)], [math.log(0.1)]]
    assert likelihood_scores(lp, "step_prob", "x") == pytest.approx([0.25, 0.25, 0.1])  # running minimum
    assert likelihood_scores(lp, "min_token_prob", "x") == pytest.approx([0.5, 0.5, 0.1])
    assert mean_logprob(lp) == pytest.approx((2 * math.log(0.5) + math.log(0.9) + math.log(0.1)) / 4)
    assert mean_logprob([]) is None and mean_logprob(None) is None
    with pytest.raises(RecordError, match="logprobs=none"):
        likelihood_scores(None, "step_prob", "x")


def test_sampler_logprobs_are_divided_into_steps(tiny_models):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_models("qwen2-vl"))
    text = "The numbers are 3, 7.\n\n3 + 7 = 10.\n\nThe answer is \\boxed{10}."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    sample = Sample(text, ids, "stop", len(ids) + 1, token_logprobs=[-float(i) for i in range(len(ids))])
    steps = sampled_step_logprobs(tok, sample)
    assert len(steps) == 3 and [x for s in steps for x in s] == sample.token_logprobs
    first = len(tok("The numbers are 3, 7.\n\n", add_special_tokens=False)["input_ids"])
    assert len(steps[0]) == first  # the separator after a step counts with that step

    # One token per character, which re-tokenising would merge: spans come from decoding prefixes.
    text = "The\n\nnumbers"
    ids = [tok(ch, add_special_tokens=False)["input_ids"][0] for ch in text]
    assert tok.decode(ids) == text and tok(text, add_special_tokens=False)["input_ids"] != ids
    assert token_char_spans(tok, ids, text) == [(i, i + 1) for i in range(len(text))]
    sample = Sample(text, ids, "stop", len(ids), token_logprobs=[-1.0] * len(ids))
    assert [len(s) for s in sampled_step_logprobs(sample=sample, tokenizer=tok)] == [5, 7]


def test_a_truncated_image_is_a_counted_skip_before_sampling(world, tmp_path):
    from rlvprm.bon.run import Skips, load_prompts

    rows = [r for _, r in read_jsonl(world)]
    png = (world.parent / rows[1]["image"]).read_bytes()
    (world.parent / "cut.png").write_bytes(png[: len(png) // 2])  # the header reads; the pixels do not
    rows[1]["image"] = "cut.png"
    data = world.parent / "cut.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(RecordError, match=r"record prompts-000001 \(line 2\): image .*cut.png cannot be read"):
        load_prompts(config(data, tmp_path / "o"), Skips(False))
    skips = Skips(True)
    prompts, _ = load_prompts(config(data, tmp_path / "o"), skips)
    assert [p.id for p in prompts] == [rows[0]["id"], rows[2]["id"]] and skips.items[0]["id"] == rows[1]["id"]
