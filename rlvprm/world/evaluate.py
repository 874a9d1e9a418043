"""Judge a policy in the visual-arith world exactly: accuracy, pass@k, coherence, error mix.

Every sample is checked step by step with the world's exact checker, so the report also says what
kind of error a wrong sample made first: ``perception`` (the reading step is wrong), ``arithmetic``
(a later step is wrong) or ``format`` (no boxed answer). Samples are kept (``samples.jsonl``) so
later stages (Best-of-N, labelling) can reuse them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Sequence

from PIL import Image

from rlvprm.world.check import answer_correct, check_solution, final_answer
from rlvprm.world.coherence import is_coherent
from rlvprm.world.write import problem_from_row


@dataclass
class JudgedSample:
    text: str
    correct: bool
    steps_correct: list[bool]
    coherent: bool
    first_error: str  # "none" | "perception" | "arithmetic" | "format"


def judge(row: dict, text: str) -> JudgedSample:
    problem = problem_from_row(row)
    steps = check_solution(problem, text)
    correct = answer_correct(problem, text)
    if final_answer(text) is None:
        kind = "format"
    elif steps and all(steps):
        kind = "none"
    elif not steps or not steps[0]:
        kind = "perception"
    else:
        kind = "arithmetic"
    return JudgedSample(text, correct, steps, is_coherent(text), kind)


def evaluate_policy(
    sampler,
    rows: Sequence[dict],
    images: Sequence[list[Image.Image]],
    k: int = 8,
    max_new_tokens: int = 96,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 16,
) -> tuple[dict, list[dict]]:
    """Greedy accuracy, pass@k (and mean sample accuracy), coherence and error mix over ``rows``."""
    requests = [(r["question"], imgs, None) for r, imgs in zip(rows, images)]
    greedy = sampler.sample(requests, 1, max_new_tokens, temperature=0.0, seed=seed, batch_size=batch_size)
    sampled = sampler.sample(requests, k, max_new_tokens, temperature=temperature, seed=seed + 1, batch_size=batch_size)
    return judge_texts(rows, [g[0].text for g in greedy], [[s.text for s in ss] for ss in sampled],
                       [[s.finish_reason for s in ss] for ss in sampled])


def judge_texts(
    rows: Sequence[dict], greedy: Sequence[str], samples: Sequence[Sequence[str]],
    finish: Sequence[Sequence[str]] | None = None,
) -> tuple[dict, list[dict]]:
    """Judge already sampled texts: a greedy answer and ``k`` samples per row."""
    records = []
    by_source: dict[str, list] = defaultdict(list)
    for i, (row, g, ss) in enumerate(zip(rows, greedy, samples)):
        jg = judge(row, g)
        js = [judge(row, s) for s in ss]
        rec = {
            "id": row["id"], "data_source": row.get("data_source"), "greedy": g, "greedy_correct": jg.correct,
            "samples": list(ss), "correct": [j.correct for j in js],
            "steps_correct": [j.steps_correct for j in js], "coherent": [j.coherent for j in js],
            "first_error": [j.first_error for j in js], "finish": list(finish[i]) if finish else None,
        }
        records.append(rec)
        by_source[row.get("data_source") or "all"].append(rec)
    metrics = summarise(records)
    metrics["per_source"] = {src: summarise(recs) for src, recs in sorted(by_source.items())}
    return metrics, records


def summarise(records: Sequence[dict]) -> dict:
    n = len(records)
    samples = [(c, coh, e, all(s) and len(s) > 0) for r in records
               for c, coh, e, s in zip(r["correct"], r["coherent"], r["first_error"], r["steps_correct"])]
    mix = Counter(e for _, _, e, _ in samples)
    wrong = sum(v for key, v in mix.items() if key != "none")
    m = len(samples)
    return {
        "prompts": n,
        "greedy_accuracy": sum(r["greedy_correct"] for r in records) / n if n else 0.0,
        "sample_accuracy": sum(c for c, *_ in samples) / m if m else 0.0,
        "pass_at_k": sum(any(r["correct"]) for r in records) / n if n else 0.0,
        "k": len(records[0]["correct"]) if records else 0,
        "mixed_prompts": sum(any(r["correct"]) and not all(r["correct"]) for r in records) / n if n else 0.0,
        "coherence": sum(coh for _, coh, _, _ in samples) / m if m else 0.0,
        "fully_correct_chains": sum(full for *_, full in samples) / m if m else 0.0,
        "error_mix": {key: mix.get(key, 0) / wrong if wrong else 0.0 for key in ("perception", "arithmetic", "format")},
    }
