"""Stage 2 of ``rlvprm bon``: step scores for every candidate, one PRM group per prompt, resumably.

``DIR/scores.jsonl`` holds one line per prompt, in the order of ``candidates.jsonl``::

    {"id": ..., "num_candidates": N, "prm_step_scores": [[score per step] per candidate],
     "prm_tokens": [tokens per candidate], "orm_scores": [score per candidate] (with --orm),
     "orm_tokens": [tokens per candidate] (with --orm), "unscored": [candidate indices]}

Step scores are stored, not response scores, so every aggregation is derived later without
rescoring. ``prm_tokens`` (``orm_tokens``) counts the tokens the scorer read for each candidate
(``ScoredSolution.num_tokens``: its whole input, prompt and image tokens included; 0 for a candidate
without steps, which is never scored; null for an unscorable one), which ``rlvprm compare`` adds up
as compute; ``--prm likelihood`` runs no scorer and writes no ``prm_tokens``. The PRM is any scorer ``rewards.load_scorer`` loads (a ``ProcessRewardModel``, an
implicit or a stacked scorer from ``rlvprm train-prm``; ``score_groups``: the candidates of a chunk
of prompts are batched together); the ORM is the same with ``orm=True`` (one step per response). ``--prm
likelihood`` writes the policy's own step probabilities (``policy_likelihood.likelihood_step_scores``
with the running minimum, from the log-probabilities stage 1 saved) into the same field, so every
later step treats them as any PRM's.

A candidate without steps (empty text) gets no step scores (``[]``) and no ORM score (null); a
candidate the PRM cannot take (longer than ``max_length``) stops the run, or with ``--skip-bad`` is
listed in ``unscored`` and treated like an empty one. Selection scores both lowest.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tqdm.auto import tqdm

from rewards.backends.base import RECORD_ERRORS, record_error_text
from rewards.prm import Group
from rewards.scorers import load_scorer, prompt_info
from rlvprm.bon.candidates import chunks
from rlvprm.bon.config import BonConfig, BonPrompt, Skips
from rlvprm.data.jsonl import RecordError, ResumableWriter, read_jsonl
from rlvprm.data.provenance import record_info
from rlvprm.data.records import load_images
from rlvprm.policy_likelihood import StepLogprobs, likelihood_step_scores

log = logging.getLogger(__name__)


def read_lines(path: Path, what: str) -> dict[str, dict]:
    """``id -> line`` of a stage's jsonl file; a line without an id or a repeated id is an error."""
    out: dict[str, dict] = {}
    if not path.exists():
        return out
    for line, raw in read_jsonl(path):
        if raw.get("id") is None:
            raise RecordError(f"{path}:{line}: a {what} line without an 'id'")
        rid = str(raw["id"])
        if rid in out:
            raise RecordError(f"{path}:{line}: id {rid} appears twice")
        out[rid] = raw
    return out


