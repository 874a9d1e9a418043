"""The demo's stages, one function each: ``fn(cfg, paths, out_dir) -> result`` (a JSON-able dict).

Each stage runs the project's own command in-process with the same parsing and checks a user's
launch gets (``rlvprm.cli.run_command``), from the recipe a user would launch, with the demo's
sizes as overrides; ``rlvprm.commands.demo`` orders them, times them and reuses finished ones.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from rlvprm.cli import run_command
from rlvprm.data.jsonl import read_jsonl, write_jsonl

CHECKPOINTS = Path(__file__).resolve().parents[1] / "data" / "checkpoints"
SHIPPED_POLICY = CHECKPOINTS / "toy-policy"
SHIPPED_PRM = CHECKPOINTS / "toy-prm"
# The full GRPO recipes' policies (recipes/grpo/README.md, seed 2 of each arm): what `compare` weighs
# against Best-of-N unless the demo trains its own with --from-scratch.
SHIPPED_RL = {"grpo-outcome": CHECKPOINTS / "toy-policy-grpo-outcome",
              "grpo-process-prm": CHECKPOINTS / "toy-policy-grpo-process-prm"}
RECIPES = Path(__file__).resolve().parents[2] / "recipes"
SHIPPED_ARMS = RECIPES / "grpo" / "measured" / "arms.md"
SHIPPED_ARMS_PLOT = RECIPES / "grpo" / "visual-arith-arms.png"
GRPO_ARMS = {"outcome": "visual-arith-outcome.yaml", "process-prm": "visual-arith-process-mc-prm.yaml"}


def world(cfg, out: Path) -> dict:
    """Prompts (the first ``train_prompts`` for labels and RL, the rest held out), the VPB-format set."""
    from rlvprm.world import write_world

    num = cfg.train_prompts + cfg.heldout_prompts
    files = write_world(out, cfg.seed, num, cfg.num_vpb, 0)
    rows = [row for _, row in read_jsonl(out / "prompts.jsonl")]
    write_jsonl(out / "heldout.jsonl", rows[cfg.train_prompts:])
    return {"files": str(files.root), "train_prompts": cfg.train_prompts, "heldout_prompts": cfg.heldout_prompts,
            "num_vpb": cfg.num_vpb}


def policy(cfg, world_dir: Path, out: Path) -> dict:
    model_dir = out / "model"
    if not cfg.from_scratch:
        _need(SHIPPED_POLICY, "rlvprm demo --from-scratch")
        shutil.copytree(SHIPPED_POLICY, model_dir)
        info = json.loads((model_dir / "train_info.json").read_text())
        return {"source": "shipped checkpoint", "train_seconds": info.get("total_seconds", info["seconds"]),
                "train_info": info}
    from rlvprm.policy.toy import train_toy_policy
    from rlvprm.world.write import write_set

    write_set(world_dir, "sft", cfg.seed, cfg.num_sft)
    info = train_toy_policy(world_dir, model_dir, cfg.read_steps, cfg.full_steps, cfg.flawed_steps,
                            cfg.flawed_learning_rate, num_sft=cfg.num_sft, batch_size=cfg.batch_size,
                            learning_rate=cfg.learning_rate, seed=cfg.seed, report_to=cfg.report_to)
    shutil.rmtree(model_dir / "trainer", ignore_errors=True)
    return {"source": "trained live", "train_seconds": info["seconds"], "train_info": info}


def mc_labels(cfg, world_dir: Path, policy_dir: Path, out: Path) -> dict:
    """``rlvprm label`` on training prompts, then the labels' agreement with the world's exact labels."""
    from rlvprm.labeling.quality import exact_records, mc_label_quality

    prompts = cfg.prm_label_prompts if cfg.from_scratch else cfg.label_prompts
    labels = out / "labels.jsonl"
    summary = run_command("label", [
        "--config", str(RECIPES / "label" / "visual-arith.yaml"), "--policy", str(policy_dir),
        "--data", str(world_dir / "prompts.jsonl"), "--image-root", str(world_dir), "--out", str(labels),
        "--limit", str(prompts), "--num-rollouts", str(cfg.label_rollouts), "--num-mc", str(cfg.label_mc),
        "--max-new-tokens", str(cfg.max_new_tokens), "--seed", str(cfg.seed), "--threads", str(cfg.threads),
        "--progress", "false",
    ])
    raw = [r for _, r in read_jsonl(labels)]
    rows = [r for _, r in read_jsonl(world_dir / "prompts.jsonl")][: prompts]
    quality = mc_label_quality(raw, rows)
    write_jsonl(out / "exact.jsonl", exact_records(raw, rows))
    (out / "quality.json").write_text(json.dumps(quality, indent=1) + "\n")
    rule = quality["all"]["rules"]["score == 0"]  # VisualPRM's rule: '-' iff no continuation succeeds
    return {"prompts": prompts, "rollouts": quality["rollouts"], "steps": quality["all"]["steps"],
            "exact_wrong": quality["all"]["exact_wrong"], "precision": rule["precision"], "recall": rule["recall"],
            "rules": quality["all"]["rules"], "label_summary": _plain(summary)}


def prm(cfg, world_dir: Path, labels: Path, policy_dir: Path, out: Path) -> dict:
    """The PRM: the shipped checkpoint, or ``rlvprm train-prm`` on the MC labels (its recipe, demo sizes)."""
    if not cfg.from_scratch:
        _need(SHIPPED_PRM, "rlvprm demo --from-scratch")
        info = json.loads((SHIPPED_PRM / "train_prm.json").read_text())
        return {"source": "shipped checkpoint", "path": str(SHIPPED_PRM), "train_seconds": info["seconds"],
                "records": info["records"], "steps": info["global_steps"]}
    model = out / "model"
    summary = run_command("train-prm", [
        "--config", str(RECIPES / "train_prm" / "visual-arith.yaml"), "--init", str(policy_dir),
        "--data", str(labels), "--image-root", str(world_dir), "--output-dir", str(model),
        "--eval-data", str(world_dir / "vpb_test.jsonl"), "--eval-limit", str(min(cfg.num_vpb, 200)),
        "--max-steps", str(cfg.prm_steps), "--eval-steps", str(max(1, cfg.prm_steps // 4)),
        "--save-steps", str(max(1, cfg.prm_steps // 4)), "--seed", str(cfg.seed), "--threads", str(cfg.threads),
        "--disable-tqdm", "true", "--report-to", cfg.report_to,
    ])
    for ckpt in model.glob("checkpoint-*"):
        shutil.rmtree(ckpt)
    return {"source": "trained live", "path": str(model), "train_seconds": summary["seconds"],
            "records": summary["records"], "steps": summary["global_steps"]}


def prm_eval(cfg, world_dir: Path, prm_path: str, out: Path) -> dict:
    """``rlvprm eval-vpb`` of the PRM on the world's exact-label set, threshold 0.5 fixed in advance."""
    report = run_command("eval-vpb", [
        "--data", str(world_dir / "vpb_test.jsonl"), "--image-root", str(world_dir), "--model", prm_path,
        "--out", str(out), "--threshold", "0.5", "--dtype", "float32", "--device", "cpu",
    ])
    overall = report["overall"]
    return {"records": overall["n_records"], "macro_f1": overall["macro_f1"], "auc": overall.get("auc"),
            "step_weighted_macro_f1": report["step_weighted_macro_f1"],
            "tuned": (report.get("sweep") or {}).get("macro_f1"),
            "error_types": {k: v.get("auc") for k, v in (report.get("error_types") or {}).items()
                            if isinstance(v, dict)}}


