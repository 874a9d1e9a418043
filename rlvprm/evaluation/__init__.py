"""Evaluation of PRMs as step judges: VisualProcessBench metrics (``rlvprm eval-vpb``)."""

from rlvprm.evaluation.vpb import (
    ScoredSteps,
    auc,
    evaluate,
    position_matched_auc,
    render_markdown,
    step_auc,
    step_metrics,
    step_weighted_macro_f1,
    sweep_threshold,
)

__all__ = [
    "ScoredSteps",
    "auc",
    "evaluate",
    "position_matched_auc",
    "render_markdown",
    "step_auc",
    "step_metrics",
    "step_weighted_macro_f1",
    "sweep_threshold",
]
