"""Monte Carlo step labels, as VisualPRM400K was built: a step's score is the fraction of
continuations from it that reach the right answer.

For one prompt record, :func:`label_prompt`:

1. samples ``num_rollouts`` solutions from the policy (one sampler call);
2. splits each with ``rewards.steps.split_steps`` into at most ``max_steps`` steps;
3. for every step ``k`` but the last, continues the prefix "steps 1..k joined by a blank line, then a
   blank line" (so the continuation starts a new step) ``num_mc`` times. All prefixes of all the
   record's rollouts go into one sampler call, which batches them (``batch_size`` prompts per
   ``generate`` call, each with ``num_mc`` sequences);
4. a continuation succeeds when the final answer of prefix + continuation is right, judged by
   ``rewards.outcome.outcome_reward`` against the record's ``answer`` (the one outcome path);
5. scores the **last step** by the rollout itself: a continuation of a finished solution could only
   restate its answer. It is written with ``num_mc_correct`` 1 or 0 and ``num_mc_total`` 1 (the
   rollout is its one sample), so its score is 1.0 or 0.0.

Seeds: every sampler call is seeded from ``(seed, record id, stage)``, never from the record's
position in the file or from earlier calls, so a record's labels are the same in a resumed run, in
any shard and under any ``--limit``.

``early_stop`` (VisualPRM's pipeline does this; off by default): once a step scores 0, the later
steps of that rollout are not sampled and are written with score 0 and ``num_mc_total`` 0. Steps
are then sampled in rounds (step 1 of every rollout, then step 2 of those still going, ...), one
call per round. ``dedupe_prefixes`` samples a prefix shared by several rollouts of a call once and
gives them the same score: rollouts often begin with the same reading step, and sharing leaves
every step's expected score unchanged.

Left out: batching across records. HF ``generate`` draws every row of a batch from one random
stream, so a record's samples would depend on which records shared its batch; that needs
per-request seeds in the samplers. Scale out with data-parallel shards instead.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Protocol, Sequence

from rewards.outcome import outcome_reward
from rewards.steps import SEPARATOR, split_steps
from rlvprm.generation import Request, Sample


class Sampler(Protocol):
    """What labelling needs of a policy: ``rlvprm.generation.HFSampler`` and ``VLLMSampler`` fit."""

    def sample(self, requests: Sequence[Request], num_samples: int = 1, max_new_tokens: int = 256,
               temperature: float = 1.0, top_p: float = 1.0, seed: int = 0, batch_size: int = 8,
               ) -> list[list[Sample]]: ...


@dataclass(frozen=True)
class MCSettings:
    """How many samples, how long, how random; VisualPRM's defaults."""

    num_rollouts: int = 4
    num_mc: int = 16
    max_steps: int | None = 12
    max_new_tokens: int = 1024
    temperature: float = 1.0
    top_p: float = 1.0
    batch_size: int = 8
    seed: int = 0
    early_stop: bool = False
    dedupe_prefixes: bool = True


@dataclass
class StepScore:
    """One entry of VisualPRM400K-Raw's ``steps_with_score``."""

    step: str
    score: float
    num_mc_correct: int
    num_mc_total: int

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Rollout:
    """A sampled solution and its step scores (``steps`` is empty when the text has no step)."""

    index: int
    response: str
    steps: list[StepScore]
    correct: bool
    finish_reason: str


@dataclass
class PromptLabels:
    rollouts: list[Rollout]
    num_continuations: int  # continuations actually sampled (after de-duplication)


