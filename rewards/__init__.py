"""rlvprm's reward module: steps, the VisualPRM conversation, PRM step scores, outcome checking.

A leaf package: it imports torch, transformers, PIL and numpy, never trl or rlvprm, so Best-of-N and
evaluation can use it alone. Exports resolve lazily, so ``import rewards.steps`` stays light (the
outcome verifier's worker process imports this package too).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Step": "rewards.steps",
    "split_steps": "rewards.steps",
    "join_steps": "rewards.steps",
    "SYSTEM_PROMPT": "rewards.conversation",
    "build_conversation": "rewards.conversation",
    "Conversation": "rewards.conversation",
    "aggregate": "rewards.aggregate",
    "AGGREGATIONS": "rewards.aggregate",
    "extract_answer": "rewards.outcome",
    "verify_answer": "rewards.outcome",
    "outcome_reward": "rewards.outcome",
    "ProcessRewardModel": "rewards.prm",
    "load_scorer": "rewards.scorers",
    "Group": "rewards.prm",
    "ScoredSolution": "rewards.prm",
    "load_vlm": "rewards.loading",
    "PolicyLikelihoodScorer": "rewards.likelihood",
    "ImplicitPRM": "rewards.likelihood",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rewards' has no attribute {name!r}")
