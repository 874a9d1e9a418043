"""Curves of training runs, one line per run: GRPO (``rlvprm grpo``) and PRM training (``rlvprm train-prm``).

Each command writes ``OUTPUT_DIR/curves.png`` for its own run; to compare runs::

    python -m rlvprm.plots grpo runs/grpo/outcome runs/grpo/process --labels outcome,process --out grpo.png
    python -m rlvprm.plots train-prm runs/train-prm/a runs/train-prm/b --out prm.png

A GRPO run folder holds ``grpo_summary.json`` (a PPO run's, ``ppo_summary.json``, plots as ``grpo`` too),
a PRM run folder ``train_prm.json``. GRPO panels:
held-out greedy and sampled accuracy (when measured), training outcome accuracy, mean PRM step
score, PRM/outcome agreement and KL, per-step values smoothed by a moving average (``--smooth``).
PRM panels: training loss (smoothed), evaluation macro-F1 at the fixed threshold, AUC and
position-matched AUC against the step.

Left out: wandb or TensorBoard (``report_to`` sends the same numbers there while training), and
x axes other than the optimiser step.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# (title, key): a key of the log history, or of the held-out history for the two held-out panels
GRPO_PANELS = (
    ("held-out greedy accuracy", "greedy_accuracy"),
    ("held-out sampled accuracy", "sample_accuracy"),
    ("train outcome accuracy", "outcome/accuracy"),
    ("mean PRM step score", "prm/step_score_mean"),
    ("PRM / outcome agreement", "prm/outcome_agreement"),
    ("KL to the reference", "kl"),
)
PRM_PANELS = (
    ("training loss", "loss"),
    ("eval macro-F1 (fixed threshold)", "eval_macro_f1"),
    ("eval AUC", "eval_auc"),
    ("eval position-matched AUC", "eval_position_matched_auc"),
)
# A run folder's summary per kind: GRPO and PPO runs share the panels, so they plot together.
SUMMARY_FILE = {"grpo": ("grpo_summary.json", "ppo_summary.json"), "train-prm": ("train_prm.json",)}


def moving_average(values: list[float], width: int) -> list[float]:
    """Mean of each value and up to ``width - 1`` before it.

    >>> moving_average([1.0, 3.0, 5.0, 7.0], 2)
    [1.0, 2.0, 4.0, 6.0]
    """
    out = []
    for i in range(len(values)):
        window = values[max(0, i - width + 1) : i + 1]
        out.append(sum(window) / len(window))
    return out


HELD_OUT = ("greedy_accuracy", "sample_accuracy")


def smoothed(key: str) -> bool:
    """Per-step training values are smoothed; evaluations and held-out points are drawn as measured."""
    return not key.startswith("eval_") and key not in HELD_OUT


def series(summary: dict, key: str, kind: str, smooth: int) -> list[tuple[float, float]]:
    """``(step, value)`` points of one panel for one run."""
    if kind == "grpo" and key in HELD_OUT:
        return [(h["step"], h[key]) for h in summary.get("heldout", []) if h.get(key) is not None]
    logs = [h for h in summary.get("log_history", []) if key in h and "step" in h and "train_loss" not in h]
    values = [h[key] for h in logs]
    if smoothed(key):
        values = moving_average(values, smooth)
    return list(zip([h["step"] for h in logs], values))


def plot_runs(summaries: list[dict], labels: list[str], path: str | Path, kind: str = "grpo", smooth: int = 10) -> Path:
    """Draw the panels of ``kind`` ("grpo" or "train-prm") for the runs' summaries into ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    if len(summaries) != len(labels):
        raise ValueError(f"{len(summaries)} runs but {len(labels)} labels")
    panels = GRPO_PANELS if kind == "grpo" else PRM_PANELS
    cols = 3 if len(panels) > 4 else 2
    fig = Figure(figsize=(4.4 * cols, 3.5 * ((len(panels) + cols - 1) // cols)))
    axes = fig.subplots((len(panels) + cols - 1) // cols, cols).flatten()
    for ax, (title, key) in zip(axes, panels):
        for summary, label in zip(summaries, labels):
            points = series(summary, key, kind, smooth)
            if points:
                ax.plot(*zip(*points), marker="o" if len(points) < 15 else None, label=label)
        ax.set_title(f"{title} (moving average of {smooth})" if smoothed(key) and smooth > 1 else title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return save_figure(fig, path)


def save_figure(fig, path: str | Path) -> Path:
    """Lay out ``fig`` and write it to ``path`` (PNG), creating the folder."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m rlvprm.plots", description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=sorted(SUMMARY_FILE), help="what the runs are")
    parser.add_argument("runs", nargs="+", help="output folders of the runs")
    parser.add_argument("--labels", default=None, help="comma-separated line labels (default: the folder names)")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--smooth", type=int, default=10, help="moving-average width for per-step training values")
    args = parser.parse_args(argv)
    labels = args.labels.split(",") if args.labels else [Path(r).name for r in args.runs]
    summaries = []
    for run in args.runs:
        paths = [Path(run) / name for name in SUMMARY_FILE[args.kind] if (Path(run) / name).exists()]
        if not paths:
            raise SystemExit(f"{run} holds no {' or '.join(SUMMARY_FILE[args.kind])}: is it the output folder of an "
                             f"`rlvprm {args.kind}` run?")
        summaries.append(json.loads(paths[0].read_text()))
    out = plot_runs(summaries, labels, args.out, args.kind, args.smooth)
    print(out)
    return out


if __name__ == "__main__":
    main()
