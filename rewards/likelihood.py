"""Process scores from likelihood: the policy's own step probability, and PRIME-style implicit PRMs.

DESIGN.md section 7: a tiny ``+``/``-`` PRM has to learn whether the written digits match the image
(an XOR-like target), while a model that reads the image and predicts the next token gets that
comparison for free: a misread digit is a token it finds unlikely. Two scorers use this, behind the
interface of ``rewards.prm.ProcessRewardModel`` (``score_groups(groups)`` and ``score_group``,
returning ``ScoredSolution`` lists), so Best-of-N, evaluation and RL take any of them:

- :class:`PolicyLikelihoodScorer` (training-free): a step's score is the policy's probability of
  it (``step_prob``), the mean probability of its tokens (``mean_token_prob``) or its least likely
  token (``min_token_prob``); by default the running minimum over steps, so a step after an
  unlikely one cannot look good again.
- :class:`ImplicitPRM` (PRIME): a model trained from outcome labels only (``rlvprm train-prm --kind
  implicit``) against its frozen reference. A step's reward is ``beta`` times the summed log-ratio
  ``log pi_theta - log pi_ref`` of its tokens; its score in [0, 1] is the sigmoid of that reward
  (``score="step"``, the default), or the sigmoid of the rewards summed up to and including the
  step (``score="cumulative"``: the implicit Q-value, which training makes an estimate of the
  chance that the solution ends right); by default the running minimum over steps, as for the
  policy's likelihood (a step after a bad one is not "correct so far").

How a solution maps to tokens: the policy prompt (``rewards.prompt.render_prompt``) and the
solution are tokenised together, as the policy would see them; the tokenizer's offset mapping says
which characters each token covers. A token belongs to the solution when its last character does,
and to the step whose region holds that last character. Step ``k``'s region runs from its start
(``rewards.steps.split_steps``, or the given steps joined by the separator) to the next step's
start, so the separator after a step (the policy's decision to end it) counts with that step, text
before the first step with the first and text after the last step with the last. Every solution
token belongs to exactly one step, and the step sums add up to the solution's log-probability.

A batch of solutions is one teacher-forced forward pass, left-padded so the solution tokens end
every row and only those positions' logits are computed. Log-probabilities are ``log_softmax`` of
the raw logits (temperature 1), as the samplers return them. :func:`token_logprobs` keeps the
gradient, so PRM training (``rlvprm.prm_training``) computes the implicit reward with this very code.

Left out: the end-of-turn token (its probability belongs to no step), and a reference model sharded
by DeepSpeed (the reference is an ordinary module on the scorer's device).
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from PIL import Image

from rewards.aggregate import aggregate, parse_aggregation
from rewards.prm import Group, ScoredSolution, given_steps, resolve_device, resolve_dtype
from rewards.prompt import render_prompt
from rewards.shared_prefix import group_rows_once, image_token_ids, target_logprobs
from rewards.steps import Step, join_steps, split_steps

SCORE_KINDS = ("step_prob", "mean_token_prob", "min_token_prob")
IMPLICIT_SCORES = ("step", "cumulative")
IMPLICIT_CONFIG = "implicit_prm.json"  # written next to an implicit PRM's weights: reference, beta

Solution = str | Sequence[str]  # a solution text, or its steps as given (VisualProcessBench)


@dataclass
class StepLogprobs:
    """One solution's tokens, their log-probabilities and how they divide into steps.

    ``token_offsets`` are character spans inside the solution text (a token that starts in the
    prompt has a negative start); ``step_tokens[k]`` is the range of token indices of step ``k``.
    For an implicit PRM ``token_logprobs`` hold log-ratios against the reference.
    """

    steps: list[Step]
    token_ids: list[int]
    token_offsets: list[tuple[int, int]]
    token_logprobs: list[float]
    step_tokens: list[range]
    input_tokens: int = 0  # non-padding tokens of the whole row the model read (prompt, images, solution)

    @property
    def step_sums(self) -> list[float]:
        """The summed log-probability of every step's tokens."""
        return [math.fsum(self.token_logprobs[i] for i in r) for r in self.step_tokens]

    def step_token_logprobs(self, k: int) -> list[float]:
        return [self.token_logprobs[i] for i in self.step_tokens[k]]


