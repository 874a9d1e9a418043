"""The demo's report: one markdown file with tables and PNG plots of what each stage measured."""

from __future__ import annotations

import json
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
    lines += [f"Run folder `{run}`; settings in `config.json`. Mode: {'quick (toy sizes)' if cfg.quick else 'full'}."
              f" Total time {total_seconds:.0f} s on {_threads()} CPU thread(s).", ""]
    lines += ["| stage | how it ran | seconds |", "|---|---|---|"]
    for name, st in stages.items():
        how = "reused from an earlier run" if st.get("reused") else "ran live"
        if name == "policy" and st["result"]["source"] == "shipped checkpoint":
            how = f"shipped checkpoint (trained in {st['result']['train_seconds']:.0f} s by `rlvprm demo --from-scratch`)"
        lines.append(f"| {name} | {how} | {st['seconds']:.0f} |")
    lines.append("")

    info = stages["policy"]["result"]["train_info"]
    lineage = sft_lineage(info)
    loss_png = plot_sft_loss([h for run_info in lineage for h in run_info["history"]], run / "sft_loss.png")
    steps = {key: sum(r.get(key, 0) for r in lineage) for key in ("read_steps", "full_steps", "flawed_steps")}
    rates = info.get("flaw_rates")
    lines += ["## Toy policy", "",
              f"Tiny Qwen2-VL, {info['parameters'] / 1e6:.2f}M parameters, SFT {steps['read_steps']} steps on the reading "
              f"step, {steps['full_steps']} on whole reference solutions, then {steps['flawed_steps']} on the flawed "
              f"teacher's solutions (rule rates {rates}; `rlvprm/world/teacher.py`), batch {info['batch_size']}, "
              f"{info.get('total_seconds', info['seconds']):.0f} s in all.", ""]
    if loss_png:
        lines += [f"![SFT loss]({loss_png.name})", ""]

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
    if "bon-likelihood" in stages:
        lines += _bon_section(stages["bon-likelihood"]["result"], "bon-likelihood",
                              "the policy's own step probabilities (running minimum); no trained PRM yet")
    path = run / "report.md"
    path.write_text("\n".join(lines))
    (run / "summary.json").write_text(json.dumps({k: v["result"] for k, v in stages.items()}, indent=1, default=str) + "\n")
    return path


def _bon_section(result: dict, folder: str, critic: str) -> list[str]:
    from rlvprm.bon.results import strategy_label

    ns = result["ns"]
    prm = "likelihood" if folder.endswith("likelihood") else "prm"
    lines = [f"## Best-of-{ns[-1]} on the same prompts", "", f"Critic: {critic}. Full tables in `{folder}/results.md`.", "",
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
