"""`rlvprm demo`: the whole pipeline on the embedded visual-arith world, on a CPU, ending in a report.

Stages, each writing under one run folder and reused when re-run with the same settings:

1. ``world``: images, prompt set, VisualProcessBench-format test set with exact labels (the SFT
   set is added by the next stage when it trains the policy).
2. ``policy``: the toy policy. By default the checkpoint shipped in ``rlvprm/data/checkpoints``
   (produced by ``rlvprm demo --from-scratch``; its ``train_info.json`` records how long that took);
   ``--from-scratch`` trains it live; ``--quick`` trains a few steps live.
3. ``bon-likelihood``: Best-of-N on held-out prompts (``rlvprm bon``): a greedy answer and k
   samples per prompt, drawn once, selected by the policy's own step likelihood, self-consistency
   and the other strategies, beside the bound a perfect PRM would reach.
4. ``policy-eval``: greedy accuracy, pass@k, chain coherence and error mix of those same samples,
   judged by the world's exact checker.
5. ``report``: ``report.md`` with tables and PNG plots.

Later stages (Monte Carlo labels, PRM training, VisualProcessBench evaluation, Best-of-N, GRPO,
PPO, comparison) join here as they land. ``--quick`` runs every stage at toy sizes for CI.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from rlvprm.config import field

log = logging.getLogger(__name__)

SHIPPED_POLICY = Path(__file__).resolve().parents[1] / "data" / "checkpoints" / "toy-policy"


@dataclass
class DemoConfig:
    out: str = field("runs/demo", help="run folder; stages already done there are reused")
    quick: bool = field(False, help="toy sizes for every stage (CI smoke run, well under 2 minutes)")
    from_scratch: bool = field(False, help="train the toy policy live instead of using the shipped checkpoint")
    seed: int = field(0, help="seed of the world and of training")
    num_sft: int = field(20000, min=1, help="SFT rows in the world")
    num_prompts: int = field(300, min=1, help="held-out prompts (policy evaluation, Best-of-N, RL)")
    num_vpb: int = field(300, min=1, help="VisualProcessBench-format test records with exact step labels")
    read_steps: int = field(600, min=0, help="SFT steps on the reading step alone (stage 1)")
    full_steps: int = field(900, min=0, help="SFT steps on whole reference solutions (stage 2)")
    flawed_steps: int = field(300, min=0, help="SFT steps on the flawed teacher's solutions (stage 3: rlvprm.world.teacher "
                              "rules become the policy's beliefs; 0 keeps a policy that errs only by chance)")
    flawed_learning_rate: float = field(5e-4, min=0, help="peak learning rate of stage 3")
    batch_size: int = field(32, min=1, help="SFT batch size")
    learning_rate: float = field(1e-3, min=0, help="SFT learning rate (AdamW, cosine, weight decay 0.1)")
    eval_prompts: int = field(300, min=1, help="prompts the policy is evaluated on")
    k: int = field(8, min=1, help="samples per prompt for pass@k and the sample statistics")
    max_new_tokens: int = field(96, min=1, help="longest generated solution, in tokens")
    threads: int = field(1, min=0, help="torch CPU threads (0: torch's default). One is the default: a tiny model gains little from more, and on a busy machine two threads per process made sampling five times slower")
    report_to: str = field("none", help="training loggers: none, wandb (offline with WANDB_MODE=offline), tensorboard")

    def __post_init__(self) -> None:
        if self.quick:
            # Quick mode overrides the sizes, so a quick run never reuses a full run's stages.
            self.num_sft, self.num_prompts, self.num_vpb = 128, 12, 12
            self.read_steps, self.full_steps, self.flawed_steps, self.batch_size = 8, 8, 8, 8
            self.eval_prompts, self.k, self.max_new_tokens = 12, 4, 48
            self.from_scratch = True
        if self.eval_prompts > self.num_prompts:
            raise ValueError(f"eval_prompts ({self.eval_prompts}) must be <= num_prompts ({self.num_prompts})")
        if self.k < 1:
            raise ValueError("k must be >= 1")
        if min(self.read_steps, self.full_steps, self.flawed_steps) < 0:
            raise ValueError("read_steps, full_steps and flawed_steps must be >= 0")


class Stage:
    """A stage's folder, with a ``done.json`` holding the settings it ran with."""

    def __init__(self, run: Path, name: str, settings: dict):
        self.dir = run / name
        self.name = name
        self.settings = settings
        self.marker = self.dir / "done.json"

    def done(self) -> dict | None:
        if self.marker.exists():
            data = json.loads(self.marker.read_text())
            if data.get("settings") == self.settings:
                return data
        return None

    def start(self) -> None:
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)

    def finish(self, result: dict, seconds: float) -> dict:
        data = {"settings": self.settings, "result": result, "seconds": seconds}
        self.marker.write_text(json.dumps(data, indent=1) + "\n")
        return data


def run_stage(run: Path, name: str, settings: dict, fn, summary) -> dict:
    stage = Stage(run, name, settings)
    cached = stage.done()
    if cached is not None:
        print(f"[{name}] reused ({summary(cached['result'])})")
        return {**cached, "reused": True}
    stage.start()
    t0 = time.time()
    result = fn(stage.dir)
    data = stage.finish(result, time.time() - t0)
    print(f"[{name}] {summary(result)} in {data['seconds']:.0f} s")
    return {**data, "reused": False}


