"""Best-of-N at test time: selection strategies over scored candidates and accuracy against N."""

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

__all__ = [
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
    "self_consistency",
    "strategy_accuracy",
]
