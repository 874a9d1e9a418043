"""The policy's own probability of each step: the training-free likelihood process scorer.

The implementation lives in ``rewards.likelihood`` (one implementation, usable without rlvprm, and
shared with the implicit PRM and its training); this module keeps the names rlvprm code has always
imported from here. The scorer object with the ``ProcessRewardModel`` interface is
``rewards.likelihood.PolicyLikelihoodScorer``.
"""

from __future__ import annotations

from rewards.likelihood import (  # noqa: F401 (re-exported)
    SCORE_KINDS,
    EncodedSolutions,
    PolicyLikelihoodScorer,
    StepLogprobs,
    encode_solutions,
    likelihood_step_scores,
    solution_logprobs,
    step_logprobs,
    step_logprobs_batch,
    step_token_map,
    token_logprobs,
)
