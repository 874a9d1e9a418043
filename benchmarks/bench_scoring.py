"""Single-pass step scoring against the slow reference (one forward pass per step prefix).

Prints the wall time of both ways side by side in one run, their ratio, and the largest score
difference. Run: python benchmarks/bench_scoring.py [--arch qwen2-vl] [--solutions 32] [--steps 6]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from PIL import Image, ImageDraw

from rewards.prm import Group, ProcessRewardModel
from rlvprm.models.tiny import build_tiny_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="qwen2-vl")
    ap.add_argument("--solutions", type=int, default=32, help="candidate solutions in the group")
    ap.add_argument("--steps", type=int, default=6, help="steps per solution")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        prm = ProcessRewardModel.from_pretrained(str(build_tiny_model(args.arch, tmp)), device="cpu", dtype="float32",
                                                 batch_size=args.batch_size)
        img = Image.new("RGB", (168, 28), "white")
        ImageDraw.Draw(img).text((4, 8), "3 7 5 1 2 9", fill="black")
        question = "<image>\nWhat is the sum of the numbers in the image?"
        sols = ["\n\n".join(f"Step {k}: {i} + {k} = {i + k}." for k in range(args.steps)) for i in range(args.solutions)]
        prefixes = ["\n\n".join(s.split("\n\n")[: k + 1]) for s in sols for k in range(args.steps)]

        def best(fn):
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                out = fn()
                times.append(time.perf_counter() - t0)
            return min(times), out

        t_single, single = best(lambda: prm.score_group(question, [img], sols))
        t_prefix, pref = best(lambda: prm.score_groups([Group(question, [img], prefixes)])[0])
        ref = [[pref[i * args.steps + k].step_scores[-1] for k in range(args.steps)] for i in range(args.solutions)]
        diff = max(abs(a - b) for r, s in zip(single, ref) for a, b in zip(r.step_scores, s))
    print(f"arch {args.arch}, {args.solutions} solutions x {args.steps} steps, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads (best of {args.repeats})")
    print(f"single pass   : {t_single * 1000:8.1f} ms  ({t_single / args.solutions * 1000:.2f} ms per solution)")
    print(f"prefix by step: {t_prefix * 1000:8.1f} ms  ({t_prefix / args.solutions * 1000:.2f} ms per solution)")
    print(f"speed-up {t_prefix / t_single:.2f}x, largest score difference {diff:.2e}")


if __name__ == "__main__":
    main()