def step_token_map(
    offsets: Sequence[tuple[int, int]], solution_start: int, steps: Sequence[Step]
) -> tuple[int, list[range]]:
    """``(first solution token, token range of each step)`` from a token offset mapping.

    ``offsets`` are the character spans of the tokens of prompt + solution; ``solution_start`` is
    where the solution begins; step spans are relative to the solution.

    >>> # tokens: "P:" | "a" | "b\\n\\n" | "c"   (prompt "P:", solution "ab\\n\\nc", steps "ab", "c")
    >>> step_token_map([(0, 2), (2, 3), (3, 6), (6, 7)], 2, [Step("ab", 0, 2), Step("c", 4, 5)])
    (1, [range(1, 3), range(3, 4)])
    """
    first = next((i for i, (s, e) in enumerate(offsets) if max(e - 1, s) >= solution_start), len(offsets))
    if not steps:
        return first, []
    starts = [s.start for s in steps[1:]]
    owner = [bisect.bisect_right(starts, max(e - 1, s) - solution_start) for s, e in offsets[first:]]
    ranges = []
    for k in range(len(steps)):
        idx = [first + i for i, o in enumerate(owner) if o == k]
        ranges.append(range(idx[0], idx[-1] + 1) if idx else range(first, first))
    return first, ranges


def solution_steps(solution: Solution, max_steps: int | None = None) -> tuple[str, list[Step]]:
    """The text and steps of a solution: a text is split (``split_steps``), given steps are kept.

    Given steps are never re-split or merged (as ``ProcessRewardModel`` scores them), so labels
    stay aligned; their text is the steps joined by the separator.
    """
    if isinstance(solution, str):
        return solution, split_steps(solution, max_steps)
    steps = list(solution)
    return join_steps(steps), given_steps(steps)


@dataclass
class EncodedSolutions:
    """Policy inputs for a batch of (question, images, solution) rows, left-padded.

    ``inputs`` are the processor's tensors (``input_ids`` of shape ``(B, L)``); the solution of row
    ``b`` is its last ``len(token_ids[b])`` tokens. Notation: B rows, L padded length, T the longest
    solution in tokens (:attr:`num_tokens`).
    """

    inputs: dict[str, torch.Tensor]
    steps: list[list[Step]]
    token_ids: list[list[int]]
    token_offsets: list[list[tuple[int, int]]]
    step_tokens: list[list[range]]

    @property
    def num_tokens(self) -> int:
        return max((len(t) for t in self.token_ids), default=0)

    def solution_mask(self) -> torch.Tensor:
        """``(B, T)`` bool: True where a column of :func:`token_logprobs` is a solution token."""
        T = self.num_tokens
        lengths = torch.tensor([len(t) for t in self.token_ids])
        return torch.arange(T).unsqueeze(0) >= (T - lengths).unsqueeze(1)

    def results(self, values: torch.Tensor) -> list[StepLogprobs]:
        """One :class:`StepLogprobs` per row from ``(B, T)`` per-token values (right-aligned)."""
        T = values.shape[1]
        lengths = self.inputs["attention_mask"].sum(1).tolist()
        out = []
        for b, ids in enumerate(self.token_ids):
            row = values[b, T - len(ids) :].tolist() if ids else []
            out.append(StepLogprobs(self.steps[b], list(ids), self.token_offsets[b], row, self.step_tokens[b],
                                    int(lengths[b])))
        return out


