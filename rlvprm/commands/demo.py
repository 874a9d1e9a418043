"""`rlvprm demo`: the whole mission on the embedded visual-arith world, on a CPU, ending in a report.

    rlvprm demo                       # shipped policy, PRM and RL policies; every measurement live
    rlvprm demo --quick               # every stage at toy sizes, all trained live (CI, under 2 minutes)
    rlvprm demo --from-scratch        # retrain the policy, the PRM and the RL policies end to end

Stages, in order, each in its own folder under ``--out`` and reused when re-run with the same
settings (and the same upstream stages); ``report.md`` says for each whether it ran live or was
reused, and how long it took:

1. ``world``: images, ``train_prompts`` training prompts then ``heldout_prompts`` held-out ones
   (``world/heldout.jsonl``: never trained on by the policy, the PRM or RL), and the
   VisualProcessBench-format set with exact step labels.
2. ``policy``: the toy policy (``rlvprm/data/checkpoints/toy-policy``; ``--from-scratch`` trains it).
3. ``mc-labels``: ``rlvprm label`` on a live sample of training prompts and the Monte Carlo labels'
   agreement with the exact labels (``--from-scratch``: the PRM's whole training set).
4. ``prm``: the shipped VisualPRM-style PRM, or ``rlvprm train-prm`` on those labels.
5. ``prm-eval``: ``rlvprm eval-vpb`` on the exact-label set at threshold 0.5, fixed in advance.
6. ``bon``: ``rlvprm bon`` on held-out prompts: PRM, ORM (the same PRM fed whole responses),
   self-consistency and the policy's own likelihood, against greedy and the perfect-PRM bound.
7. ``policy-eval``: the same samples judged exactly (greedy, pass@k, coherence, error mix).
8. ``grpo``: ``rlvprm grpo`` outcome against process credit with the PRM: a short live run of
   each, beside the full recipes' shipped curves (``--from-scratch``: the full recipes, live).
9. ``compare``: ``rlvprm compare``: Best-of-N on the base policy against the RL policies (shipped,
   or the live full runs) and the two combined, accuracy against counted compute.
10. ``report``: ``report.md`` with every stage's table and plot, ending in the answer to "test
    time, train time, or both?" for this world.

Left out: PPO, and more than one seed per GRPO arm (the shipped curves have three).
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
from rlvprm.data.provenance import weights_sha256

log = logging.getLogger(__name__)


@dataclass
class DemoConfig:
    out: str = field("runs/demo", help="run folder; stages already done there are reused")
    quick: bool = field(False, help="toy sizes for every stage, all trained live (CI smoke run, under 2 minutes)")
    from_scratch: bool = field(False, help="train the policy, the PRM and the RL policies live instead of using the "
                                           "shipped checkpoints (hours on 2 cores; see the README)")
    seed: int = field(0, help="seed of the world and of every sampling and training stage")
    train_prompts: int = field(1000, min=1, help="prompts MC labels and GRPO may train on (the world's first rows)")
    heldout_prompts: int = field(300, min=1, help="held-out prompts after them (Best-of-N, compare, GRPO held-out)")
    num_vpb: int = field(300, min=1, help="VisualProcessBench-format test records with exact step labels")
    num_sft: int = field(20000, min=1, help="--from-scratch: SFT rows in the world")
    read_steps: int = field(600, min=0, help="--from-scratch: SFT steps on the reading step alone (stage 1)")
    full_steps: int = field(900, min=0, help="--from-scratch: SFT steps on whole reference solutions (stage 2)")
    flawed_steps: int = field(300, min=0, help="--from-scratch: SFT steps on the flawed teacher's solutions (stage 3: "
                              "rlvprm.world.teacher rules become the policy's beliefs)")
    flawed_learning_rate: float = field(5e-4, min=0, help="--from-scratch: peak learning rate of SFT stage 3")
    batch_size: int = field(32, min=1, help="--from-scratch: SFT batch size")
    learning_rate: float = field(1e-3, min=0, help="--from-scratch: SFT learning rate (AdamW, cosine, weight decay 0.1)")
    label_prompts: int = field(16, min=1, help="training prompts of the live Monte Carlo labelling sample")
    prm_label_prompts: int = field(450, min=1, help="--from-scratch: training prompts labelled for the PRM")
    label_rollouts: int = field(4, min=1, help="rollouts per labelled prompt")
    label_mc: int = field(8, min=1, help="Monte Carlo continuations per step")
    prm_steps: int = field(800, min=1, help="--from-scratch: PRM training steps (batch 8)")
    eval_prompts: int = field(100, min=1, help="held-out prompts of Best-of-N and compare")
    k: int = field(8, min=1, help="candidates per prompt (Best-of-N up to N=k, pass@k)")
    max_new_tokens: int = field(96, min=1, help="longest generated solution, in tokens")
    grpo_steps: int = field(4, min=1, help="steps of each short live GRPO run (not --from-scratch)")
    grpo_prompts: int = field(4, min=1, help="prompts per step of the short live GRPO runs")
    grpo_generations: int = field(4, min=2, help="completions per prompt of the short live GRPO runs")
    served_prompts: int = field(10000, min=1, help="compare: prompts an RL policy serves, over which its training "
                                                    "compute is amortised")
    threads: int = field(1, min=0, help="torch CPU threads (0: torch's default). One is the default: a tiny model "
                                        "gains little from more, and on a busy machine two threads per process made "
                                        "sampling five times slower")
    report_to: str = field("none", help="training loggers: none, wandb (offline with WANDB_MODE=offline), tensorboard")

    def __post_init__(self) -> None:
        if self.quick:
            # Quick mode overrides the sizes, so a quick run never reuses a full run's stages.
            self.train_prompts, self.heldout_prompts, self.num_vpb, self.num_sft = 16, 8, 8, 128
            self.read_steps, self.full_steps, self.flawed_steps, self.batch_size = 8, 8, 8, 8
            self.label_prompts = self.prm_label_prompts = 3
            self.label_rollouts, self.label_mc, self.prm_steps = 2, 2, 4
            self.eval_prompts, self.k, self.max_new_tokens = 8, 4, 32
            self.grpo_steps, self.grpo_prompts, self.grpo_generations = 2, 2, 2
            self.from_scratch = True
        if self.eval_prompts > self.heldout_prompts:
            raise ValueError(f"eval_prompts ({self.eval_prompts}) must be <= heldout_prompts ({self.heldout_prompts})")
        if max(self.label_prompts, self.prm_label_prompts if self.from_scratch else 0) > self.train_prompts:
            raise ValueError("label_prompts and (with --from-scratch) prm_label_prompts must be <= train_prompts")


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
    from rlvprm.demo import stages as st
    from rlvprm.demo.report import write_report

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = Path(cfg.out)
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps(asdict(cfg), indent=1) + "\n")
    t_start = time.time()
    done: dict[str, dict] = {}

    def stage(name, settings, fn, summary, after=()):
        # A stage's settings hold its upstream stages' settings, so re-running one re-runs what follows.
        settings = {**settings, "after": {a: done[a]["settings"] for a in after}}
        done[name] = run_stage(run, name, settings, fn, summary)
        return done[name]["result"]

    world = run / "world"
    stage("world", {"seed": cfg.seed, "train": cfg.train_prompts, "heldout": cfg.heldout_prompts, "vpb": cfg.num_vpb},
          lambda d: st.world(cfg, d),
          lambda r: f"{r['train_prompts']} training + {r['heldout_prompts']} held-out prompts, "
                    f"{r['num_vpb']} test records with exact step labels")
    sft = {k: getattr(cfg, k) for k in ("read_steps", "full_steps", "flawed_steps", "flawed_learning_rate",
                                         "batch_size", "learning_rate", "num_sft")} if cfg.from_scratch else {}
    # A shipped checkpoint is known by its weights, so a newer release of it re-runs what follows.
    shipped = {} if cfg.from_scratch else {"weights": weights_sha256(st.SHIPPED_POLICY)}
    stage("policy", {"from_scratch": cfg.from_scratch, **sft, **shipped}, lambda d: st.policy(cfg, world, d),
          lambda r: f"toy policy ({r['source']}, trained in {r['train_seconds']:.0f} s)", after=["world"])
    policy = run / "policy" / "model"
    labels = {k: getattr(cfg, k) for k in ("label_rollouts", "label_mc", "max_new_tokens")}
    labels["prompts"] = cfg.prm_label_prompts if cfg.from_scratch else cfg.label_prompts
    stage("mc-labels", labels, lambda d: st.mc_labels(cfg, world, policy, d),
          lambda r: f"{r['rollouts']} rollouts of {r['prompts']} prompts; '-' labels against exact: precision "
                    f"{_num(r['precision'])}, recall {_num(r['recall'])}", after=["policy"])
    prm_settings = {"from_scratch": cfg.from_scratch,
                    **({"steps": cfg.prm_steps} if cfg.from_scratch else {"weights": weights_sha256(st.SHIPPED_PRM)})}
    prm = stage("prm", prm_settings, lambda d: st.prm(cfg, world, run / "mc-labels" / "labels.jsonl", policy, d),
                lambda r: f"PRM ({r['source']}, {r['records']} rollouts, {r['steps']} steps, "
                          f"{r['train_seconds']:.0f} s)", after=["mc-labels"])["path"]
    stage("prm-eval", {}, lambda d: st.prm_eval(cfg, world, prm, d),
          lambda r: f"VisualProcessBench-format set, {r['records']} records: macro-F1 {_num(r['macro_f1'])} at "
                    f"threshold 0.5, AUC {_num(r['auc'])}", after=["prm"])
    sampling = {"eval_prompts": cfg.eval_prompts, "k": cfg.k, "max_new_tokens": cfg.max_new_tokens}
    stage("bon", sampling, lambda d: st.bon(cfg, world, policy, prm, d),
          lambda r: f"Best-of-{cfg.k}: PRM {_acc(r, 'prm_best:min')}, self-consistency "
                    f"{_acc(r, 'self_consistency')}, greedy {_acc(r, 'greedy')}", after=["prm"])
    stage("policy-eval", {}, lambda d: st.policy_eval(world, run / "bon", d),
          lambda r: (f"greedy {r['greedy_accuracy']:.1%}, pass@{r['k']} {r['pass_at_k']:.1%}, "
                     f"coherence {r['coherence']:.1%}"), after=["bon"])
    grpo_settings = {k: getattr(cfg, k) for k in ("grpo_steps", "grpo_prompts", "grpo_generations")}
    grpo = stage("grpo", {"full": cfg.from_scratch and not cfg.quick, **grpo_settings},
                 lambda d: st.grpo(cfg, world, policy, prm, d),
                 lambda r: ", ".join(f"{arm} {run['steps']} steps ({run['seconds']:.0f} s)"
                                     for arm, run in r["runs"].items()), after=["prm"])
    rl = ({f"grpo-{arm}": r["path"] for arm, r in grpo["runs"].items()} if cfg.from_scratch
          else {name: str(path) for name, path in st.SHIPPED_RL.items()})
    rl_weights = {} if cfg.from_scratch else {name: weights_sha256(path) for name, path in rl.items()}
    stage("compare", {**sampling, "rl": rl, "rl_weights": rl_weights, "served_prompts": cfg.served_prompts},
          lambda d: st.compare(cfg, world, str(policy), run / "bon", prm, rl, d),
          lambda r: "accuracy against compute of every method written", after=["bon", "grpo"])

    total = time.time() - t_start
    report = write_report(run, cfg, done, total)
    print(f"[report] {report}  (demo took {total:.0f} s)")
    return {"report": str(report), "stages": done, "seconds": total}


def _acc(result: dict, strategy: str) -> str:
    acc = result["overall"]["accuracy"].get(strategy)
    return "n/a" if acc is None else f"{acc[-1]:.1%}"


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"
