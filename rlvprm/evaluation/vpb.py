"""VisualProcessBench metrics: how well a judge's step scores separate correct from wrong steps.

Pure functions on plain numbers (numpy only). Each record brings the gold labels of its steps
(``process_correctness``: 1 correct, -1 wrong, 0 neutral) and one score per step from any judge.

Conventions (DESIGN.md section 4):

- A step is predicted correct iff ``score > threshold``; a score equal to the threshold is wrong.
  The threshold is fixed before the labels are looked at; :func:`sweep_threshold` reports a tuned
  one beside it, never in its place.
- Neutral steps (label 0) are counted (``n_neutral``) and excluded from every metric.
- F1 of a class is ``2 TP / (2 TP + FP + FN)``: the "correct" class takes label 1 as positive, the
  "wrong" class takes label -1 as positive. A class that neither occurs nor is predicted has no F1
  (``None``) and macro-F1 is then the F1 of the other class alone; a class that does not occur but
  is predicted has F1 0. Precision is ``None`` when a class is never predicted, recall ``None``
  when it never occurs, macro-F1 ``None`` when there is no labelled step.
- Overall numbers pool every step of every source; the step-weighted macro-F1 is the mean of the
  sources' macro-F1 weighted by their labelled (non-neutral) steps, sources without one left out.
- AUC is P(score of a correct step > score of a wrong step), a tie counting one half.
  Position-matched AUC (DESIGN.md section 7) compares the score at each record's first wrong step
  with the scores of correct steps at the same step index in records that have no wrong step, so a
  judge cannot win on step position alone.

Worked example (threshold 0.5): labels ``[1, 1, -1, 0]``, scores ``[0.9, 0.5, 0.2, 0.1]``. The
neutral step drops out; step 2 scores exactly 0.5, so it is predicted wrong. Correct class: TP 1,
FN 1, FP 0, F1 = 2/3. Wrong class: TP 1, FP 1, F1 = 2/3. Macro-F1 = 2/3.

>>> round(step_metrics([1, 1, -1, 0], [0.9, 0.5, 0.2, 0.1], 0.5)["macro_f1"], 4)
0.6667

Left out: confidence intervals, and breakdowns by ``policy_model``.
Run the tests with ``python -m pytest -q tests/rlvprm/evaluation/test_vpb.py``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

SWEEP_NOTE = "threshold tuned on the test set: an optimistic bound, not a result"
NO_SOURCE = "(none)"


@dataclass
class ScoredSteps:
    """One VisualProcessBench record with its gold step labels and a judge's step scores."""

    id: str
    labels: list[int]  # 1 correct, 0 neutral, -1 wrong
    scores: list[float]
    data_source: str | None = None

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.scores):
            raise ValueError(f"record {self.id}: {len(self.scores)} scores for {len(self.labels)} labelled steps")
        if any(x not in (1, 0, -1) for x in self.labels):
            raise ValueError(f"record {self.id}: labels must be 1, 0 or -1")
        if not all(math.isfinite(float(s)) for s in self.scores):
            raise ValueError(f"record {self.id}: step scores must be finite numbers, got {self.scores}")


# --- F1 from counts ---------------------------------------------------------------------------------


def _counts(labels: Sequence[int], scores: Sequence[float], thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """Confusion counts of both classes at each threshold (arrays shaped like ``thresholds``).

    Sorting each class's scores once makes a threshold cost two binary searches, which is what lets
    :func:`sweep_threshold` try every candidate on the full benchmark in milliseconds.
    """
    lab = np.asarray(labels, dtype=int)
    sc = np.asarray(scores, dtype=float)
    good = np.sort(sc[lab == 1])
    bad = np.sort(sc[lab == -1])
    good_judged_wrong = np.searchsorted(good, thresholds, side="right")  # score <= t
    bad_judged_wrong = np.searchsorted(bad, thresholds, side="right")
    return {
        "tp_correct": len(good) - good_judged_wrong,
        "fn_correct": good_judged_wrong,
        "fp_correct": len(bad) - bad_judged_wrong,
        "tp_wrong": bad_judged_wrong,
        "fn_wrong": len(bad) - bad_judged_wrong,
        "fp_wrong": good_judged_wrong,
    }


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """``2 TP / (2 TP + FP + FN)``; NaN where the class neither occurs nor is predicted."""
    denom = 2 * tp + fp + fn
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), np.nan)