def call_seed(seed: int, record_id: str, stage: str) -> int:
    """A 63-bit seed that depends only on ``seed``, the record's id and the stage of the call."""
    digest = hashlib.sha256(f"{seed}\x00{record_id}\x00{stage}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def step_prefix(steps: Sequence[str], k: int) -> str:
    """What a continuation of step ``k`` (1-based) starts from: steps 1..k, then a step separator.

    >>> step_prefix(["The numbers are 3 and 4.", "3 + 4 = 7."], 1)
    'The numbers are 3 and 4.\\n\\n'
    """
    return SEPARATOR.join(steps[:k]) + SEPARATOR


def label_prompt(
    sampler: Sampler,
    request: Request,
    answer: str | list[str],
    record_id: str,
    settings: MCSettings,
    choices: Sequence[str] | None = None,
) -> PromptLabels:
    """Roll out ``request`` and give every step of every rollout its Monte Carlo score."""
    judge = _Judge(answer, choices)
    samples = _sample(sampler, [request._replace(prefix=None)], settings.num_rollouts, settings,
                      call_seed(settings.seed, record_id, "rollouts"))[0]
    texts = [s.text for s in samples]
    steps = [[s.text for s in split_steps(t, settings.max_steps)] for t in texts]
    correct = [judge(t) for t in texts]

    # scores[j][i]: (num correct, num sampled) of step i of rollout j; None until known.
    scores: list[list[tuple[int, int] | None]] = [[None] * len(s) for s in steps]
    for j, s in enumerate(steps):
        if s:
            scores[j][-1] = (int(correct[j]), 1)
    num_continuations = 0
    if settings.early_stop:
        alive = [True] * len(steps)
        for i in range(max((len(s) for s in steps), default=0) - 1):
            jobs = [(j, i) for j, s in enumerate(steps) if alive[j] and i < len(s) - 1]
            num_continuations += _score_jobs(sampler, request, steps, jobs, scores, judge, settings,
                                             call_seed(settings.seed, record_id, f"mc-step{i + 1}"))
            for j, _ in jobs:
                alive[j] = scores[j][i][0] > 0
        for row in scores:  # the steps after a zero were not sampled
            first_zero = next((i for i, v in enumerate(row) if v is not None and v[0] == 0), len(row))
            row[first_zero + 1 :] = [(0, 0)] * (len(row) - first_zero - 1)
    else:
        jobs = [(j, i) for j, s in enumerate(steps) for i in range(len(s) - 1)]
        num_continuations += _score_jobs(sampler, request, steps, jobs, scores, judge, settings,
                                         call_seed(settings.seed, record_id, "mc"))

    rollouts = []
    for j, sample in enumerate(samples):
        entries = [
            StepScore(text, (c / n) if n else 0.0, c, n) for text, (c, n) in zip(steps[j], scores[j])
        ]
        rollouts.append(Rollout(j, texts[j], entries, correct[j], sample.finish_reason))
    return PromptLabels(rollouts, num_continuations)


def _score_jobs(sampler, request, steps, jobs, scores, judge, settings, seed) -> int:
    """Sample ``num_mc`` continuations of each job's prefix in one call; fill ``scores``."""
    if not jobs:
        return 0
    prefixes = [step_prefix(steps[j], i + 1) for j, i in jobs]
    unique = list(dict.fromkeys(prefixes)) if settings.dedupe_prefixes else prefixes
    where = {p: n for n, p in enumerate(unique)}
    outs = _sample(sampler, [request._replace(prefix=p) for p in unique], settings.num_mc, settings, seed)
    counts = [sum(judge(p + s.text) for s in out) for p, out in zip(unique, outs)]
    for n, ((j, i), prefix) in enumerate(zip(jobs, prefixes)):
        k = where[prefix] if settings.dedupe_prefixes else n
        scores[j][i] = (counts[k], len(outs[k]))
    return sum(len(o) for o in outs)


def _sample(sampler, requests, num_samples, settings, seed) -> list[list[Sample]]:
    out = sampler.sample(
        requests, num_samples=num_samples, max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature, top_p=settings.top_p, seed=seed, batch_size=settings.batch_size,
    )
    if len(out) != len(requests) or any(len(group) != num_samples for group in out):
        raise RuntimeError(f"the sampler returned {[len(g) for g in out]} samples for {len(requests)} "
                           f"requests x {num_samples}")
    return out


class _Judge:
    """``outcome_reward`` against the record's answer, remembered per text (continuations repeat)."""

    def __init__(self, answer: str | list[str], choices: Sequence[str] | None):
        self.answer = answer
        self.choices = choices
        self.seen: dict[str, bool] = {}

    def __call__(self, text: str) -> bool:
        if text not in self.seen:
            self.seen[text] = outcome_reward(text, self.answer, self.choices) > 0
        return self.seen[text]
