"""Stage 1 of ``rlvprm bon``: sample N candidates per prompt once, and a greedy answer, resumably.

``DIR/candidates.jsonl`` holds one line per prompt, in data order::

    {"id": ..., "greedy": {"text", "finish_reason", "num_tokens"} or null,
     "candidates": [{"text", "finish_reason", "num_tokens", "step_logprobs"}, ...]}

``step_logprobs`` lists, per step of the candidate (``split_steps`` with ``max_steps``), the
policy's own log-probability of each of the step's tokens (null with ``logprobs=none``). They are
what the likelihood strategy and the likelihood scorer read, computed once here:

- ``policy``: one teacher-forced pass per prompt (``rlvprm.policy_likelihood``), tokens assigned to
  steps by the tokenizer's offsets in the prompt-plus-solution text.
- ``sampler``: the log-probabilities the sampler returned for the tokens it drew (raw logits,
  temperature 1, as the teacher-forced pass); the drawn tokens are mapped to characters by
  re-tokenising the text (or, when that gives other ids, by decoding prefixes).

Resuming: prompts go in fixed chunks of ``chunk_size`` in data order, and chunk ``k`` is sampled
with seed ``batch_seed(seed, k)``. A chunk with any prompt missing from the file is sampled again
whole, with the same prompts, padding and seed, and only its missing lines are written, so a killed
run re-run gives the same file as an uninterrupted one (on the same hardware and software).
"""

from __future__ import annotations

import gc
import logging
import math
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from rewards.steps import split_steps
from rlvprm.bon.config import BonConfig, BonPrompt
from rlvprm.data.jsonl import ResumableWriter
from rlvprm.data.records import load_images
from rlvprm.generation import Request, Sample, batch_seed
from rlvprm.policy_likelihood import solution_logprobs, step_token_map

log = logging.getLogger(__name__)


def chunks(items: Sequence, size: int) -> list[tuple[int, Sequence]]:
    """``(chunk index, items)`` for consecutive chunks of ``size``."""
    return [(k, items[i : i + size]) for k, i in enumerate(range(0, len(items), size))]


def sample_candidates(cfg: BonConfig, prompts: list[BonPrompt], image_root: Path, path: Path) -> int:
    """Write the candidates of every prompt not yet in ``path``; returns how many prompts were sampled."""
    writer = ResumableWriter(path)
    todo = [(k, chunk) for k, chunk in chunks(prompts, cfg.chunk_size) if any(p.id not in writer.done for p in chunk)]
    missing = sum(p.id not in writer.done for _, chunk in todo for p in chunk)
    log.info("sampling: %d prompts, %d already sampled, %d to go", len(prompts), len(prompts) - missing, missing)
    if not todo:
        writer.close()
        return 0
    sampler = _make_sampler(cfg)
    mode = cfg.resolved_logprobs
    bar = tqdm(total=missing, desc="sample", unit="prompt")
    try:
        for k, chunk in todo:
            images = [load_images(p.record, image_root) for p in chunk]
            requests = [Request(p.record.question, imgs) for p, imgs in zip(chunk, images)]
            common = dict(max_new_tokens=cfg.max_new_tokens, batch_size=len(chunk))
            greedy = sampler.sample(requests, 1, temperature=0.0, seed=batch_seed(cfg.seed, k), **common) \
                if cfg.greedy else [None] * len(chunk)
            drawn = sampler.sample(requests, cfg.n, temperature=cfg.temperature, top_p=cfg.top_p,
                                   seed=batch_seed(cfg.seed, k), return_logprobs=mode == "sampler", **common)
            for p, imgs, g, samples in zip(chunk, images, greedy, drawn):
                if p.id in writer.done:
                    continue
                if mode == "policy":
                    found = solution_logprobs(sampler.model, sampler.processor, p.record.question, imgs,
                                              [s.text for s in samples], cfg.max_steps, batch_size=cfg.n)
                    step_lps = [[r.step_token_logprobs(j) for j in range(len(r.step_tokens))] for r in found]
                elif mode == "sampler":
                    step_lps = [sampled_step_logprobs(sampler.tokenizer, s, cfg.max_steps) for s in samples]
                else:
                    step_lps = [None] * len(samples)
                writer.write({
                    "id": p.id,
                    "greedy": None if g is None else _sample_record(g[0]),
                    "candidates": [{**_sample_record(s), "step_logprobs": lp} for s, lp in zip(samples, step_lps)],
                })
                bar.update(1)
    finally:
        bar.close()
        writer.close()
        del sampler
        gc.collect()
        _empty_cuda_cache()
    return missing


def _sample_record(s: Sample) -> dict:
    return {"text": s.text, "finish_reason": s.finish_reason, "num_tokens": s.num_tokens}


def _make_sampler(cfg: BonConfig):
    from rlvprm.generation import make_sampler

    extra = {"gpu_memory_utilization": cfg.vllm_gpu_memory_utilization} if cfg.sampler == "vllm" else {}
    return make_sampler(cfg.sampler, cfg.policy, dtype=cfg.dtype, device=cfg.device,
                        trust_remote_code=cfg.policy_trust_remote_code, progress=False, **extra)


def _empty_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def sampled_step_logprobs(tokenizer, sample: Sample, max_steps: int | None = None) -> list[list[float]]:
    """Per step of ``sample.text``, the log-probabilities the sampler returned for that step's tokens.

    A token belongs to the step holding its last character (``policy_likelihood.step_token_map``).
    """
    if sample.token_logprobs is None:
        raise ValueError("the sampler returned no log-probabilities (sample with return_logprobs=True)")
    steps = split_steps(sample.text, max_steps)
    if not steps:
        return []
    _, ranges = step_token_map(token_char_spans(tokenizer, sample.token_ids, sample.text), 0, steps)
    return [[sample.token_logprobs[i] for i in r] for r in ranges]


def token_char_spans(tokenizer, ids: Sequence[int], text: str) -> list[tuple[int, int]]:
    """The character span in ``text`` of each of ``ids`` (the tokens ``text`` was decoded from)."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if list(enc["input_ids"]) == list(ids):
        return [tuple(o) for o in enc["offset_mapping"]]
    # The sampler drew a tokenisation the tokenizer would not produce: decode prefixes instead
    # (quadratic, but rare). A token that ends inside a multi-byte character ends where it completes.
    spans, prev = [], 0
    for i in range(len(ids)):
        end = len(tokenizer.decode(ids[: i + 1], skip_special_tokens=True).rstrip("\ufffd"))
        end = max(prev, min(end, len(text)))
        spans.append((prev, end))
        prev = end
    return spans


def mean_logprob(step_logprobs: list[list[float]] | None) -> float | None:
    """The mean token log-probability over a candidate's steps; None without log-probabilities."""
    if step_logprobs is None:
        return None
    flat = [x for step in step_logprobs for x in step]
    return math.fsum(flat) / len(flat) if flat else None