def bon(cfg, world_dir: Path, policy_dir: Path, prm_path: str, out: Path) -> dict:
    """``rlvprm bon`` on the held-out prompts: one sampling pass, the PRM, the same PRM as ORM, the rest."""
    # Sampled in compare's chunks, so compare reuses these samples and scores for the base policy.
    chunk = yaml.safe_load((RECIPES / "compare" / "visual-arith.yaml").read_text())["bon"]["chunk_size"]
    result = run_command("bon", [
        "--config", str(RECIPES / "bon" / "visual-arith.yaml"), "--policy", str(policy_dir), "--chunk-size", str(chunk),
        "--data", str(world_dir / "heldout.jsonl"), "--image-root", str(world_dir), "--prm", prm_path,
        "--orm", prm_path, "--out", str(out), "--limit", str(cfg.eval_prompts), "--n", str(cfg.k),
        "--max-new-tokens", str(cfg.max_new_tokens), "--seed", str(cfg.seed), "--threads", str(cfg.threads),
    ])
    return {"overall": result["overall"], "ns": result["ns"], "strategies": result["strategies"], "n": cfg.k,
            "counts": result["counts"]}


def policy_eval(world_dir: Path, bon_dir: Path, out: Path) -> dict:
    """Judge the Best-of-N stage's samples exactly with the world's checker (no new sampling)."""
    from rlvprm.world.evaluate import judge_texts

    rows = {r["id"]: r for _, r in read_jsonl(world_dir / "heldout.jsonl")}
    cands = [c for _, c in read_jsonl(bon_dir / "candidates.jsonl")]
    metrics, records = judge_texts(
        [rows[c["id"]] for c in cands], [c["greedy"]["text"] for c in cands],
        [[x["text"] for x in c["candidates"]] for c in cands],
        [[x["finish_reason"] for x in c["candidates"]] for c in cands],
    )
    write_jsonl(out / "samples.jsonl", records)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