def encode_solutions(
    processor, rows: Sequence[tuple[str, Sequence[Image.Image], Solution]], max_steps: int | None = None
) -> EncodedSolutions:
    """Tokenise ``(question, images, solution)`` rows in the policy prompt format, left-padded.

    Raises ``ValueError`` when a batch mixes rows with and without images, or when the processor
    tokenises a solution differently from the tokenizer (the token-to-step map would then be wrong).
    """
    texts, _, enc = tokenize_solutions(processor, rows, max_steps)
    with_images = [len(r[1]) > 0 for r in rows]
    kwargs = {}
    if any(with_images):
        if not all(with_images):
            raise ValueError("a batch mixes solutions with and without images; score them apart")
        kwargs["images"] = [list(r[1]) for r in rows]
    out = processor(text=texts, padding=True, padding_side="left", return_tensors="pt", **kwargs)
    for row, sol_ids in zip(out["input_ids"].tolist(), enc.token_ids):
        # Image placeholders expand before the solution, so its tokens must end the row.
        if sol_ids and row[-len(sol_ids) :] != sol_ids:
            raise ValueError("the processor tokenised the solution differently from the tokenizer")
    enc.inputs = {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}
    return enc


def tokenize_solutions(processor, rows: Sequence[tuple[str, Sequence[Image.Image], Solution]],
                       max_steps: int | None = None) -> tuple[list[str], list[list[int]], EncodedSolutions]:
    """``(texts, token rows, encoding without inputs)``: each row's prompt + solution text, its
    tokenizer ids (images still one placeholder each) and its solution tokens divided into steps."""
    tokenizer = processor.tokenizer
    texts, full, steps_all, ids_all, offsets_all, ranges_all = [], [], [], [], [], []
    for question, images, solution in rows:
        prompt = render_prompt(processor, question, len(images))
        text, steps = solution_steps(solution, max_steps)
        enc = tokenizer(prompt + text, add_special_tokens=False, return_offsets_mapping=True)
        first, ranges = step_token_map(enc["offset_mapping"], len(prompt), steps)
        texts.append(prompt + text)
        full.append(list(enc["input_ids"]))
        steps_all.append(steps)
        ids_all.append(enc["input_ids"][first:])
        offsets_all.append([(s - len(prompt), e - len(prompt)) for s, e in enc["offset_mapping"][first:]])
        ranges_all.append([range(r.start - first, r.stop - first) for r in ranges])
    return texts, full, EncodedSolutions({}, steps_all, ids_all, offsets_all, ranges_all)


def shared_prefix_values(models: Sequence, processor, question: str, images: Sequence[Image.Image],
                         solutions: Sequence[Solution], max_steps: int | None, batch_size: int
                         ) -> list[StepLogprobs] | None:
    """Each solution's token log-probabilities under ``models[0]`` (minus those under ``models[1]``:
    an implicit PRM's log-ratio), the group's prompt and images run once (``rewards.shared_prefix``).

    None when the group cannot share a prefix (then score it with :func:`token_logprobs`).
    """
    texts, rows, enc = tokenize_solutions(processor, [(question, images, s) for s in solutions], max_steps)
    image_ids = image_token_ids(models[0].config)
    first = processor(text=texts[:1], images=[list(images)], return_tensors="pt") if images else None
    found = group_rows_once(rows, first, image_ids)
    if found is None:
        return None
    rows, vision = found
    counts = [len(t) for t in enc.token_ids]
    pad = processor.tokenizer.pad_token_id or 0
    values = [target_logprobs(m, rows, vision, counts, image_ids, batch_size, pad) for m in models]
    if any(v is None for v in values):
        return None
    if len(models) > 1:
        values = [[a - b.to(a.device) for a, b in zip(values[0], values[1])]]
    # input_tokens: the whole row's length, as the one-sequence path counts it (the prefix is read once
    # per group here, but a solution's count stays what scoring it alone reads).
    return [StepLogprobs(enc.steps[b], list(enc.token_ids[b]), enc.token_offsets[b], v.tolist(), enc.step_tokens[b],
                         len(rows[b])) for b, v in enumerate(values[0])]


