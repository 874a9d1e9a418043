"""Compute counting on hand-built candidates and scores: every token count worked out by hand.

Two prompts of three candidates each; at N <= 3 with 32 subsets every subset is used, so every
number below is an exact expectation (``select.subsets``).
"""

import doctest

import pytest

from rlvprm.bon.config import BonPrompt
from rlvprm.compare import compute
from rlvprm.compare.compute import judge_prompts, merge_families, method_rows, subset_cost
from rlvprm.data.jsonl import RecordError
from rlvprm.data.records import parse_record

ROWS = [{"id": "p0", "question": "Sum?", "answer": "7", "data_source": "add"},
        {"id": "p1", "question": "Count?", "answer": "3", "data_source": "count"}]


def cand(answer: str | None, tokens: int) -> dict:
    return {"text": f"I think so.\n\n\\boxed{{{answer}}}" if answer else "", "finish_reason": "stop",
            "num_tokens": tokens}


CANDS = {
    "p0": {"id": "p0", "greedy": cand("7", 5), "candidates": [cand("7", 10), cand("8", 20), cand("8", 30)]},
    "p1": {"id": "p1", "greedy": cand("2", 7), "candidates": [cand("3", 4), cand("3", 6), cand(None, 1)]},
}
SCORES = {
    "p0": {"id": "p0", "prm_step_scores": [[0.9, 0.9], [0.2, 0.2], [0.3, 0.3]], "prm_tokens": [100, 110, 120]},
    "p1": {"id": "p1", "prm_step_scores": [[0.1, 0.1], [0.8, 0.8], []], "prm_tokens": [50, 60, 0]},
}


def prompts() -> list[BonPrompt]:
    return [BonPrompt(parse_record(r, i + 1), r, i + 1) for i, r in enumerate(ROWS)]


def rows(training: float = 0.0, self_consistency: bool = True) -> dict[str, list[dict]]:
    judged = judge_prompts(prompts(), CANDS, SCORES, "mean", "run")
    return method_rows("base", judged, [1, 2, 3], "mean", 32, 0, training, self_consistency)


def find(table: list[dict], method: str, n: int) -> dict:
    return next(r for r in table if r["method"] == method and r["n"] == n)


def test_docstring_examples_hold():
    assert doctest.testmod(compute).failed == 0


def test_subset_cost_is_the_mean_over_the_subsets_used():
    assert subset_cost([10, 20, 30], 0, 1, 32, 0) == 20.0
    assert subset_cost([10, 20, 30], 0, 2, 32, 0) == 40.0  # (30 + 40 + 50) / 3
    assert subset_cost([10, 20, 30], 5, 3, 32, 0) == 60.0
    # More subsets than num_subsets: the random draws best_of_n makes, summed exactly.
    tokens = list(range(1, 11))
    from rlvprm.bon.select import prompt_subsets

    chosen = prompt_subsets(2, 10, 4, 3, 7)
    assert subset_cost(tokens, 2, 4, 3, 7) == sum(sum(tokens[j] for j in s) for s in chosen) / 3


def test_tokens_counted_exactly_per_method_and_n():
    overall = rows()["overall"]
    greedy = find(overall, "greedy", 1)
    assert (greedy["accuracy"], greedy["policy_tokens"], greedy["prm_tokens"]) == (0.5, 6.0, 0.0)  # (5 + 7) / 2
    one = find(overall, "pass@1", 1)
    assert one["accuracy"] == pytest.approx(0.5)  # 1/3 and 2/3
    assert one["policy_tokens"] == pytest.approx((20 + 11 / 3) / 2) and one["prm_tokens"] == 0.0
    prm1 = find(overall, "prm_best", 1)
    assert prm1["policy_tokens"] == pytest.approx((20 + 11 / 3) / 2)
    assert prm1["prm_tokens"] == pytest.approx((110 + 110 / 3) / 2)
    prm2 = find(overall, "prm_best", 2)
    assert prm2["accuracy"] == pytest.approx((2 / 3 + 1) / 2)  # p0: {1, 2} picks the wrong 0.3; p1 always right
    assert prm2["policy_tokens"] == pytest.approx((40 + 22 / 3) / 2)
    assert prm2["prm_tokens"] == pytest.approx((220 + 220 / 3) / 2)
    prm3 = find(overall, "prm_best", 3)
    assert (prm3["accuracy"], prm3["policy_tokens"], prm3["prm_tokens"], prm3["compute"]) == (1.0, 35.5, 220.0, 255.5)
    sc3 = find(overall, "self_consistency", 3)
    assert (sc3["accuracy"], sc3["policy_tokens"], sc3["prm_tokens"], sc3["compute"]) == (0.5, 35.5, 0.0, 35.5)
    assert all(r["prompts"] == 2 and r["training_tokens"] == 0.0 for r in overall)


def test_families_and_training_tokens():
    tables = rows(training=1000.0, self_consistency=False)
    assert sorted(tables) == ["add", "count", "overall"]
    assert {r["method"] for r in tables["overall"]} == {"greedy", "pass@1", "prm_best"}
    add = tables["add"]
    assert find(add, "greedy", 1)["policy_tokens"] == 5.0 and find(add, "greedy", 1)["accuracy"] == 1.0
    p3 = find(add, "prm_best", 3)
    assert (p3["policy_tokens"], p3["prm_tokens"], p3["training_tokens"], p3["compute"]) == (60.0, 330.0, 1000.0, 1390.0)
    assert find(tables["count"], "pass@1", 1)["compute"] == pytest.approx(11 / 3 + 1000)
    merged = merge_families([tables, rows()])
    assert list(merged) == ["overall", "add", "count"] and len(merged["overall"]) == len(tables["overall"]) + 8


def test_scores_without_token_counts_say_what_to_delete():
    old = {k: {kk: vv for kk, vv in v.items() if kk != "prm_tokens"} for k, v in SCORES.items()}
    with pytest.raises(RecordError, match=r"run/scores.jsonl: prompt p0 has no prm_tokens .*delete scores.jsonl"):
        judge_prompts(prompts(), CANDS, old, "mean", "run")
    with pytest.raises(RecordError, match="run: prompt p1 has no line in candidates.jsonl"):
        judge_prompts(prompts(), {"p0": CANDS["p0"]}, SCORES, "mean", "run")
