"""`rlvprm eval-vpb`: a PRM (or any judge's step scores) on VisualProcessBench.

    rlvprm eval-vpb --data test.jsonl --image-root images/ --model PRM --out runs/vpb
    rlvprm eval-vpb --data test.jsonl --scores judge_scores.jsonl --out runs/vpb --sweep false

With ``--model`` the records are scored by ``rlvprm score`` itself (same scorer, same batching),
into ``OUT/scores.jsonl``; a killed run re-started with the same ``--out`` scores only what is
missing. With ``--scores`` the step scores come from a file in ``rlvprm score``'s output format
(``id``, ``step_scores``), so any judge can be evaluated. VisualProcessBench records have no id:
a record's line number in ``--data`` is its id, as ``rlvprm score`` writes it.

The result is macro-F1 at ``--threshold``, fixed before the labels are seen. Beside it (``--sweep``,
on by default; ``--sweep false`` leaves it out) comes the macro-F1 at the best threshold found on
these very labels, marked everywhere as tuned on the test data: an optimistic bound, never the
result. VisualPRM's paper does not publish the threshold behind its VisualProcessBench numbers;
third-party re-implementations use 0.5 or 0.85, so compare at those and read the tuned line as
how much a threshold choice could move the number.

Writes ``OUT/metrics.json`` (everything ``rlvprm.evaluation.vpb.evaluate`` reports, plus what was
skipped and, when records name an ``error_type`` as the visual-arith world's sets do, the
position-matched AUC per error type) and ``OUT/metrics.md`` (the table). A record whose scores are
missing or do not match its steps stops the run with a message naming it; with ``--skip-bad`` it is
counted and listed instead.

``--data`` that is not an existing file is read as a hub dataset id (``rlvprm.data.hub``: online,
or offline from the hub cache) and its ``--hub-split`` written to ``OUT/data.jsonl`` (images stored
as dataset images are saved under ``OUT/images``; image paths, as VisualProcessBench publishes
them, stay relative to ``--image-root``: the folder its ``images.zip`` was extracted to). Left out: the metrics themselves (``rlvprm/evaluation/vpb.py``).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal

from rlvprm.config import field
from rlvprm.data.jsonl import RecordError, check_out_not_input, check_unique_ids, read_jsonl
from rlvprm.data.records import parse_record
from rlvprm.evaluation.vpb import ScoredSteps, evaluate, position_matched_auc_by_type, render_markdown

log = logging.getLogger(__name__)


@dataclass
class EvalVPBConfig:
    data: str = field(help="VisualProcessBench jsonl (test.jsonl), or a hub dataset id")
    out: str = field(help="output folder: metrics.json, metrics.md, and scores.jsonl when scoring with --model")
    model: str | None = field(None, help="PRM to score the steps with (local folder or hub id; VisualPRM-style, "
                              "implicit or stacked; likelihood:POLICY for a policy's own step likelihood); or give --scores")
    scores: str | None = field(None, help="precomputed step scores: jsonl with 'id' and 'step_scores' per record")
    threshold: float = field(0.5, help="a step is judged correct when its score is above this (fixed in advance)")
    sweep: bool = field(True, help="also report macro-F1 at the best threshold found on the test labels, marked as "
                        "tuned on the test data (an optimistic bound beside the result at --threshold); false to leave it out")
    image_root: str | None = field(None, help="folder that image paths are relative to (default: the data file's folder)")
    hub_split: str = field("test", help="split to load when --data is a hub dataset id")
    skip_bad: bool = field(False, help="count and list records without matching scores instead of stopping")
    batch_size: int = field(8, min=1, help="--model only: solutions per forward pass")
    backend: Literal["auto", "hf", "internvl-remote"] = field("auto", help="--model only: model format")
    prm_prompt: Literal["checkpoint", "training"] = field("checkpoint", help="--model only: " + "the released checkpoints' prompt: 'checkpoint' (what their own code writes: the config's template and system message) or 'training' (the PRM prompt they were trained with); rlvprm's own PRMs use the same prompt either way")
    dtype: str = field("auto", help="--model only: float32, bfloat16, float16 or auto")
    device: str = field("auto", help="--model only: cpu, cuda, cuda:N or auto")
    trust_remote_code: bool = field(False, help="--model only: allow the checkpoint's own code (VisualPRM-8B needs it)")
    max_length: int | None = field(None, min=1, help="--model only: longest conversation in tokens")

    def __post_init__(self) -> None:
        if (self.model is None) == (self.scores is None):
            raise ValueError("give exactly one of --model (score the steps now) and --scores (a file of step scores)")
        if not math.isfinite(self.threshold):
            raise ValueError("threshold must be a finite number")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")


def main(cfg: EvalVPBConfig) -> dict[str, Any]:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    data_path = Path(cfg.data)
    image_root = cfg.image_root
    if not data_path.is_file():
        data_path = fetch_hub_dataset(cfg.data, cfg.hub_split, out)
        image_root = image_root or str(out)
    image_root = image_root or str(data_path.parent)
    rows = list(read_jsonl(data_path))  # read once: matched with the scores, then their error types
    check_unique_ids(rows, data_path)  # scores pair with records by id: a repeated id pairs two with one line
    for name in ("scores.jsonl", "metrics.json", "metrics.md"):
        check_out_not_input(out / name, data_path, cfg.scores)

    if cfg.model is not None:
        from rlvprm.commands.score import ScoreConfig, main as score_main

        scores_path = out / "scores.jsonl"
        score_main(ScoreConfig(
            model=cfg.model, data=str(data_path), out=str(scores_path), image_root=image_root,
            batch_size=cfg.batch_size, backend=cfg.backend, prm_prompt=cfg.prm_prompt, dtype=cfg.dtype, device=cfg.device,
            trust_remote_code=cfg.trust_remote_code, max_length=cfg.max_length, skip_bad=cfg.skip_bad,
        ))
    else:
        scores_path = Path(cfg.scores)

    records, skipped = match_scores(rows, read_scores(scores_path), cfg.skip_bad)
    scorer_skips = Path(str(scores_path) + ".skipped.jsonl")
    if cfg.model is not None and skipped and scorer_skips.exists():
        # The scorer knows why it skipped a record (bad image, too long); say that, not "no scores".
        why = {str(s["id"]): s["reason"] for _, s in read_jsonl(scorer_skips)}
        skipped = [{**s, "reason": why.get(s["id"], s["reason"])} for s in skipped]
    metrics = evaluate(records, cfg.threshold, sweep=cfg.sweep)
    types = error_types(rows)
    if types:
        metrics["error_types"] = position_matched_auc_by_type(records, [types.get(r.id) for r in records])
    report = {
        "data": cfg.data,
        "judge": {"model": cfg.model, "prompt": scores_prompt(scores_path)} if cfg.model is not None
        else {"scores": cfg.scores},
        "scores_file": str(scores_path),
        "n_skipped": len(skipped),
        "skipped": skipped,
        **metrics,
    }
    (out / "metrics.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "metrics.md").write_text(render_markdown(metrics))
    o = metrics["overall"]
    print(f"eval-vpb: {o['n_records']} records, macro-F1 {_fmt(o['macro_f1'])} pooled, "
          f"{_fmt(metrics['step_weighted_macro_f1'])} step-weighted at threshold {cfg.threshold:g}, "
          f"{len(skipped)} skipped -> {out / 'metrics.md'}")
    tuned = metrics.get("sweep")
    if tuned:
        print(f"eval-vpb: TUNED ON THE TEST DATA (not a result): best threshold {tuned['threshold']:.6g} gives "
              f"macro-F1 {_fmt(tuned['macro_f1'])} pooled, {_fmt(tuned['step_weighted_macro_f1'])} step-weighted")
    return report


def scores_prompt(scores_path: Path) -> dict | None:
    """The prompt info ``rlvprm score`` recorded beside ``scores_path`` (its ``.run.json``)."""
    from rlvprm.commands.score import run_path

    meta = run_path(scores_path)
    return json.loads(meta.read_text()).get("info", {}).get("prompt") if meta.exists() else None


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def read_scores(path: str | Path) -> dict[str, list[float]]:
    """``id -> step_scores`` from a jsonl in ``rlvprm score``'s output format."""
    out: dict[str, list[float]] = {}
    for line, raw in read_jsonl(path):
        if raw.get("id") is None:
            raise RecordError(f"{path}:{line}: no 'id'")
        rid = str(raw["id"])
        steps = raw.get("step_scores")
        if not isinstance(steps, list) or not all(isinstance(s, (int, float)) and not isinstance(s, bool)
                                                  for s in steps):
            raise RecordError(f"{path}:{line}: 'step_scores' must be a list of numbers")
        if rid in out:
            raise RecordError(f"{path}:{line}: id {rid} appears twice")
        out[rid] = [float(s) for s in steps]
    return out


