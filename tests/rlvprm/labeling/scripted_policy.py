"""A test double of ``rlvprm.generation``'s samplers whose continuation outcomes are known exactly.

Rollouts come from a table keyed by the question. A continuation's outcome is set by the last
marker in its prefix: ``[r/q]`` makes continuation ``j`` right iff ``j % q < r`` (so ``num_mc = 4``
and ``[3/4]`` give exactly 3 of 4), ``[rand]`` makes it right or wrong by a hash of the call's seed,
the prefix and ``j`` (so the output depends on how each call is seeded). A right continuation ends in
``\\boxed{7}``, a wrong one in ``\\boxed{0}``: records using this double have answer ``7``.
"""

from __future__ import annotations

import hashlib
import re

from rlvprm.generation import Sample

_MARKER = re.compile(r"\[(\d+)/(\d+)\]|\[rand\]")


def _bit(*parts) -> int:
    return hashlib.sha256("/".join(map(str, parts)).encode()).digest()[0] & 1


class ScriptedPolicy:
    def __init__(self, rollouts: dict[str, list[str]], seeded_rollouts: bool = False):
        self.rollouts = rollouts
        self.seeded_rollouts = seeded_rollouts  # pick each rollout by the seed, among the table's texts
        self.calls: list[dict] = []

    def sample(self, requests, num_samples=1, max_new_tokens=256, temperature=1.0, top_p=1.0, seed=0,
               batch_size=8, return_logprobs=False):
        self.calls.append({"prefixes": [r.prefix for r in requests], "num_samples": num_samples, "seed": seed,
                           "questions": [r.question for r in requests], "num_images": [len(r.images) for r in requests]})
        out = []
        for r in requests:
            if r.prefix is None:
                table = self.rollouts[r.question]
                if self.seeded_rollouts:
                    texts = [table[(_bit(seed, j) + j) % len(table)] for j in range(num_samples)]
                else:
                    texts = [table[j % len(table)] for j in range(num_samples)]
            else:
                markers = list(_MARKER.finditer(r.prefix))
                if not markers:
                    raise AssertionError(f"no outcome marker in prefix {r.prefix!r}")
                m = markers[-1]
                if m.group(0) == "[rand]":
                    right = [_bit(seed, r.prefix, j) == 1 for j in range(num_samples)]
                else:
                    num, den = int(m.group(1)), int(m.group(2))
                    right = [j % den < num for j in range(num_samples)]
                texts = [f"Carry on.\n\nThe answer is \\boxed{{{7 if ok else 0}}}." for ok in right]
            out.append([Sample(text=t, token_ids=[], finish_reason="stop", num_tokens=1) for t in texts])
        return out
