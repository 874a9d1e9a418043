"""Best-of-N selection: which of a prompt's scored candidates to answer with, and accuracy as N grows.

Pure functions over candidates that were already generated and scored once, at the largest N
(DESIGN.md section 6); ``rlvprm bon`` does the sampling and scoring. A candidate carries its
extracted final ``answer`` (None when it states none), whether it is ``correct``, and optional
scores: ``prm_score`` (one number, or a dict of aggregation name -> number), ``orm_score`` and
``logprob`` (the policy's own mean log-likelihood).

Strategies, by name:

- ``prm_best`` / ``prm_best:AGG``: the highest PRM score (``AGG`` picks one entry of a dict score).
- ``orm_best``: the highest ORM score.   ``likelihood_best``: the highest ``logprob``.
- ``self_consistency``: majority vote over answers.
- ``prm_weighted_vote`` / ``prm_weighted_vote:AGG``: the answer with the largest sum of PRM scores.
- ``pass@1`` (also ``random``): the expected accuracy of one random candidate, i.e. the mean of
  ``correct``.   ``oracle``: 1 when any candidate is correct (pass@N).

Conventions:

- Ties: an argmax strategy takes the lowest index; a vote takes the tied answer whose first
  candidate comes first. The candidate a vote selects is the first one giving the winning answer.
- Candidates without an answer never vote; a vote where nobody states an answer selects nothing
  and scores 0.
- Answers are the same for voting when their :func:`answer_key` is: LaTeX wrappers, ``$``,
  spacing, a final period and thousands separators are dropped, ``(B)`` reads as ``B``, words
  compare without case, and numbers (``0.5``, ``1/2``, ``\\frac{1}{2}``) by value to 6 significant
  digits. Not math-verify: a vote must group answers transitively, and cheaply.
- Subsampling: for each N, each prompt draws ``num_subsets`` subsets of N of its candidates
  without replacement, from ``numpy.random.default_rng([seed, prompt index, N])``; when there are
  no more distinct subsets than that (always at N = all candidates), each is used once, so the
  result is the exact expectation. A subset keeps the candidates' original order. Every strategy
  sees the same subsets, so adding a strategy changes no other number.
- A prompt without candidates is skipped and listed, not counted as a 0; a prompt with fewer than
  N candidates is skipped at that N and counted.

Worked example: candidates answering ``7`` (PRM 0.9, correct), ``8`` (0.4) and ``8`` (0.4).
``prm_best`` and ``prm_weighted_vote`` (0.9 against 0.8) pick the first, ``self_consistency`` the
second (two votes against one).

>>> cands = [Candidate("7", True, 0.9), Candidate("8", False, 0.4), Candidate("8", False, 0.4)]
>>> prm_best(cands), prm_weighted_vote(cands), self_consistency(cands)
(0, 0, 1)

Left out: generation, scoring and answer extraction (``rlvprm bon``, ``rewards``); confidence
intervals. Run the tests with ``python -m pytest -q tests/rlvprm/bon/test_select.py``.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Mapping, Sequence

import numpy as np

NO_SOURCE = "(none)"


@dataclass
class Candidate:
    """One sampled solution of a prompt, already scored."""

    answer: str | None = None
    correct: bool = False
    prm_score: float | dict[str, float] | None = None
    orm_score: float | None = None
    logprob: float | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Candidate":
        return cls(d.get("answer"), bool(d.get("correct", False)), d.get("prm_score"), d.get("orm_score"),
                   d.get("logprob"))


@dataclass
class Prompt:
    """A prompt's candidates, all sampled at the largest N."""

    id: str
    candidates: list[Candidate] = field(default_factory=list)
    data_source: str | None = None


def as_candidates(cands: Sequence[Candidate | Mapping[str, Any]]) -> list[Candidate]:
    return [c if isinstance(c, Candidate) else Candidate.from_dict(c) for c in cands]


# --- answer equivalence -----------------------------------------------------------------------------

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_FRAC = re.compile(rf"([-+]?)\\frac\{{({_NUM})\}}\{{({_NUM})\}}|({_NUM})/({_NUM})")


