"""`rlvprm label`: Monte Carlo step labels in the VisualPRM400K-v1.1-Raw format, and the tools around them.

    rlvprm label --policy POLICY --data prompts.jsonl --out labels.jsonl             # label
    rlvprm label --config RECIPE --shard 3 --num-shards 8                            # one of 8 workers
    rlvprm label --merge --out labels.jsonl                                          # merge the 8 shards
    rlvprm label --convert --data labels.jsonl --out conversations.jsonl --threshold 0.0

**Label.** Every prompt record (``id``, ``image``/``images``, ``question``, ``answer``, optional
``choices`` and ``data_source``) gets ``--num-rollouts`` solutions, and every step of each one a
Monte Carlo score from ``--num-mc`` continuations (``rlvprm.labeling.mc`` says exactly how; the last
step is scored by the rollout's own answer). One Raw line per rollout, id ``{record id}-r{k}``,
written as each record finishes (``rlvprm.labeling.formats``). The policy is prompted with the
record's question as given; the Raw ``question`` holds it with ``<image>`` placeholders (put first
when it had none), as the PRM conversation builder would place the images, and ``question_orig``
holds it as given (what the published Raw rows keep beside the policy prompt).

Re-running with the same ``--out`` resumes: finished rollouts are not redone (``OUT.run.json`` records
the policy, the data file's hash and the sampling options; a re-run with others is refused, naming
the difference), and because every
record is seeded from its own id, the resumed file is the file an uninterrupted run writes; so is the
merge of ``--num-shards`` shard files (``rlvprm.labeling.shards``). Rollouts with no step (an empty
response) are listed in ``OUT.skipped.jsonl``; so are bad records (no answer, a missing or unreadable
image), which stop the run unless ``--skip-bad``. Listed items count as done when resuming.

**Convert.** VisualPRM400K-v1.1-Raw (or conversation-format) records, from a jsonl file, a folder of
them or a hub dataset id, become VisualPRM400K conversation records (``id``, ``image``,
``conversations``): a step is ``+`` iff its score is above ``--threshold`` (default 0.0). Bad records
(no steps, mismatched turns, non-numeric scores, image counts that do not match the question) stop
the run or, with ``--skip-bad``, are counted and listed; with ``--image-root`` every image must exist
under it. A hub id loads through ``rlvprm.data.hub`` (online, or offline from the cache).

Left out: batching across records (see ``rlvprm.labeling.mc``), and launching the shards: start one
process per GPU yourself (``CUDA_VISIBLE_DEVICES=i rlvprm label ... --shard i``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tqdm.auto import tqdm

from rewards.backends.base import find_markup, markup_error, special_token_texts
from rlvprm.config import field
from rlvprm.data.jsonl import (
    RecordError,
    ResumableWriter,
    check_out_not_input,
    check_unique_ids,
    read_jsonl,
    record_id,
)
from rlvprm.data.provenance import check_resume, file_sha256
from rlvprm.data.records import has_answer, load_images, parse_record
from rlvprm.generation import Request
from rlvprm.labeling.formats import (
    conversation_record,
    policy_question,
    raw_record,
    read_prm_records,
    rollout_id,
)
from rlvprm.labeling.mc import MCSettings, Sampler, label_prompt
from rlvprm.labeling.shards import merge_shards, shard_path, shard_slice, skipped_path

log = logging.getLogger(__name__)


@dataclass
class LabelConfig:
    out: str = field(help="label: Raw jsonl (an existing file is resumed); convert: conversation jsonl; merge: the merged file")
    data: str | None = field(None, help="label: prompt jsonl; convert: Raw or conversation jsonl, a folder of them, or a hub dataset id")
    policy: str | None = field(None, help="label: the policy, a local folder or a hub id")
    convert: bool = field(False, help="convert Raw records (--data) into the VisualPRM400K conversation format (--out)")
    merge: bool = field(False, help="merge OUT.shard-*-of-N.jsonl into --out")
    image_root: str | None = field(None, help="folder image paths are relative to (label default: the data file's folder; convert: check images exist there)")
    num_rollouts: int = field(4, min=1, help="solutions sampled per prompt")
    num_mc: int = field(16, min=1, help="continuations sampled per step prefix")
    max_steps: int = field(12, min=1, help="merge a solution's steps evenly down to at most this many")
    max_new_tokens: int = field(1024, min=1, help="longest rollout or continuation, in tokens")
    temperature: float = field(1.0, min=0, help="sampling temperature of rollouts and continuations")
    top_p: float = field(1.0, min=0, max=1, help="nucleus sampling threshold")
    seed: int = field(0, help="base seed; each record's samples are seeded from (seed, record id)")
    batch_size: int = field(8, min=1, help="hf backend: prompts per generate call (each holds num_mc sequences)")
    early_stop: bool = field(False, help="stop sampling a rollout after a step scores 0; later steps get score 0, num_mc_total 0 (VisualPRM's pipeline)")
    dedupe_prefixes: bool = field(True, help="sample a step prefix shared by several rollouts of a prompt once")
    backend: Literal["hf", "vllm"] = field("hf", help="generation backend (vllm: optional extra, GPU)")
    dtype: str = field("auto", help="float32, bfloat16, float16 or auto")
    device: str = field("auto", help="hf backend: cpu, cuda, cuda:N or auto")
    trust_remote_code: bool = field(False, help="allow the policy checkpoint's own code to run")
    gpu_memory_utilization: float = field(0.9, min=0, max=1, help="vllm backend: share of GPU memory vLLM may take")
    tensor_parallel_size: int = field(1, min=1, help="vllm backend: GPUs per model replica")
    limit: int | None = field(None, min=1, help="label only the first N prompt records (before sharding)")
    shard: int = field(0, min=0, help="this worker's shard, in [0, num_shards)")
    num_shards: int = field(1, min=1, help="data-parallel shards; shard i writes OUT.shard-i-of-N.jsonl")
    threshold: float = field(0.0, min=0, max=1, help="convert: a step is '+' iff its MC score is above this")
    split: str = field("train", help="convert: split of a hub dataset")
    skip_bad: bool = field(False, help="skip bad records (counted and listed in OUT.skipped.jsonl) instead of stopping")
    threads: int = field(0, min=0, help="torch CPU threads (0: torch's default)")
    progress: bool = field(True, help="show a progress bar")

    def __post_init__(self) -> None:
        if self.convert and self.merge:
            raise ValueError("--convert and --merge are two different modes: give one")
        if not self.merge and not self.data:
            raise ValueError("--data is required (prompt records to label, or Raw records to convert)")
        if not (self.convert or self.merge) and not self.policy:
            raise ValueError("--policy is required to label (or give --convert or --merge)")
        for name in ("num_rollouts", "num_mc", "max_steps", "max_new_tokens", "batch_size", "num_shards",
                     "tensor_parallel_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.shard < self.num_shards:
            raise ValueError(f"shard must be in [0, num_shards={self.num_shards}), got {self.shard}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("need temperature >= 0 and 0 < top_p <= 1")
        if self.temperature == 0 and (self.num_rollouts > 1 or self.num_mc > 1):
            raise ValueError("temperature 0 is greedy: every rollout and continuation would be the same; "
                             "use a temperature > 0 (VisualPRM: 1.0)")
        if not 0 <= self.threshold < 1:
            raise ValueError(f"threshold must be in [0, 1), got {self.threshold}")
        if self.limit is not None and self.limit < 0:
            raise ValueError("limit must be >= 0")


def main(cfg: LabelConfig, sampler: Sampler | None = None) -> dict:
    """Run the mode ``cfg`` asks for; ``sampler`` replaces the policy loaded from ``cfg.policy``."""
    if cfg.merge:
        summary = merge_shards(cfg.out, cfg.num_shards if cfg.num_shards > 1 else None)
        print(f"label --merge: {summary['rows']} rows from {summary['shards']} shards "
              f"({summary['duplicates']} duplicate ids dropped) -> {cfg.out}")
        return summary
    if cfg.convert:
        return convert(cfg)
    return label(cfg, sampler)


def label(cfg: LabelConfig, sampler: Sampler | None = None) -> dict:
    if cfg.threads > 0:
        import torch

        torch.set_num_threads(cfg.threads)
    data = Path(cfg.data)
    image_root = cfg.image_root or str(data.parent)
    rows = list(read_jsonl(data))
    if cfg.limit is not None:
        rows = rows[: cfg.limit]
    check_unique_ids(rows, data)  # rollout ids are built from record ids
    rows = rows[shard_slice(len(rows), cfg.shard, cfg.num_shards)]
    out = shard_path(cfg.out, cfg.shard, cfg.num_shards)
    check_out_not_input(out, data)
    check_out_not_input(skipped_path(out), data)
    check_resume(Path(str(out) + ".run.json"), run_settings(cfg), out)
    writer = ResumableWriter(out)
    passed = ResumableWriter(skipped_path(out))  # bad records and empty rollouts

    def finished(key: str) -> bool:
        return key in writer.done or key in passed.done

    todo = [(line, raw) for line, raw in rows
            if not (finished(_id(raw, line))
                    or all(finished(rollout_id(_id(raw, line), k)) for k in range(cfg.num_rollouts)))]
    log.info("%d prompt records, %d already labelled, %d to go -> %s", len(rows), len(rows) - len(todo), len(todo), out)
    stats = {"records": len(rows), "labelled_now": 0, "rollouts_written": 0, "continuations": 0,
             "bad_records": 0, "empty_rollouts": 0}
    start = time.perf_counter()
    if todo and sampler is None:
        sampler = _load_policy(cfg)
    settings = MCSettings(
        num_rollouts=cfg.num_rollouts, num_mc=cfg.num_mc, max_steps=cfg.max_steps, max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature, top_p=cfg.top_p, batch_size=cfg.batch_size, seed=cfg.seed,
        early_stop=cfg.early_stop, dedupe_prefixes=cfg.dedupe_prefixes,
    )
    # The policy's special tokens in a question would be read as chat markup in its prompt.
    tokenizer = getattr(sampler, "tokenizer", None)
    markers = special_token_texts(tokenizer) if tokenizer is not None else []
    bar = tqdm(total=len(todo), desc="label", unit="prompt", disable=not cfg.progress)
    sampling_start = time.perf_counter()
    rollouts_done = 0
    try:
        for line, raw in todo:
            rid = _id(raw, line)
            try:
                rec = parse_record(raw, line)
                if not has_answer(rec):
                    raise RecordError(f"record {rid} (line {line}): no answer to check rollouts against")
                marker = find_markup(rec.question, markers)
                if marker is not None:
                    raise RecordError(f"record {rid} (line {line}): {markup_error('the question', marker)}")
                images = load_images(rec, image_root)
            except RecordError as err:
                if not cfg.skip_bad:
                    raise RecordError(f"{err} (use --skip-bad to skip and count such records)") from None
                log.warning("skipping: %s", err)
                passed.write({"id": rid, "reason": str(err)})
                stats["bad_records"] += 1
                bar.update(1)
                continue
            result = label_prompt(sampler, Request(rec.question, images), rec.answer, rid, settings, rec.choices)
            image = rec.image_paths[0] if len(rec.image_paths) == 1 else rec.image_paths
            question = policy_question(rec.question, len(images))
            for rollout in result.rollouts:
                key = rollout_id(rid, rollout.index)
                if finished(key):  # written before a crash in the middle of this record
                    continue
                if not rollout.steps:
                    passed.write({"id": key, "reason": "the rollout has no steps (empty response)"})
                    stats["empty_rollouts"] += 1
                    continue
                writer.write(raw_record(rid, rollout, image, question, rec.answer, cfg.num_mc, rec.data_source,
                                        question_orig=rec.question))
                stats["rollouts_written"] += 1
            stats["labelled_now"] += 1
            stats["continuations"] += result.num_continuations
            rollouts_done += len(result.rollouts)
            elapsed = max(time.perf_counter() - sampling_start, 1e-9)
            bar.set_postfix({"rollouts/s": f"{rollouts_done / elapsed:.2f}",
                             "continuations/s": f"{stats['continuations'] / elapsed:.1f}"}, refresh=False)
            bar.update(1)
    finally:
        bar.close()
        writer.close()
        passed.close()
    seconds = time.perf_counter() - start
    sampling = time.perf_counter() - sampling_start
    stats.update(
        out=str(out), seconds=round(seconds, 2), sampling_seconds=round(sampling, 2),
        rollouts_per_s=round(rollouts_done / sampling, 3) if todo and sampling > 0 else None,
        continuations_per_s=round(stats["continuations"] / sampling, 2) if todo and sampling > 0 else None,
    )
    print(f"label: {stats['labelled_now']} prompts labelled ({stats['rollouts_written']} rollouts, "
          f"{stats['continuations']} continuations in {sampling:.1f} s), {len(rows) - len(todo)} already done, "
          f"{stats['bad_records']} bad records and {stats['empty_rollouts']} empty rollouts skipped -> {out}")
    return stats


def convert(cfg: LabelConfig) -> dict:
    out = Path(cfg.out)
    check_out_not_input(out, cfg.data)  # the output replaces its file at the end: it would destroy the input
    out.parent.mkdir(parents=True, exist_ok=True)
    skipped: list[dict] = []
    records = steps = wrong = 0
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for rec in read_prm_records(cfg.data, cfg.threshold, cfg.split, cfg.image_root, cfg.skip_bad, skipped):
            fh.write(json.dumps(conversation_record(rec), ensure_ascii=False) + "\n")
            records += 1
            steps += len(rec.labels)
            wrong += rec.labels.count("-")
    os.replace(tmp, out)
    if skipped:
        with skipped_path(out).open("w", encoding="utf-8") as fh:
            for item in skipped:
                fh.write(json.dumps(item, ensure_ascii=False) + "\n")
    summary = {"records": records, "steps": steps, "wrong_steps": wrong, "skipped": len(skipped), "out": str(out)}
    print(f"label --convert: {records} records, {steps} steps ({wrong} '-' at threshold {cfg.threshold}), "
          f"{len(skipped)} skipped -> {out}" + (f" (listed in {skipped_path(out)})" if skipped else ""))
    return summary


def run_settings(cfg: LabelConfig) -> dict:
    """What decides the labels: a resumed run must label with exactly these (``rlvprm.data.provenance``).

    ``--limit`` counts only with shards (it changes which records fall in each shard); without, a
    longer limit extends the same run.
    """
    return {"policy": cfg.policy, "data_sha256": file_sha256(cfg.data), "image_root": cfg.image_root,
            "num_rollouts": cfg.num_rollouts, "num_mc": cfg.num_mc, "max_steps": cfg.max_steps,
            "max_new_tokens": cfg.max_new_tokens, "temperature": cfg.temperature, "top_p": cfg.top_p,
            "seed": cfg.seed, "batch_size": cfg.batch_size, "early_stop": cfg.early_stop,
            "dedupe_prefixes": cfg.dedupe_prefixes, "backend": cfg.backend, "dtype": cfg.dtype,
            "shard": cfg.shard, "num_shards": cfg.num_shards, "limit": cfg.limit if cfg.num_shards > 1 else None}


def _load_policy(cfg: LabelConfig) -> Sampler:
    from rlvprm.generation import make_sampler

    extra = {}
    if cfg.backend == "vllm":
        extra = {"gpu_memory_utilization": cfg.gpu_memory_utilization, "tensor_parallel_size": cfg.tensor_parallel_size}
    # progress=False: the label bar reports progress; a bar per sampler call would flood the log.
    return make_sampler(cfg.backend, cfg.policy, dtype=cfg.dtype, device=cfg.device,
                        trust_remote_code=cfg.trust_remote_code, progress=False, **extra)


_id = record_id