def score_candidates(
    cfg: BonConfig, prompts: list[BonPrompt], image_root: Path, cand_path: Path, path: Path, skips: Skips
) -> int:
    """Write the scores of every sampled prompt not yet in ``path``; returns how many were scored."""
    cands = read_lines(cand_path, "candidates")
    writer = ResumableWriter(path)
    todo = [p for p in prompts if p.id in cands and p.id not in writer.done]
    log.info("scoring: %d prompts sampled, %d to score", len(cands), len(todo))
    if not todo:
        writer.close()
        return 0
    prm = None if cfg.prm == "likelihood" else _load(cfg, cfg.prm, orm=False)
    orm = _load(cfg, cfg.orm, orm=True) if cfg.orm else None
    # The prompt each model writes, beside the scoring settings in run.json (None: not a PRM prompt).
    record_info(path.parent / "run.json", prompt={"prm": prompt_info(prm) if prm is not None else None,
                                                  "orm": prompt_info(orm) if orm is not None else None})
    bar = tqdm(total=len(todo), desc="score", unit="prompt")
    try:
        for _, chunk in chunks(todo, cfg.chunk_size):
            texts = [[c["text"] for c in cands[p.id]["candidates"]] for p in chunk]
            needs_images = prm is not None or orm is not None
            images = [load_images(p.record, image_root) if needs_images else [] for p in chunk]
            groups = [Group(p.record.question, imgs, t) for p, imgs, t in zip(chunk, images, texts)]
            prm_tokens = None
            if prm is None:
                prm_scores = [[likelihood_scores(c.get("step_logprobs"), cfg.likelihood_score, p.id)
                               for c in cands[p.id]["candidates"]] for p in chunk]
            else:
                prm_scores, prm_tokens = score_with(prm, groups, chunk, skips)
            orm_scores, orm_tokens = score_with(orm, groups, chunk, skips) if orm is not None else (None, None)
            for i, p in enumerate(chunk):
                rec = {"id": p.id, "num_candidates": len(texts[i]),
                       "prm_step_scores": [s if s is not None else [] for s in prm_scores[i]]}
                if prm_tokens is not None:
                    rec["prm_tokens"] = prm_tokens[i]
                unscored = [j for j, s in enumerate(prm_scores[i]) if s is None]
                if orm_scores is not None:
                    rec["orm_scores"] = [s[0] if s else None for s in orm_scores[i]]
                    rec["orm_tokens"] = orm_tokens[i]
                    unscored = sorted(set(unscored) | {j for j, s in enumerate(orm_scores[i]) if s is None})
                rec["unscored"] = unscored
                writer.write(rec)
                bar.update(1)
    finally:
        bar.close()
        writer.close()
    return len(todo)


def _load(cfg: BonConfig, path: str, orm: bool):
    return load_scorer(
        path, backend=cfg.prm_backend, prm_prompt=cfg.prm_prompt, dtype=cfg.dtype, device=cfg.device,
        trust_remote_code=cfg.trust_remote_code,
        max_length=cfg.max_length, max_steps=cfg.max_steps, batch_size=cfg.prm_batch_size, orm=orm,
    )


def score_with(
    model, groups: list[Group], chunk: list[BonPrompt], skips: Skips
) -> tuple[list[list[list[float] | None]], list[list[int | None]]]:
    """Step scores per prompt per candidate (``[]`` for a candidate without steps, None if
    unscorable), and the tokens the scorer read for each (0 without steps, None if unscorable).

    All groups go through one ``score_groups`` call; when one candidate does not fit (or the model fails on it), the chunk is
    scored candidate by candidate so only the ones that do not fit are lost.
    """
    kept = [[j for j, t in enumerate(g.solutions) if model.split(t)] for g in groups]
    sub = [Group(g.question, g.images, [g.solutions[j] for j in idx]) for g, idx in zip(groups, kept)]
    out: list[list[list[float] | None]] = [[[] for _ in g.solutions] for g in groups]
    tokens: list[list[int | None]] = [[0 for _ in g.solutions] for g in groups]
    try:
        results = model.score_groups(sub)
        for i, (idx, res) in enumerate(zip(kept, results)):
            for j, r in zip(idx, res):
                out[i][j], tokens[i][j] = r.step_scores, r.num_tokens
    except RECORD_ERRORS:
        for i, (g, idx) in enumerate(zip(sub, kept)):
            for j, text in zip(idx, g.solutions):
                try:
                    r = model.score_groups([Group(g.question, g.images, [text])])[0][0]
                    out[i][j], tokens[i][j] = r.step_scores, r.num_tokens
                except RECORD_ERRORS as err:
                    skips(chunk[i].id, "score", f"prompt {chunk[i].id}, candidate {j}: {record_error_text(err)}")
                    out[i][j], tokens[i][j] = None, None
    return out, tokens


def likelihood_scores(step_logprobs: list[list[float]] | None, kind: str, rid: str) -> list[float]:
    """The likelihood scorer's step scores: each step's probability under the policy, running minimum."""
    if step_logprobs is None:
        raise RecordError(f"prompt {rid}: candidates.jsonl holds no log-probabilities, which --prm likelihood "
                          "needs (it was sampled with logprobs=none)")
    flat, ranges = [], []
    for step in step_logprobs:
        ranges.append(range(len(flat), len(flat) + len(step)))
        flat.extend(step)
    return likelihood_step_scores(StepLogprobs([], [], [], flat, ranges), kind, running_min=True)