def token_logprobs(model, inputs: dict[str, torch.Tensor], num_tokens: int) -> torch.Tensor:
    """``(B, T)`` log-probability of the last ``T = num_tokens`` tokens of every left-padded row.

    Column ``j`` holds ``log p(x[L-T+j] | x[:L-T+j])``; columns before a shorter solution's first
    token are padding or prompt (mask them with ``EncodedSolutions.solution_mask``). Keeps the
    gradient when the model has one; the logits of only the last ``T + 1`` positions are computed.
    """
    param = next(model.parameters())
    # A model wrapped for distributed training (DDP) has no ``dtype`` of its own.
    device, dtype = param.device, getattr(model, "dtype", param.dtype)
    batch = {k: (v.to(device, dtype) if torch.is_floating_point(v) else v.to(device)) for k, v in inputs.items()}
    ids = batch["input_ids"]
    if num_tokens == 0:
        return torch.zeros(ids.shape[0], 0, device=device)
    logits = model(**batch, logits_to_keep=num_tokens + 1, use_cache=False).logits[:, :-1]  # (B, T, V)
    target = ids[:, -num_tokens:].unsqueeze(-1)
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, target).squeeze(-1)


@torch.no_grad()
def solution_logprobs(
    model,
    processor,
    question: str,
    images: Sequence[Image.Image],
    solutions: Sequence[Solution],
    max_steps: int | None = None,
    batch_size: int = 8,
    shared_prefix: bool = True,
) -> list[StepLogprobs]:
    """Token log-probabilities of each solution under the policy, divided into steps.

    One teacher-forced forward pass per batch of ``batch_size`` solutions; the solutions share the
    question and images (a Best-of-N or RL group), and with ``shared_prefix`` (where the model
    allows) their common prompt prefix and images run once (:func:`shared_prefix_values`). A
    solution given as a list of steps is scored step for step (joined by the separator), never
    re-split.
    """
    was_training = model.training
    model.eval()
    results: list[StepLogprobs] = []
    try:
        if shared_prefix and len(solutions) > 1:
            found = shared_prefix_values([model], processor, question, images, solutions, max_steps, batch_size)
            if found is not None:
                return found
        for start in range(0, len(solutions), batch_size):
            enc = encode_solutions(processor, [(question, images, s) for s in solutions[start : start + batch_size]],
                                   max_steps)
            results.extend(enc.results(token_logprobs(model, enc.inputs, enc.num_tokens)))
    finally:
        model.train(was_training)
    return results


def step_logprobs(
    model, processor, question: str, images: Sequence[Image.Image], solution: Solution, max_steps: int | None = None
) -> list[float]:
    """The policy's summed log-probability of each step of ``solution`` (one forward pass)."""
    return solution_logprobs(model, processor, question, images, [solution], max_steps)[0].step_sums


def step_logprobs_batch(
    model,
    processor,
    question: str,
    images: Sequence[Image.Image],
    solutions: Sequence[Solution],
    max_steps: int | None = None,
    batch_size: int = 8,
) -> list[list[float]]:
    """:func:`step_logprobs` for a group of solutions sharing the question and images."""
    found = solution_logprobs(model, processor, question, images, solutions, max_steps, batch_size)
    return [r.step_sums for r in found]


def likelihood_step_scores(result: StepLogprobs, kind: str = "step_prob", running_min: bool = False) -> list[float]:
    """Step scores in [0, 1] from the policy's token log-probabilities.

    ``kind``: ``step_prob`` (the probability of the whole step), ``mean_token_prob`` (the mean
    probability of its tokens, not penalising long steps) or ``min_token_prob`` (its least likely
    token: one misread digit is enough). ``running_min`` replaces each score by the minimum over
    this and all earlier steps, so a step after an unlikely one cannot look good again.

    >>> r = StepLogprobs([], [], [], [math.log(0.5), math.log(0.5), math.log(0.9)], [range(0, 2), range(2, 3)])
    >>> [round(x, 2) for x in likelihood_step_scores(r)]
    [0.25, 0.9]
    >>> [round(x, 2) for x in likelihood_step_scores(r, running_min=True)]
    [0.25, 0.25]
    """
    if kind not in SCORE_KINDS:
        raise ValueError(f"unknown likelihood score {kind!r}; use one of {', '.join(SCORE_KINDS)}")
    scores = []
    for k in range(len(result.step_tokens)):
        lp = result.step_token_logprobs(k)
        if not lp:
            scores.append(1.0)  # a step with no tokens of its own (cannot happen for split steps)
        elif kind == "step_prob":
            scores.append(math.exp(math.fsum(lp)))
        elif kind == "mean_token_prob":
            scores.append(sum(math.exp(x) for x in lp) / len(lp))
        else:
            scores.append(math.exp(min(lp)))
    return running_minimum(scores) if running_min else scores


