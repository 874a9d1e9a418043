"""VisualProcessBench-format evaluation of any process scorer, for use during training and after it.

The scorer is anything with ``score_groups`` (``ProcessRewardModel``, ``PolicyLikelihoodScorer``,
``ImplicitPRM``); each record is one group with its given steps (never re-split), and the metrics
are ``rlvprm.evaluation.vpb``'s. :func:`flat_metrics` turns them into the flat ``{name: float}``
dict a Trainer logs: pooled macro-F1 at the fixed threshold, F1 of both classes, AUC,
position-matched AUC, per ``data_source`` macro-F1 and, for records that carry an ``error_type``
(the visual-arith world's ``vpb_test.jsonl``), position-matched AUC per error type (first wrong
steps of that type against correct steps of error-free records at the same index).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from rewards.prm import Group
from rlvprm.data.jsonl import RecordError, read_jsonl
from rlvprm.data.records import Record, load_images, parse_record
from rlvprm.evaluation.vpb import ScoredSteps, evaluate, position_matched_auc_by_type


@dataclass
class EvalSet:
    """VisualProcessBench records with their images opened."""

    records: list[Record]
    images: list[list[Image.Image]]

    def __len__(self) -> int:
        return len(self.records)


def load_eval_set(path: str | Path, image_root: str | Path | None = None, limit: int | None = None) -> EvalSet:
    """Read a VisualProcessBench jsonl (every record must carry ``process_correctness``)."""
    path = Path(path)
    root = image_root if image_root is not None else path.parent
    records, images = [], []
    for line, raw in read_jsonl(path):
        if limit is not None and len(records) >= limit:
            break
        rec = parse_record(raw, line, require_response=True)
        if rec.labels is None or not isinstance(rec.response, list):
            raise RecordError(f"{path}:{line}: not a VisualProcessBench record (response.steps and "
                              "process_correctness are needed)")
        records.append(rec)
        images.append(load_images(rec, root))
    if not records:
        raise RecordError(f"{path}: no records to evaluate on")
    return EvalSet(records, images)


def eval_groups(data: EvalSet, groups_per_call: int = 16):
    """``(records, groups)`` chunks of the set: each record is one group of its one given-step solution."""
    for start in range(0, len(data), groups_per_call):
        recs = data.records[start : start + groups_per_call]
        images = data.images[start : start + groups_per_call]
        yield recs, [Group(r.question, imgs, [r.response]) for r, imgs in zip(recs, images)]


def score_eval_set(scorer, data: EvalSet, groups_per_call: int = 16) -> list[ScoredSteps]:
    """Step scores of every record, paired with its labels."""
    out = []
    for recs, groups in eval_groups(data, groups_per_call):
        for rec, scored in zip(recs, scorer.score_groups(groups)):
            out.append(ScoredSteps(rec.id, list(rec.labels), list(scored[0].step_scores), rec.data_source))
    return out


def error_type_aucs(data: EvalSet, scored: list[ScoredSteps]) -> dict[str, float | None]:
    """Position-matched AUC per ``error_type`` (records without one are left out)."""
    return position_matched_auc_by_type(scored, [r.extra.get("error_type") for r in data.records])


def flat_metrics(data: EvalSet, scored: list[ScoredSteps], threshold: float, prefix: str = "eval") -> dict[str, float]:
    """The numbers worth logging during training, flat, None values left out."""
    m = evaluate(scored, threshold)
    o = m["overall"]
    values = {
        "macro_f1": o["macro_f1"],
        "f1_correct": o["f1_correct"],
        "f1_wrong": o["f1_wrong"],
        "auc": o["auc"],
        "position_matched_auc": o["position_matched_auc"]["auc"],
        "step_weighted_macro_f1": m["step_weighted_macro_f1"],
        "mean_score": sum(x for s in scored for x in s.scores) / max(1, sum(len(s.scores) for s in scored)),
    }
    if len(m["sources"]) > 1:
        values.update({f"macro_f1/{name}": s["macro_f1"] for name, s in m["sources"].items()})
    values.update({f"position_matched_auc/{k}": v for k, v in error_type_aucs(data, scored).items()})
    return {f"{prefix}_{k}": float(v) for k, v in values.items() if v is not None}