def answer_key(answer: str | None) -> Hashable | None:
    """What two answers must share to count as the same vote; None for no answer.

    >>> answer_key("\\\\frac{1}{2}") == answer_key("0.5") == answer_key(" $1/2$ ")
    True
    >>> answer_key("(B)") == answer_key("B"), answer_key("Yes") == answer_key("yes")
    (True, True)
    """
    if answer is None:
        return None
    s = answer.replace("$", "")
    for _ in range(3):  # nested wrappers unwrap one per round
        s = re.sub(r"\\(?:text|textbf|textrm|mathrm|mbox)\s*\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\\(?:left|right)(?![A-Za-z])", "", s)
    s = re.sub(r"\\[dt]frac(?![A-Za-z])", r"\\frac", s)
    s = re.sub(r"\\[,;:! ]|\s+", "", s)
    s = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", s).rstrip(".")
    if not s:
        return None
    letter = re.fullmatch(r"\(([A-Za-z])\)", s)
    if letter:
        s = letter.group(1)
    value = _number(s)
    if value is not None:
        return ("number", float(f"{value:.6g}") + 0.0)  # + 0.0 makes -0.0 equal 0.0
    if len(s) > 1 and s.isalpha():
        return ("text", s.casefold())
    return ("text", s)  # single letters are symbols: "x" and "X" differ


def _number(s: str) -> float | None:
    if re.fullmatch(_NUM, s):
        return float(s)
    m = _FRAC.fullmatch(s)
    if not m:
        return None
    sign, num, den, plain_num, plain_den = m.groups()
    num, den = (num, den) if num is not None else (plain_num, plain_den)
    if float(den) == 0:
        return None
    return (-1.0 if sign == "-" else 1.0) * float(num) / float(den)


# --- strategies on one candidate set -----------------------------------------------------------------


def _values(cands: Sequence[Candidate], what: str, aggregation: str | None = None) -> list[float]:
    out = []
    for i, c in enumerate(cands):
        v = getattr(c, what)
        if isinstance(v, Mapping):
            if aggregation is None:
                if len(v) != 1:
                    raise ValueError(f"candidate {i}: {what} holds {sorted(v)}; name one, e.g. 'prm_best:{next(iter(v))}'")
                v = next(iter(v.values()))
            elif aggregation not in v:
                raise ValueError(f"candidate {i}: {what} has no {aggregation!r} entry (it has {sorted(v)})")
            else:
                v = v[aggregation]
        elif aggregation is not None and v is not None:
            raise ValueError(f"candidate {i}: {what} is one number; use the strategy without ':{aggregation}'")
        if v is None or not math.isfinite(float(v)):
            raise ValueError(f"candidate {i}: {what} is {v!r}; every candidate needs a finite {what}")
        out.append(float(v))
    return out


def _argmax(values: Sequence[float]) -> int | None:
    best = None
    for i, v in enumerate(values):
        if best is None or v > values[best]:  # strict: a tie keeps the lower index
            best = i
    return best


def prm_best(cands: Sequence[Candidate], aggregation: str | None = None) -> int | None:
    """Index of the highest PRM score (lowest index on ties); None without candidates."""
    return _argmax(_values(as_candidates(cands), "prm_score", aggregation))


def orm_best(cands: Sequence[Candidate]) -> int | None:
    """Index of the highest ORM score (lowest index on ties)."""
    return _argmax(_values(as_candidates(cands), "orm_score"))


def likelihood_best(cands: Sequence[Candidate]) -> int | None:
    """Index of the highest policy mean log-likelihood (lowest index on ties)."""
    return _argmax(_values(as_candidates(cands), "logprob"))


def _vote(cands: Sequence[Candidate], weights: Sequence[float]) -> int | None:
    """Index of the first candidate of the answer with the largest total weight."""
    totals: dict[Hashable, list[float]] = {}
    first: dict[Hashable, int] = {}
    for i, (c, w) in enumerate(zip(cands, weights)):
        key = answer_key(c.answer)
        if key is None:
            continue  # no answer, no vote
        totals.setdefault(key, []).append(w)
        first.setdefault(key, i)
    if not totals:
        return None
    sums = {k: math.fsum(v) for k, v in totals.items()}
    # dicts keep insertion order = order of first occurrence, so max() keeps the earliest on ties
    winner = max(sums, key=lambda k: sums[k])
    return first[winner]


def self_consistency(cands: Sequence[Candidate]) -> int | None:
    """Majority vote over answers; see the module docstring for ties and missing answers."""
    cands = as_candidates(cands)
    return _vote(cands, [1.0] * len(cands))


def prm_weighted_vote(cands: Sequence[Candidate], aggregation: str | None = None) -> int | None:
    """Vote weighted by PRM score: the answer whose candidates' scores sum highest."""
    cands = as_candidates(cands)
    return _vote(cands, _values(cands, "prm_score", aggregation))


