"""`rlvprm score`: per-step PRM scores for every solution in a jsonl file.

Input records are VisualProcessBench records (steps given) or prompt records with a ``response``
string (split with ``rewards.steps.split_steps``). Output: one line per record with ``id``,
``step_scores``, ``score`` (aggregated) and ``num_steps``, written as each batch finishes. Re-running
with the same ``--out`` skips records already there, so a killed run resumes where it stopped.

Bad records (no question, empty response, missing or unreadable image, too long) stop the run with
a message naming the record, or with ``--skip-bad`` are counted, listed in ``OUT.skipped.jsonl`` and
reported at the end. Left out: generation (see ``rlvprm bon``) and metrics (``rlvprm eval-vpb``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tqdm import tqdm

from rewards.aggregate import parse_aggregation
from rewards.backends.base import RECORD_ERRORS, record_error_text
from rewards.conversation import ConversationError
from rewards.prm import Group
from rewards.scorers import load_scorer, prompt_info
from rlvprm.config import field
from rlvprm.data.jsonl import (
    RecordError,
    ResumableWriter,
    check_out_not_input,
    check_unique_ids,
    read_jsonl,
    record_id,
)
from rlvprm.data.provenance import check_resume, file_sha256, record_info
from rlvprm.data.records import Record, load_images, parse_record

log = logging.getLogger(__name__)


@dataclass
class ScoreConfig:
    model: str = field(help="PRM: a local folder or a hub id; a VisualPRM-style PRM, an implicit PRM or a stacked "
                            "scorer (`rlvprm train-prm --kind implicit|stacked`)")
    data: str = field(help="jsonl of VisualProcessBench records or prompt records with a 'response'")
    out: str = field(help="output jsonl (one line per record); an existing file is resumed")
    image_root: str | None = field(None, help="folder that image paths are relative to (default: the data file's folder)")
    max_steps: int | None = field(None, min=1, help="merge a response's steps evenly down to at most this many")
    aggregate: str = field("mean", help="response score from step scores: mean, min, max, last, prod, softmin[:T]")
    batch_size: int = field(8, min=1, help="solutions per forward pass")
    orm: bool = field(False, help="ORM mode: score the whole response as one step")
    backend: Literal["auto", "hf", "internvl-remote"] = field("auto", help="model format")
    prm_prompt: Literal["checkpoint", "training"] = field("checkpoint", help="the released checkpoints' prompt: 'checkpoint' (what their own code writes: the config's template and system message) or 'training' (the PRM prompt they were trained with); rlvprm's own PRMs use the same prompt either way")
    dtype: str = field("auto", help="float32, bfloat16, float16 or auto (bf16 on a GPU that has it, else fp32)")
    device: str = field("auto", help="cpu, cuda, cuda:N or auto")
    trust_remote_code: bool = field(False, help="allow the checkpoint's own code to run (needed by VisualPRM-8B)")
    max_length: int | None = field(None, min=1, help="longest conversation in tokens; longer records are errors")
    skip_bad: bool = field(False, help="skip bad records (counted and listed in OUT.skipped.jsonl) instead of stopping")
    limit: int | None = field(None, min=1, help="score only the first N records")

    def __post_init__(self) -> None:
        parse_aggregation(self.aggregate)  # raises with the valid names
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("max_steps must be >= 1")


def main(cfg: ScoreConfig) -> dict:
    image_root = cfg.image_root or str(Path(cfg.data).parent)
    skipped_path = Path(str(cfg.out) + ".skipped.jsonl")
    check_out_not_input(cfg.out, cfg.data)
    check_out_not_input(skipped_path, cfg.data)
    records = list(read_jsonl(cfg.data))
    if cfg.limit is not None:
        records = records[: cfg.limit]
    check_unique_ids(records, cfg.data)  # scores are keyed by id: a second record would never be scored
    check_resume(run_path(cfg.out), run_settings(cfg), cfg.out)
    writer = ResumableWriter(cfg.out)  # reads what is done; a corrupt existing line stops here
    # Loaded after the input checks above, so a bad file or option fails before any weights load.
    prm = load_scorer(
        cfg.model, backend=cfg.backend, dtype=cfg.dtype, device=cfg.device, trust_remote_code=cfg.trust_remote_code,
        max_length=cfg.max_length, max_steps=cfg.max_steps, aggregation=cfg.aggregate, batch_size=cfg.batch_size,
        orm=cfg.orm, prm_prompt=cfg.prm_prompt,
    )
    record_info(run_path(cfg.out), prompt=prompt_info(prm))
    skipped: list[dict] = []
    todo = [(line, raw) for line, raw in records if _id(raw, line) not in writer.done]
    log.info("%d records, %d already scored, %d to go", len(records), len(records) - len(todo), len(todo))

    def bad(rid: str, reason: str) -> None:
        if not cfg.skip_bad:
            raise RecordError(f"{reason} (use --skip-bad to skip and count such records)")
        log.warning("skipping: %s", reason)
        skipped.append({"id": rid, "reason": reason})

    bar = tqdm(total=len(todo), desc="score", unit="rec")

    def score_chunk(pending: list[tuple[Record, Group]]) -> None:
        if not pending:
            return
        try:
            results = prm.score_groups([g for _, g in pending])
        except RECORD_ERRORS:
            # Find the record that fails (an input the model cannot take, or the model's own error), score the rest.
            results = []
            for rec, g in pending:
                try:
                    results.append(prm.score_groups([g])[0])
                except RECORD_ERRORS as err:
                    if rec.id not in writer.done:
                        bad(rec.id, f"record {rec.id}: {record_error_text(err)}")
                        bar.update(1)
                    results.append(None)
        for (rec, _), res in zip(pending, results):
            if res is not None and rec.id not in writer.done:
                r = res[0]
                writer.write({"id": rec.id, "step_scores": r.step_scores, "score": r.score, "num_steps": len(r.steps)})
                bar.update(1)

    try:
        # Batches are fixed slices of the file, and a resumed batch is scored whole again (writing only
        # its missing records), so a resumed run computes every score exactly as an uninterrupted one.
        for start in range(0, len(records), cfg.batch_size):
            chunk = records[start : start + cfg.batch_size]
            if all(_id(raw, line) in writer.done for line, raw in chunk):
                continue
            pending: list[tuple[Record, Group]] = []
            for line, raw in chunk:
                rid = _id(raw, line)
                try:
                    rec = parse_record(raw, line, require_response=True)
                    group = Group(rec.question, load_images(rec, image_root), [rec.response])
                    prm.prepare(group)  # raises on a record that cannot become a conversation
                except (RecordError, ConversationError, ValueError) as err:
                    msg = str(err) if str(err).startswith("record ") else f"record {rid} (line {line}): {err}"
                    bad(rid, msg)
                    bar.update(1)
                    continue
                pending.append((rec, group))
            score_chunk(pending)
    finally:
        bar.close()
        writer.close()
        if skipped:
            with skipped_path.open("w") as fh:
                import json

                for s in skipped:
                    fh.write(json.dumps(s) + "\n")
    summary = {"records": len(records), "scored_now": len(todo) - len(skipped), "skipped": len(skipped),
               "out": str(cfg.out)}
    print(f"score: {summary['scored_now']} scored, {len(records) - len(todo)} already done, "
          f"{len(skipped)} skipped -> {cfg.out}" + (f" (skipped listed in {skipped_path})" if skipped else ""))
    return summary


_id = record_id


def run_path(out: str | Path) -> Path:
    """Where the settings that produced ``out`` are recorded (``OUT.run.json``)."""
    return Path(str(out) + ".run.json")


def run_settings(cfg: ScoreConfig) -> dict:
    """What decides the scores: a resumed run must score with exactly these (``rlvprm.data.provenance``).

    The batch size is among them because padding a batch differently can move scores in the last
    digits; device and ``--limit`` are not (a longer limit extends the same run).
    """
    return {"model": cfg.model, "backend": cfg.backend, "prm_prompt": cfg.prm_prompt, "dtype": cfg.dtype, "data_sha256": file_sha256(cfg.data),
            "image_root": cfg.image_root, "max_steps": cfg.max_steps, "aggregate": cfg.aggregate, "orm": cfg.orm,
            "batch_size": cfg.batch_size, "max_length": cfg.max_length}
