"""Accuracy and counted compute per prompt of every method, from one policy's ``rlvprm bon`` files.

Compute is counted in tokens through a model, never estimated from wall time:

- policy tokens: the tokens each candidate (or the greedy answer) generated, the stop token included
  (``num_tokens`` in ``candidates.jsonl``);
- PRM tokens: the tokens the PRM read scoring each candidate (``prm_tokens`` in ``scores.jsonl``:
  its whole conversation, prompt and image tokens included; 0 for a candidate without steps);
- training tokens: an RL policy's counted training compute spread over the served prompts
  (``training.py``), the same for every prompt and method of that policy.

A method at N costs, per prompt, the mean over the subsets ``select.best_of_n`` draws at N (the same
subsets, so the accuracy and the compute of a row belong together) of the summed tokens of the
subset's candidates; then the mean over prompts, per family (``data_source``) and overall.

Worked example: a prompt with candidates of 10, 20 and 30 policy tokens (PRM: 100, 110, 120) has,
at N = 2, the subsets {0, 1}, {0, 2}, {1, 2}: policy tokens (30 + 40 + 50) / 3 = 40, PRM tokens
(210 + 220 + 230) / 3 = 220. Self-consistency at N = 2 costs 40, PRM Best-of-2 costs 260.

Methods: ``greedy`` (one greedy answer), ``pass@1`` (one sample), ``prm_best`` (Best-of-N with the
PRM) for every policy, and ``self_consistency`` (majority vote) for the base policy. Left out: the
policy's prompt tokens (prefill), which every method pays alike per candidate.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

from rlvprm.bon.config import BonPrompt
from rlvprm.bon.results import judge, response_score
from rlvprm.bon.select import NO_SOURCE, Candidate, Prompt, best_of_n, prompt_subsets
from rlvprm.data.jsonl import RecordError

OVERALL = "overall"
METHODS = {"greedy": "greedy", "pass@1": "sampled pass@1", "self_consistency": "self-consistency",
           "prm_best": "PRM Best-of-N"}


@dataclass
class JudgedPrompt:
    """One prompt of one policy: its judged candidates and what each cost."""

    prompt: Prompt  # candidates with answer, correct and the PRM response score
    greedy_correct: bool
    greedy_tokens: int
    policy_tokens: list[int]  # per candidate
    prm_tokens: list[int]  # per candidate


def judge_prompts(prompts: Sequence[BonPrompt], cands: dict[str, dict], scores: dict[str, dict], aggregation: str,
                  where: str) -> list[JudgedPrompt]:
    """Every prompt of ``prompts`` judged from its lines in ``candidates.jsonl`` and ``scores.jsonl``.

    ``where`` names the run folder in errors. A prompt missing from either file, or scores that do
    not match its candidates, is an error: ``rlvprm bon`` resolved those already.
    """
    out = []
    for p in prompts:
        cline, sline = cands.get(p.id), scores.get(p.id)
        if cline is None or sline is None:
            raise RecordError(f"{where}: prompt {p.id} has no line in "
                              f"{'candidates.jsonl' if cline is None else 'scores.jsonl'}")
        if cline.get("greedy") is None:
            raise RecordError(f"{where}: prompt {p.id} has no greedy answer (sampled with greedy off)")
        k = len(cline["candidates"])
        if "prm_tokens" not in sline:
            raise RecordError(f"{where}/scores.jsonl: prompt {p.id} has no prm_tokens (scored before PRM tokens were "
                              "counted): delete scores.jsonl there to score again")
        if len(sline["prm_step_scores"]) != k or len(sline["prm_tokens"]) != k:
            raise RecordError(f"{where}: prompt {p.id} has {k} candidates but other counts of scores")
        items = []
        for c, steps in zip(cline["candidates"], sline["prm_step_scores"]):
            answer, correct = judge(c["text"], p.record)
            items.append(Candidate(answer, correct, {aggregation: response_score(steps, aggregation)}))
        out.append(JudgedPrompt(
            prompt=Prompt(p.id, items, p.record.data_source),
            greedy_correct=judge(cline["greedy"]["text"], p.record)[1],
            greedy_tokens=int(cline["greedy"]["num_tokens"]),
            policy_tokens=[int(c["num_tokens"]) for c in cline["candidates"]],
            prm_tokens=[int(t or 0) for t in sline["prm_tokens"]],  # null: unscorable, never read by the PRM
        ))
    return out


def subset_cost(tokens: Sequence[int], index: int, n: int, num_subsets: int, seed: int) -> float:
    """Mean summed ``tokens`` over the subsets of N = ``n`` that ``best_of_n`` draws for prompt ``index``.

    >>> subset_cost([10, 20, 30], 0, 2, 32, 0)
    40.0
    """
    chosen = prompt_subsets(index, len(tokens), n, num_subsets, seed)
    return math.fsum(sum(tokens[j] for j in sub) for sub in chosen) / len(chosen)


def method_rows(policy: str, judged: Sequence[JudgedPrompt], ns: Sequence[int], aggregation: str, num_subsets: int,
                seed: int, training_per_prompt: float = 0.0, self_consistency: bool = False) -> dict[str, list[dict]]:
    """Rows of every method of one policy, per family and ``overall``: accuracy and compute per prompt.

    A row: ``{"policy", "method", "n", "accuracy", "prompts", "policy_tokens", "prm_tokens",
    "training_tokens", "compute"}`` (tokens per prompt; ``compute`` is their sum).
    """
    prm = f"prm_best:{aggregation}"
    strategies = ["pass@1", prm] + ["self_consistency"] * self_consistency
    acc = best_of_n([j.prompt for j in judged], strategies, ns, num_subsets, seed)
    # cost[family][(strategy, n)] = [policy tokens, PRM tokens] summed over prompts
    cost: dict[str, dict[tuple[str, int], list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0]))
    greedy: dict[str, list[tuple[bool, int]]] = defaultdict(list)
    for i, j in enumerate(judged):
        families = (OVERALL, j.prompt.data_source or NO_SOURCE)
        for fam in families:
            greedy[fam].append((j.greedy_correct, j.greedy_tokens))
        for n in ns:
            if n > len(j.policy_tokens):
                continue  # best_of_n skips it too
            generated = subset_cost(j.policy_tokens, i, n, num_subsets, seed)
            scored = subset_cost(j.prm_tokens, i, n, num_subsets, seed)
            for fam in families:
                for s in strategies:
                    c = cost[fam][(s, n)]
                    c[0] += generated
                    c[1] += scored if s == prm else 0.0

    def row(method: str, n: int, accuracy: float | None, prompts: int, policy_tokens: float, prm_tokens: float) -> dict:
        return {"policy": policy, "method": method, "n": n, "accuracy": accuracy, "prompts": prompts,
                "policy_tokens": policy_tokens, "prm_tokens": prm_tokens, "training_tokens": training_per_prompt,
                "compute": policy_tokens + prm_tokens + training_per_prompt}

    out: dict[str, list[dict]] = {}
    for fam, table in [(OVERALL, acc["overall"]), *acc["sources"].items()]:
        g = greedy[fam]
        rows = [row("greedy", 1, sum(ok for ok, _ in g) / len(g), len(g), sum(t for _, t in g) / len(g), 0.0)]
        for s in strategies:
            for jn, n in enumerate(ns):
                count = table["num_prompts"][jn]
                if (s == "pass@1" and n != 1) or not count:  # one sample is pass@1; no prompt, no row
                    continue
                policy_tokens, prm_tokens = (x / count for x in cost[fam][(s, n)])
                rows.append(row(s.split(":")[0], n, table["accuracy"][s][jn], count, policy_tokens, prm_tokens))
        out[fam] = rows
    return out


def merge_families(per_policy: Sequence[dict[str, list[dict]]]) -> dict[str, list[dict]]:
    """One table per family holding every policy's rows (``overall`` first, then families by name)."""
    fams = sorted({f for t in per_policy for f in t if f != OVERALL})
    return {f: [r for t in per_policy for r in t.get(f, [])] for f in [OVERALL, *fams]}


def method_label(row: dict[str, Any], aggregation: str) -> str:
    """A row's method in the user's words, e.g. ``PRM Best-of-N (mean)``."""
    label = METHODS[row["method"]]
    return f"{label} ({aggregation})" if row["method"] == "prm_best" else label
