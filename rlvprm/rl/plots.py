"""Curves of GRPO runs: held-out accuracy and the reward-hacking signals, one line per run.

``rlvprm grpo`` writes ``OUTPUT_DIR/curves.png`` for its own run; to compare runs::

    python -m rlvprm.rl.plots runs/grpo/outcome runs/grpo/process --labels outcome,process --out curves.png

Each run folder must hold the ``grpo_summary.json`` that ``rlvprm grpo`` writes. Six panels:
held-out greedy and sampled accuracy (when the run measured them), training outcome accuracy, mean
PRM step score, PRM/outcome agreement and KL, the per-step values smoothed by a moving average
(``--smooth`` steps).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PANELS = (
    ("heldout greedy", None),
    ("heldout sampled", None),
    ("train outcome accuracy", "outcome/accuracy"),
    ("mean PRM step score", "prm/step_score_mean"),
    ("PRM / outcome agreement", "prm/outcome_agreement"),
    ("KL to the reference", "kl"),
)


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


def plot_runs(summaries: list[dict], labels: list[str], path: str | Path, smooth: int = 10) -> Path:
    """Draw the six panels for the runs' summaries into ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    if len(summaries) != len(labels):
        raise ValueError(f"{len(summaries)} runs but {len(labels)} labels")
    fig = Figure(figsize=(13, 7))
    axes = fig.subplots(2, 3).flatten()
    for ax, (title, key) in zip(axes, PANELS):
        for summary, label in zip(summaries, labels):
            if key is None:
                field = "greedy_accuracy" if "greedy" in title else "sample_accuracy"
                points = [(h["step"], h[field]) for h in summary.get("heldout", []) if h.get(field) is not None]
                if points:
                    ax.plot(*zip(*points), marker="o", label=label)
                continue
            logs = [h for h in summary["log_history"] if key in h and "step" in h]
            if logs:
                ax.plot([h["step"] for h in logs], moving_average([h[key] for h in logs], smooth), label=label)
        ax.set_title(title if key is None else f"{title} (moving average of {smooth})", fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m rlvprm.rl.plots", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="output folders of `rlvprm grpo` runs (each with grpo_summary.json)")
    parser.add_argument("--labels", default=None, help="comma-separated line labels (default: the folder names)")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--smooth", type=int, default=10, help="moving-average width for per-step values")
    args = parser.parse_args(argv)
    labels = args.labels.split(",") if args.labels else [Path(r).name for r in args.runs]
    summaries = []
    for run in args.runs:
        path = Path(run) / "grpo_summary.json"
        if not path.exists():
            raise SystemExit(f"{path} does not exist: is {run} the output folder of an `rlvprm grpo` run?")
        summaries.append(json.loads(path.read_text()))
    out = plot_runs(summaries, labels, args.out, args.smooth)
    print(out)
    return out


if __name__ == "__main__":
    main()
