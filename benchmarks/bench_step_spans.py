"""The two quadratic costs of the likelihood feature, before and after (issue 14, item 4).

1. ``find_step_spans``: decoded tokens and time per conversation for steps of growing length, the
   current search against the former one (growing windows), loaded from git at ``--before``.
2. The feature's full-vocabulary logits: the float count held at once for a group's step tokens,
   all positions at once (before: ``B x K x V``) against a chunk at a time (after: ``chunk x V``),
   for a vocabulary of ``--vocab`` (VisualPRM-8B's InternLM2: 92,553).

Run: python benchmarks/bench_step_spans.py [--before bd54f00]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import types

from rewards.conversation import build_conversation
from rewards.likelihood_feature import find_step_spans
from rewards.prm import ProcessRewardModel
from rlvprm.models.tiny import build_tiny_model


def former(commit: str):
    """``find_step_spans`` as it stood at ``commit``."""
    source = subprocess.run(["git", "show", f"{commit}:rewards/likelihood_feature.py"], capture_output=True,
                            text=True, check=True).stdout
    module = types.ModuleType("former_likelihood_feature")
    sys.modules[module.__name__] = module  # its dataclasses look their module up
    exec(compile(source, "former_likelihood_feature.py", "exec"), module.__dict__)
    return module.find_step_spans


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default="bd54f00", help="the commit holding the former search")
    ap.add_argument("--vocab", type=int, default=92553)
    args = ap.parse_args()
    old = former(args.before)
    with tempfile.TemporaryDirectory() as tmp:
        be = ProcessRewardModel.from_pretrained(str(build_tiny_model("qwen2-vl", tmp)), device="cpu").backend
    counted = [0]

    def decode(part):
        counted[0] += len(part)
        return be.tokenizer.decode(part, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    print("find_step_spans, 3 steps of n tokens each (tiny byte-level BPE):")
    print(f"{'n':>6} | {'before: tokens decoded':>22} {'ms':>8} | {'after: tokens decoded':>21} {'ms':>8} | same spans")
    for reps in (8, 32, 80):
        steps = [" ".join(f"{i} + {i + 1} = {2 * i + 1}," for i in range(reps))] * 3
        batch = be.encode([build_conversation("Sum?", steps, num_images=0)], [[]])
        ids, read = batch.inputs["input_ids"][0].tolist(), batch.read_positions[0]
        row = []
        for fn in (old, find_step_spans):
            counted[0] = 0
            t0 = time.perf_counter()
            spans = fn(decode, ids, read, len(be.header_ids), steps)
            row.append((counted[0], (time.perf_counter() - t0) * 1000, spans))
        n = row[1][2][0][1] - row[1][2][0][0]
        print(f"{n:>6} | {row[0][0]:>22} {row[0][1]:>8.1f} | {row[1][0]:>21} {row[1][1]:>8.1f} | {row[0][2] == row[1][2]}")
    print(f"\nfeature logits held at once, vocabulary {args.vocab}, fp32, 8 candidates x 12 steps x n tokens a step:")
    for n in (30, 100, 300):
        before = 8 * 12 * n * args.vocab * 4 / 2**20
        after = min(256, 8 * 12 * n) * args.vocab * 4 / 2**20
        print(f"  n={n:>3}: before {before:>8.0f} MiB, after {after:>5.0f} MiB (chunks of 256 positions)")


if __name__ == "__main__":
    main()