def _macro(f1_correct: np.ndarray, f1_wrong: np.ndarray) -> np.ndarray:
    both = np.stack([f1_correct, f1_wrong])
    n = np.sum(~np.isnan(both), axis=0)
    total = np.nansum(both, axis=0)
    with np.errstate(invalid="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def _ratio(num: int, den: int) -> float | None:
    return num / den if den > 0 else None


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def step_metrics(labels: Sequence[int], scores: Sequence[float], threshold: float) -> dict[str, Any]:
    """Counts, precision, recall and F1 of both classes, and macro-F1, at one threshold."""
    lab = np.asarray(labels, dtype=int)
    c = {k: int(v) for k, v in _counts(labels, scores, np.asarray(threshold, dtype=float)).items()}
    f1_correct = _f1(np.float64(c["tp_correct"]), c["fp_correct"], c["fn_correct"])
    f1_wrong = _f1(np.float64(c["tp_wrong"]), c["fp_wrong"], c["fn_wrong"])
    return {
        "n_steps": int(lab.size),
        "n_correct": int(np.sum(lab == 1)),
        "n_wrong": int(np.sum(lab == -1)),
        "n_neutral": int(np.sum(lab == 0)),
        "precision_correct": _ratio(c["tp_correct"], c["tp_correct"] + c["fp_correct"]),
        "recall_correct": _ratio(c["tp_correct"], c["tp_correct"] + c["fn_correct"]),
        "f1_correct": _none_if_nan(float(f1_correct)),
        "precision_wrong": _ratio(c["tp_wrong"], c["tp_wrong"] + c["fp_wrong"]),
        "recall_wrong": _ratio(c["tp_wrong"], c["tp_wrong"] + c["fn_wrong"]),
        "f1_wrong": _none_if_nan(float(f1_wrong)),
        "macro_f1": _none_if_nan(float(_macro(f1_correct, f1_wrong))),
    }


def step_weighted_macro_f1(per_source: dict[str, dict[str, Any]]) -> float | None:
    """Mean of the sources' macro-F1, weighted by their labelled (correct + wrong) steps."""
    num = den = 0.0
    for m in per_source.values():
        weight = m["n_correct"] + m["n_wrong"]
        if m["macro_f1"] is None or weight == 0:
            continue
        num += weight * m["macro_f1"]
        den += weight
    return num / den if den > 0 else None


# --- threshold sweep --------------------------------------------------------------------------------


def sweep_candidates(scores: Sequence[float]) -> np.ndarray:
    """Every threshold that gives a distinct prediction, plus the midpoints between them.

    The unique scores (a step scoring exactly ``t`` is judged wrong at ``t``), the midpoints of
    consecutive unique scores, and the float just below the lowest score (every step judged
    correct). Sorted ascending.
    """
    uniq = np.unique(np.asarray(scores, dtype=float))
    if uniq.size == 0:
        return uniq
    mids = (uniq[:-1] + uniq[1:]) / 2
    below = np.nextafter(uniq[0], -np.inf)
    return np.unique(np.concatenate([[below], uniq, mids]))


def sweep_threshold(labels: Sequence[int], scores: Sequence[float]) -> dict[str, Any] | None:
    """The threshold with the best pooled macro-F1 on these very labels, and that macro-F1.

    Ties go to the lowest threshold. Tuned on the test set: report it beside the fixed-threshold
    numbers, never instead of them. ``None`` when there is no labelled step.

    >>> sweep_threshold([1, 1, -1, -1], [0.9, 0.8, 0.7, 0.1])["threshold"]
    0.7
    """
    lab = np.asarray(labels, dtype=int)
    sc = np.asarray(scores, dtype=float)
    mask = lab != 0
    if not mask.any():
        return None
    cands = sweep_candidates(sc[mask])
    c = _counts(lab[mask], sc[mask], cands)
    macro = _macro(
        _f1(c["tp_correct"].astype(float), c["fp_correct"], c["fn_correct"]),
        _f1(c["tp_wrong"].astype(float), c["fp_wrong"], c["fn_wrong"]),
    )
    best = int(np.nanargmax(macro))  # first maximum = lowest threshold
    return {"threshold": float(cands[best]), "macro_f1": float(macro[best]), "candidates": int(cands.size)}


# --- AUC --------------------------------------------------------------------------------------------


def _pair_wins(higher_sorted: np.ndarray, lower: np.ndarray) -> float:
    """Sum over pairs of [h > l] + 0.5 [h == l]."""
    right = np.searchsorted(higher_sorted, lower, side="right")
    left = np.searchsorted(higher_sorted, lower, side="left")
    return float(np.sum(higher_sorted.size - right) + 0.5 * np.sum(right - left))


def auc(higher: Sequence[float], lower: Sequence[float]) -> float | None:
    """P(a score from ``higher`` exceeds one from ``lower``), ties counting 1/2; None if either is empty.

    >>> auc([0.9, 0.5], [0.5, 0.1])  # pairs: win, win, tie, win
    0.875
    """
    h = np.sort(np.asarray(higher, dtype=float))
    lo = np.asarray(lower, dtype=float)
    if h.size == 0 or lo.size == 0:
        return None
    return _pair_wins(h, lo) / (h.size * lo.size)


def step_auc(records: Sequence[ScoredSteps]) -> float | None:
    """AUC of all correct steps against all wrong steps (neutral steps left out)."""
    good = [s for r in records for lab, s in zip(r.labels, r.scores) if lab == 1]
    bad = [s for r in records for lab, s in zip(r.labels, r.scores) if lab == -1]
    return auc(good, bad)


def position_matched_auc(records: Sequence[ScoredSteps]) -> dict[str, Any]:
    """AUC of first wrong steps against correct steps at the same step index.

    A record with a wrong step contributes the score at its first wrong step (index ``k``); a record
    with no wrong step contributes the scores of its correct-labelled steps, by index. Each first
    wrong step is compared with every correct-record step at its index; all pairs weigh the same.
    A first wrong step with no counterpart at its index is counted in ``unmatched``.

    Returns ``{"auc", "pairs", "first_wrong_steps", "unmatched"}``; ``auc`` is None without pairs.

    >>> recs = [ScoredSteps("a", [1, -1], [0.9, 0.3]), ScoredSteps("b", [1, 1], [0.8, 0.6]),
    ...         ScoredSteps("c", [-1], [0.7])]
    >>> position_matched_auc(recs)["auc"]  # index 1: 0.6 vs 0.3 (win); index 0: 0.8 vs 0.7 (win)
    1.0
    """
    reference: dict[int, list[float]] = defaultdict(list)
    firsts: list[tuple[int, float]] = []
    for r in records:
        if -1 in r.labels:
            k = r.labels.index(-1)
            firsts.append((k, float(r.scores[k])))
        else:
            for k, (lab, s) in enumerate(zip(r.labels, r.scores)):
                if lab == 1:
                    reference[k].append(float(s))
    ref_sorted = {k: np.sort(np.asarray(v)) for k, v in reference.items()}
    wins = 0.0
    pairs = unmatched = 0
    for k, s in firsts:
        ref = ref_sorted.get(k)
        if ref is None:
            unmatched += 1
            continue
        wins += _pair_wins(ref, np.asarray([s]))
        pairs += ref.size
    return {"auc": wins / pairs if pairs else None, "pairs": pairs, "first_wrong_steps": len(firsts),
            "unmatched": unmatched}


def position_matched_auc_by_type(records: Sequence[ScoredSteps], error_types: Sequence[str | None]) -> dict[str, Any]:
    """Position-matched AUC of each error type's first wrong steps against the records with no wrong step.

    ``error_types[i]`` names the error of ``records[i]`` (the visual-arith world writes ``error_type``:
    ``perception``, ``arithmetic``, ``none``); records without one, or ``none``, only serve as the
    reference. Returns ``{type: auc}`` (``None`` without pairs), empty when no record names a type.

    >>> recs = [ScoredSteps("a", [1, -1], [0.9, 0.3]), ScoredSteps("b", [1, 1], [0.8, 0.6]),
    ...         ScoredSteps("c", [-1], [0.85])]
    >>> position_matched_auc_by_type(recs, ["arithmetic", "none", "perception"])
    {'arithmetic': 1.0, 'perception': 0.0}
    """
    clean = [r for r in records if -1 not in r.labels]
    out = {}
    for kind in sorted({t for t in error_types if t and t != "none"}):
        chosen = [r for r, t in zip(records, error_types) if t == kind and -1 in r.labels]
        out[kind] = position_matched_auc(chosen + clean)["auc"]
    return out


# --- the whole benchmark ----------------------------------------------------------------------------


def summarise(records: Sequence[ScoredSteps], threshold: float) -> dict[str, Any]:
    """Step metrics, record count and both AUCs for one set of records."""
    labels = [x for r in records for x in r.labels]
    scores = [float(x) for r in records for x in r.scores]
    out = {"n_records": len(records), **step_metrics(labels, scores, threshold)}
    out["auc"] = step_auc(records)
    out["position_matched_auc"] = position_matched_auc(records)
    return out


def evaluate(records: Sequence[ScoredSteps], threshold: float = 0.5, sweep: bool = False) -> dict[str, Any]:
    """VisualProcessBench metrics per ``data_source`` and overall (pooled and step-weighted).

    With ``sweep``, a ``"sweep"`` entry adds the best pooled-macro-F1 threshold found on these
    labels, with the pooled and step-weighted macro-F1 there, marked as tuned on the test set.
    """
    by_source: dict[str, list[ScoredSteps]] = defaultdict(list)
    for r in records:
        by_source[r.data_source or NO_SOURCE].append(r)
    sources = {name: summarise(by_source[name], threshold) for name in sorted(by_source)}
    out: dict[str, Any] = {
        "threshold": threshold,
        "sources": sources,
        "overall": summarise(records, threshold),
        "step_weighted_macro_f1": step_weighted_macro_f1(sources),
    }
    if sweep:
        labels = [x for r in records for x in r.labels]
        scores = [float(x) for r in records for x in r.scores]
        best = sweep_threshold(labels, scores)
        if best is not None:
            t = best["threshold"]
            at_t = {name: step_metrics([x for r in rs for x in r.labels], [x for r in rs for x in r.scores], t)
                    for name, rs in by_source.items()}
            best = {"note": SWEEP_NOTE, "threshold": t, "macro_f1": best["macro_f1"],
                    "step_weighted_macro_f1": step_weighted_macro_f1(at_t), "candidates": best["candidates"]}
        out["sweep"] = best
    return out


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def render_markdown(metrics: dict[str, Any]) -> str:
    """A markdown report of :func:`evaluate`'s result: one table, then the sweep if there is one."""
    t = metrics["threshold"]
    lines = [
        "# VisualProcessBench",
        "",
        f"A step is judged correct when its score is above {t:g} (fixed before evaluation); "
        "neutral steps are left out of every metric.",
        "",
        "| source | records | steps | correct | wrong | neutral | F1 correct | F1 wrong | macro-F1 | AUC "
        "| AUC pos.-matched |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def row(name: str, m: dict[str, Any]) -> str:
        cells = [name, m["n_records"], m["n_steps"], m["n_correct"], m["n_wrong"], m["n_neutral"],
                 _fmt(m["f1_correct"]), _fmt(m["f1_wrong"]), _fmt(m["macro_f1"]), _fmt(m["auc"]),
                 _fmt(m["position_matched_auc"]["auc"])]
        return "| " + " | ".join(map(str, cells)) + " |"

    lines += [row(name, m) for name, m in metrics["sources"].items()]
    lines.append(row("**overall, pooled steps**", metrics["overall"]))
    lines.append("| **overall, step-weighted mean of sources** | | | | | | | | "
                 f"{_fmt(metrics['step_weighted_macro_f1'])} | | |")
    if metrics.get("error_types"):
        cells = ", ".join(f"{kind} {_fmt(v)}" for kind, v in metrics["error_types"].items())
        lines += ["", f"Position-matched AUC by error type (first wrong steps of that type against error-free records): {cells}."]
    sweep = metrics.get("sweep")
    if "sweep" in metrics:
        lines += ["", "## Threshold sweep (tuned on the test set)", ""]
        if sweep is None:
            lines.append("No labelled steps: nothing to sweep.")
        else:
            lines.append(
                f"Best threshold {sweep['threshold']:.6g}: macro-F1 {_fmt(sweep['macro_f1'])} pooled, "
                f"{_fmt(sweep['step_weighted_macro_f1'])} step-weighted. Chosen with the test labels, so "
                "it is an optimistic bound; the fixed-threshold table above is the result."
            )
    return "\n".join(lines) + "\n"