def pass_at_1(cands: Sequence[Candidate]) -> float:
    """Expected accuracy of one candidate drawn at random: the fraction that is correct."""
    cands = as_candidates(cands)
    return sum(c.correct for c in cands) / len(cands) if cands else 0.0


def oracle(cands: Sequence[Candidate]) -> float:
    """1.0 when any candidate is correct (pass@N)."""
    return 1.0 if any(c.correct for c in as_candidates(cands)) else 0.0


_SELECTORS: dict[str, Callable[..., int | None]] = {
    "prm_best": prm_best,
    "orm_best": orm_best,
    "likelihood_best": likelihood_best,
    "self_consistency": self_consistency,
    "prm_weighted_vote": prm_weighted_vote,
}
_EXPECTATIONS: dict[str, Callable[[Sequence[Candidate]], float]] = {"pass@1": pass_at_1, "random": pass_at_1,
                                                                     "oracle": oracle}
_TAKES_AGGREGATION = ("prm_best", "prm_weighted_vote")
STRATEGIES = (*_SELECTORS, *_EXPECTATIONS)


def parse_strategy(name: str) -> tuple[str, str | None]:
    """``"prm_best:min"`` -> ``("prm_best", "min")``; unknown names raise listing the valid ones."""
    base, sep, agg = name.partition(":")
    if base not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    if sep and base not in _TAKES_AGGREGATION:
        raise ValueError(f"strategy {name!r}: only {' and '.join(_TAKES_AGGREGATION)} take ':AGGREGATION'")
    if sep and not agg:
        raise ValueError(f"strategy {name!r}: empty aggregation after ':'")
    return base, (agg if sep else None)


def strategy_accuracy(name: str, cands: Sequence[Candidate]) -> float:
    """Accuracy of strategy ``name`` on one candidate set (0 when it selects nothing)."""
    base, agg = parse_strategy(name)
    cands = as_candidates(cands)
    if base in _EXPECTATIONS:
        return _EXPECTATIONS[base](cands)
    pick = _SELECTORS[base](cands, agg) if agg is not None else _SELECTORS[base](cands)
    return 1.0 if pick is not None and cands[pick].correct else 0.0


def default_strategies(prompts: Sequence[Prompt]) -> list[str]:
    """Every strategy the candidates carry scores for.

    PRM strategies appear once per aggregation when ``prm_score`` is a dict (the names every
    candidate has), ORM and likelihood strategies only when every candidate has that score.
    """
    cands = [c for p in prompts for c in as_candidates(p.candidates)]
    out = ["pass@1", "self_consistency"]
    if cands and all(c.prm_score is not None for c in cands):
        if any(isinstance(c.prm_score, Mapping) for c in cands):
            names = [k for k in _dict_keys(cands[0].prm_score)
                     if all(isinstance(c.prm_score, Mapping) and k in c.prm_score for c in cands)]
            out += [f"prm_best:{k}" for k in names] + [f"prm_weighted_vote:{k}" for k in names]
        else:
            out += ["prm_best", "prm_weighted_vote"]
    if cands and all(c.orm_score is not None for c in cands):
        out.append("orm_best")
    if cands and all(c.logprob is not None for c in cands):
        out.append("likelihood_best")
    return out + ["oracle"]


def _dict_keys(x: Any) -> list[str]:
    return list(x) if isinstance(x, Mapping) else []


# --- accuracy against N by subsampling ----------------------------------------------------------------


def default_ns(n_max: int) -> list[int]:
    """1, 2, 4, ... below ``n_max``, then ``n_max`` itself.

    >>> default_ns(8), default_ns(6), default_ns(1)
    ([1, 2, 4, 8], [1, 2, 4, 6], [1])
    """
    ns, n = [], 1
    while n < n_max:
        ns.append(n)
        n *= 2
    return ns + [n_max] if n_max >= 1 else []


def subsets(k: int, n: int, num_subsets: int, rng: np.random.Generator) -> list[tuple[int, ...]]:
    """Index subsets of size ``n`` out of ``k``: all of them when there are at most
    ``num_subsets``, else ``num_subsets`` random draws without replacement (indices ascending)."""
    if math.comb(k, n) <= num_subsets:
        return list(itertools.combinations(range(k), n))
    return [tuple(int(i) for i in np.sort(rng.choice(k, size=n, replace=False))) for _ in range(num_subsets)]


def prompt_subsets(index: int, k: int, n: int, num_subsets: int, seed: int) -> list[tuple[int, ...]]:
    """The subsets of N = ``n`` out of ``k`` candidates that :func:`best_of_n` uses for the prompt at
    position ``index`` of its list (``rlvprm compare`` counts the compute of the same subsets)."""
    return subsets(k, n, num_subsets, np.random.default_rng([seed, index, n]))


