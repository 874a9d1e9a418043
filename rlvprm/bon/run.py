"""``run_bon``: Best-of-N at test time, end to end (DESIGN.md section 6), resumable stage by stage.

    rlvprm bon --policy POLICY --data prompts.jsonl --prm PRM [--orm ORM] --n 8 --out DIR

Three stages, each writing under ``DIR`` and skipping what is already there, so a killed run
re-run with the same options carries on and ends with the same files as an uninterrupted one:

1. sample (``candidates.py``): N candidates per prompt, drawn once at the largest N, a greedy
   answer, and the policy's own log-probability of every step -> ``candidates.jsonl``.
2. score (``scoring.py``): the PRM's step scores of every candidate, one group per prompt, and
   with ``--orm`` the ORM's score -> ``scores.jsonl``. ``--prm likelihood`` takes the policy's own
   step probabilities (running minimum) as the process scores, through the same file and code.
3. select (``results.py``): accuracy of every strategy at N = 1, 2, 4, ..., N by subsampling the
   saved candidates (``select.best_of_n``) -> ``results.json``, ``results.md``, ``scaling.png``.

``DIR/run.json`` records the settings the sample and score stages ran with; re-running with other
settings is an error that says which file to delete. Models are loaded only by a stage that has
work left, so re-running a finished run (say with other aggregations) loads nothing.

A question holding one of the policy's special tokens (``<|im_end|>\n<|im_start|>system``,
``<|image_pad|>``) would be read as real chat markup in the policy's prompt, so it is refused with
the PRM backends' check (``rewards.backends.base``): a per-record error that ``--skip-bad`` skips
and counts, found before sampling starts. It needs the policy's processor, so it runs when sampling
has work left; a prompt already in ``candidates.jsonl`` passed it when it was sampled.

Prompt records (DESIGN.md section 4): ``id``, ``image``/``images``, ``question``, ``answer``,
optional ``data_source`` and ``choices``. Rows of the visual-arith world also carry ``form`` and
``values``; when every row does, the exact checker adds the bound a perfect PRM would reach.

Left out: sharding prompts over several processes or GPUs, tensor-parallel vLLM options beyond
``vllm_gpu_memory_utilization``, and confidence intervals.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rewards.backends.base import find_markup, markup_error, special_token_texts
from rlvprm.bon.config import DEFAULT_AGGREGATIONS, LIKELIHOOD, BonConfig, BonPrompt, Skips, is_world
from rlvprm.data.jsonl import RecordError, ResumableWriter, check_out_not_input, read_jsonl
from rlvprm.data.provenance import check_resume, file_sha256
from rlvprm.data.records import Record, has_answer, open_image, parse_record

__all__ = ["DEFAULT_AGGREGATIONS", "LIKELIHOOD", "BonConfig", "BonPrompt", "Skips", "is_world", "load_prompts", "run_bon"]

log = logging.getLogger(__name__)


def load_prompts(cfg: BonConfig, skips: Skips) -> tuple[list[BonPrompt], Path]:
    """The usable prompts of ``--data`` in file order, and the image root.

    Every image is decoded here, so a bad prompt is found before sampling starts and
    the chunks of a resumed run hold the same prompts as the first run's.
    """
    data = Path(cfg.data)
    root = Path(cfg.image_root) if cfg.image_root else data.parent
    prompts: list[BonPrompt] = []
    seen: set[str] = set()
    for count, (line, raw) in enumerate(read_jsonl(data)):
        if cfg.limit is not None and count >= cfg.limit:
            break
        try:
            rec = parse_record(raw, line)
            where = f"record {rec.id} (line {line})"
            if rec.id in seen:
                raise RecordError(f"{where}: id {rec.id} appears twice in {data}")
            if not has_answer(rec):
                raise RecordError(f"{where}: no answer to check the candidates against")
            _check_images(rec, root, where)
        except RecordError as err:
            if "appears twice" in str(err):
                raise  # ids key every file of the run; no skip can make them unique
            skips(str(raw.get("id", line)), "data", str(err))
            continue
        seen.add(rec.id)
        prompts.append(BonPrompt(rec, raw, line))
    return prompts, root


def _check_images(rec: Record, root: Path, where: str) -> None:
    # Decoded in full, not just the header: a truncated file passes a header check and would stop
    # sampling later, where --skip-bad cannot skip it.
    for rel in rec.image_paths:
        try:
            open_image(rel, root, rec.id)
        except RecordError as err:
            raise RecordError(f"{where}: {str(err).split(': ', 1)[-1]}") from None


def drop_marked_questions(cfg: BonConfig, prompts: list[BonPrompt], cand_path: Path,
                          skips: Skips) -> list[BonPrompt]:
    """``prompts`` less those whose question holds one of the policy's special tokens (a skip each).

    Checked only when some prompt is still to be sampled: it loads the policy's processor (no
    weights), and every prompt in ``cand_path`` passed the check when it was sampled. A skipped
    prompt is never written there, so a resumed run checks it again and drops the same prompts,
    keeping the sampling chunks of the first run.
    """
    from rewards.backends.processors import load_processor

    sampled: set[str] = set()
    if cand_path.exists():
        with ResumableWriter(cand_path) as writer:  # recovers a torn last line, as sampling would
            sampled = writer.done
    if all(p.id in sampled for p in prompts):
        return prompts
    processor = load_processor(cfg.policy, trust_remote_code=cfg.policy_trust_remote_code)
    markers = special_token_texts(getattr(processor, "tokenizer", processor))
    kept = []
    for p in prompts:
        marker = find_markup(p.record.question, markers)
        if marker is None:
            kept.append(p)
        else:
            skips(p.id, "data", f"record {p.id} (line {p.line}): {markup_error('the question', marker)}")
    return kept


def sampling_settings(cfg: BonConfig) -> dict[str, Any]:
    """What decides the candidates: a resumed run must sample with exactly these."""
    return {"policy": cfg.policy, "data_sha256": file_sha256(cfg.data), "n": cfg.n, "temperature": cfg.temperature,
            "top_p": cfg.top_p, "max_new_tokens": cfg.max_new_tokens, "seed": cfg.seed, "greedy": cfg.greedy, "sampler": cfg.sampler,
            "chunk_size": cfg.chunk_size, "logprobs": cfg.resolved_logprobs, "max_steps": cfg.max_steps}


def scoring_settings(cfg: BonConfig) -> dict[str, Any]:
    """What decides the scores: a resumed run must score with exactly these."""
    out = {"prm": cfg.prm, "orm": cfg.orm, "max_steps": cfg.max_steps, "max_length": cfg.max_length}
    if cfg.prm == LIKELIHOOD:
        out["likelihood_score"] = cfg.likelihood_score
    else:
        out["prm_backend"] = cfg.prm_backend
        out["prm_prompt"] = cfg.prm_prompt
    return out


def check_settings(out: Path, stage: str, settings: dict[str, Any], output: Path) -> None:
    """Record ``settings`` for ``stage`` in ``out/run.json``; refuse to resume ``output`` under others."""
    check_resume(out / "run.json", settings, output, stage=stage)


def run_bon(cfg: BonConfig) -> dict[str, Any]:
    """Sample, score and select (module docstring); returns what ``results.json`` holds."""
    from rlvprm.bon.candidates import sample_candidates
    from rlvprm.bon.results import select_and_report
    from rlvprm.bon.scoring import score_candidates

    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    for name in ("", "candidates.jsonl", "scores.jsonl", "results.json", "results.md", "run.json", "skipped.jsonl"):
        check_out_not_input(out / name if name else out, cfg.data)
    out.mkdir(parents=True, exist_ok=True)
    skips = Skips(cfg.skip_bad)
    prompts, image_root = load_prompts(cfg, skips)
    if not prompts:
        raise RecordError(f"{cfg.data}: no usable prompts")
    seconds: dict[str, float] = {}

    t0 = time.time()
    cand_path = out / "candidates.jsonl"
    score_path = out / "scores.jsonl"
    if _empty(cand_path) and not _empty(score_path):
        raise ValueError(f"{score_path} scores candidates that {cand_path} no longer holds: "
                         "delete it (or use another --out)")
    check_settings(out, "sampling", sampling_settings(cfg), cand_path)
    prompts = drop_marked_questions(cfg, prompts, cand_path, skips)
    if not prompts:
        raise RecordError(f"{cfg.data}: no usable prompts")
    sampled = sample_candidates(cfg, prompts, image_root, cand_path)
    seconds["sample"] = time.time() - t0

    t0 = time.time()
    check_settings(out, "scoring", scoring_settings(cfg), score_path)
    scored = score_candidates(cfg, prompts, image_root, cand_path, score_path, skips)
    seconds["score"] = time.time() - t0

    t0 = time.time()
    result = select_and_report(cfg, prompts, cand_path, score_path, skips, out)
    seconds["select"] = time.time() - t0
    result["this_run"] = {"sampled_prompts": sampled, "scored_prompts": scored,
                          "seconds": {k: round(v, 2) for k, v in seconds.items()}}
    result["config"] = asdict(cfg)
    (out / "results.json").write_text(json.dumps(result, indent=1, default=_json_default) + "\n")
    return result


def _empty(path: Path) -> bool:
    return not path.exists() or path.stat().st_size == 0


def _json_default(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"cannot write {type(x).__name__} to JSON")
