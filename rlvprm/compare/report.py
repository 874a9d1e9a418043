"""``compare.md`` and the plots of accuracy against compute per prompt, one curve per method."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rlvprm.compare.compute import OVERALL, method_label
from rlvprm.compare.training import COUNTS

COUNT_NAMES = {"tokens_generated": "generated", "prm_tokens_scored": "PRM tokens scored",
               "policy_tokens_trained": "policy tokens trained", "critic_tokens_trained": "critic tokens trained"}


def _num(x: float | None) -> str:
    return "unknown" if x is None else f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def render_markdown(result: dict[str, Any]) -> str:
    """The tables of ``compare.json`` as markdown: training cost, then one table per family."""
    agg, served = result["aggregation"], result["served_prompts"]
    lines = [
        "# Test time against train time: accuracy and counted compute per prompt",
        "",
        f"PRM `{result['prm']}` (response score: {agg}); prompts `{result['data']}`; {result['n']} candidates per "
        f"prompt sampled once per policy (seed {result['seed']}), N < {result['n']} by subsampling "
        f"({result['num_subsets']} subsets per prompt). Compute is tokens through a model per prompt: policy tokens "
        "generated, PRM tokens read, and an RL policy's training tokens spread over "
        f"{served:,} served prompts (`--served-prompts`).",
        "",
        "## Training cost of the RL policies (tokens)",
        "",
    ]
    if result["training"]:
        lines += ["| Policy | trained from | PRM in training | steps | " + " | ".join(COUNT_NAMES.values())
                  + " | total | per served prompt | how |",
                  "|---|---|---|---:|" + "---:|" * (len(COUNTS) + 2) + "---|"]
        for name, t in result["training"].items():
            lines.append(f"| {name} | `{t['trained_from']}` | {t['prm']} | {t['steps']} | "
                         + " | ".join(_num(t[k]) for k in COUNTS) + f" | {_num(t['total'])} | "
                         f"{_num(t['per_prompt'])} | {t['how']} |")
        notes = [f"{name}: {note}" for name, t in result["training"].items() for note in t["notes"]]
        lines += [""] + [f"- {n}" for n in notes + result["notes"]] + [""] * bool(notes + result["notes"])
    else:
        lines += ["No RL policies given.", ""]
    for fam, rows in result["tables"].items():
        lines += [f"## {'All prompts' if fam == OVERALL else f'Family: {fam}'} ({rows[0]['prompts']} prompts)", "",
                  "| Policy | Method | N | Accuracy (%) | Policy tokens | PRM tokens | Training tokens | Compute |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            acc = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f}"
            lines.append(f"| {r['policy']} | {method_label(r, agg)} | {r['n']} | {acc} | {_num(r['policy_tokens'])} | "
                         f"{_num(r['prm_tokens'])} | {_num(r['training_tokens'])} | {_num(r['compute'])} |")
        lines.append("")
    return "\n".join(lines)


def plot_compute(rows: list[dict], aggregation: str, path: str | Path, title: str) -> Path:
    """Accuracy against compute per prompt (log axis), one curve per policy and method."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from rlvprm.plots import save_figure

    curves: dict[str, list[tuple[float, float, int]]] = {}
    for r in rows:
        if r["accuracy"] is not None:
            curves.setdefault(f"{r['policy']}: {method_label(r, aggregation)}", []).append(
                (r["compute"], r["accuracy"], r["n"]))
    fig = Figure(figsize=(8.4, 4.6))
    ax = fig.add_subplot()
    for label, points in curves.items():
        points.sort()
        (line,) = ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
        if len(points) > 1:
            for x, y, n in points:
                ax.annotate(f"{n}", (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7,
                            color=line.get_color())
    ax.set_xscale("log")
    ax.set_xlabel("compute per prompt (tokens through a model)")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    ax.set_title(title, fontsize=10)
    return save_figure(fig, path)


def plot_name(family: str) -> str:
    """``compute.png`` for all prompts, ``compute-<family>.png`` (a file-safe name) for one family."""
    return "compute.png" if family == OVERALL else f"compute-{re.sub(r'[^A-Za-z0-9_.-]+', '_', family)}.png"
