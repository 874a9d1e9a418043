"""Best-of-N at test time: selection strategies over scored candidates and accuracy against N.

``run_bon(BonConfig(...))`` is the whole pipeline (sample, score, select; ``rlvprm bon``).
"""

from rlvprm.bon.select import (
    STRATEGIES,
    Candidate,
    Prompt,
    answer_key,
    best_of_n,
    default_strategies,
    likelihood_best,
    oracle,
    orm_best,
    pass_at_1,
    plot_scaling,
    prm_best,
    prm_weighted_vote,
    self_consistency,
    strategy_accuracy,
)
from rlvprm.bon.config import BonConfig
from rlvprm.bon.run import run_bon

__all__ = [
    "BonConfig",
    "STRATEGIES",
    "Candidate",
    "Prompt",
    "answer_key",
    "best_of_n",
    "default_strategies",
    "likelihood_best",
    "oracle",
    "orm_best",
    "pass_at_1",
    "plot_scaling",
    "prm_best",
    "prm_weighted_vote",
    "run_bon",
    "self_consistency",
    "strategy_accuracy",
]
