"""The likelihood feature of a ``+``/``-`` PRM: the model's own surprise at a step, added to its verdict.

A VisualPRM-style PRM reads each step's verdict from the logits of ``+`` and ``-`` at the step's read
position. With the feature on, the same forward pass also yields the model's next-token
log-probabilities of the step's own tokens (inside the PRM conversation, where the step stands in a
user turn). Per step ``k`` the feature is the running minimum, over the steps so far, of the least
likely token of each step:

    f_k = min_{j <= k} min_{t in step j} log p(x_t | x_<t)

and the ``+`` logit becomes ``logit(+) + weight * f_k + bias`` (``-`` unchanged), so
``P(+) = sigmoid(logit(+) - logit(-) + weight * f_k + bias)``. With ``weight`` 0 the scorer is the plain
VisualPRM-style PRM.

Why (DESIGN.md section 7): a small PRM trained on ``+``/``-`` labels alone does not learn to carry a
step's content to its read position, while the same model, trained with an auxiliary language-model
loss on correct steps, predicts the step's tokens well enough that its own surprise separates right
from wrong steps (``benchmarks/prm_read_probe.py --at likelihood``). The feature gives the verdict
a direct path to that surprise. In training (``rlvprm train-prm --likelihood-feature``) the LM loss
shapes the step tokens' probabilities and the label loss trains the ``+``/``-`` logits on top of
the feature (it reaches the probabilities through ``f_k`` only with ``--feature-gradient``).
``weight`` and ``bias`` stay fixed during training and are saved beside the model as
``likelihood_feature.json``, which ``ProcessRewardModel.from_pretrained`` reads.

A step's tokens are found in token space (:func:`find_step_spans`): the shortest run of tokens just
before the step's assistant header whose decoding contains the step's text, so the chat markup and,
for the first step, the question are not part of it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch

from rewards.backends.base import InputError

FEATURE_CONFIG = "likelihood_feature.json"


@dataclass(frozen=True)
class LikelihoodFeature:
    """How the running-minimum step log-probability enters the ``+`` logit."""

    weight: float = 1.0
    bias: float = 0.0

    def save(self, folder: str | Path) -> None:
        (Path(folder) / FEATURE_CONFIG).write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path_or_id: str | Path, *, revision: str | None = None,
             token: str | bool | None = None) -> "LikelihoodFeature | None":
        """The feature saved beside the PRM at ``path_or_id`` (a folder or hub id), or ``None`` when it has none."""
        from rewards.scorer_files import find_scorer_file

        path = find_scorer_file(path_or_id, FEATURE_CONFIG, revision=revision, token=token)
        if path is None:
            return None
        data = json.loads(path.read_text())
        unknown = set(data) - {"weight", "bias"}
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
        return cls(float(data.get("weight", 1.0)), float(data.get("bias", 0.0)))

def find_step_spans(
    decode, ids: Sequence[int], read_positions: Sequence[int], header_len: int, steps: Sequence[str]
) -> list[tuple[int, int]]:
    """``[start, end)`` token positions of each step's text in one encoded conversation.

    ``decode`` maps a list of token ids to text (the tokenizer's, special tokens kept); step ``k``'s
    text lies before its assistant header, which starts at ``read_positions[k] - header_len + 1``.
    The span is the shortest run of tokens there whose decoding contains the stripped step text, so
    a token merged across the text's boundary is included and markup is not.

    The search decodes O(n) tokens for a step of n tokens in the usual case (windows doubling back
    from the header, then one candidate read off per-token pieces and checked), O(n log n) when the
    pieces do not line up with the decoding (a bisection); never the O(n^2) of growing windows.

    >>> vocab = {1: "<u>", 2: "3+4", 3: "=7", 4: "</u>", 5: "<a>", 6: "+"}
    >>> dec = lambda ids: "".join(vocab[i] for i in ids)
    >>> find_step_spans(dec, [1, 2, 3, 4, 5, 6, 1, 3, 4, 5, 6], [4, 9], 1, ["3+4=7", "=7"])
    [(1, 3), (7, 8)]
    """
    spans = []
    lower = 0
    pieces: dict[int, str] = {}

    def piece(t: int) -> str:  # one token's decoding, once per token id
        if t not in pieces:
            pieces[t] = decode([t])
        return pieces[t]

    for k, (p, step) in enumerate(zip(read_positions, steps)):
        stop = p - header_len + 1
        target = step.strip()

        def holds(a: int, b: int) -> bool:
            return target in decode(list(ids[a:b]))

        start = _last_start(decode, piece, ids, lower, stop, target, holds)
        if start is None:
            raise InputError(f"step {k + 1}'s text was not found among its tokens (the chat template changed it?)")
        end = stop if start == stop else _first_end(decode, piece, ids, start, stop, target, holds)
        spans.append((start, end))
        lower = p + 2  # after this step's placeholder
    return spans


def _piece_starts(decode, piece, ids: Sequence[int], a: int, b: int) -> tuple[str, list[int]] | None:
    """``decode(ids[a:b])`` and the character where each token's piece starts in it, or None when
    the per-token pieces do not add up to the decoding (merged bytes, a tokenizer's leading space)."""
    pieces = [piece(t) for t in ids[a:b]]
    text = decode(list(ids[a:b]))
    if "".join(pieces) != text:
        return None
    starts, pos = [], 0
    for part in pieces:
        starts.append(pos)
        pos += len(part)
    return text, starts


def _last_start(decode, piece, ids, lower: int, stop: int, target: str, holds) -> int | None:
    """The largest ``s`` in ``[lower, stop]`` with ``holds(s, stop)``, or None."""
    if holds(stop, stop):
        return stop
    bad, width = stop, 1
    while True:  # windows doubling back from stop: O(n) tokens decoded in all
        good = max(lower, stop - width)
        if holds(good, stop):
            break
        if good == lower:
            return None
        bad, width = good, 2 * width
    found = _piece_starts(decode, piece, ids, good, stop)
    if found is not None:  # the token holding the last occurrence's first character
        text, starts = found
        at = text.rfind(target)
        s = good + max(j for j, c in enumerate(starts) if c <= at)
        if holds(s, stop) and (s + 1 > stop or not holds(s + 1, stop)):
            return s
    while bad - good > 1:
        mid = (good + bad) // 2
        if holds(mid, stop):
            good = mid
        else:
            bad = mid
    return good


def _first_end(decode, piece, ids, start: int, stop: int, target: str, holds) -> int:
    """The smallest ``e`` in ``[start + 1, stop]`` with ``holds(start, e)`` (``holds(start, stop)`` is known)."""
    found = _piece_starts(decode, piece, ids, start, stop)
    if found is not None:  # the token holding the first occurrence's last character
        text, starts = found
        last = text.find(target) + len(target) - 1
        e = start + 1 + max(j for j, c in enumerate(starts) if c <= max(last, 0))
        if holds(start, e) and (e - 1 <= start or not holds(start, e - 1)):
            return e
    good, bad = stop, start  # holds(start, good); the answer is in (bad, good]
    while good - bad > 1:
        mid = (good + bad) // 2
        if mid > start and holds(start, mid):
            good = mid
        else:
            bad = mid
    return good


def feature_positions(spans: Sequence[Sequence[tuple[int, int]]]) -> list[int]:
    """Positions whose logits predict a step token (``t - 1`` for every token ``t`` of every span)."""
    return sorted({t - 1 for row in spans for start, end in row for t in range(start, end)})


def span_tokens(spans: Sequence[Sequence[tuple[int, int]]]) -> list[tuple[int, int]]:
    """``(row, token position)`` of every token of every span, row by row and step by step.

    >>> span_tokens([[(1, 3)], [(2, 3), (5, 6)]])
    [(0, 1), (0, 2), (1, 2), (1, 5)]
    """
    return [(i, t) for i, row in enumerate(spans) for start, end in row for t in range(start, end)]


def step_minima(token_logprobs: torch.Tensor, spans: Sequence[Sequence[tuple[int, int]]]) -> torch.Tensor:
    """``(B, S)``: each step's least likely token (0 for padded steps) from ``token_logprobs``
    ``(K,)``, the log-probabilities of the :func:`span_tokens` of ``spans`` in that order."""
    steps = max((len(row) for row in spans), default=0)
    out = torch.zeros(len(spans), steps, device=token_logprobs.device)
    k = 0
    for i, row in enumerate(spans):
        for j, (start, end) in enumerate(row):
            out[i, j] = token_logprobs[k : k + end - start].min()
            k += end - start
    return out


def running_min_of_tokens(token_logprobs: torch.Tensor, spans: Sequence[Sequence[tuple[int, int]]]) -> torch.Tensor:
    """``(B, S)`` feature ``f_k`` (running minimum over steps) from the span tokens' log-probabilities."""
    per_step = step_minima(token_logprobs, spans)
    return torch.cummin(per_step, dim=1).values if per_step.shape[1] else per_step


def step_min_logprobs(
    logits: torch.Tensor, keep: torch.Tensor, input_ids: torch.Tensor, spans: Sequence[Sequence[tuple[int, int]]]
) -> torch.Tensor:
    """``(B, S)``: the log-probability of each step's least likely token (0 for padded steps).

    ``logits`` ``(B, K, V)`` are the model's logits at the sorted positions ``keep`` ``(K,)``, which
    must include :func:`feature_positions` of ``spans``; ``input_ids`` ``(B, L)``. Differentiable in
    ``logits``. (Scoring does not hold ``B x K x V`` logits: ``rewards.backends.hf`` computes the
    span tokens' log-probabilities from hidden states a chunk at a time, then :func:`step_minima`.)
    """
    pairs = span_tokens(spans)
    if not pairs:
        return torch.zeros(len(spans), max((len(r) for r in spans), default=0), device=logits.device)
    b = torch.tensor([i for i, _ in pairs], device=logits.device)
    t = torch.tensor([p for _, p in pairs], device=logits.device)
    at = torch.searchsorted(keep.to(logits.device), t - 1)
    rows = logits[b, at].float()  # (K', V)
    targets = input_ids.to(logits.device)[b, t]
    logp = rows.gather(1, targets[:, None]).squeeze(1) - torch.logsumexp(rows, dim=-1)
    return step_minima(logp, spans)


def running_min_feature(
    logits: torch.Tensor, keep: torch.Tensor, input_ids: torch.Tensor, spans: Sequence[Sequence[tuple[int, int]]]
) -> torch.Tensor:
    """``(B, S)``: ``f_k`` of every step, the running minimum of :func:`step_min_logprobs` over the steps.

    >>> logits = torch.zeros(1, 3, 4)  # uniform over 4 tokens: every log-probability is log(1/4)
    >>> logits[0, 0, 2] = 10.0  # position 0 is sure of token 2
    >>> f = running_min_feature(logits, torch.tensor([0, 1, 2]), torch.tensor([[0, 2, 1, 3]]), [[(1, 2), (2, 4)]])
    >>> [round(x, 3) for x in f[0].tolist()]  # step 1: token 2 at p ~ 1; step 2 adds log(1/4)
    [-0.0, -1.386]
    """
    per_step = step_min_logprobs(logits, keep, input_ids, spans)
    return torch.cummin(per_step, dim=1).values if per_step.shape[1] else per_step


def add_feature(plus_minus: torch.Tensor, feature: torch.Tensor, config: LikelihoodFeature) -> torch.Tensor:
    """``(..., 2)`` ``+``/``-`` logits with ``weight * f + bias`` added to the ``+`` logit."""
    shift = config.weight * feature + config.bias
    return torch.stack([plus_minus[..., 0] + shift, plus_minus[..., 1]], dim=-1)
