"""How well a Best-of-N run's critic judged the policy's own steps, against the world's exact labels.

``rlvprm eval-vpb`` measures a critic on the world's generator solutions (random slips and
misreads); a critic used for Best-of-N meets the policy's own samples instead (here: confident,
systematic mistakes). This reads a finished ``rlvprm bon`` run folder on visual-arith prompts
(``candidates.jsonl`` and ``scores.jsonl``), labels every candidate step with the exact checker
and prints step macro-F1 at a fixed threshold and AUC, overall and per ``data_source``::

    python benchmarks/bon_step_quality.py runs/bon/visual-arith runs/visual-arith/heldout.jsonl [--threshold 0.5]

Candidates whose critic split differs from the checker's (merged steps) are left out and counted.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from rlvprm.evaluation.vpb import auc, step_metrics
from rlvprm.world.evaluate import judge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="rlvprm bon output folder (candidates.jsonl, scores.jsonl)")
    parser.add_argument("prompts", help="the visual-arith prompt rows the run sampled (with form and values)")
    parser.add_argument("--threshold", type=float, default=0.5, help="a step is judged right above this score")
    args = parser.parse_args()
    rows = {json.loads(line)["id"]: json.loads(line) for line in open(args.prompts, encoding="utf-8")}
    candidates = {json.loads(line)["id"]: json.loads(line) for line in open(Path(args.run) / "candidates.jsonl")}
    pooled: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
    left_out = 0
    for line in open(Path(args.run) / "scores.jsonl", encoding="utf-8"):
        scored = json.loads(line)
        row = rows[scored["id"]]
        for cand, step_scores in zip(candidates[scored["id"]]["candidates"], scored["prm_step_scores"]):
            labels = judge(row, cand["text"]).steps_correct
            if step_scores is None or len(labels) != len(step_scores):
                left_out += 1
                continue
            for source in ("overall", row.get("data_source") or "all"):
                pooled[source][0].extend(1 if ok else -1 for ok in labels)
                pooled[source][1].extend(step_scores)
    for source, (labels, scores) in sorted(pooled.items()):
        m = step_metrics(labels, scores, args.threshold)
        area = auc([s for s, lab in zip(scores, labels) if lab == 1], [s for s, lab in zip(scores, labels) if lab == -1])
        print(f"{source:8s} steps {len(labels):5d}  macro-F1 {m['macro_f1']:.3f}  AUC {area:.3f}")
    print(f"candidates left out (critic split differs from the checker's, or unscored): {left_out}")


if __name__ == "__main__":
    main()
