"""`rlvprm bon`: Best-of-N with a process reward model at test time (DESIGN.md section 6).

    rlvprm bon --policy POLICY --data prompts.jsonl --prm PRM [--orm ORM] --n 8 --out DIR
    rlvprm bon --policy POLICY --data prompts.jsonl --prm likelihood --n 8 --out DIR

Samples ``n`` candidates per prompt once (and a greedy answer), scores them with the PRM grouped
by prompt (and the ORM), then reports the accuracy of every selection strategy at N = 1, 2, 4, ...,
n, per ``data_source`` and overall: ``DIR/results.json``, ``DIR/results.md`` (a table shaped like
the VisualPRM paper's, and accuracy against N), ``DIR/scaling.png``. Every stage resumes: re-run a
killed command unchanged. The pipeline is ``rlvprm.bon.run.run_bon``; this module only names it
for the command line and prints a summary. Left out: see ``rlvprm/bon/run.py``.
"""

from __future__ import annotations

from pathlib import Path

from rlvprm.bon.results import strategy_label
from rlvprm.bon.config import BonConfig
from rlvprm.bon.run import run_bon

__all__ = ["BonConfig", "main"]


def main(cfg: BonConfig) -> dict:
    result = run_bon(cfg)
    acc = result["overall"]["accuracy"]
    n = result["ns"][-1]
    shown = [s for s in ("greedy", "pass@1", "self_consistency", f"prm_best:{cfg.aggregations[0]}", "orm_best",
                         "likelihood_best", "oracle_prm:all_steps", "oracle") if s in acc]
    parts = ", ".join(f"{strategy_label(s, cfg.prm)} {100 * acc[s][-1]:.1f}" for s in shown if acc[s][-1] is not None)
    c = result["counts"]
    print(f"bon: {c['prompts']} prompts, N={n}: {parts} (%); {c['no_answer']} of {c['candidates']} "
          f"candidates without an answer; {len(result['skipped_records'])} skipped -> {Path(cfg.out) / 'results.md'}")
    return result