def grpo(cfg, world_dir: Path, policy_dir: Path, prm_path: str, out: Path) -> dict:
    """``rlvprm grpo`` outcome against process credit with the PRM, from the two arms' recipes.

    By default a short live run of each (``grpo_steps`` steps of ``grpo_prompts`` x ``grpo_generations``)
    shows the machinery and its logs; ``--from-scratch`` runs the recipes at full size, and those
    policies are what ``compare`` weighs. The shipped full-recipe curves are reported beside either.
    """
    full = cfg.from_scratch and not cfg.quick
    runs = {}
    for arm, recipe in GRPO_ARMS.items():
        run_dir = out / arm
        argv = ["--config", str(RECIPES / "grpo" / recipe), "--policy", str(policy_dir),
                "--data", str(world_dir / "prompts.jsonl"), "--image-root", str(world_dir),
                "--num-prompts", str(cfg.train_prompts), "--output-dir", str(run_dir), "--seed", str(cfg.seed),
                "--threads", str(cfg.threads), "--max-completion-length", str(cfg.max_new_tokens),
                "--disable-tqdm", "true"]
        if arm != "outcome":
            argv += ["--prm", prm_path]
        if not full:
            argv += ["--max-steps", str(cfg.grpo_steps), "--num-generations", str(cfg.grpo_generations),
                     "--per-device-train-batch-size", str(cfg.grpo_prompts * cfg.grpo_generations),
                     "--heldout-every", "0"]
        else:
            argv += ["--heldout-prompts", str(min(cfg.heldout_prompts, 300))]
        summary = run_command("grpo", argv)
        steps = [h for h in summary["log_history"] if "outcome/accuracy" in h]
        runs[arm] = {"path": str(run_dir), "seconds": summary["train"]["train_runtime"],
                     "steps": len(steps), "train_accuracy": [h["outcome/accuracy"] for h in steps],
                     "reward": [h.get("reward") for h in steps], "kl": [h.get("kl") for h in steps],
                     "heldout": summary["heldout"]}
    return {"full_recipe": full, "runs": runs}


def compare(cfg, world_dir: Path, base: str, base_bon: Path, prm_path: str, rl: dict[str, str], out: Path) -> dict:
    """``rlvprm compare`` (its recipe): Best-of-N on the base policy (the ``bon`` stage's run, reused)
    against the RL policies, and both combined."""
    argv = ["--config", str(RECIPES / "compare" / "visual-arith.yaml"), "--base", base, "--base-bon", str(base_bon),
            "--data", str(world_dir / "heldout.jsonl"), "--image-root", str(world_dir), "--prm", prm_path,
            "--out", str(out), "--limit", str(cfg.eval_prompts), "--n", str(cfg.k),
            "--max-new-tokens", str(cfg.max_new_tokens), "--seed", str(cfg.seed), "--threads", str(cfg.threads),
            "--served-prompts", str(cfg.served_prompts)]
    for name, path in rl.items():
        argv += ["--rl", f"{name}={path}"]
    return _plain(run_command("compare", argv))


def _need(path: Path, how: str) -> None:
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"no shipped checkpoint at {path}; run `{how}` to train one")


def _plain(x):
    """JSON round trip: a command's return value as plain data for the stage's done.json."""
    return json.loads(json.dumps(x, default=str))
