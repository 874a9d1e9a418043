"""Step scorers: where the per-step rewards of GRPO come from, behind one interface.

A scorer takes rollouts (the prompt row, its images, the completion text) and returns, for each, the
steps it scored (``rewards.steps.Step``, with character spans into the text) and one score per step
in [0, 1], or ``None`` when it could not score that completion. Two implementations:

- :class:`PRMScorer`: any scorer ``rewards.load_scorer`` loads (a ``ProcessRewardModel``: rlvprm's
  own PRMs or the released VisualPRM checkpoints; or an implicit or stacked scorer, ``rlvprm
  train-prm --kind implicit|stacked``), the one scoring path that Best-of-N and evaluation use too. Its models are prepared
  the way TRL prepares reward models: eval mode, no gradients, placed on the training device, and
  sharded by DeepSpeed under ZeRO-3.
- :class:`OracleScorer`: the visual-arith world's exact checker (``rlvprm.world.check``), 1 for a
  correct step and 0 for a wrong one: a perfect PRM, so that the value of dense credit can be
  measured apart from the quality of a trained PRM.

Left out: the policy's own step probability as the step score (it would score the policy with
itself, a moving target).

Under ZeRO-3 every process must run the same number of PRM forward passes (each pass gathers the
sharded weights together). The PRM scorer then scores all its completions in one batch and scores a
placeholder when it has none; a prompt set that mixes prompts with and without images could still
give processes different numbers of passes, which :mod:`rlvprm.rl.data` refuses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from PIL import Image

from rewards.steps import Step, split_steps

log = logging.getLogger(__name__)


@dataclass
class Rollout:
    """One completion to score: its prompt's dataset row, the prompt's images and the completion text."""

    row: dict[str, Any]
    images: Sequence[Image.Image]
    text: str


@dataclass
class StepScores:
    """The steps a scorer split a completion into and its score of each (``None``: not scored)."""

    steps: list[Step]
    scores: list[float] | None


class StepScorer(Protocol):
    """What the GRPO trainer needs from a source of step scores."""

    name: str
    tokens_scored: int  # tokens its models have read so far on this process (``ScoredSolution.num_tokens``)

    def score(self, rollouts: Sequence[Rollout]) -> list[StepScores]:
        """One :class:`StepScores` per rollout, in order."""
        ...

    def prepare(self, accelerator, deepspeed: bool) -> None:
        """Place any model on the training device (and shard it under ZeRO-3)."""
        ...


class OracleScorer:
    """Exact step labels of the visual-arith world as step scores: 1.0 correct, 0.0 wrong.

    Rows need the world's ``form`` and ``values`` columns (every set the world writes has them).
    Steps are ``split_steps`` of the text, unmerged, which is what the checker labels.
    """

    name = "oracle"
    tokens_scored = 0  # an exact checker, no model

    def score(self, rollouts: Sequence[Rollout]) -> list[StepScores]:
        from rlvprm.world.check import check_solution
        from rlvprm.world.write import problem_from_row

        out = []
        for rollout in rollouts:
            missing = [key for key in ("form", "values", "answer") if rollout.row.get(key) is None]
            if missing:
                raise ValueError(
                    f"the oracle scorer needs the visual-arith world's columns; row {rollout.row.get('id')} "
                    f"lacks {missing} (use a PRM for other prompt sets)"
                )
            steps = split_steps(rollout.text)
            labels = check_solution(problem_from_row(rollout.row), rollout.text) if steps else []
            out.append(StepScores(steps, [1.0 if ok else 0.0 for ok in labels]))
        return out

    def prepare(self, accelerator, deepspeed: bool) -> None:
        return None


class PRMScorer:
    """Step scores of a ``ProcessRewardModel``, with the prompt's images given to the PRM.

    The PRM sees the row's ``question`` (the prompt set's question, ``<image>`` placeholders
    included) and the completion text; steps are the PRM's own split (``split_steps`` with its
    ``max_steps``), so spans point into the completion text. A completion the PRM cannot take (no
    steps, or longer than its ``max_length``) gets ``scores=None``. A prompt's completions, side by
    side in TRL's batch, are scored as one group: the PRM reads their common prefix once
    (``rewards.shared_prefix``).
    """

    name = "prm"

    def __init__(self, prm):
        self.prm = prm
        self.one_batch = False  # set by prepare() under ZeRO-3
        self.tokens_scored = 0  # the ZeRO-3 placeholder pass included: its tokens went through the PRM too

    def score(self, rollouts: Sequence[Rollout]) -> list[StepScores]:
        from rewards.backends.base import InputError
        from rewards.conversation import ConversationError
        from rewards.prm import Group

        steps = [self.prm.split(r.text) for r in rollouts]
        todo = [i for i, s in enumerate(steps) if s]
        # TRL puts a prompt's completions side by side: as one group the PRM reads their common prefix
        # (images, question) once. Under ZeRO-3 each completion is its own group, so that every process
        # runs as many forward passes as the others whatever its share of each prompt.
        members = [[i] for i in todo] if self.one_batch else _same_prompt_runs(rollouts, todo)
        todo = [i for run in members for i in run]
        groups = [Group(rollouts[run[0]].row["question"], list(rollouts[run[0]].images), [rollouts[i].text for i in run])
                  for run in members]
        if self.one_batch and not groups and rollouts:
            # ZeRO-3: this process must still join the others' forward pass.
            groups = [Group(rollouts[0].row["question"], list(rollouts[0].images), ["(no steps)"])]
            todo = []
        saved = self.prm.batch_size
        if self.one_batch:
            self.prm.batch_size = max(1, len(groups))
        try:
            try:
                results: list = [res for group in self.prm.score_groups(groups) for res in group]
            except (InputError, ConversationError) as err:
                if self.one_batch:
                    raise  # one process scoring apart would leave the others waiting in ZeRO-3
                log.warning("PRM batch failed (%s); scoring its completions one at a time", err)
                results = []
                for i in todo:
                    try:
                        group = Group(rollouts[i].row["question"], list(rollouts[i].images), [rollouts[i].text])
                        results.append(self.prm.score_groups([group])[0][0])
                    except (InputError, ConversationError):
                        results.append(None)
        finally:
            self.prm.batch_size = saved
        self.tokens_scored += sum(res.num_tokens for res in results if res is not None)
        out = [StepScores(s, None) for s in steps]
        for i, res in zip(todo, results):
            if res is None:
                continue
            if [st.text for st in res.steps] != [st.text for st in steps[i]]:
                raise RuntimeError("the PRM split a completion differently from its own split(); this is a bug")
            out[i] = StepScores(steps[i], [float(x) for x in res.step_scores])
        return out

    def prepare(self, accelerator, deepspeed: bool) -> None:
        """Prepare the PRM's models as TRL prepares reward models (eval mode, no grad, sharded under ZeRO-3).

        A ``ProcessRewardModel`` keeps its model on its backend; an implicit PRM has a model and a reference;
        a stacked scorer's models are its components'.
        """
        for holder, name, model in _models(self.prm):
            model.eval()
            model.requires_grad_(False)
            if deepspeed:
                from trl.models import prepare_deepspeed

                setattr(holder, name, prepare_deepspeed(model, accelerator))
                self.one_batch = accelerator.state.deepspeed_plugin.zero_stage == 3
            else:
                setattr(holder, name, accelerator.prepare_model(model, evaluation_mode=True, device_placement=True))


def _same_prompt_runs(rollouts: Sequence[Rollout], indices: list[int]) -> list[list[int]]:
    """``indices`` cut into runs of consecutive rollouts with the same question and equal images."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and _same_prompt(rollouts[runs[-1][0]], rollouts[i]):
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _same_prompt(a: Rollout, b: Rollout) -> bool:
    # TRL decodes a prompt's images once per completion: equal pixels, different objects.
    return (a.row.get("question") == b.row.get("question") and len(a.images) == len(b.images)
            and all(x is y or x == y for x, y in zip(a.images, b.images)))


