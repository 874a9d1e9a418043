"""How good are Monte Carlo labels? Measured against the visual-arith world's exact step labels.

A step of a Raw record is exactly wrong when ``rlvprm.world.check_solution`` says the solution up
to and including it is not correct (a step after a wrong one is wrong, as in the exact labels).
Two MC rules call a step wrong (``-``):

- ``score == 0``: no continuation reached the right answer (VisualPRM's rule, threshold 0.0);
- ``score < 0.5``: fewer than half did.

For each rule :func:`mc_label_quality` reports precision and recall of ``-`` steps over all steps,
and over the ``continued`` steps only (every step but the last, whose score is the rollout's own
outcome rather than a Monte Carlo estimate).

Run it on a labelled file: ``python -m rlvprm.labeling.quality LABELS.jsonl WORLD/prompts.jsonl``;
``--exact-out FILE`` also writes the same rollouts with their exact labels in the VisualProcessBench
format (:func:`exact_records`), which ``rlvprm train-prm`` trains on: a PRM on exact labels of the
policy's own rollouts, the upper bound of what MC labels of those rollouts can teach.
"""

from __future__ import annotations

import json
import sys
from typing import Callable, Iterable

from rewards.steps import join_steps
from rlvprm.labeling.formats import split_rollout_id
from rlvprm.world import check_solution, problem_from_row

RULES: dict[str, Callable[[float], bool]] = {
    "score == 0": lambda score: score <= 0.0,
    "score < 0.5": lambda score: score < 0.5,
}


def exact_step_labels(problem, steps: list[str]) -> list[bool]:
    """Per step: is the solution correct up to and including it? (Merged steps are re-split.)"""
    return [check_solution(problem, join_steps(steps[: i + 1]))[-1] for i in range(len(steps))]


def mc_label_quality(raw_records: Iterable[dict], world_rows: Iterable[dict]) -> dict:
    """Precision and recall of ``-`` steps under each rule in :data:`RULES`, against exact labels.

    ``raw_records``: ``rlvprm label`` output (ids ``{prompt id}-r{k}``); ``world_rows``: the world's
    prompt rows those prompts came from (they carry ``form`` and ``values``).
    """
    rows = {str(r["id"]): r for r in world_rows}
    tallies = {scope: {name: [0, 0] for name in RULES} for scope in ("all", "continued")}  # [tp, predicted]
    wrong = {"all": 0, "continued": 0}
    steps_seen = {"all": 0, "continued": 0}
    rollouts = 0
    for rec in raw_records:
        prompt_id, _ = split_rollout_id(str(rec["id"]))
        if prompt_id not in rows:
            raise KeyError(f"no world row with id {prompt_id!r} (for {rec['id']!r})")
        entries = rec["steps_with_score"]
        exact = exact_step_labels(problem_from_row(rows[prompt_id]), [e["step"] for e in entries])
        rollouts += 1
        for i, (entry, correct) in enumerate(zip(entries, exact)):
            scopes = ("all", "continued") if i < len(entries) - 1 else ("all",)
            for scope in scopes:
                steps_seen[scope] += 1
                wrong[scope] += not correct
                for name, rule in RULES.items():
                    if rule(entry["score"]):
                        tallies[scope][name][1] += 1
                        tallies[scope][name][0] += not correct
    report = {"rollouts": rollouts}
    for scope in ("all", "continued"):
        report[scope] = {"steps": steps_seen[scope], "exact_wrong": wrong[scope], "rules": {}}
        for name, (tp, predicted) in tallies[scope].items():
            precision = tp / predicted if predicted else None
            recall = tp / wrong[scope] if wrong[scope] else None
            report[scope]["rules"][name] = {"predicted_wrong": predicted, "precision": precision, "recall": recall}
    return report


def exact_records(raw_records: Iterable[dict], world_rows: Iterable[dict]) -> list[dict]:
    """The Raw records' rollouts in the VisualProcessBench format with exact labels (1 right, -1 wrong).

    Each record keeps ``id``, ``image`` (as a list), ``question``, ``answer`` and ``data_source``, and
    gains the world row's ``form`` and ``values``, ``policy_model`` ``"mc-rollouts"``, and
    ``error_type`` of its first wrong step (``none``, ``perception`` for the reading step,
    ``arithmetic`` after it).
    """
    rows = {str(r["id"]): r for r in world_rows}
    out = []
    for rec in raw_records:
        prompt_id, _ = split_rollout_id(str(rec["id"]))
        if prompt_id not in rows:
            raise KeyError(f"no world row with id {prompt_id!r} (for {rec['id']!r})")
        steps = [e["step"] for e in rec["steps_with_score"]]
        exact = exact_step_labels(problem_from_row(rows[prompt_id]), steps)
        first = exact.index(False) if False in exact else None
        image = rec["image"] if isinstance(rec["image"], list) else [rec["image"]]
        out.append({
            "id": rec["id"], "image": image, "question": rec["question"], "answer": rec["answer"],
            "response": {"steps": steps, "process_correctness": [1 if ok else -1 for ok in exact]},
            "policy_model": "mc-rollouts", "data_source": rec.get("data_source"),
            "error_type": "none" if first is None else ("perception" if first == 0 else "arithmetic"),
            "form": rows[prompt_id]["form"], "values": rows[prompt_id]["values"],
        })
    return out


def _read(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def main(argv: list[str] | None = None) -> dict:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m rlvprm.labeling.quality",
                                     description="Precision and recall of Monte Carlo '-' labels against the "
                                                 "visual-arith world's exact step labels.")
    parser.add_argument("labels", help="Raw records written by `rlvprm label`")
    parser.add_argument("prompts", help="the world's prompts.jsonl those records were labelled from")
    parser.add_argument("--exact-out", default=None,
                        help="also write the rollouts with exact labels (VisualProcessBench format) to this file")
    args = parser.parse_args(argv)
    raw, rows = _read(args.labels), _read(args.prompts)
    report = mc_label_quality(raw, rows)
    print(json.dumps(report, indent=2))
    if args.exact_out:
        if args.exact_out in (args.labels, args.prompts):
            parser.error("--exact-out must not be one of the input files")
        with open(args.exact_out, "w", encoding="utf-8") as fh:
            for rec in exact_records(raw, rows):
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
