"""The demo's closing answer: test time, train time, or both? Read from ``rlvprm compare``'s rows.

Four options, each at its best method as measured (no smoothing, no extrapolation):

- *neither*: the base policy, one sample (greedy and sampled);
- *test time*: the base policy with PRM Best-of-N at the largest N (self-consistency beside it);
- *train time*: each RL policy, one sample;
- *both*: each RL policy with PRM Best-of-N at the largest N.

The answer names the most accurate option and the cheapest one within ``TOLERANCE`` of it, with
compute per prompt as ``rlvprm compare`` counts it (policy, PRM and amortised training tokens).
"""

from __future__ import annotations

from pathlib import Path

TOLERANCE = 0.02  # accuracy within two points counts as level: the demo's prompt sets are a few hundred


def options(result: dict) -> list[dict]:
    """The option rows of ``compare.json``'s overall table: ``{"option", "policy", "method", "n", "accuracy", "compute"}``."""
    rows = result["tables"]["overall"]
    n_max = max(result["ns"])
    out = []
    for r in rows:
        rl = result["policies"][r["policy"]]["rl"]
        if r["method"] in ("greedy", "pass@1"):
            option = "train time" if rl else "neither"
        elif r["method"] == "prm_best" and r["n"] == n_max:
            option = "both" if rl else "test time"
        elif r["method"] == "self_consistency" and r["n"] == n_max:
            option = "test time"
        else:
            continue
        if r["accuracy"] is not None:
            out.append({"option": option, **{k: r[k] for k in ("policy", "method", "n", "accuracy", "compute")}})
    return out


def answer(rows: list[dict]) -> dict:
    """The most accurate option row, and the cheapest row of another option within ``TOLERANCE`` of it
    (None when no other option comes that close, or none is cheaper).

    >>> rows = [{"option": "neither", "accuracy": 0.30, "compute": 50}, {"option": "test time", "accuracy": 0.45,
    ...         "compute": 2800}, {"option": "train time", "accuracy": 0.44, "compute": 130}]
    >>> a = answer(rows); a["best"]["option"], a["cheaper"]["option"]
    ('test time', 'train time')
    """
    best = max(rows, key=lambda r: (r["accuracy"], -r["compute"]))
    level = [r for r in rows if r["option"] != best["option"] and r["accuracy"] >= best["accuracy"] - TOLERANCE
             and r["compute"] < best["compute"]]
    return {"best": best, "cheaper": min(level, key=lambda r: r["compute"]) if level else None}


def compare_section(run: Path, result: dict) -> list[str]:
    from rlvprm.compare.compute import method_label

    agg = result["aggregation"]
    lines = [f"## Test time against train time (`rlvprm compare`, {result['prompts']} held-out prompts)", "",
             f"Compute per prompt is counted in tokens through a model: policy tokens generated, PRM tokens read, and "
             f"an RL policy's training tokens spread over {result['served_prompts']:,} served prompts. Full tables "
             "(per family, training cost) in `compare/compare.md`.", ""]
    if result.get("training"):
        lines += ["| RL policy | trained from | PRM in training | training tokens (a lower bound where a count is "
                  "unknown) | per served prompt |", "|---|---|---|---:|---:|"]
        for name, t in result["training"].items():
            lines.append(f"| {name} | `{t.get('trained_from')}` | {t.get('prm')} | {_tokens(t.get('total'))} | "
                         f"{_tokens(t.get('per_prompt'), 1)} |")
        lines.append("")
    lines += ["![accuracy against compute](compare/compute.png)", ""]
    for note in result.get("notes", []):
        lines.append(f"- {note}")
    if result.get("notes"):
        lines.append("")
    rows = options(result)
    lines += ["### Test time, train time, or both?", "",
              "| option | policy | method | N | accuracy | compute per prompt (tokens) |", "|---|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['option']} | {r['policy']} | {method_label(r, agg)} | {r['n']} | {100 * r['accuracy']:.1f}% | "
                     f"{r['compute']:,.0f} |")
    a = answer(rows)
    best, cheap = a["best"], a["cheaper"]
    lines += ["", f"**Answer for this world:** the most accurate option is **{best['option']}** ({best['policy']}, "
              f"{method_label(best, agg)}, N={best['n']}: {100 * best['accuracy']:.1f}% at {best['compute']:,.0f} tokens "
              f"per prompt)."]
    if cheap is not None:
        lines[-1] += (f" Within {100 * TOLERANCE:.0f} points of it, **{cheap['option']}** costs less "
                      f"({cheap['policy']}, {method_label(cheap, agg)}: {100 * cheap['accuracy']:.1f}% at "
                      f"{cheap['compute']:,.0f} tokens, {best['compute'] / max(cheap['compute'], 1e-9):.1f}x less compute).")
    else:
        lines[-1] += f" No other option comes within {100 * TOLERANCE:.0f} points of it for less compute."
    lines += ["", "These are this run's numbers on its prompts (no confidence intervals); the README's results table "
              "holds the 300-prompt measurements.", ""]
    return lines


def _tokens(x, digits: int = 0) -> str:
    return "unknown" if x is None else f"{x:,.{digits}f}"