def main(cfg: DemoConfig) -> dict:
    from rlvprm.demo.report import write_report
    from rlvprm.world import write_world

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = Path(cfg.out)
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps(asdict(cfg), indent=1) + "\n")
    t_start = time.time()
    stages: dict[str, dict] = {}

    # The SFT set is written by the policy stage, only when the policy is trained here.
    world_settings = {"seed": cfg.seed, "num_prompts": cfg.num_prompts, "num_vpb": cfg.num_vpb}
    stages["world"] = run_stage(
        run, "world", world_settings,
        lambda d: {"files": str(write_world(d, cfg.seed, cfg.num_prompts, cfg.num_vpb, 0).root), **world_settings},
        lambda r: f"{r['num_prompts']} prompts, {r['num_vpb']} test records with exact step labels",
    )
    world = run / "world"

    policy_settings = {"from_scratch": cfg.from_scratch, "seed": cfg.seed, "read_steps": cfg.read_steps,
                       "full_steps": cfg.full_steps, "flawed_steps": cfg.flawed_steps,
                       "flawed_lr": cfg.flawed_learning_rate, "batch_size": cfg.batch_size, "lr": cfg.learning_rate,
                       "num_sft": cfg.num_sft}
    stages["policy"] = run_stage(run, "policy", policy_settings, lambda d: _policy(cfg, world, d),
                                 lambda r: f"toy policy ({r['source']}, trained in {r['train_seconds']:.0f} s)")
    policy = run / "policy" / "model"

    bon_settings = {"eval_prompts": cfg.eval_prompts, "k": cfg.k, "max_new_tokens": cfg.max_new_tokens,
                    "seed": cfg.seed, "policy": stages["policy"]["result"]["source"]}
    stages["bon-likelihood"] = run_stage(
        run, "bon-likelihood", bon_settings, lambda d: _bon(cfg, world, policy, d, prm="likelihood"),
        lambda r: f"Best-of-{cfg.k} by the policy's own step likelihood {_acc(r, 'prm_best:min')}, "
                  f"self-consistency {_acc(r, 'self_consistency')}",
    )
    stages["policy-eval"] = run_stage(
        run, "policy-eval", bon_settings, lambda d: _policy_eval(world, run / "bon-likelihood", d),
        lambda r: (f"greedy {r['greedy_accuracy']:.1%}, pass@{r['k']} {r['pass_at_k']:.1%}, "
                   f"coherence {r['coherence']:.1%}"),
    )

    total = time.time() - t_start
    report = write_report(run, cfg, stages, total)
    print(f"[report] {report}  (demo took {total:.0f} s)")
    return {"report": str(report), "stages": stages, "seconds": total}


def _policy(cfg: DemoConfig, world: Path, out: Path) -> dict:
    model_dir = out / "model"
    if not cfg.from_scratch:
        if not (SHIPPED_POLICY / "model.safetensors").exists():
            raise FileNotFoundError(
                f"no shipped toy policy at {SHIPPED_POLICY}; run `rlvprm demo --from-scratch` to train one"
            )
        shutil.copytree(SHIPPED_POLICY, model_dir)
        info = json.loads((model_dir / "train_info.json").read_text())
        return {"source": "shipped checkpoint", "train_seconds": info.get("total_seconds", info["seconds"]),
                "train_info": info}
    from rlvprm.policy.toy import train_toy_policy
    from rlvprm.world.write import write_set

    write_set(world, "sft", cfg.seed, cfg.num_sft)
    info = train_toy_policy(world, model_dir, cfg.read_steps, cfg.full_steps, cfg.flawed_steps,
                            cfg.flawed_learning_rate, num_sft=cfg.num_sft,
                            batch_size=cfg.batch_size, learning_rate=cfg.learning_rate, seed=cfg.seed,
                            report_to=cfg.report_to)
    shutil.rmtree(model_dir / "trainer", ignore_errors=True)
    return {"source": "trained live", "train_seconds": info["seconds"], "train_info": info}


def _bon(cfg: DemoConfig, world: Path, policy: Path, out: Path, prm: str) -> dict:
    """Best-of-N on the held-out prompts: sample once (greedy and k samples), score, select."""
    from rlvprm.bon import BonConfig, run_bon

    result = run_bon(BonConfig(
        policy=str(policy), data=str(world / "prompts.jsonl"), prm=prm, out=str(out), n=cfg.k,
        max_new_tokens=cfg.max_new_tokens, seed=cfg.seed, limit=cfg.eval_prompts, device="cpu", dtype="float32",
    ))
    return {"overall": result["overall"], "ns": result["ns"], "strategies": result["strategies"], "n": cfg.k,
            "counts": result["counts"]}


def _acc(result: dict, strategy: str) -> str:
    acc = result["overall"]["accuracy"].get(strategy)
    return "n/a" if acc is None else f"{acc[-1]:.1%}"


def _policy_eval(world: Path, bon_dir: Path, out: Path) -> dict:
    """Judge the Best-of-N stage's samples exactly with the world's checker (no new sampling)."""
    from rlvprm.data.jsonl import read_jsonl, write_jsonl
    from rlvprm.world.evaluate import judge_texts

    rows = {r["id"]: r for _, r in read_jsonl(world / "prompts.jsonl")}
    cands = [c for _, c in read_jsonl(bon_dir / "candidates.jsonl")]
    metrics, records = judge_texts(
        [rows[c["id"]] for c in cands], [c["greedy"]["text"] for c in cands],
        [[x["text"] for x in c["candidates"]] for c in cands],
        [[x["finish_reason"] for x in c["candidates"]] for c in cands],
    )
    write_jsonl(out / "samples.jsonl", records)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics
