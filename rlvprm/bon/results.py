"""Stage 3 of ``rlvprm bon``: judge the candidates, select at every N, write the tables and the plot.

Each candidate's answer is ``rewards.extract_answer`` of its text and it is correct when
``rewards.verify_answer`` accepts that answer against the prompt's (with its ``choices``). Then
``select.best_of_n`` runs the strategies at N = 1, 2, 4, ..., n on the same subsets:

- ``greedy``: pass@1 of the greedy answer (the same at every N);  ``pass@1``: the mean sample;
- ``self_consistency``; ``orm_best`` (with ``--orm``); ``likelihood_best`` (the highest mean token
  log-probability under the policy);
- ``prm_best:AGG`` and ``prm_weighted_vote:AGG`` for every aggregation of the stored step scores;
- in the visual-arith world, ``oracle_prm:all_steps`` (score 1 when the exact checker finds every
  step right, else 0) and ``oracle_prm:step_fraction`` (the fraction of right steps): what a
  perfect PRM would select, ties to the first candidate as for any PRM;
- ``oracle``: pass@N.

A candidate without steps, or one the PRM could not score, gets response score 0 under every
aggregation (the bottom of the range) and, without log-probabilities, a mean log-probability of
``NO_LOGPROB``; a candidate without an extractable answer never wins a vote (``select``), and is
counted. Prompts without candidates are listed and left out of every mean.

Files that do not belong together (a candidates line for a prompt not in the data, a scores line
for a prompt without candidates, a different number of scores than candidates) stop the run, or
with ``--skip-bad`` drop that prompt and are listed.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from rewards.aggregate import aggregate
from rewards.outcome import extract_answer, verify_answer
from rlvprm.bon.candidates import mean_logprob
from rlvprm.bon.config import BonConfig, BonPrompt, Skips, is_world
from rlvprm.bon.scoring import read_lines
from rlvprm.bon.select import NO_SOURCE, Candidate, Prompt, best_of_n, default_ns, plot_scaling
from rlvprm.data.records import Record
from rlvprm.world.check import check_solution
from rlvprm.world.write import problem_from_row

NO_LOGPROB = -1e30  # ranks a candidate without tokens last under likelihood_best
ORACLE_PRM = ("all_steps", "step_fraction")


def select_and_report(
    cfg: BonConfig, prompts: list[BonPrompt], cand_path: Path, score_path: Path, skips: Skips, out: Path
) -> dict[str, Any]:
    cands = read_lines(cand_path, "candidates")
    scores = read_lines(score_path, "scores")
    with_orm = cfg.orm is not None
    matched = match(prompts, cands, scores, skips, with_orm)
    world = is_world(prompts)
    with_lp = cfg.resolved_logprobs != "none"

    bon_prompts: list[Prompt] = []
    oracle_prompts: list[Prompt] = []
    greedy: list[tuple[str, bool]] = []  # (source, correct) per prompt with candidates
    counts = dict.fromkeys(["candidates", "no_answer", "truncated", "no_steps", "unscored", "correct"], 0)
    if world:
        counts["fully_correct_chains"] = 0
    for p, cline, sline in matched:
        rec = p.record
        source = rec.data_source or NO_SOURCE
        problem = problem_from_row(p.row) if world else None
        unscored = set(sline.get("unscored", []))
        items, exact = [], []
        for j, (c, steps) in enumerate(zip(cline["candidates"], sline["prm_step_scores"])):
            answer, correct = judge(c["text"], rec)
            counts["candidates"] += 1
            counts["no_answer"] += answer is None
            counts["truncated"] += c.get("finish_reason") == "length"
            counts["no_steps"] += not steps and j not in unscored
            counts["unscored"] += j in unscored
            counts["correct"] += correct
            prm = {agg: response_score(steps, agg) for agg in cfg.aggregations}
            orm = None
            if with_orm:
                orm = sline["orm_scores"][j] if sline["orm_scores"][j] is not None else 0.0
            lp = mean_logprob(c.get("step_logprobs")) if with_lp else None
            items.append(Candidate(answer, correct, prm, orm, NO_LOGPROB if with_lp and lp is None else lp))
            if problem is not None:
                labels = check_solution(problem, c["text"])
                full = bool(labels) and all(labels)
                counts["fully_correct_chains"] += full
                fraction = sum(labels) / len(labels) if labels else 0.0
                exact.append(Candidate(answer, correct, {"all_steps": float(full), "step_fraction": fraction}))
        bon_prompts.append(Prompt(p.id, items, rec.data_source))
        oracle_prompts.append(Prompt(p.id, exact, rec.data_source))
        if items and cfg.greedy and cline.get("greedy") is not None:
            greedy.append((source, judge(cline["greedy"]["text"], rec)[1]))

    ns = default_ns(cfg.n)
    strategies = ["pass@1", "self_consistency"]
    strategies += [f"prm_best:{a}" for a in cfg.aggregations] + [f"prm_weighted_vote:{a}" for a in cfg.aggregations]
    strategies += ["orm_best"] * with_orm + ["likelihood_best"] * with_lp + ["oracle"]
    result = best_of_n(bon_prompts, strategies, ns, cfg.num_subsets, cfg.seed)
    if world:
        bound = best_of_n(oracle_prompts, [f"prm_best:{k}" for k in ORACLE_PRM], ns, cfg.num_subsets, cfg.seed)
        _merge(result, bound, {f"prm_best:{k}": f"oracle_prm:{k}" for k in ORACLE_PRM}, before="oracle")
    if greedy:
        _add_greedy(result, greedy)

    n_cands = counts["candidates"]
    result["counts"] = {
        "prompts_in_data": len(prompts) + sum(s["stage"] == "data" for s in skips.items),
        "prompts": sum(1 for p in bon_prompts if p.candidates),
        "prompts_without_candidates": sum(1 for p in bon_prompts if not p.candidates),
        **counts,
        "no_answer_fraction": counts["no_answer"] / n_cands if n_cands else None,
        "candidate_accuracy": counts["correct"] / n_cands if n_cands else None,
    }
    result["skipped_records"] = list(skips.items)
    result["world"] = world
    result["prm"] = cfg.prm
    result["orm"] = cfg.orm
    result["policy"] = cfg.policy
    (out / "results.md").write_text(render_markdown(result, cfg))
    plot_scaling(_for_plot(result, cfg), out / "scaling.png", references=("greedy", "oracle_prm"),
                 title=f"Best-of-N: {Path(cfg.policy).name}, critic {Path(cfg.prm).name}")
    return result


def judge(text: str, record: Record) -> tuple[str | None, bool]:
    """The answer ``text`` states (None when it states none) and whether it is right."""
    answer = extract_answer(text)
    return answer, answer is not None and verify_answer(answer, record.answer, record.choices)


def response_score(step_scores: list[float], aggregation: str) -> float:
    """A candidate's response score; 0 (the bottom of the range) without step scores."""
    return aggregate(step_scores, aggregation) if step_scores else 0.0


