"""The visual-arith toy policy: a tiny Qwen2-VL trained by SFT on the world's solutions.

Three stages: the reading step alone, then whole reference solutions (DESIGN.md section 7: a tiny
model learns to read digits only with such a first stage), then whole solutions of the flawed
teacher (``rlvprm.world.teacher``), which turns the teacher's wrong rules into beliefs the policy
holds with a probability near their rates: confident, systematic mistakes that RL can correct and
a PRM must catch. The tokenizer's merges are learned from the world's own text, images are
normalised so white maps to 0, and every digit sits in its own 28-px cell (one merged vision
token). ``train_toy_policy`` writes a folder that loads with ``from_pretrained`` plus
``train_info.json`` (stages, seconds, loss history); ``init_from`` continues an existing policy
(for example the two-stage one) with the stages whose step counts are not 0.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch
from PIL import Image

from rewards.images import to_rgb
from rewards.loading import load_vlm
from rlvprm.data.jsonl import read_jsonl
from rlvprm.models.tiny import TinySize, build_tiny_model
from rlvprm.policy.sft import SFTRow, SFTStage, train_sft


def load_rows(path: str | Path, image_root: str | Path | None = None, limit: int | None = None, start: int = 0):
    """World rows of a jsonl file from row ``start`` on (at most ``limit``) and their images (opened as RGB)."""
    path = Path(path)
    root = Path(image_root) if image_root else path.parent
    rows, images = [], []
    for index, (_, row) in enumerate(read_jsonl(path)):
        if index < start:
            continue  # no image opened for rows before the window
        if limit is not None and len(rows) >= limit:
            break
        paths = row["image"] if isinstance(row["image"], list) else [row["image"]]
        imgs = []
        for p in paths:
            with Image.open(root / p) as im:
                imgs.append(to_rgb(im))
        rows.append(row)
        images.append(imgs)
    return rows, images


def train_toy_policy(
    world_dir: str | Path,
    out_dir: str | Path,
    read_steps: int = 600,
    full_steps: int = 900,
    flawed_steps: int = 300,
    flawed_learning_rate: float = 5e-4,
    init_from: str | Path | None = None,
    num_sft: int | None = None,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    seed: int = 0,
    size: TinySize | None = None,
    progress: bool = True,
    report_to: str = "none",
) -> dict:
    """Build (or, with ``init_from``, load) and train the toy policy from ``world_dir/sft.jsonl``.

    Reading and full stages train on each row's ``reference`` solution, the flawed stage on its
    ``solution`` (the teacher's; rows of worlds written before the teacher have only ``solution``,
    which is then both). Returns ``train_info``.
    """
    world_dir, out_dir = Path(world_dir), Path(out_dir)
    rows, images = load_rows(world_dir / "sft.jsonl", world_dir, limit=num_sft)
    if init_from is None:
        corpus = [r["question"] + "\n" + r.get("reference", r["solution"]) for r in rows[:2000]]
        size = size or TinySize(vocab_size=400)
        build_tiny_model("qwen2-vl", out_dir, seed=seed, size=size, corpus=corpus, white_is_zero=True)
        model, processor = load_vlm(str(out_dir), train=True)
    else:
        model, processor = load_vlm(str(init_from), train=True)
        _copy_tokenizer_files(Path(init_from), out_dir)
    reference = [SFTRow(r["question"], imgs, r.get("reference", r["solution"])) for r, imgs in zip(rows, images)]
    taught = [SFTRow(r["question"], imgs, r["solution"]) for r, imgs in zip(rows, images)]
    stages = [SFTStage("read", "first_step", read_steps), SFTStage("full", "full", full_steps),
              SFTStage("flawed", "full", flawed_steps, rows=taught, learning_rate=flawed_learning_rate)]
    t0 = time.time()
    result = train_sft(model, processor, reference, stages, out_dir / "trainer", batch_size=batch_size,
                       learning_rate=learning_rate, seed=seed, progress=progress, report_to=report_to)
    seconds = time.time() - t0
    init_info = _train_info(init_from)
    info = {
        "seconds": seconds,
        # The whole lineage's training time, when this run continued another policy.
        "total_seconds": seconds + (init_info.get("total_seconds", init_info["seconds"]) if init_info else 0.0),
        "stage_seconds": result["seconds"], "history": result["history"],
        "read_steps": read_steps, "full_steps": full_steps, "flawed_steps": flawed_steps,
        "flawed_learning_rate": flawed_learning_rate, "init_from": str(init_from) if init_from else None,
        "flaw_rates": _flaw_rates(world_dir), "init_info": init_info, "batch_size": batch_size,
        "learning_rate": learning_rate, "num_sft": len(rows), "seed": seed,
        "threads": torch.get_num_threads(), "parameters": sum(p.numel() for p in model.parameters()),
    }
    model.save_pretrained(out_dir)
    (out_dir / "train_info.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def _copy_tokenizer_files(src: Path, dst: Path) -> None:
    """Everything of a model folder but its weights and training record (tokenizer, processor, config)."""
    dst.mkdir(parents=True, exist_ok=True)
    for path in src.iterdir():
        if path.is_file() and path.name not in ("model.safetensors", "train_info.json"):
            shutil.copy2(path, dst / path.name)


def _train_info(folder) -> dict | None:
    path = Path(folder) / "train_info.json" if folder else None
    return json.loads(path.read_text()) if path and path.exists() else None


def _flaw_rates(world_dir: Path) -> dict | None:
    """The teacher's rates the world folder was written with (``world.json``), if it says."""
    manifest = world_dir / "world.json"
    if not manifest.exists():
        return None
    return json.loads(manifest.read_text()).get("config", {}).get("flaw_rates")