def best_of_n(
    prompts: Sequence[Prompt],
    strategies: Sequence[str] | None = None,
    ns: Sequence[int] | None = None,
    num_subsets: int = 32,
    seed: int = 0,
) -> dict[str, Any]:
    """Accuracy of each strategy at each N, overall (mean over prompts) and per ``data_source``.

    ``ns`` defaults to :func:`default_ns` of the smallest candidate count. Returns::

        {"ns": [...], "strategies": [...], "num_subsets": ..., "seed": ...,
         "overall": {"num_prompts": [per N], "accuracy": {strategy: [per N; None if no prompt]}},
         "sources": {source: {same shape as overall}},
         "skipped": {"no_candidates": [prompt ids], "too_few_candidates": [count per N]}}
    """
    if num_subsets < 1:
        raise ValueError("num_subsets must be >= 1")
    prompts = list(prompts)
    usable = [(i, p) for i, p in enumerate(prompts) if p.candidates]
    strategies = list(strategies) if strategies is not None else default_strategies([p for _, p in usable])
    for s in strategies:
        parse_strategy(s)
    if ns is None:
        ns = default_ns(min((len(p.candidates) for _, p in usable), default=0))
    ns = list(ns)
    if any(n < 1 for n in ns):
        raise ValueError(f"every N must be >= 1, got {ns}")

    # sums[group][strategy][j] and counts[group][j] over prompts, for N = ns[j]
    sums: dict[str, dict[str, list[float]]] = defaultdict(lambda: {s: [0.0] * len(ns) for s in strategies})
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * len(ns))
    too_few = [0] * len(ns)
    for i, p in usable:
        cands = as_candidates(p.candidates)
        groups = ("overall", p.data_source or NO_SOURCE)
        for j, n in enumerate(ns):
            if n > len(cands):
                too_few[j] += 1
                continue
            chosen = prompt_subsets(i, len(cands), n, num_subsets, seed)
            for s in strategies:
                acc = sum(strategy_accuracy(s, [cands[k] for k in sub]) for sub in chosen) / len(chosen)
                for g in groups:
                    sums[g][s][j] += acc
            for g in groups:
                counts[g][j] += 1

    def table(g: str) -> dict[str, Any]:
        c = counts[g]
        return {"num_prompts": list(c),
                "accuracy": {s: [v / c[j] if c[j] else None for j, v in enumerate(sums[g][s])] for s in strategies}}

    return {
        "ns": ns,
        "strategies": strategies,
        "num_subsets": num_subsets,
        "seed": seed,
        "overall": table("overall"),
        "sources": {g: table(g) for g in sorted(counts) if g != "overall"},
        "skipped": {"no_candidates": [p.id for p in prompts if not p.candidates], "too_few_candidates": too_few},
    }


def plot_scaling(
    result: dict[str, Any],
    path: str | Path,
    source: str | None = None,
    title: str | None = None,
    references: Sequence[str] = (),
) -> Path:
    """Accuracy against N (log2 axis), one line per strategy, saved as a PNG at ``path``.

    ``source`` plots one ``data_source``; default the overall accuracy. Reference lines (pass@1,
    oracle, and the names or ``name:`` prefixes in ``references``) are dashed. Drawn on a bare
    ``Figure`` rendered by Agg, so no pyplot state or display is touched.
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    data = result["overall"] if source is None else result["sources"][source]
    ns = result["ns"]
    many = len(data["accuracy"]) > 8  # then the legend goes beside the axes, not over the lines
    fig = Figure(figsize=(9.0 if many else 6.4, 4.2), dpi=110)
    ax = fig.add_subplot()
    if len(data["accuracy"]) > 10:  # the default cycle repeats colours after ten lines
        ax.set_prop_cycle(color=colormaps["tab20"].colors)
    for name, accs in data["accuracy"].items():
        pts = [(n, a) for n, a in zip(ns, accs) if a is not None]
        if not pts:
            continue
        base = name.split(":")[0]
        bound = base in _EXPECTATIONS or name in references or base in references  # reference lines, not selectors
        ax.plot(*zip(*pts), marker="o", linestyle="--" if bound else "-", label=name)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_xlabel("N (candidates per prompt)")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    if many:
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    else:
        ax.legend(fontsize=8)
    ax.set_title(title or f"Best-of-N, {source or 'all prompts'}")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