def running_minimum(scores: Sequence[float]) -> list[float]:
    """Each score replaced by the minimum of it and all earlier ones.

    >>> running_minimum([0.9, 0.2, 0.7, 0.1])
    [0.9, 0.2, 0.2, 0.1]
    """
    out = list(scores)
    for k in range(1, len(out)):
        out[k] = min(out[k], out[k - 1])
    return out


def implicit_scores(step_rewards: Sequence[float], score: str = "step") -> list[float]:
    """Step scores in [0, 1] from implicit step rewards: ``sigmoid(r_k)`` or ``sigmoid(r_1 + ... + r_k)``.

    ``step`` judges each step by its own reward (0.5: the trained model and its reference agree);
    ``cumulative`` by the implicit Q-value of the prefix, the quantity the outcome loss trains
    (its sigmoid at the last step is the predicted chance that the answer is right).

    >>> [round(x, 3) for x in implicit_scores([0.0, 1.0, -2.0])]
    [0.5, 0.731, 0.119]
    >>> [round(x, 3) for x in implicit_scores([0.0, 1.0, -2.0], "cumulative")]
    [0.5, 0.731, 0.269]
    """
    if score not in IMPLICIT_SCORES:
        raise ValueError(f"unknown implicit score {score!r}; use one of {', '.join(IMPLICIT_SCORES)}")
    values = list(step_rewards)
    if score == "cumulative":
        values = [math.fsum(values[: k + 1]) for k in range(len(values))]
    return [sigmoid(x) for x in values]


