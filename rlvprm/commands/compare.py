"""`rlvprm compare`: a PRM at test time against the same PRM at train time, at counted compute.

    rlvprm compare --base POLICY --rl RUN1,RUN2 --prm PRM --data heldout.jsonl --served-prompts 100000 --out DIR

Measures accuracy against compute per prompt for: greedy and sampled pass@1 of every policy;
Best-of-N with the PRM and self-consistency on the base policy, N = 1, 2, 4, ..., n; Best-of-N with
the PRM on each RL-trained policy (an `rlvprm grpo` or `rlvprm ppo` output folder). Compute is
counted in tokens: policy tokens generated, PRM tokens read, and an RL policy's training tokens
(from its grpo_summary.json or ppo_summary.json; PPO's critic counted too) spread over
--served-prompts. One `rlvprm bon` run per policy under DIR/bon/
(one sampling pass each, every N by subsampling; resumable: re-run a killed command unchanged), then
DIR/compare.md and DIR/compare.json (a table per family and overall) and DIR/compute.png (one curve
per method; compute-<family>.png per family). The pipeline is ``rlvprm.compare.run_compare``.
"""

from __future__ import annotations

from pathlib import Path

from rlvprm.compare import CompareConfig, run_compare
from rlvprm.compare.compute import OVERALL, method_label

__all__ = ["CompareConfig", "main"]


def main(cfg: CompareConfig) -> dict:
    result = run_compare(cfg)
    for name, t in result["training"].items():
        print(f"compare: {name} training tokens: generated {t['tokens_generated']}, PRM scored "
              f"{t['prm_tokens_scored']}, policy trained {t['policy_tokens_trained']}, critic trained "
              f"{t['critic_tokens_trained']}; total {t['total']:,} over "
              f"{t['served_prompts']:,} served prompts = {t['per_prompt']:.1f} per prompt ({t['how']})")
    print(f"compare: {result['prompts']} prompts, accuracy (%) at compute per prompt (tokens):")
    for r in result["tables"][OVERALL]:
        print(f"  {r['policy']:>20}  {method_label(r, cfg.aggregation):<24} N={r['n']:<3} "
              f"{100 * r['accuracy']:5.1f}  {r['compute']:10.1f}")
    print(f"compare: -> {Path(cfg.out) / 'compare.md'}")
    return result
