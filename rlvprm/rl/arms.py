"""Compare GRPO and PPO arms over seeds: held-out curves as mean and standard error, steps to a target, hacking signals.

An *arm* is one setting (outcome, process with the oracle, process with a trained PRM, PPO, ...);
each arm has runs at several seeds (``rlvprm grpo`` or ``rlvprm ppo`` output folders, each with its
``grpo_summary.json`` or ``ppo_summary.json``). ::

    python -m rlvprm.rl.arms --arm outcome=runs/grpo/outcome-s0,runs/grpo/outcome-s1 \\
        --arm process=runs/grpo/process-s0,runs/grpo/process-s1 --baseline outcome --out runs/grpo/arms

writes ``arms.md`` (one table), ``arms.json`` and ``arms.png`` (held-out greedy and mean-sample
accuracy against the step, mean of the seeds with a band of one standard error; training accuracy
and the hacking signals beside them).

*Steps to the baseline's final accuracy*: the first held-out evaluation step at which an arm's
seed-mean held-out sampled accuracy reaches the baseline arm's seed-mean final value, and that step
as a fraction of the baseline's last step. Held-out points are as measured (no smoothing); the
fraction is only as fine as the evaluation interval.

Left out: significance tests beyond standard errors, arms whose runs evaluate at different steps
(refused: the means would mix steps).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

# Hacking signals (DESIGN.md section 5): key in the log history, label. Means over the last 10 logged steps.
SIGNALS = (
    ("outcome/accuracy", "train accuracy"),
    ("steps/per_completion", "steps per completion"),
    ("steps/tokens_per_step", "tokens per step"),
    ("steps/no_separator_frac", "no separator"),
    ("completions/mean_length", "length"),
    ("kl", "KL"),
    ("prm/outcome_agreement", "PRM/outcome agreement"),
)
HELD_OUT = ("greedy_accuracy", "sample_accuracy")


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for a single value).

    >>> mean_se([0.5, 0.7, 0.6])
    (0.6, 0.0577)
    """
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return round(mean, 4), 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return round(mean, 4), round(math.sqrt(var / n), 4)


def load_summary(run: str | Path) -> dict:
    """A run's summary: ``grpo_summary.json`` (``rlvprm grpo``) or ``ppo_summary.json`` (``rlvprm ppo``)."""
    from rlvprm.commands.policy_rl import summary_path

    return json.loads(summary_path(run).read_text())


def completions_per_step(summary: dict) -> int:
    """New sampled completions per optimiser step: a step trains on ``per_device_train_batch_size`` x
    processes (the summary's ``launch``; 1 in summaries older than it) x ``gradient_accumulation_steps``
    completions, each used ``num_iterations`` times.

    >>> completions_per_step({"grpo": {"per_device_train_batch_size": 128, "num_iterations": 1}})
    128
    >>> completions_per_step({"ppo": {"per_device_train_batch_size": 64, "num_iterations": 2}})
    32
    >>> completions_per_step({"ppo": {"per_device_train_batch_size": 64, "num_iterations": 2},
    ...                       "launch": {"num_processes": 2}})
    64
    """
    args = summary.get("grpo") or summary.get("ppo") or {}
    processes = summary.get("launch", {}).get("num_processes", 1)
    per_step = args.get("per_device_train_batch_size", 0) * processes * args.get("gradient_accumulation_steps", 1)
    if not per_step or per_step % args.get("num_iterations", 1):
        raise ValueError("a summary without the batch settings that give completions per step")
    return per_step // args.get("num_iterations", 1)


def in_completions(summary: dict) -> dict:
    """``summary`` with every held-out and logged ``step`` turned into sampled completions, so arms
    with different batches and PPO epochs (PPO against GRPO) compare at the same sample budget."""
    k = completions_per_step(summary)
    return {**summary, "heldout": [{**h, "step": h["step"] * k} for h in summary["heldout"]],
            "log_history": [{**h, "step": h["step"] * k} if "step" in h else h for h in summary.get("log_history", [])]}


