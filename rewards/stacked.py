"""A stacked process scorer: a learned logistic combination of other scorers' step scores.

Each component is a scorer with the ``score_groups`` interface (a VisualPRM-style
``ProcessRewardModel``, the policy's own likelihood, an implicit PRM). For step ``k`` with
component scores ``s_1 .. s_m`` the stacked score is::

    sigmoid(bias + w_1 * logit(s_1) + ... + w_m * logit(s_m))      (logit clipped at +-LOGIT_CLIP)

The weights are fitted on labelled steps (``rlvprm train-prm --kind stacked``), so the result is
calibrated (its 0.5 threshold means something, which a likelihood does not have), and the fitted
weights say how much each component adds beside the others (a weight near 0: nothing). It is how a
``+``/``-`` PRM gets a likelihood feature without changing its training.

All components must split a solution into the same steps (they do: ``rewards.steps.split_steps``
with the same ``max_steps``, or the given steps); a mismatch is an error, never a silent shift.

Worked example (two components, weights 1 and 2, bias -1): step scores 0.5 and 0.8 give
``sigmoid(-1 + 1 * 0 + 2 * logit(0.8)) = sigmoid(-1 + 2 * 1.386) = 0.855``.

>>> round(combine([[0.5], [0.8]], [1.0, 2.0], -1.0)[0], 3)
0.855

Left out: an ORM mode (fit a stack on response labels instead), interactions between components
(the combination is linear in the logits), and per-step-position weights.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

from PIL import Image

from rewards.aggregate import aggregate, parse_aggregation
from rewards.likelihood import sigmoid
from rewards.prm import Group, ScoredSolution

STACKED_CONFIG = "stacked_scorer.json"  # the folder of a stacked scorer holds only this file; rewards.scorers loads it
LOGIT_CLIP = 12.0  # |logit| bound: a likelihood of 1e-9 must not dominate the sum


def logit(p: float) -> float:
    """``log(p / (1 - p))``, clipped to ``[-LOGIT_CLIP, LOGIT_CLIP]``."""
    eps = 1.0 / (1.0 + math.exp(LOGIT_CLIP))
    p = min(max(p, eps), 1.0 - eps)
    return math.log(p / (1.0 - p))


def combine(component_scores: Sequence[Sequence[float]], weights: Sequence[float], bias: float) -> list[float]:
    """Stacked step scores from per-component step scores (``component_scores[j][k]``: component j, step k)."""
    if len(component_scores) != len(weights):
        raise ValueError(f"{len(component_scores)} components but {len(weights)} weights")
    out = []
    for k in range(len(component_scores[0])):
        z = bias + math.fsum(w * logit(s[k]) for w, s in zip(weights, component_scores))
        out.append(sigmoid(z))
    return out


def component_scores(components: Sequence, groups: Iterable[Group]) -> list[list[list[list[float]]]]:
    """``[group][solution][component]`` step scores; raises if the components disagree on the steps."""
    return [[[r.step_scores for r in results] for results in rows] for rows in component_results(components, groups)]


def component_results(components: Sequence, groups: Iterable[Group]) -> list[list[list[ScoredSolution]]]:
    """``[group][solution][component]`` scored solutions; raises if the components disagree on the steps."""
    groups = list(groups)
    per_comp = [c.score_groups(groups) for c in components]
    out = []
    for g in range(len(groups)):
        rows = []
        for s in range(len(groups[g].solutions)):
            results = [pc[g][s] for pc in per_comp]
            texts = [[st.text for st in r.steps] for r in results]
            if any(t != texts[0] for t in texts[1:]):
                raise ValueError(f"group {g}, solution {s}: the components split it into different steps")
            rows.append(results)
        out.append(rows)
    return out


class StackedScorer:
    """Step scores of several scorers combined by fitted logistic weights (module docstring)."""

    def __init__(self, components: Sequence, weights: Sequence[float], bias: float, aggregation: str = "min",
                 names: Sequence[str] | None = None):
        parse_aggregation(aggregation)
        if not components or len(components) != len(weights):
            raise ValueError(f"need one weight per component, got {len(components)} components and {len(weights)} weights")
        self.components = list(components)
        self.weights = [float(w) for w in weights]
        self.bias = float(bias)
        self.aggregation = aggregation
        self.names = list(names) if names is not None else [f"component{j}" for j in range(len(components))]

    @property
    def batch_size(self) -> int:
        return self.components[0].batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        for c in self.components:
            c.batch_size = value

    def split(self, solution):
        return self.components[0].split(solution)

    def prepare(self, group: Group):
        return self.components[0].prepare(group)

    def score_group(self, question: str, images: Sequence[Image.Image], solutions) -> list[ScoredSolution]:
        return self.score_groups([Group(question, images, solutions)])[0]

    def score_groups(self, groups: Iterable[Group]) -> list[list[ScoredSolution]]:
        groups = list(groups)
        comps = component_results(self.components, groups)
        out = []
        for group, rows in zip(groups, comps):
            scored = []
            for solution, results in zip(group.solutions, rows):
                steps = self.split(solution)
                stacked = combine([r.step_scores for r in results], self.weights, self.bias)
                scored.append(ScoredSolution(steps, stacked, aggregate(stacked, self.aggregation),
                                             sum(r.num_tokens for r in results)))
            out.append(scored)
        return out

