"""The demo's report: one markdown file with tables and PNG plots of what each stage measured."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def sft_lineage(info: dict) -> list[dict]:
    """The training records of a policy and of those it continued (``init_info``), earliest first."""
    out = []
    while info:
        out.append(info)
        info = info.get("init_info")
    return out[::-1]


def plot_sft_loss(history: list[dict], path: Path) -> Path | None:
    if not history:
        return None
    fig = Figure(figsize=(6, 3.2))
    ax = fig.add_subplot()
    offset = 0
    for stage in dict.fromkeys(h["stage"] for h in history):
        pts = [h for h in history if h["stage"] == stage]
        ax.plot([offset + h["step"] for h in pts], [h["loss"] for h in pts], marker=".", label=f"stage: {stage}")
        offset += pts[-1]["step"]
    ax.set_xlabel("SFT step (all stages)")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.set_title("Toy policy SFT")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_policy(metrics: dict, path: Path) -> Path:
    sources = list(metrics["per_source"])
    names = ["greedy_accuracy", "sample_accuracy", "pass_at_k", "coherence"]
    labels = ["greedy", "mean sample", f"pass@{metrics['k']}", "coherence"]
    fig = Figure(figsize=(7, 3.2))
    ax = fig.add_subplot()
    width = 0.8 / (len(sources) + 1)
    for i, src in enumerate(["overall", *sources]):
        m = metrics if src == "overall" else metrics["per_source"][src]
        ax.bar([j + i * width for j in range(len(names))], [m[n] for n in names], width, label=src)
    ax.set_xticks([j + width * len(sources) / 2 for j in range(len(names))], labels)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share")
    ax.set_title("Toy policy on held-out prompts")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def write_report(run: Path, cfg, stages: dict, total_seconds: float) -> Path:
    lines = ["# rlvprm demo: the visual-arith world", ""]
    mode = "quick (toy sizes, everything trained live)" if cfg.quick else (
        "from scratch (everything trained live)" if cfg.from_scratch else "shipped checkpoints, every measurement live")
    lines += [f"Run folder `{run}`; settings in `config.json`. Mode: {mode}. Total time {total_seconds:.0f} s on "
              f"{_threads()} CPU thread(s). Held-out prompts: rows {cfg.train_prompts}-"
              f"{cfg.train_prompts + cfg.heldout_prompts - 1} of the world's prompt set, never trained on.", ""]
    lines += ["| stage | how it ran | seconds |", "|---|---|---|"]
    for name, st in stages.items():
        how = "reused from an earlier run" if st.get("reused") else "ran live"
        source = st["result"].get("source") if isinstance(st["result"], dict) else None
        if source == "shipped checkpoint":
            how = f"shipped checkpoint (trained in {st['result']['train_seconds']:.0f} s); files copied live"
        lines.append(f"| {name} | {how} | {st['seconds']:.0f} |")
    lines.append("")
    lines += _policy_section(run, stages)
    if "mc-labels" in stages:
        lines += _labels_section(stages["mc-labels"]["result"])
    if "prm-eval" in stages:
        lines += _prm_section(stages["prm"]["result"], stages["prm-eval"]["result"])
    if "bon" in stages:
        lines += _bon_section(stages["bon"]["result"], "bon",
                              "the PRM of the stage above (`prm_best`: highest aggregated step score; "
                              "`prm_weighted_vote`: answers weighted by it); ORM: the same PRM fed each whole "
                              "response as one step; the policy's own step likelihood (running minimum)")
    if "grpo" in stages:
        lines += _grpo_section(run, stages["grpo"]["result"])
    if "compare" in stages:
        from rlvprm.demo.summary import compare_section

        lines += compare_section(run, stages["compare"]["result"])
    path = run / "report.md"
    path.write_text("\n".join(lines))
    (run / "summary.json").write_text(json.dumps({k: v["result"] for k, v in stages.items()}, indent=1, default=str) + "\n")
    return path


def _policy_section(run: Path, stages: dict) -> list[str]:
    info = stages["policy"]["result"]["train_info"]
    lineage = sft_lineage(info)
    loss_png = plot_sft_loss([h for run_info in lineage for h in run_info["history"]], run / "sft_loss.png")
    steps = {key: sum(r.get(key, 0) for r in lineage) for key in ("read_steps", "full_steps", "flawed_steps")}
    rates = info.get("flaw_rates")
    lines = ["## Toy policy", "",
             f"Tiny Qwen2-VL, {info['parameters'] / 1e6:.2f}M parameters, SFT {steps['read_steps']} steps on the reading "
             f"step, {steps['full_steps']} on whole reference solutions, then {steps['flawed_steps']} on the flawed "
             f"teacher's solutions (rule rates {rates}; `rlvprm/world/teacher.py`), batch {info['batch_size']}, "
             f"{info.get('total_seconds', info['seconds']):.0f} s in all.", ""]
    if loss_png:
        lines += [f"![SFT loss]({loss_png.name})", ""]
    if "policy-eval" not in stages:
        return lines
    m = stages["policy-eval"]["result"]
    png = plot_policy(m, run / "policy_eval.png")
    lines += [f"### Held-out evaluation ({m['prompts']} prompts, {m['k']} samples each, judged exactly)", ""]
    lines += ["| source | greedy | mean sample | pass@k | prompts with right and wrong samples | coherence | fully correct chains |",
              "|---|---|---|---|---|---|---|"]
    for src, mm in [("overall", m), *m["per_source"].items()]:
        lines.append(f"| {src} | {_pct(mm['greedy_accuracy'])} | {_pct(mm['sample_accuracy'])} | {_pct(mm['pass_at_k'])} | "
                     f"{_pct(mm['mixed_prompts'])} | {_pct(mm['coherence'])} | {_pct(mm['fully_correct_chains'])} |")
    mix = m["error_mix"]
    lines += ["", f"First error of wrong samples: perception {_pct(mix['perception'])}, arithmetic "
              f"{_pct(mix['arithmetic'])}, no boxed answer {_pct(mix['format'])}.", "",
              f"![policy evaluation]({png.name})", "",
              "Coherence: share of samples whose boxed answer is what their own steps compute. "
              "Fully correct chains: every step right (the bound for process-based selection).", ""]
    return lines


def _labels_section(r: dict) -> list[str]:
    lines = ["## Monte Carlo step labels", "",
             f"`rlvprm label` on {r['prompts']} training prompts, {r['rollouts']} rollouts ({r['steps']} steps, "
             f"{r['exact_wrong']} of them wrong by the world's exact checker). A step is labelled `-` when none of "
             "its continuations reaches the right answer (VisualPRM's rule); against the exact labels:", "",
             "| rule for '-' | steps labelled '-' | precision | recall |", "|---|---:|---:|---:|"]
    for name, rule in r["rules"].items():
        lines.append(f"| MC {name} | {rule['predicted_wrong']} | {_opt(rule['precision'])} | {_opt(rule['recall'])} |")
    lines += ["", "Labels in `mc-labels/labels.jsonl` (VisualPRM400K-v1.1-Raw); the same rollouts with exact labels "
              "in `mc-labels/exact.jsonl`.", ""]
    return lines


def _prm_section(prm: dict, ev: dict) -> list[str]:
    lines = ["## The PRM on the exact-label set (`rlvprm eval-vpb`)", "",
             f"PRM: {prm['source']} (`{prm['path']}`), trained on {prm['records']} Monte Carlo-labelled rollouts, "
             f"{prm['steps']} steps, {prm['train_seconds']:.0f} s. Threshold 0.5, fixed before evaluation.", "",
             "| records | macro-F1 at 0.5 | step-weighted macro-F1 | AUC | macro-F1 at the best threshold (tuned on "
             "these labels: a bound, not a result) |", "|---:|---:|---:|---:|---:|",
             f"| {ev['records']} | {_opt(ev['macro_f1'])} | {_opt(ev['step_weighted_macro_f1'])} | {_opt(ev['auc'])} "
             f"| {_opt(ev['tuned'])} |", ""]
    if ev.get("error_types"):
        lines += ["Position-matched AUC per error type: " + ", ".join(
            f"{k} {_opt(v)}" for k, v in ev["error_types"].items()) + ". Full tables: `prm-eval/metrics.md`.", ""]
    return lines


def _grpo_section(run: Path, r: dict) -> list[str]:
    from rlvprm.demo.stages import SHIPPED_ARMS, SHIPPED_ARMS_PLOT

    kind = "the full recipes" if r["full_recipe"] else "short runs"
    lines = [f"## GRPO: outcome against process credit with the PRM ({kind}, live)", "",
             "| arm | steps | seconds | training accuracy per step | KL at the end |", "|---|---:|---:|---|---:|"]
    for arm, x in r["runs"].items():
        acc = " ".join(f"{a:.2f}" for a in x["train_accuracy"])
        kl = x["kl"][-1] if x["kl"] and x["kl"][-1] is not None else None
        lines.append(f"| {arm} | {x['steps']} | {x['seconds']:.0f} | {acc} | {_opt(kl, 4)} |")
    held = {arm: x["heldout"] for arm, x in r["runs"].items() if x["heldout"]}
    for arm, h in held.items():
        lines.append("")
        lines.append(f"Held-out mean-sample accuracy of `{arm}`: " + ", ".join(
            f"step {p['step']} {_pct(p['sample_accuracy'])}" for p in h if "sample_accuracy" in p))
    lines.append("")
    if SHIPPED_ARMS.exists():
        shutil.copy(SHIPPED_ARMS_PLOT, run / "grpo" / "shipped-arms.png")
        lines += ["### Shipped: the full recipes over three seeds (measured earlier, not re-run here)", "",
                  "From `recipes/grpo/measured/arms.md` (30 steps of 16 prompts x 8 completions, 300 held-out "
                  "prompts, mean ± standard error over seeds; `recipes/grpo/README.md` has the analysis):", "",
                  *SHIPPED_ARMS.read_text().strip().splitlines(), "",
                  "![shipped GRPO arms](grpo/shipped-arms.png)", ""]
    return lines


def _opt(x, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _bon_section(result: dict, folder: str, critic: str) -> list[str]:
    from rlvprm.bon.results import strategy_label

    ns = result["ns"]
    prm = "prm"
    lines = [f"## Best-of-{ns[-1]} on held-out prompts (`rlvprm bon`)", "", f"Critic: {critic}. Full tables in `{folder}/results.md`.", "",
             "| strategy | " + " | ".join(f"N={n}" for n in ns) + " |", "|---|" + "---:|" * len(ns)]
    # The report keeps the headline strategies; results.md has every aggregation.
    shown = [s for s in result["strategies"]
             if not s.startswith(("prm_best:", "prm_weighted_vote:")) or s.split(":")[1] in ("mean", "min")]
    for s in shown:
        acc = result["overall"]["accuracy"][s]
        lines.append(f"| {strategy_label(s, prm)} | " + " | ".join("-" if a is None else _pct(a) for a in acc) + " |")
    lines += ["", f"![Best-of-N scaling]({folder}/scaling.png)", ""]
    return lines


def _threads() -> int:
    import torch

    return torch.get_num_threads()
