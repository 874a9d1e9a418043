"""``run_compare``: test-time against train-time use of a PRM, at counted compute (DESIGN.md section 6).

    rlvprm compare --base POLICY --rl RUN1,RUN2 --prm PRM --data heldout.jsonl --served-prompts 100000 --out DIR

1. Every RL policy's training cost is read from its ``grpo_summary.json`` or ``ppo_summary.json``
   (``training.py``), before anything is sampled, and its training prompts are checked against ``--data``.
2. One ``rlvprm bon`` run per policy (``run_bon``: one sampling pass at N = n with a greedy answer,
   the PRM's scores of every candidate) into ``DIR/bon/<policy>/``, all with the same prompts, N,
   seed and PRM. Each resumes as ``bon`` does, so a killed compare re-run unchanged carries on and
   ends with the same files; settings that differ from a run's ``run.json`` are refused.
3. Accuracy and compute per prompt of every method (``compute.py``), per family (``data_source``)
   and overall -> ``DIR/compare.json``, ``DIR/compare.md``, ``DIR/compute.png`` (all prompts) and
   ``DIR/compute-<family>.png``.

Left out: policies other than one base and its RL descendants (a policy's own Best-of-N is
``rlvprm bon``), an ORM, FLOP estimates (tokens are counted, not weighted by model size), and
confidence intervals.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rlvprm.bon.config import BonPrompt, Skips
from rlvprm.bon.run import load_prompts, run_bon, sampling_settings, scoring_settings
from rlvprm.bon.scoring import read_lines
from rlvprm.bon.select import default_ns
from rlvprm.compare.compute import judge_prompts, merge_families, method_rows
from rlvprm.compare.config import BASE, CompareConfig
from rlvprm.compare.report import plot_compute, plot_name, render_markdown
from rlvprm.commands.policy_rl import summary_path
from rlvprm.compare.training import TrainingCost, read_summary, training_cost
from rlvprm.config import ConfigError
from rlvprm.data.jsonl import RecordError, read_jsonl
from rlvprm.data.provenance import WEIGHTS, weights_sha256
from rlvprm.data.records import parse_record


def policy_names(cfg: CompareConfig) -> dict[str, str]:
    """``name -> policy`` in table order: ``base``, then each RL folder (``NAME=FOLDER``, or by its own name)."""
    names = {BASE: cfg.base}
    for entry in cfg.rl:
        name, sep, folder = entry.partition("=")
        if not sep:
            name, folder = Path(entry.rstrip("/")).name, entry
        if name in names:
            raise ConfigError(f"RL policy {folder}: the name {name!r} is taken (by {names[name]}); give every RL "
                              f"folder its own name (and none named {BASE!r})")
        names[name] = folder
    return names


def check_held_out(folder: str, prompts: list[BonPrompt]) -> str | None:
    """Refuse prompts the RL policy in ``folder`` trained on; a note when its training data is not found.

    A prompt counts as the same when its id, question, answer and image paths all are; the policy
    trained on the first ``num_prompts`` rows of its ``data`` (``rlvprm grpo`` and ``rlvprm ppo``).
    """
    config = read_summary(folder)[0]["config"]
    data, limit = config.get("data"), config.get("num_prompts")
    if not data or not Path(data).is_file():
        return f"{Path(folder).name}: its training prompts ({data}) are not found from here, so --data was not " \
               "checked against them"
    seen = set()
    for count, (line, raw) in enumerate(read_jsonl(data)):
        if limit is not None and count >= limit:
            break
        rec = parse_record(raw, line)
        seen.add((rec.id, rec.question, rec.answer, tuple(rec.image_paths)))
    shared = [p.id for p in prompts if (p.id, p.record.question, p.record.answer, tuple(p.record.image_paths)) in seen]
    if shared:
        raise RecordError(f"{len(shared)} prompts of --data (the first: {shared[0]}) are training prompts of RL policy "
                          f"{folder} (rows of {data}): compare on held-out prompts")
    return None


def same_policy(a: str, b: str) -> bool:
    """The same folder, or two folders holding the same weights (a copied checkpoint is the same policy)."""
    if Path(a).resolve() == Path(b).resolve():
        return True
    wa, wb = Path(a) / WEIGHTS, Path(b) / WEIGHTS
    return (wa.is_file() and wb.is_file() and wa.stat().st_size == wb.stat().st_size  # cheap before hashing
            and weights_sha256(a) == weights_sha256(b))


# Settings a --base-bon run may differ in: compared by weights below (policy, prm), or not deciding the
# samples and PRM scores compare reads (the teacher-forced log-probabilities, the ORM's scores).
NOT_COMPARED = {"policy", "logprobs", "prm", "orm"}


def check_base_bon(cfg: CompareConfig, folder: Path) -> None:
    """Refuse a ``--base-bon`` run that sampled or scored differently from what compare would run: the
    settings ``rlvprm bon`` itself refuses to resume under (``sampling_settings``, ``scoring_settings``)."""
    meta = folder / "run.json"
    if not meta.is_file() or not (folder / "scores.jsonl").is_file():
        raise ConfigError(f"--base-bon {folder}: not a finished `rlvprm bon` run (no run.json or scores.jsonl)")
    saved = json.loads(meta.read_text())
    want = cfg.bon_config(cfg.base, str(folder))
    diff = [f"{k}: {saved.get(stage, {}).get(k)!r} (compare: {v!r})"
            for stage, expected in (("sampling", sampling_settings(want)), ("scoring", scoring_settings(want)))
            for k, v in expected.items() if k not in NOT_COMPARED and saved.get(stage, {}).get(k) != v]
    for stage, key, ours in (("sampling", "policy", cfg.base), ("scoring", "prm", cfg.prm)):
        theirs = saved.get(stage, {}).get(key)
        if not same_policy(str(theirs), ours):
            diff.append(f"{key}: {theirs!r} (compare: {ours!r}, other weights)")
    if diff:
        raise ConfigError(f"--base-bon {folder} was run with other settings: {'; '.join(diff)}")


def run_compare(cfg: CompareConfig) -> dict[str, Any]:
    """Read the training costs, run Best-of-N per policy, count compute (module docstring); returns
    what ``compare.json`` holds."""
    out = Path(cfg.out)
    names = policy_names(cfg)
    costs: dict[str, TrainingCost] = {name: training_cost(path) for name, path in names.items() if name != BASE}
    prompts, _ = load_prompts(cfg.bon_config(cfg.base, str(out / "bon" / BASE)), Skips(cfg.skip_bad))
    if not prompts:
        raise RecordError(f"{cfg.data}: no usable prompts")
    notes = [note for name in costs if (note := check_held_out(names[name], prompts))]
    for name, cost in costs.items():
        if cost.trained_from and not same_policy(cost.trained_from, cfg.base):
            notes.append(f"{name} was trained from {cost.trained_from}, not from the base policy {cfg.base}: its "
                         "difference from the base is not RL's alone")

    lines: dict[str, tuple[dict, dict]] = {}
    bon_dirs = {name: out / "bon" / name for name in names}
    for name, policy in names.items():
        bon_dir = bon_dirs[name]
        if name == BASE and cfg.base_bon:
            bon_dir = bon_dirs[name] = Path(cfg.base_bon)
            check_base_bon(cfg, bon_dir)
        else:
            run_bon(cfg.bon_config(policy, str(bon_dir)))
        lines[name] = (read_lines(bon_dir / "candidates.jsonl", "candidates"), read_lines(bon_dir / "scores.jsonl", "scores"))

    common = [p for p in prompts if all(p.id in cands and p.id in scores for cands, scores in lines.values())]
    if len(common) < len(prompts):
        missing = next(p.id for p in prompts if p not in common)
        if not cfg.skip_bad:
            raise RecordError(f"the policies' bon runs hold different prompts (the first missing: {missing}): "
                              "the runs under --out do not belong to one prompt set")
        notes.append(f"{len(prompts) - len(common)} prompts missing from some policy's run were left out")

    ns = default_ns(cfg.n)
    per_policy = []
    for name, (cands, scores) in lines.items():
        judged = judge_prompts(common, cands, scores, cfg.aggregation, str(bon_dirs[name]))
        per_prompt = costs[name].per_prompt(cfg.served_prompts) if name in costs else 0.0
        per_policy.append(method_rows(name, judged, ns, cfg.aggregation, cfg.num_subsets, cfg.seed, per_prompt,
                                      self_consistency=name == BASE))
    result = {
        "prm": cfg.prm, "data": cfg.data, "n": cfg.n, "ns": ns, "seed": cfg.seed, "num_subsets": cfg.num_subsets,
        "aggregation": cfg.aggregation, "served_prompts": cfg.served_prompts, "prompts": len(common),
        "policies": {name: {"path": path, "bon": cfg.base_bon if name == BASE and cfg.base_bon else f"bon/{name}",
                            "rl": name != BASE,
                            "summary": str(summary_path(path)) if name != BASE else None}
                     for name, path in names.items()},
        "training": {name: cost.as_dict(cfg.served_prompts) for name, cost in costs.items()},
        "tables": merge_families(per_policy),
        "notes": notes,
        "config": {k: v for k, v in asdict(cfg).items() if k != "out"},  # the file lies in out: a copy reads the same
    }
    (out / "compare.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "compare.md").write_text(render_markdown(result))
    for family, rows in result["tables"].items():
        title = f"Accuracy against compute, {'all prompts' if family == 'overall' else family} (PRM {Path(cfg.prm).name})"
        plot_compute(rows, cfg.aggregation, out / plot_name(family), title)
    return result
