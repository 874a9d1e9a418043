"""Group scoring three ways: per-prefix, one-pass, shared-prefix; against the FLOP floor.

A Best-of-N / GRPO group is one question with its image and N candidate solutions. Three ways to
score it with the same PRM, timed side by side in one run:

- per-prefix: one conversation per step prefix (what a PRM without single-pass reading costs);
- one-pass: every candidate's whole conversation in one forward pass (``shared_prefix=False``);
- shared-prefix: vision encoder and common token prefix once, the N suffixes on its cache (default).

The FLOP floor is the work of the image and the prefix once plus the N suffixes (each attending to
the prefix), counted from the model's shapes (linear layers, attention, vision tower; the output
layer at read positions). It becomes seconds at the rate this run measures for a dense product of
the model's own shapes (``(tokens x hidden) @ (hidden x intermediate)``), so a method's ratio to the
floor says how far it is from doing only the necessary products at full matmul speed.
Peak memory is the process's resident memory above the level before each method (sampled every
2 ms; freed heap is returned to the OS between methods). The model is a Qwen2-VL built here, small
but not tiny (the size is printed); fp32, CPU, one thread.

Run: python benchmarks/bench_group_scoring.py [--repeats 2] [--ns 4 8 16] [--image-tokens 256 1024]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import tempfile
import threading
import time

import torch
from PIL import Image, ImageDraw

from rewards.prm import Group, ProcessRewardModel
from rlvprm.models.tiny import TinySize, build_tiny_model

MERGE_PX = 28  # one Qwen2-VL image token: 2 x 2 patches of 14 px


def image_of(tokens: int) -> Image.Image:
    side = int(round(tokens**0.5)) * MERGE_PX
    img = Image.new("RGB", (side, side), "white")
    draw = ImageDraw.Draw(img)
    for k in range(0, side, 56):
        draw.text((k % side, (k * 7) % side), str(k % 10), fill="black")
    return img


def build_bench_model(out_dir, hidden: int = 384, layers: int = 4, seed: int = 0):
    """A Qwen2-VL small but not tiny (9.9M parameters at the defaults), written to ``out_dir``."""
    size = TinySize(hidden=hidden, layers=layers, heads=hidden // 64, kv_heads=2, intermediate=4 * hidden,
                    vision_hidden=128, vision_layers=2)
    return build_tiny_model("qwen2-vl", out_dir, seed=seed, size=size)


def allow_image_tokens(image_processor, tokens: int) -> None:
    """Let the image processor keep images of up to about ``2 * tokens`` image tokens (tiny builds cap at 64)."""
    image_processor.size = {"shortest_edge": MERGE_PX**2, "longest_edge": MERGE_PX**2 * 2 * tokens}
    for attr in ("max_pixels", "min_pixels"):
        if hasattr(image_processor, attr):
            setattr(image_processor, attr, image_processor.size["longest_edge" if attr == "max_pixels" else "shortest_edge"])


def solutions(n: int) -> list[str]:
    """N candidates of 3 to 5 steps of different lengths (about 80 to 150 tokens with the markup)."""
    out = []
    for i in range(n):
        steps = [f"{i + k} + {3 * k + 1} = {i + 4 * k + 1}" + " so far" * (i % 2) for k in range(2 + i % 3)]
        out.append("\n\n".join(steps + [f"The answer is \\boxed{{{i + 7}}}."]))
    return out


class PeakRSS:
    """Peak resident memory above the starting level while the block runs (MiB)."""

    def __enter__(self):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _watch(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        self.mib = (self.peak - self.base) / 2**20


def lm_flops(cfg, queries: int, keys_from: int) -> float:
    """Decoder FLOPs for ``queries`` tokens at positions ``keys_from .. keys_from + queries - 1``."""
    h, inter, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    kv = cfg.num_key_value_heads * (h // cfg.num_attention_heads)
    linear = 2 * (2 * h * h + 2 * h * kv + 3 * h * inter)
    keys = queries * keys_from + queries * (queries + 1) / 2  # causal: token j sees keys_from + j + 1 keys
    return layers * (queries * linear + 4 * h * keys)


def vision_flops(vcfg, patches: int) -> float:
    e, depth = vcfg.embed_dim, vcfg.depth
    mlp = int(e * vcfg.mlp_ratio)
    per_patch = 2 * (3 * 2 * 14 * 14 * e) + depth * 2 * (4 * e * e + 2 * e * mlp)
    attention = depth * 4 * e * patches * patches
    merged = patches // 4
    merger = merged * 2 * (4 * e * 4 * e + 4 * e * vcfg.hidden_size)
    return patches * per_patch + attention + merger


def matmul_rate(h: int, inter: int, tokens: int = 1024, repeats: int = 5) -> float:
    """FLOP/s of ``(tokens x h) @ (h x inter)``, best of ``repeats``."""
    a, b = torch.randn(tokens, h), torch.randn(h, inter)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * tokens * h * inter / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ns", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--image-tokens", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--per-prefix-ns", type=int, nargs="*", default=[4],
                    help="the N at which per-prefix runs (it costs about steps x one-pass; the others print -)")
    ap.add_argument("--repeats", type=int, default=2, help="best of this many runs (per-prefix and one-pass: one run)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--layers", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        prm = ProcessRewardModel.from_pretrained(str(build_bench_model(tmp, args.hidden, args.layers)), device="cpu",
                                                 dtype="float32", batch_size=args.batch_size)
    model = prm.backend.model
    allow_image_tokens(prm.backend.processor.image_processor, max(args.image_tokens))
    tcfg, vcfg = model.config.text_config, model.config.vision_config
    params = sum(p.numel() for p in model.parameters())
    rate = matmul_rate(tcfg.hidden_size, tcfg.intermediate_size)
    print(f"model: Qwen2-VL, {params / 1e6:.1f}M parameters (text hidden {tcfg.hidden_size}, {tcfg.num_hidden_layers} "
          f"layers, intermediate {tcfg.intermediate_size}, {tcfg.num_attention_heads} heads / "
          f"{tcfg.num_key_value_heads} KV; vision embed {vcfg.embed_dim}, depth {vcfg.depth}); fp32, CPU, "
          f"{torch.get_num_threads()} thread; batch {args.batch_size}; best of {args.repeats}")
    print(f"matmul rate at the model's shapes: {rate / 1e9:.1f} GFLOP/s (turns FLOPs into floor seconds)")
    header = (f"{'img tok':>7} {'N':>3} {'prefix':>6} {'suffix':>6} | {'floor s':>7} | "
              f"{'per-prefix s':>12} {'x floor':>7} {'MiB':>5} | {'one-pass s':>10} {'x floor':>7} {'MiB':>5} | "
              f"{'shared s':>8} {'x floor':>7} {'MiB':>5} | {'one/shared':>10} {'max |diff|':>10}")
    print(header)
    last, profile = None, {"work": float('nan'), "text": "-"}
    for tokens in args.image_tokens:
        img = image_of(tokens)
        for n in args.ns:
            group = Group("<image>\nWhat is the sum of the numbers in the image?", [img], solutions(n))
            prefixes = Group(group.question, group.images,
                             ["\n\n".join(s.split("\n\n")[: k + 1]) for s in group.solutions
                              for k in range(len(s.split("\n\n")))])
            convs = [c for _, c in prm.prepare(group)]
            rows, vision = prm.backend.group_rows(convs, group.images)
            read, _ = prm.backend.locate(rows, convs)
            from rewards.shared_prefix import common_prefix_length

            cut = min(common_prefix_length(rows), min(r[0] for r in read))
            grid = vision["image_grid_thw"][0]
            patches = int(grid.prod())
            vis = vision_flops(vcfg, patches)
            floor = vis + lm_flops(tcfg, cut, 0) + sum(lm_flops(tcfg, len(r) - cut, cut) for r in rows)
            work_one = sum(vis + lm_flops(tcfg, len(r), 0) for r in rows)

            def timed(fn, repeats):
                best, out, mem = float("inf"), None, 0.0
                for _ in range(repeats):
                    with PeakRSS() as peak:
                        t0 = time.perf_counter()
                        out = fn()
                        best = min(best, time.perf_counter() - t0)
                    mem = max(mem, peak.mib)
                return best, out, mem

            def run(g, shared):
                prm.shared_prefix = shared
                return prm.score_groups([g])[0]

            t_shared, shared, m_shared = timed(lambda: run(group, True), args.repeats)
            t_one, one, m_one = timed(lambda: run(group, False), 1)
            diff = max(abs(a - b) for x, y in zip(one, shared) for a, b in zip(x.step_scores, y.step_scores))
            floor_s = floor / rate
            pre_cols = f"{'-':>12} {'-':>7} {'-':>5}"
            if n in args.per_prefix_ns:
                t_pre, pre, m_pre = timed(lambda: run(prefixes, False), 1)
                k = 0
                for x in one:
                    ref = [pre[k + j].step_scores[-1] for j in range(len(x.step_scores))]
                    diff = max(diff, max(abs(a - b) for a, b in zip(x.step_scores, ref)))
                    k += len(x.step_scores)
                pre_cols = f"{t_pre:>12.2f} {t_pre / floor_s:>7.2f} {m_pre:>5.0f}"
            suffix = sum(len(r) - cut for r in rows) / len(rows)
            print(f"{tokens:>7} {n:>3} {cut:>6} {suffix:>6.0f} | {floor_s:>7.3f} | {pre_cols} | "
                  f"{t_one:>10.2f} {t_one / floor_s:>7.2f} {m_one:>5.0f} | "
                  f"{t_shared:>8.3f} {t_shared / floor_s:>7.2f} {m_shared:>5.0f} | "
                  f"{t_one / t_shared:>9.2f}x {diff:>10.1e}", flush=True)
            if n == 8:
                last = (t_one / t_shared, t_shared / floor_s)
                profile = shared_profile(prm, rows, cut, vision, rate, tcfg, vis, floor, work_one)
    print(f"floor FLOPs vs one-pass FLOPs at the last N=8 row: 1 : {profile['work']:.2f}")
    print(f"where shared-prefix's time goes at the last N=8 row (s, and x its own FLOP floor): {profile['text']}")
    if last is not None:
        print(f"shared-prefix vs one-pass at N=8, ~1k image tokens: {last[0]:.2f}x (floor ratio {last[1]:.2f})")


def shared_profile(prm, rows, cut, vision, rate, tcfg, vis, floor, work_one) -> dict:
    """The shared path's phases timed apart: vision tower, prefix text, suffix batches."""
    from rewards.shared_prefix import SharedPrefix, suffix_batch

    model = prm.backend.model
    with torch.inference_mode():
        t0 = time.perf_counter()
        model.model.get_image_features(vision["pixel_values"], vision["image_grid_thw"])
        t_vis = time.perf_counter() - t0
        t0 = time.perf_counter()
        prefix = SharedPrefix(model, rows[0], cut, vision)
        t_prefix = time.perf_counter() - t0 - t_vis
        t0 = time.perf_counter()
        for s in range(0, len(rows), prm.batch_size):
            ids, mask = suffix_batch(rows[s : s + prm.batch_size], cut, prm.backend.pad_id)
            prefix.suffix_hidden(ids, mask)
        t_suf = time.perf_counter() - t0
    f_text = lm_flops(tcfg, cut, 0)
    f_suf = floor - vis - f_text
    text = (f"vision {t_vis:.2f} ({t_vis * rate / vis:.2f}x), prefix text {t_prefix:.2f} ({t_prefix * rate / f_text:.2f}x), "
            f"suffixes {t_suf:.2f} ({t_suf * rate / f_suf:.2f}x)")
    return {"text": text, "work": work_one / floor}


if __name__ == "__main__":
    main()