def match(prompts: list[BonPrompt], cands: dict, scores: dict, skips: Skips, with_orm: bool) -> list[tuple]:
    """``(prompt, candidates line, scores line)`` for every prompt whose lines agree with each other."""
    ids = {p.id for p in prompts}
    for rid in cands:
        if rid not in ids:
            skips(rid, "select", f"candidates.jsonl has prompt {rid}, which is not in --data: the files do not "
                                 "belong together")
    for rid in scores:
        if rid not in cands:
            skips(rid, "select", f"scores.jsonl has prompt {rid}, which candidates.jsonl does not: the files do not "
                                 "belong together")
    out = []
    for p in prompts:
        cline, sline = cands.get(p.id), scores.get(p.id)
        if cline is None:
            skips(p.id, "select", f"prompt {p.id} is in --data but not in candidates.jsonl")
            continue
        k = len(cline["candidates"])
        if sline is None:
            if k:
                skips(p.id, "select", f"prompt {p.id} has candidates but no line in scores.jsonl")
                continue
            sline = {"prm_step_scores": [], "orm_scores": []}
        found = {"PRM": len(sline.get("prm_step_scores") or [])}
        if with_orm:
            found["ORM"] = len(sline.get("orm_scores") or [])
        wrong = [f"{n} {name} scores" for name, n in found.items() if n != k]
        if wrong:
            skips(p.id, "select", f"prompt {p.id}: {k} candidates in candidates.jsonl but {' and '.join(wrong)} in "
                                  "scores.jsonl: the files do not belong together")
            continue
        out.append((p, cline, sline))
    return out


def _merge(result: dict, other: dict, rename: dict[str, str], before: str) -> None:
    """Add ``other``'s strategies (renamed) to ``result``, in its strategy order before ``before``."""
    names = [rename[s] for s in other["strategies"]]
    at = result["strategies"].index(before)
    result["strategies"][at:at] = names
    for table, extra in [(result["overall"], other["overall"]), *[(result["sources"][s], other["sources"][s])
                                                                  for s in result["sources"]]]:
        table["accuracy"] = _insert(table["accuracy"], {rename[k]: v for k, v in extra["accuracy"].items()}, before)


def _add_greedy(result: dict, greedy: list[tuple[str, bool]]) -> None:
    """``greedy`` accuracy overall and per source, the same at every N, as the first strategy."""
    result["strategies"].insert(0, "greedy")
    k = len(result["ns"])
    by_source: dict[str, list[bool]] = defaultdict(list)
    for source, ok in greedy:
        by_source[source].append(ok)
    tables = [(result["overall"], [ok for _, ok in greedy])]
    tables += [(result["sources"][s], by_source.get(s, [])) for s in result["sources"]]
    for table, oks in tables:
        acc = sum(oks) / len(oks) if oks else None
        table["accuracy"] = {"greedy": [acc] * k, **table["accuracy"]}