def error_types(rows: Iterable[tuple[int, dict]]) -> dict[str, str]:
    """``{record id: error_type}`` for records that name one (the visual-arith world's sets do)."""
    out = {}
    for line, raw in rows:
        if isinstance(raw.get("error_type"), str):
            out[str(raw["id"]) if raw.get("id") is not None else str(line)] = raw["error_type"]
    return out


def match_scores(
    rows: Iterable[tuple[int, dict]], scores: dict[str, list[float]], skip_bad: bool = False
) -> tuple[list[ScoredSteps], list[dict[str, str]]]:
    """Pair each VisualProcessBench record with its step scores by id (line number for VPB).

    A record that cannot be parsed, has no labels, has no scores or a different number of scores
    than steps raises :class:`RecordError`, or with ``skip_bad`` is listed in the returned skips.
    Score lines whose id matches no record are an error too (the files do not belong together);
    with ``skip_bad`` they are listed as well.
    """
    records: list[ScoredSteps] = []
    skipped: list[dict[str, str]] = []
    seen: set[str] = set()

    def bad(rid: str, reason: str) -> None:
        if not skip_bad:
            raise RecordError(f"{reason} (use --skip-bad to skip and count such records)")
        log.warning("skipping: %s", reason)
        skipped.append({"id": rid, "reason": reason})

    for line, raw in rows:
        rid = str(raw["id"]) if raw.get("id") is not None else str(line)
        seen.add(rid)
        try:
            rec = parse_record(raw, line, require_response=True)
        except RecordError as err:
            bad(rid, str(err))
            continue
        where = f"record {rid} (line {line})"
        if rec.labels is None:
            bad(rid, f"{where}: no response.process_correctness labels")
        elif rid not in scores:
            bad(rid, f"{where}: no step scores for this id")
        elif len(scores[rid]) != len(rec.labels):
            bad(rid, f"{where}: {len(scores[rid])} step scores for {len(rec.labels)} steps")
        elif not all(math.isfinite(s) for s in scores[rid]):
            bad(rid, f"{where}: step scores are not all finite: {scores[rid]}")
        else:
            records.append(ScoredSteps(rid, list(rec.labels), scores[rid], rec.data_source))
    stray = sorted(set(scores) - seen, key=lambda s: (len(s), s))
    if stray:
        shown = ", ".join(stray[:5]) + (" ..." if len(stray) > 5 else "")
        bad(",".join(stray), f"{len(stray)} scored id(s) match no record of the data: {shown}")
    return records, skipped