def _models(prm) -> list[tuple[object, str, object]]:
    """``(holder, attribute, module)`` of every model a scorer runs (a stacked scorer: its components')."""
    if hasattr(prm, "components"):
        return [m for c in prm.components for m in _models(c)]
    holder = getattr(prm, "backend", prm)
    return [(holder, name, getattr(holder, name)) for name in ("model", "reference") if getattr(holder, name, None) is not None]


def load_scorer(
    prm: str,
    *,
    backend: str = "auto",
    prm_prompt: str = "checkpoint",
    dtype: str = "auto",
    max_steps: int | None = None,
    aggregation: str = "mean",
    batch_size: int = 8,
    max_length: int | None = None,
    trust_remote_code: bool = False,
    device: str = "cpu",
) -> StepScorer:
    """``"oracle"`` for :class:`OracleScorer`, else a PRM folder or hub id (``rewards.load_scorer``) for :class:`PRMScorer`.

    Load the PRM on this process's training device (``GRPOConfig.device``): under ZeRO-3 with
    ``zero3_init_flag`` transformers already shards it while loading, as it does TRL's reward
    models; :meth:`PRMScorer.prepare` then wraps it once the trainer's accelerator exists.
    """
    if prm == "oracle":
        return OracleScorer()
    from rewards.scorers import load_scorer as load_prm

    model = load_prm(
        prm, backend=backend, prm_prompt=prm_prompt, dtype=dtype, device=device, trust_remote_code=trust_remote_code,
        max_length=max_length, max_steps=max_steps, aggregation=aggregation, batch_size=batch_size,
    )
    return PRMScorer(model)