def _insert(d: dict, extra: dict, before: str) -> dict:
    out = {}
    for key, value in d.items():
        if key == before:
            out.update(extra)
        out[key] = value
    return out


def _for_plot(result: dict, cfg: BonConfig) -> dict:
    """The overall curves worth a line: every PRM aggregation, but only the first one's weighted vote."""
    main = cfg.aggregations[0]
    keep = {k: v for k, v in result["overall"]["accuracy"].items()
            if not k.startswith("prm_weighted_vote:") or k == f"prm_weighted_vote:{main}"}
    return {"ns": result["ns"], "overall": {"accuracy": keep}}


# --- markdown -----------------------------------------------------------------------------------------


def strategy_label(name: str, prm: str) -> str:
    """The row name of a strategy in the tables."""
    critic = "Likelihood" if prm == "likelihood" else "PRM"
    base, _, agg = name.partition(":")
    fixed = {"greedy": "pass@1 (greedy)", "pass@1": "pass@1 (mean sample)", "self_consistency": "Self-consistency",
             "orm_best": "ORM best", "likelihood_best": "Policy likelihood best (mean log-prob)",
             "oracle": "Oracle pass@N"}
    if name in fixed:
        return fixed[name]
    if base == "prm_best":
        return f"{critic} best ({agg})"
    if base == "prm_weighted_vote":
        return f"{critic}-weighted vote ({agg})"
    if base == "oracle_prm":
        return f"Perfect PRM ({'all steps right' if agg == 'all_steps' else 'fraction of steps right'})"
    return name


def render_markdown(result: dict, cfg: BonConfig) -> str:
    ns, n_max = result["ns"], result["ns"][-1]
    sources = sorted(result["sources"])
    c = result["counts"]
    pct = lambda x: "-" if x is None else f"{100 * x:.1f}"  # noqa: E731
    critic = "the policy's own step probabilities (running minimum)" if cfg.prm == "likelihood" else f"`{cfg.prm}`"
    lines = [
        f"# Best-of-N: `{cfg.policy}`",
        "",
        f"Critic: {critic}" + (f"; ORM `{cfg.orm}`" if cfg.orm else "") + ". "
        f"{cfg.n} candidates per prompt, sampled once (temperature {cfg.temperature:g}, top-p {cfg.top_p:g}, "
        f"at most {cfg.max_new_tokens} new tokens, seed {cfg.seed}); at N < {cfg.n} each prompt averages "
        f"{cfg.num_subsets} random subsets (all of them when there are fewer).",
        "",
        f"{c['prompts']} prompts, {c['candidates']} candidates: {c['no_answer']} without an "
        f"extractable answer ({pct(c['no_answer_fraction'])}%), {c['truncated']} cut at max_new_tokens, "
        f"{c['no_steps']} without steps, {c['unscored']} unscorable; candidate accuracy "
        f"{pct(c['candidate_accuracy'])}%."
        + (f" Fully right chains (exact checker): {pct(c['fully_correct_chains'] / c['candidates'])}%."
           if result["world"] and c["candidates"] else "")
        + (f" Skipped: {len(result['skipped_records'])} record(s) (listed in results.json)."
           if result["skipped_records"] else "")
        + (f" Prompts without candidates: {len(result['skipped']['no_candidates'])}."
           if result["skipped"]["no_candidates"] else ""),
        "",
        f"## Best-of-{n_max} accuracy (%)",
        "",
        "| Strategy | " + " | ".join(sources) + " | Overall |",
        "|---|" + "---:|" * (len(sources) + 1),
    ]
    for s in result["strategies"]:
        row = [pct(result["sources"][src]["accuracy"][s][-1]) for src in sources]
        row.append(pct(result["overall"]["accuracy"][s][-1]))
        lines.append(f"| {strategy_label(s, cfg.prm)} | " + " | ".join(row) + " |")
    lines.append("| *prompts* | " + " | ".join(str(result["sources"][src]["num_prompts"][-1]) for src in sources)
                 + f" | {result['overall']['num_prompts'][-1]} |")
    lines += [
        "",
        "## Accuracy against N, all prompts (%)",
        "",
        "| Strategy | " + " | ".join(f"N={n}" for n in ns) + " |",
        "|---|" + "---:|" * len(ns),
    ]
    for s in result["strategies"]:
        row = [pct(x) for x in result["overall"]["accuracy"][s]]
        lines.append(f"| {strategy_label(s, cfg.prm)} | " + " | ".join(row) + " |")
    lines.append("")
    return "\n".join(lines)