def sigmoid(x: float) -> float:
    """``1 / (1 + exp(-x))`` without overflow for large ``|x|``."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


class _LikelihoodScorer:
    """What both scorers share: splitting, grouping, and the ``ProcessRewardModel`` interface."""

    models_per_pass = 1  # models that read every row (for ``ScoredSolution.num_tokens``)

    def __init__(self, processor, aggregation: str, max_steps: int | None, batch_size: int, orm: bool = False,
                 shared_prefix: bool = True):
        parse_aggregation(aggregation)  # raises with the valid names
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.shared_prefix = shared_prefix  # score a group on its shared prompt prefix (rewards.shared_prefix)
        self.processor = processor
        self.aggregation = aggregation
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.orm = orm

    def split(self, solution: Solution) -> list[Step]:
        """The steps this scorer scores: a text is split, given steps are kept as given.

        ORM mode: the whole solution is one step (for an implicit PRM its score is then the
        sigmoid of the whole response's reward, PRIME's outcome reward).
        """
        if self.orm:
            text = solution if isinstance(solution, str) else join_steps(list(solution))
            stripped = text.strip()
            return [Step(stripped, text.index(stripped), text.index(stripped) + len(stripped))] if stripped else []
        return solution_steps(solution, self.max_steps)[1]

    def prepare(self, group: Group) -> list[tuple[list[Step], str]]:
        """Steps and policy prompt of every candidate; raises ``ValueError`` on one that cannot be scored."""
        prompt = render_prompt(self.processor, group.question, len(group.images))
        out = []
        for k, solution in enumerate(group.solutions):
            steps = self.split(solution)
            if not steps:
                raise ValueError(f"solution {k} has no steps (empty response)")
            out.append((steps, prompt))
        return out

    def score_group(self, question: str, images: Sequence[Image.Image], solutions: Sequence[Solution]) -> list[ScoredSolution]:
        """Score every candidate solution of one question."""
        return self.score_groups([Group(question, images, solutions)])[0]

    def score_groups(self, groups: Iterable[Group]) -> list[list[ScoredSolution]]:
        """Score many groups (one batched pass per ``batch_size`` solutions of a group)."""
        out = []
        for group in groups:
            self.prepare(group)  # raises on an empty solution or a placeholder mismatch
            if self.orm:  # one given step per solution
                group = Group(group.question, group.images, [[self.split(s)[0].text] for s in group.solutions])
            results = self._step_values(group)
            scored = []
            for r in results:
                scores = self._scores(r)
                scored.append(ScoredSolution(r.steps, scores, aggregate(scores, self.aggregation),
                                             self.models_per_pass * r.input_tokens))
            out.append(scored)
        return out

    def _step_values(self, group: Group) -> list[StepLogprobs]:
        raise NotImplementedError

    def _scores(self, result: StepLogprobs) -> list[float]:
        raise NotImplementedError


def _load(path_or_id: str, dtype, device, trust_remote_code: bool, revision: str | None = None, token=None):
    from rewards.loading import load_vlm

    dev = resolve_device(device)
    return load_vlm(path_or_id, dtype=resolve_dtype(dtype, dev), device=dev, trust_remote_code=trust_remote_code,
                    revision=revision, token=token)


class PolicyLikelihoodScorer(_LikelihoodScorer):
    """The policy's own per-step probability as a process score (training-free).

    ``kind``: ``step_prob`` (default), ``mean_token_prob`` or ``min_token_prob`` (see
    :func:`likelihood_step_scores`); ``running_min`` (default on: what DESIGN.md section 7
    measured at AUC 0.95) keeps each score at or below the earlier ones. The response score
    aggregates the step scores (default ``min``: a solution is as likely as its least likely step).
    """

    def __init__(
        self,
        model,
        processor,
        kind: str = "step_prob",
        running_min: bool = True,
        aggregation: str = "min",
        max_steps: int | None = None,
        batch_size: int = 8,
        orm: bool = False,
    ):
        if kind not in SCORE_KINDS:
            raise ValueError(f"unknown likelihood score {kind!r}; use one of {', '.join(SCORE_KINDS)}")
        super().__init__(processor, aggregation, max_steps, batch_size, orm)
        self.model = model
        self.kind = kind
        self.running_min = running_min

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str,
        *,
        dtype: str | torch.dtype | None = "auto",
        device: str | torch.device | None = "auto",
        trust_remote_code: bool = False,
        revision: str | None = None,
        token: str | bool | None = None,
        **kwargs,
    ) -> "PolicyLikelihoodScorer":
        """Load the policy (a transformers image-text-to-text model); kwargs go to the constructor."""
        model, processor = _load(path_or_id, dtype, device, trust_remote_code, revision, token)
        return cls(model, processor, **kwargs)

    def _step_values(self, group: Group) -> list[StepLogprobs]:
        return solution_logprobs(self.model, self.processor, group.question, group.images, group.solutions,
                                 self.max_steps, self.batch_size, self.shared_prefix)

    def _scores(self, result: StepLogprobs) -> list[float]:
        return likelihood_step_scores(result, self.kind, self.running_min)


class ImplicitPRM(_LikelihoodScorer):
    """A PRIME-style implicit PRM: step reward ``beta * sum(log pi_theta - log pi_ref)`` over its tokens.

    ``model`` is trained from outcome labels (``rlvprm train-prm --kind implicit``), ``reference``
    is the frozen model it started from; both see the same tokens in one batched pass each. The
    score of a step is ``sigmoid(reward)`` (``score="step"``) or the sigmoid of the cumulative
    reward (``score="cumulative"``), see :func:`implicit_scores`; ``running_min`` (default on) keeps
    each score at or below the earlier ones.
    """

    models_per_pass = 2  # the model and its reference read every row

    def __init__(
        self,
        model,
        reference,
        processor,
        beta: float = 0.05,
        score: str = "step",
        running_min: bool = True,
        aggregation: str = "min",
        max_steps: int | None = None,
        batch_size: int = 8,
        orm: bool = False,
    ):
        if score not in IMPLICIT_SCORES:
            raise ValueError(f"unknown implicit score {score!r}; use one of {', '.join(IMPLICIT_SCORES)}")
        if not beta > 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        super().__init__(processor, aggregation, max_steps, batch_size, orm)
        self.model = model
        self.reference = reference
        self.beta = beta
        self.score = score
        self.running_min = running_min

    @classmethod
    def from_pretrained(
        cls,
        path: str,
        *,
        reference: str | None = None,
        dtype: str | torch.dtype | None = "auto",
        device: str | torch.device | None = "auto",
        trust_remote_code: bool = False,
        revision: str | None = None,
        token: str | bool | None = None,
        **kwargs,
    ) -> "ImplicitPRM":
        """Load an implicit PRM written by ``rlvprm train-prm --kind implicit`` (a folder or hub id).

        Its ``implicit_prm.json`` names the reference model and ``beta``; ``reference`` and
        ``beta=`` override them. ``revision`` and ``token`` apply to the PRM's hub id (the
        reference is named on its own). Other kwargs go to the constructor.
        """
        from rewards.scorer_files import find_scorer_file

        info_path = find_scorer_file(path, IMPLICIT_CONFIG, required=True, revision=revision, token=token,
                                     needed_for="an implicit PRM written by `rlvprm train-prm --kind implicit` "
                                                "(pass reference= and beta= to the constructor to build one by hand)")
        info = json.loads(info_path.read_text())
        model, processor = _load(path, dtype, device, trust_remote_code, revision, token)
        ref, _ = _load(reference or info["reference"], dtype, device, trust_remote_code)
        ref.requires_grad_(False)
        kwargs.setdefault("beta", info["beta"])
        kwargs.setdefault("score", info.get("score", "step"))
        kwargs.setdefault("running_min", info.get("running_min", True))
        return cls(model, ref, processor, **kwargs)

    def step_rewards(self, question: str, images: Sequence[Image.Image], solutions: Sequence[Solution]) -> list[list[float]]:
        """The implicit reward of every step of every solution (before the sigmoid)."""
        return [[self.beta * s for s in r.step_sums] for r in self._step_values(Group(question, images, solutions))]

    @torch.no_grad()
    def _step_values(self, group: Group) -> list[StepLogprobs]:
        """Per-token log-ratios ``log pi_theta - log pi_ref``, divided into steps."""
        modes = (self.model.training, self.reference.training)
        self.model.eval()
        self.reference.eval()
        results: list[StepLogprobs] = []
        try:
            sols = list(group.solutions)
            if self.shared_prefix and len(sols) > 1:
                found = shared_prefix_values([self.model, self.reference], self.processor, group.question,
                                             group.images, sols, self.max_steps, self.batch_size)
                if found is not None:
                    return found
            for start in range(0, len(sols), self.batch_size):
                rows = [(group.question, group.images, s) for s in sols[start : start + self.batch_size]]
                enc = encode_solutions(self.processor, rows, self.max_steps)
                ratio = token_logprobs(self.model, enc.inputs, enc.num_tokens) - token_logprobs(
                    self.reference, enc.inputs, enc.num_tokens
                ).to(next(self.model.parameters()).device)
                results.extend(enc.results(ratio))
        finally:
            self.model.train(modes[0])
            self.reference.train(modes[1])
        return results

    def _scores(self, result: StepLogprobs) -> list[float]:
        scores = implicit_scores([self.beta * s for s in result.step_sums], self.score)
        return running_minimum(scores) if self.running_min else scores
