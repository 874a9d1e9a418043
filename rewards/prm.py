"""``ProcessRewardModel``: per-step scores for groups of candidate solutions.

One call scores a *group*: one question with its images and a list of candidate solutions (what RL
and Best-of-N hand over). Each solution is split with ``split_steps``, turned into the VisualPRM
conversation with ``+`` placeholders, and scored in one forward pass: the step score is
``softmax([logit(+), logit(-)])[0]`` at the position that predicts each placeholder. Batches are
right-padded; the scores do not depend on batch composition (tested).

The candidates of a group share system prompt, images and question: by default (``shared_prefix``)
a backend that can (``group_step_logits``) runs that token prefix and the vision encoder once per
group and scores the candidates' suffixes on its cache (``rewards.shared_prefix``), with the same
scores; groups it cannot share, and groups of one, are batched across groups as before.

Left out here: generation and data loading (``rlvprm``), and the likelihood-based scorers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from PIL import Image

from rewards.aggregate import aggregate
from rewards.backends.base import Backend
from rewards.conversation import Conversation, build_conversation
from rewards.likelihood_feature import FEATURE_CONFIG, LikelihoodFeature
from rewards.scorer_files import hub_kwargs
from rewards.steps import SEPARATOR, SPLITS, Step, join_steps, split_steps

log = logging.getLogger(__name__)


@dataclass
class ScoredSolution:
    steps: list[Step]
    step_scores: list[float]
    score: float  # the aggregation of step_scores
    # Tokens the scorer's forward passes read for this solution: the non-padding tokens of its input
    # (system prompt, question, image tokens, steps, placeholders), summed over every model that read
    # it (an implicit PRM runs two, a stacked scorer its components). What compute counts.
    num_tokens: int = 0


@dataclass
class Group:
    """One question with its images and the candidate solutions to score."""

    question: str
    images: Sequence[Image.Image]
    solutions: Sequence[str | Sequence[str]]  # solution texts, or lists of given steps


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(table)} or 'auto'")
    return table[dtype]


class ProcessRewardModel:
    """A VisualPRM-style process reward model behind one scoring interface."""

    def __init__(
        self,
        backend: Backend,
        max_steps: int | None = None,
        aggregation: str = "mean",
        batch_size: int = 8,
        orm: bool = False,
        step_split: str | None = None,
        shared_prefix: bool = True,
    ):
        """``step_split``: ``rlvprm`` or ``released`` (``rewards.steps``); by default the backend's
        (``released`` for the released checkpoints' remote-code backend, so they score the steps
        their own code scores; ``rlvprm`` otherwise). ``shared_prefix``: score each group on its
        shared token prefix where the backend can (module docstring); off: every candidate whole."""
        self.backend = backend
        self.max_steps = max_steps
        self.aggregation = aggregation
        self.batch_size = batch_size
        self.orm = orm
        self.shared_prefix = shared_prefix
        self.step_split = step_split or getattr(backend, "default_step_split", "rlvprm")
        if self.step_split not in SPLITS:
            raise ValueError(f"unknown step split {self.step_split!r}; use one of {', '.join(SPLITS)}")

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str,
        *,
        backend: str = "auto",
        dtype: str | torch.dtype | None = "auto",
        device: str | torch.device | None = "auto",
        trust_remote_code: bool = False,
        max_length: int | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        prm_prompt: str = "checkpoint",
        **kwargs,
    ) -> "ProcessRewardModel":
        """Load a PRM from a local folder or hub id.

        A PRM with ``likelihood_feature.json`` beside its weights (``rlvprm train-prm
        --likelihood-feature``) scores with that feature (``rewards.likelihood_feature``), found in
        the folder or fetched from the hub like the weights. ``backend``: ``hf`` (transformers Auto
        classes), ``internvl-remote`` (the released VisualPRM checkpoints' remote-code format; needs
        ``trust_remote_code=True``) or ``auto``. ``revision`` and ``token``: as in
        ``from_pretrained``, for a hub id. ``prm_prompt``: ``checkpoint`` (the prompt the checkpoint's
        own code writes) or ``training`` (VisualPRM400K's training prompt); they differ only for the
        released checkpoints' remote-code format (``rewards.backends.internvl_prompt``): the hf
        backend is the format rlvprm's own training writes, whose checkpoint prompt is the training
        prompt. The choice is logged and kept in :attr:`prompt_info`.
        Remaining keyword arguments go to :class:`ProcessRewardModel` (``max_steps``,
        ``aggregation``, ``batch_size``, ``orm``, ``step_split``, ``shared_prefix``).
        """
        from rewards.backends.internvl_prompt import PRM_PROMPTS

        if prm_prompt not in PRM_PROMPTS:
            raise ValueError(f"unknown prm_prompt {prm_prompt!r}; use one of {', '.join(PRM_PROMPTS)}")
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        hub = {"revision": revision, "token": token}
        feature = LikelihoodFeature.load(path_or_id, **hub)
        if backend == "auto":
            backend = detect_backend(path_or_id, **hub)
        if backend == "hf":
            from rewards.backends.hf import HFBackend
            from rewards.loading import load_vlm

            model, processor = load_vlm(path_or_id, dtype=dt, device=dev, trust_remote_code=trust_remote_code, **hub)
            be = HFBackend(model, processor, max_length=max_length, feature=feature)
            be.prompt_info = hf_prompt_info(prm_prompt)
        elif backend == "internvl-remote":
            if feature is not None:
                raise ValueError(
                    f"{path_or_id} has a likelihood feature ({FEATURE_CONFIG}), which only the hf backend computes"
                )
            if not trust_remote_code:
                raise ValueError(
                    f"{path_or_id} uses InternVL's remote-code format: pass trust_remote_code=True "
                    "(--trust-remote-code) to run its code"
                )
            from rewards.backends.internvl_remote import InternVLRemoteBackend

            be = InternVLRemoteBackend.from_pretrained(path_or_id, dtype=dt, device=dev, max_length=max_length,
                                                       prm_prompt=prm_prompt, **hub)
        else:
            raise ValueError(f"unknown backend {backend!r}; use 'hf', 'internvl-remote' or 'auto'")
        prm = cls(be, **kwargs)
        log.info("PRM %s (%s backend) scores with prompt %s", path_or_id, backend, prm.prompt_info)
        return prm

    @property
    def prompt_info(self) -> dict:
        """Which prompt the backend writes: the ``prm_prompt`` choice, template and system message source."""
        return dict(getattr(self.backend, "prompt_info", None) or hf_prompt_info("checkpoint"))

    def split(self, solution: str | Sequence[str]) -> list[Step]:
        """The steps this PRM scores (ORM mode: the whole solution as one step).

        A solution given as a list of steps (as VisualProcessBench gives them) is scored step for
        step, never re-split or merged, so labels stay aligned; spans refer to ``join_steps``.
        """
        if not isinstance(solution, str):
            if self.orm:
                solution = join_steps(list(solution))
            else:
                return given_steps(solution)
        if self.orm:
            text = solution.strip()
            if not text:
                return []
            start = solution.index(text)
            return [Step(text, start, start + len(text))]
        return split_steps(solution, self.max_steps, self.step_split)

    @torch.inference_mode()
    def score_group(self, question: str, images: Sequence[Image.Image], solutions: Sequence[str]) -> list[ScoredSolution]:
        """Score every candidate solution of one question."""
        return self.score_groups([Group(question, images, solutions)])[0]

    def prepare(self, group: Group) -> list[tuple[list[Step], Conversation]]:
        """Steps and scoring conversation of every candidate; raises on a record that cannot be scored."""
        out = []
        for solution in group.solutions:
            steps = self.split(solution)
            conv = build_conversation(group.question, [st.text for st in steps], num_images=len(group.images),
                                      allow_empty_steps=self.step_split == "released")
            out.append((steps, conv))
        return out

    @torch.inference_mode()
    def score_groups(self, groups: Iterable[Group]) -> list[list[ScoredSolution]]:
        """Score many groups; conversations of all groups are batched together."""
        groups = list(groups)
        items = []  # (group index, steps, conversation, images)
        for g, group in enumerate(groups):
            for steps, conv in self.prepare(group):
                items.append((g, steps, conv, group.images))
        probs: list[list[float] | None] = [None] * len(items)
        lengths = [0] * len(items)
        if self.shared_prefix and hasattr(self.backend, "group_step_logits"):
            for g, group in enumerate(groups):
                idx = [i for i, item in enumerate(items) if item[0] == g]
                if len(idx) > 1:
                    found = self._group_probs(group, [items[i][2] for i in idx])
                    for i, p, n in zip(idx, *(found or ([], []))):
                        probs[i], lengths[i] = p, n
        rest = [i for i, p in enumerate(probs) if p is None]
        rest_probs, rest_lengths = self._step_probs([(items[i][2], items[i][3]) for i in rest])
        for i, p, n in zip(rest, rest_probs, rest_lengths):
            probs[i], lengths[i] = p, n
        out: list[list[ScoredSolution]] = [[] for _ in groups]
        for (g, steps, _, _), p, n in zip(items, probs, lengths):
            out[g].append(ScoredSolution(steps, p, aggregate(p, self.aggregation), n))
        return out

    def _group_probs(self, group: Group, convs: list[Conversation]) -> tuple[list[list[float]], list[int]] | None:
        """P(+) per step of each candidate of one group on its shared prefix, and each one's whole input
        length in tokens (what scoring it alone reads); None: the backend cannot."""
        found = self.backend.group_step_logits(convs, group.images, self.batch_size)
        if found is None:
            return None
        logits, lengths = found
        p = torch.softmax(logits, dim=-1)[..., 0].cpu()
        return [p[row, : conv.num_steps].tolist() for row, conv in enumerate(convs)], lengths

    def _step_probs(self, items: list[tuple[Conversation, Sequence[Image.Image]]]) -> tuple[list[list[float]], list[int]]:
        """P(+) per step for each (conversation, images), in batches of similar length, and each one's
        input length in tokens (padding excluded)."""
        has_img = [len(images) > 0 for _, images in items]
        # Keep conversations with and without images apart; sort by length to cut padding.
        order = sorted(range(len(items)), key=lambda i: (has_img[i], sum(len(t.text) for t in items[i][0].turns)))
        probs: list[list[float]] = [[] for _ in items]
        lengths = [0] * len(items)
        for flag in (False, True):
            idx_all = [i for i in order if has_img[i] == flag]
            for start in range(0, len(idx_all), self.batch_size):
                idx = idx_all[start : start + self.batch_size]
                batch = self.backend.encode([items[i][0] for i in idx], [items[i][1] for i in idx])
                p = torch.softmax(self.backend.step_logits(batch), dim=-1)[..., 0].cpu()
                for row, i in enumerate(idx):
                    probs[i] = p[row, : items[i][0].num_steps].tolist()
                    lengths[i] = int(batch.lengths[row])
        return probs, lengths


def hf_prompt_info(prm_prompt: str) -> dict:
    """The hf backend's prompt: the processor's chat template with the PRM system prompt, whichever
    ``prm_prompt`` is chosen (for rlvprm's own PRMs the checkpoint's prompt is the training prompt)."""
    return {"prm_prompt": prm_prompt, "template": "the processor's chat template", "template_from": "the checkpoint",
            "system_message_from": "the PRM system prompt (rewards.conversation.SYSTEM_PROMPT)", "system_message": None}


def given_steps(steps: Sequence[str]) -> list[Step]:
    """Steps given as a list, with spans inside ``join_steps(steps)``."""
    out, pos = [], 0
    for i, text in enumerate(steps):
        if not text.strip():
            raise ValueError(f"step {i + 1} is empty")
        out.append(Step(text, pos, pos + len(text)))
        pos += len(text) + len(SEPARATOR)
    return out


def detect_backend(path_or_id: str, revision: str | None = None, token: str | bool | None = None) -> str:
    """``internvl-remote`` for InternVL remote-code checkpoints (VisualPRM-8B), else ``hf``."""
    from transformers import PretrainedConfig

    cfg, _ = PretrainedConfig.get_config_dict(path_or_id, **hub_kwargs(revision, token))
    archs = cfg.get("architectures") or []
    if "InternVLChatModel" in archs or (cfg.get("auto_map") and cfg.get("model_type") == "internvl_chat"):
        return "internvl-remote"
    return "hf"


def __getattr__(name: str):
    # ``rewards.prm.load_scorer`` moved to ``rewards.scorers`` (it imports this module); the old
    # name keeps working without an import-time circle.
    if name in ("load_scorer", "LIKELIHOOD_PREFIX"):
        from rewards import scorers

        return getattr(scorers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