def evaluate_toy_policy(model_dir, world_dir, start: int, num: int, k: int = 8, max_new_tokens: int = 96,
                        seed: int = 0, out: str | Path | None = None) -> dict:
    """Exact evaluation (``rlvprm.world.evaluate``) on prompts ``start .. start + num - 1`` of the world.

    Also counts which teacher rule (``rlvprm.world.teacher``) each wrong sample's first error matches,
    so a policy's beliefs can be read off (``flaw_mix``).
    """
    from rlvprm.generation import HFSampler
    from rlvprm.world.evaluate import evaluate_policy

    world_dir = Path(world_dir)
    rows, images = load_rows(world_dir / "prompts.jsonl", world_dir, limit=num, start=start)
    model, processor = load_vlm(str(model_dir))
    metrics, records = evaluate_policy(HFSampler(model, processor, progress=False), rows, images, k=k,
                                       max_new_tokens=max_new_tokens, seed=seed)
    metrics["flaw_mix"] = flaw_mix(rows, records)
    if out is not None:
        Path(out).write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


def flaw_mix(rows, records) -> dict[str, int]:
    """How many sampled solutions reproduce each teacher rule's text at their first wrong step."""
    from rlvprm.world.teacher import RULES, teacher_solution
    from rlvprm.world.write import problem_from_row
    from rewards.steps import split_steps
    import random

    counts = dict.fromkeys([*RULES, "other"], 0)
    for row, rec in zip(rows, records):
        problem = problem_from_row(row)
        # The text each rule alone writes at its flawed step, to match a sample's first wrong step against.
        signatures = {}
        for name in RULES:
            taught = teacher_solution(problem, {name: 1.0}, random.Random(0))
            if taught.flaws:
                first = taught.solution.labels.index(False)
                signatures[name] = (first, taught.solution.steps[first])
        for text, steps_ok in zip(rec["samples"], rec["steps_correct"]):
            if not steps_ok or all(steps_ok):
                continue
            first = steps_ok.index(False)
            step = split_steps(text)[first].text
            match = [name for name, sig in signatures.items() if sig == (first, step)]
            counts[match[0] if match else "other"] += 1
    return counts


def main(argv: list[str] | None = None) -> dict:
    """``python -m rlvprm.policy.toy WORLD OUT [--init-from DIR] [--read-steps N] ... [--eval-prompts N]``."""
    import argparse
    import inspect

    default = {k: v.default for k, v in inspect.signature(train_toy_policy).parameters.items()}
    parser = argparse.ArgumentParser(
        prog="python -m rlvprm.policy.toy",
        description="Train the visual-arith toy policy (reading, full and flawed-teacher SFT stages), or continue "
                    "one with --init-from, then evaluate it exactly on held-out prompts of the world.")
    parser.add_argument("world", help="world folder (python -m rlvprm.world.write) with sft.jsonl and prompts.jsonl")
    parser.add_argument("out", help="folder for the trained policy")
    parser.add_argument("--init-from", default=None, help="continue this policy folder instead of building a new model")
    for name in ("read_steps", "full_steps", "flawed_steps", "num_sft", "batch_size", "seed"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=default[name],
                            help=f"{name.replace('_', ' ')} (default %(default)s)")
    for name in ("learning_rate", "flawed_learning_rate"):
        parser.add_argument("--" + name.replace("_", "-"), type=float, default=default[name],
                            help=f"peak {name.replace('_', ' ')} (default %(default)s)")
    parser.add_argument("--eval-start", type=int, default=1000, help="first held-out prompt row (default %(default)s)")
    parser.add_argument("--eval-prompts", type=int, default=300, help="held-out prompts to evaluate on; 0 skips (default %(default)s)")
    parser.add_argument("--k", type=int, default=8, help="samples per held-out prompt (default %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default %(default)s)")
    args = parser.parse_args(argv)
    for name in ("read_steps", "full_steps", "flawed_steps", "eval_prompts", "eval_start"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0")
    for name in ("batch_size", "k", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    torch.set_num_threads(args.threads)
    info = train_toy_policy(args.world, args.out, args.read_steps, args.full_steps, args.flawed_steps,
                            args.flawed_learning_rate, args.init_from, num_sft=args.num_sft, batch_size=args.batch_size,
                            learning_rate=args.learning_rate, seed=args.seed)
    shutil.rmtree(Path(args.out) / "trainer", ignore_errors=True)
    print(f"trained in {info['seconds']:.0f} s")
    if args.eval_prompts:
        metrics = evaluate_toy_policy(args.out, args.world, args.eval_start, args.eval_prompts, k=args.k,
                                      out=Path(args.out) / "heldout_eval.json")
        info["heldout_eval"] = metrics
        print(json.dumps({k: v for k, v in metrics.items() if k != "per_source"}, indent=1))
        for src, m in metrics["per_source"].items():
            print(f"{src}: greedy {m['greedy_accuracy']:.3f}, mean sample {m['sample_accuracy']:.3f}, "
                  f"pass@{m['k']} {m['pass_at_k']:.3f}")
    return info


if __name__ == "__main__":
    main()
