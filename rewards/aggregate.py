"""Response score: one number for a whole response, aggregated from its step scores.

Methods (``AGGREGATIONS``):

- ``mean``: arithmetic mean (VisualPRM's choice for Best-of-N).
- ``min``: the weakest step; a chain is only as good as its worst step.
- ``max``: the strongest step (mostly a diagnostic).
- ``last``: the score of the final step.
- ``prod``: product of the scores, read as "every step is correct" if they were independent.
- ``softmin``: a smooth minimum, ``sum_i softmax(-s / T)_i * s_i``. As ``T -> 0`` it tends to
  ``min``, as ``T -> inf`` to ``mean``. Written ``"softmin:0.5"`` to set ``T = 0.5`` by name.

ORM mode feeds the model the whole response as one step, so there is one step score and every
method returns that score unchanged.

Left out: weighting steps by length or position, and aggregations over batched tensors; callers
that need those work on the step scores directly.

Run the tests with ``python -m pytest -q tests/rewards/test_aggregate.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

AGGREGATIONS = ("mean", "min", "max", "last", "prod", "softmin")


def parse_aggregation(name: str) -> tuple[str, float | None]:
    """Split an aggregation name into ``(method, temperature)``.

    ``temperature`` is ``None`` unless the name carries one after a colon, which only ``softmin``
    accepts.

    >>> parse_aggregation("softmin:0.5")
    ('softmin', 0.5)
    >>> parse_aggregation("mean")
    ('mean', None)
    """
    method, sep, temp_text = name.strip().partition(":")
    method = method.strip().lower()
    if method not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {name!r}; expected one of {', '.join(AGGREGATIONS)}")
    if not sep:
        return method, None
    if method != "softmin":
        raise ValueError(f"aggregation {name!r}: only softmin takes a temperature ('softmin:T')")
    try:
        temperature = float(temp_text)
    except ValueError:
        raise ValueError(
            f"aggregation {name!r}: temperature {temp_text!r} is not a number"
        ) from None
    _check_temperature(temperature)
    return method, temperature


def aggregate(
    step_scores: Sequence[float], method: str = "mean", temperature: float = 1.0
) -> float:
    """Aggregate the step scores of one response into its response score.

    ``method`` is one of ``AGGREGATIONS``, or ``"softmin:T"``, whose ``T`` overrides
    ``temperature``. ``temperature`` is used by ``softmin`` only.

    >>> aggregate([0.9, 0.5, 0.7], "min")
    0.5
    >>> round(aggregate([0.9, 0.5, 0.7], "prod"), 3)
    0.315
    >>> aggregate([0.8], "softmin:0.1")  # ORM mode: one step, every method returns it
    0.8
    """
    name, named_temperature = parse_aggregation(method)
    if named_temperature is not None:
        temperature = named_temperature
    scores = [float(s) for s in step_scores]
    if not scores:
        raise ValueError("cannot aggregate an empty list of step scores")
    if any(math.isnan(s) for s in scores):
        raise ValueError(f"step scores contain NaN: {scores}")

    if name == "mean":
        return math.fsum(scores) / len(scores)
    if name == "min":
        return min(scores)
    if name == "max":
        return max(scores)
    if name == "last":
        return scores[-1]
    if name == "prod":
        return math.prod(scores)
    # softmin: the weights are a softmax of -s / T; shifting by the minimum keeps exp() <= 1.
    _check_temperature(temperature)
    lowest = min(scores)
    weights = [math.exp(-(s - lowest) / temperature) for s in scores]
    return math.fsum(w * s for w, s in zip(weights, scores)) / math.fsum(weights)


def _check_temperature(temperature: float) -> None:
    if not temperature > 0 or math.isinf(temperature):
        raise ValueError(f"softmin temperature must be a positive finite number, got {temperature}")
