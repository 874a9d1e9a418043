"""Write the visual-arith world to disk in the published formats (DESIGN.md section 4).

:func:`write_world` builds a whole dataset folder in one call::

    out_dir/
      world.json          seed, config and row counts (what rebuilds the folder byte for byte)
      prompts.jsonl       prompt set for RL and Best-of-N: id, image, question, answer, data_source
      vpb_test.jsonl      VisualProcessBench format: image (a list), question, answer,
                          response {steps, process_correctness}, policy_model, data_source,
                          plus id and error_type ("none" | "perception" | "arithmetic")
      sft.jsonl           SFT set: id, image, question, answer, solution (the flawed teacher's,
                          ``teacher.py``), reference (the correct one), flaws (the teacher's rules
                          applied, in step order), process_correctness (exact labels of solution),
                          data_source
      images/<set>/<id>.png

Image paths are relative to ``out_dir`` (pass it as ``image_root``). Every row also carries
``form`` and ``values``, the truth :func:`problem_from_row` rebuilds a problem from, so sampled text
can be checked exactly (``check.check_solution``); readers of the published formats ignore them.
Answers are strings, as in the published sets.

Example ``index`` of set ``name`` draws from its own random stream seeded by ``(seed, name,
index)``, so the same seed gives byte-identical files and a smaller set is a prefix of a larger
one. The three sets draw independently; a problem may repeat across them (the space is small).

Run ``python -m rlvprm.world.write OUT_DIR`` for a default folder. Left out: train/test splits of
the prompt set, sharding, Hub upload.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm.auto import tqdm

from rlvprm.world.config import DEFAULT_FLAW_RATES, WorldConfig
from rlvprm.world.problems import Problem, evaluate, make_problem
from rlvprm.world.render import Strip, render_strip
from rlvprm.world.solutions import Solution, make_solution, reference_solution
from rlvprm.world.teacher import RULES, teacher_solution

POLICY_MODEL = "visual-arith-generator"
SETS = {"prompts": "prompts.jsonl", "vpb": "vpb_test.jsonl", "sft": "sft.jsonl"}


@dataclass(frozen=True)
class Example:
    """One row of a set before it is written: the problem, its rendered strip, a solution."""

    problem: Problem
    strip: Strip
    solution: Solution
    flaws: tuple[str, ...] = ()  # the flawed teacher's rules in ``solution`` (SFT set)


@dataclass(frozen=True)
class WorldFiles:
    """Paths of a written world folder."""

    root: Path
    manifest: Path
    prompts: Path
    vpb: Path
    sft: Path


def make_example(seed: int, name: str, index: int, config: WorldConfig, with_errors: bool = False) -> Example:
    """Example ``index`` of set ``name``; ``with_errors`` draws its solution's error from ``config.error_mix``.

    The SFT set's solution is the flawed teacher's (``config.flaw_rates``), drawn from a stream of
    its own, so the problems and images of every set are the same whatever the rates.
    """
    rng = random.Random(f"visual-arith/{seed}/{name}/{index}")  # str seeds hash the same in every process
    problem = make_problem(rng, config, id=f"{name}-{index:06d}")
    strip = render_strip(problem.cells, problem.kind, rng, config.cell_size, config.jitter, config.glyph_height)
    if with_errors:
        kinds, weights = zip(*sorted(config.error_mix.items()))
        return Example(problem, strip, make_solution(problem, rng.choices(kinds, weights)[0], rng, config))
    if name == "sft":
        taught = teacher_solution(problem, config.flaw_rates, random.Random(f"visual-arith/{seed}/{name}/{index}/teacher"))
        return Example(problem, strip, taught.solution, taught.flaws)
    return Example(problem, strip, reference_solution(problem))


def problem_from_row(row: dict) -> Problem:
    """The problem a written row (of any set) was made from, for ``check_solution``.

    Blank cells are not written, so ``cells`` comes back as the values alone.
    """
    values = tuple(row["values"])
    # The truth is the form applied to the values: a row's answer may be edited or given as a list
    # of accepted spellings (rewards.outcome.accepted_answers), which int() cannot read.
    answer = evaluate(row["form"], values)[-1][3]
    return Problem(row["id"], row["data_source"], row["form"], values, values, row["question"], answer)


def _row(name: str, example: Example, image: str) -> dict:
    p, s = example.problem, example.solution
    row: dict = {"id": p.id, "image": image, "question": p.question, "answer": str(p.answer)}
    if name == "vpb":
        row["image"] = [image]
        row["response"] = {"steps": list(s.steps), "process_correctness": s.process_correctness}
        row["policy_model"] = POLICY_MODEL
        row["error_type"] = s.error_type
    elif name == "sft":
        row["solution"] = s.text
        row["reference"] = reference_solution(p).text
        row["flaws"] = list(example.flaws)
        row["process_correctness"] = s.process_correctness
    row["data_source"] = p.family
    row["form"] = p.form
    row["values"] = list(p.values)
    return row


def write_set(
    out_dir, name: str, seed: int, num: int, config: WorldConfig | None = None, progress: bool = True, bar=None
) -> Path:
    """Write set ``name`` ("prompts", "vpb" or "sft") of ``num`` rows and their images under ``out_dir``.

    ``bar``: a tqdm bar to advance instead of opening one (as :func:`write_world` does).
    """
    if name not in SETS:
        raise ValueError(f"name must be one of {tuple(SETS)}, got {name!r}")
    config = config or WorldConfig()
    out_dir = Path(out_dir)
    image_dir = out_dir / "images" / name
    image_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / SETS[name]
    own_bar = bar is None
    bar = bar if bar is not None else tqdm(total=num, desc=name, disable=not progress)
    with path.open("w", encoding="utf-8") as f:
        for index in range(num):
            example = make_example(seed, name, index, config, with_errors=name == "vpb")
            image = f"images/{name}/{example.problem.id}.png"
            example.strip.image.save(out_dir / image, format="PNG")
            f.write(json.dumps(_row(name, example, image), ensure_ascii=False) + "\n")
            bar.update(1)
    if own_bar:
        bar.close()
    return path


def write_world(
    out_dir,
    seed: int = 0,
    num_prompts: int = 1000,
    num_vpb: int = 500,
    num_sft: int = 5000,
    config: WorldConfig | None = None,
    progress: bool = True,
) -> WorldFiles:
    """Write a whole world folder (layout in the module docstring) and return its paths."""
    config = config or WorldConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {"prompts": num_prompts, "vpb": num_vpb, "sft": num_sft}
    with tqdm(total=sum(counts.values()), desc="visual-arith world", disable=not progress) as bar:
        paths = {name: write_set(out_dir, name, seed, num, config, bar=bar) for name, num in counts.items()}
    manifest = out_dir / "world.json"
    info = {"seed": seed, "counts": counts, "files": SETS, "policy_model": POLICY_MODEL, "config": asdict(config)}
    manifest.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return WorldFiles(out_dir, manifest, paths["prompts"], paths["vpb"], paths["sft"])


def main(argv: list[str] | None = None) -> WorldFiles:
    """``python -m rlvprm.world.write OUT [--seed S] [--num-prompts N] [--num-vpb N] [--num-sft N]``."""
    import argparse
    import inspect

    default = {k: v.default for k, v in inspect.signature(write_world).parameters.items()}
    parser = argparse.ArgumentParser(prog="python -m rlvprm.world.write",
                                     description="Write a visual-arith world folder (prompts, VisualProcessBench "
                                                 "set with exact labels, SFT set, images); byte-reproducible per seed.")
    parser.add_argument("out", help="folder to write (created if missing)")
    parser.add_argument("--seed", type=int, default=default["seed"],
                        help="world seed (default %(default)s); another seed gives other images")
    parser.add_argument("--num-prompts", type=int, default=default["num_prompts"], help="prompt records (default %(default)s)")
    parser.add_argument("--num-vpb", type=int, default=default["num_vpb"],
                        help="VisualProcessBench-format records (default %(default)s)")
    parser.add_argument("--num-sft", type=int, default=default["num_sft"], help="SFT records (default %(default)s)")
    parser.add_argument("--flaw-rate", action="append", default=[], metavar="RULE=RATE",
                        help="rate of one flawed-teacher rule in the SFT set (repeatable; rules: "
                             f"{', '.join(RULES)}; defaults: {DEFAULT_FLAW_RATES}); 0 for every rule gives "
                             "the clean reference solutions")
    args = parser.parse_args(argv)
    rates = dict(DEFAULT_FLAW_RATES)
    for item in args.flaw_rate:
        name, sep, value = item.partition("=")
        try:
            rates[name] = float(value)
        except ValueError:
            parser.error(f"--flaw-rate takes RULE=RATE, got {item!r}")
        if not sep:
            parser.error(f"--flaw-rate takes RULE=RATE, got {item!r}")
    try:
        config = WorldConfig(flaw_rates=rates)
    except ValueError as err:
        parser.error(str(err))
    for name in ("num_prompts", "num_vpb", "num_sft"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0")
    files = write_world(args.out, seed=args.seed, num_prompts=args.num_prompts, num_vpb=args.num_vpb,
                        num_sft=args.num_sft, config=config)
    print(files.root)
    return files


if __name__ == "__main__":
    main()