def up_to(summary: dict, max_step: int) -> dict:
    """``summary`` cut at ``max_step``: held-out points and logged steps after it dropped.

    With a constant learning rate the first N steps of a longer run are the same as an N-step run
    (same prompts, same sampling seeds), so runs of different lengths compare at a common budget.
    """
    heldout = [h for h in summary["heldout"] if h["step"] <= max_step]
    logs = [h for h in summary.get("log_history", []) if h.get("step", 0) <= max_step and "train_loss" not in h]
    if not heldout or heldout[-1]["step"] != max_step:
        raise ValueError(f"a run has no held-out evaluation at step {max_step}")
    cut = len(heldout) < len(summary["heldout"])
    return {**summary, "heldout": heldout, "log_history": logs, "train": {} if cut else summary.get("train", {})}


def heldout_curve(summaries: list[dict], key: str) -> list[tuple[int, float, float]]:
    """``(step, mean, standard error)`` over the runs at each held-out step."""
    steps = [[h["step"] for h in s["heldout"]] for s in summaries]
    if any(st != steps[0] for st in steps):
        raise ValueError(f"runs of one arm evaluated at different steps: {steps}")
    return [(step, *mean_se([s["heldout"][i][key] for s in summaries])) for i, step in enumerate(steps[0])]


def last_mean(summary: dict, key: str, last: int = 10) -> float | None:
    values = [h[key] for h in summary.get("log_history", []) if key in h and "train_loss" not in h]
    return sum(values[-last:]) / len(values[-last:]) if values else None


def steps_to_reach(curve: list[tuple[int, float, float]], target: float) -> int | None:
    """The first step whose mean is at or above ``target`` (``None``: never).

    >>> steps_to_reach([(0, 0.3, 0.0), (10, 0.45, 0.0), (20, 0.5, 0.0)], 0.45)
    10
    """
    return next((step for step, mean, _ in curve if mean >= target - 1e-9), None)


def seconds(summary: dict) -> float | None:
    return summary.get("train", {}).get("train_runtime")


def compare_arms(arms: dict[str, list[dict]], baseline: str) -> dict:
    """Per arm: held-out curves (mean, SE), start and final values, steps to the baseline's final
    sampled accuracy, signals and wall time (mean over seeds)."""
    if baseline not in arms:
        raise ValueError(f"baseline arm {baseline!r} is not one of {sorted(arms)}")
    out: dict = {"baseline": baseline, "arms": {}}
    curves = {name: {key: heldout_curve(runs, key) for key in HELD_OUT} for name, runs in arms.items()}
    base = curves[baseline]["sample_accuracy"]
    target, last_step = base[-1][1], base[-1][0]
    out["target"] = {"sample_accuracy": target, "step": last_step}
    for name, runs in arms.items():
        reach = steps_to_reach(curves[name]["sample_accuracy"], target)
        out["arms"][name] = {
            "seeds": len(runs),
            "curves": curves[name],
            "start": {k: curves[name][k][0][1:] for k in HELD_OUT},
            "final": {k: curves[name][k][-1][1:] for k in HELD_OUT},
            "gain_sample": mean_se([s["heldout"][-1]["sample_accuracy"] - s["heldout"][0]["sample_accuracy"] for s in runs]),
            "gain_greedy": mean_se([s["heldout"][-1]["greedy_accuracy"] - s["heldout"][0]["greedy_accuracy"] for s in runs]),
            "steps_to_baseline_final": reach,
            "fraction_of_baseline_steps": None if reach is None else round(reach / last_step, 3),
            "signals": {label: _mean([last_mean(s, key) for s in runs]) for key, label in SIGNALS},
            "seconds": _mean([seconds(s) for s in runs]),
        }
    return out


def _mean(values):
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 4) if values else None


def markdown(result: dict) -> str:
    t = result["target"]
    lines = [
        f"Baseline: `{result['baseline']}`, final held-out mean-sample accuracy {t['sample_accuracy']:.3f} at step "
        f"{t['step']} (steps are sampled completions when compared with --x completions).",
        "",
        "| arm | seeds | held-out greedy, start -> final | held-out mean sample, start -> final | gain (sample) | "
        "steps to the baseline's final (fraction) | " + " | ".join(label for _, label in SIGNALS) + " | wall per run |",
        "|" + "---|" * (7 + len(SIGNALS)),
    ]
    for name, arm in result["arms"].items():
        g0, g1 = arm["start"]["greedy_accuracy"], arm["final"]["greedy_accuracy"]
        s0, s1 = arm["start"]["sample_accuracy"], arm["final"]["sample_accuracy"]
        reach = arm["steps_to_baseline_final"]
        reach_text = "not reached" if reach is None else f"{reach} ({arm['fraction_of_baseline_steps']:.2f})"
        signals = " | ".join("-" if v is None else f"{v:.3g}" for v in arm["signals"].values())
        wall = "-" if arm["seconds"] is None else f"{arm['seconds']:.0f} s"
        lines.append(
            f"| {name} | {arm['seeds']} | {g0[0]:.3f} -> {g1[0]:.3f} ± {g1[1]:.3f} | {s0[0]:.3f} -> {s1[0]:.3f} ± {s1[1]:.3f} | "
            f"{arm['gain_sample'][0]:+.3f} ± {arm['gain_sample'][1]:.3f} | {reach_text} | {signals} | {wall} |"
        )
    return "\n".join(lines) + "\n"