def fetch_hub_dataset(dataset_id: str, split: str, out: Path) -> Path:
    """Load a hub dataset (``rlvprm.data.hub``) and write it as VisualProcessBench jsonl under ``out``."""
    from rlvprm.data.hub import load_hub_split

    return write_rows(load_hub_split(dataset_id, split), out)


def write_rows(rows: Iterable[dict[str, Any]], out: Path) -> Path:
    """Write dataset rows to ``out/data.jsonl``; images held in the rows are saved as PNG files.

    Paths stay as they are (relative to ``--image-root``); a PIL image, or a ``{"bytes", "path"}``
    dict as ``datasets`` stores undecoded images, becomes ``images/<row>_<k>.png`` under ``out``.
    """
    path = out / "data.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for n, row in enumerate(rows, 1):
            row = dict(row)
            key = "images" if "images" in row else "image"
            if key in row and row[key] is not None:
                items = row[key] if isinstance(row[key], list) else [row[key]]
                row[key] = [_image_path(item, out, f"{n}_{k}") for k, item in enumerate(items)]
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    return path


def _image_path(item: Any, out: Path, stem: str) -> str:
    import io

    from PIL import Image

    from rewards.images import to_rgb

    if isinstance(item, str):
        return item
    if isinstance(item, dict) and item.get("bytes"):
        item = Image.open(io.BytesIO(item["bytes"]))
    elif isinstance(item, dict) and item.get("path"):
        return str(item["path"])
    if isinstance(item, Image.Image):
        rel = f"images/{stem}.png"
        (out / "images").mkdir(parents=True, exist_ok=True)
        to_rgb(item).save(out / rel)
        return rel
    raise RecordError(f"row {stem.split('_')[0]}: cannot read an image from {type(item).__name__}")