def plot_arms(arms: dict[str, list[dict]], result: dict, path: str | Path, smooth: int = 5, x: str = "step") -> Path:
    """Held-out curves with standard-error bands, and training accuracy and signals (seed means)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from rlvprm.plots import moving_average, save_figure

    panels = [("held-out greedy accuracy", "greedy_accuracy"), ("held-out mean-sample accuracy", "sample_accuracy"),
              ("train outcome accuracy", "outcome/accuracy"), ("steps per completion", "steps/per_completion"),
              ("completion length", "completions/mean_length"), ("KL to the reference", "kl")]
    fig = Figure(figsize=(13.5, 7.5))
    axes = fig.subplots(2, 3).flatten()
    for ax, (title, key) in zip(axes, panels):
        for name, runs in arms.items():
            if key in HELD_OUT:
                curve = result["arms"][name]["curves"][key]
                steps, means, ses = zip(*curve)
                line = ax.plot(steps, means, marker="o", label=f"{name} (n={len(runs)})")[0]
                ax.fill_between(steps, [m - s for m, s in zip(means, ses)], [m + s for m, s in zip(means, ses)],
                                color=line.get_color(), alpha=0.2)
            else:
                per_run = [[(h.get("step"), h[key]) for h in s["log_history"] if key in h and "train_loss" not in h]
                           for s in runs]
                n = min(len(v) for v in per_run)
                if n:
                    mean = [sum(v[i][1] for v in per_run) / len(per_run) for i in range(n)]
                    at = [per_run[0][i][0] or i + 1 for i in range(n)]
                    ax.plot(at, moving_average(mean, smooth), label=name)
        ax.set_title(title if key in HELD_OUT else f"{title} (seed mean, moving average of {smooth})", fontsize=10)
        ax.set_xlabel("sampled completions" if x == "completions" else "step")
        ax.grid(alpha=0.3)
    axes[1].axhline(result["target"]["sample_accuracy"], color="grey", ls=":", lw=1)
    axes[0].legend(fontsize=8)
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m rlvprm.rl.arms", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arm", action="append", required=True, metavar="NAME=RUN,RUN,...",
                        help="an arm and its runs (one per seed; repeat --arm for each arm)")
    parser.add_argument("--baseline", required=True, help="the arm whose final held-out sampled accuracy the others race to")
    parser.add_argument("--out", required=True, help="folder for arms.md, arms.json and arms.png")
    parser.add_argument("--max-step", type=int, default=None,
                        help="compare up to this step (runs must have a held-out point there; a run cut there shows no wall time); "
                             "with --x completions, in completions")
    parser.add_argument("--x", choices=("step", "completions"), default="step",
                        help="the axis runs are compared on: optimiser steps, or sampled completions (for arms whose "
                             "steps differ: PPO's epochs and batch against GRPO's)")
    args = parser.parse_args(argv)
    arms: dict[str, list[dict]] = {}
    for item in args.arm:
        name, sep, runs = item.partition("=")
        if not sep or not runs:
            parser.error(f"--arm takes NAME=RUN,RUN,..., got {item!r}")
        arms[name] = [load_summary(r) for r in runs.split(",") if r]
        if args.x == "completions":
            arms[name] = [in_completions(s) for s in arms[name]]
        if args.max_step is not None:
            arms[name] = [up_to(s, args.max_step) for s in arms[name]]
    result = compare_arms(arms, args.baseline)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "arms.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "arms.md").write_text(markdown(result))
    plot_arms(arms, result, out / "arms.png", x=args.x)
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
