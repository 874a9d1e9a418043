"""``ProcessRewardModel``: per-step scores for groups of candidate solutions.

One call scores a *group*: one question with its images and a list of candidate solutions (what RL
and Best-of-N hand over). Each solution is split with ``split_steps``, turned into the VisualPRM
conversation with ``+`` placeholders, and scored in one forward pass: the step score is
``softmax([logit(+), logit(-)])[0]`` at the position that predicts each placeholder. Batches are
right-padded; the scores do not depend on batch composition (tested).

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
from rewards.conversation import build_conversation
from rewards.steps import Step, split_steps

log = logging.getLogger(__name__)


@dataclass
class ScoredSolution:
    steps: list[Step]
    step_scores: list[float]
    score: float  # the aggregation of step_scores


@dataclass
class Group:
    """One question with its images and the candidate solutions to score."""

    question: str
    images: Sequence[Image.Image]
    solutions: Sequence[str]


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
    ):
        self.backend = backend
        self.max_steps = max_steps
        self.aggregation = aggregation
        self.batch_size = batch_size
        self.orm = orm

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
        **kwargs,
    ) -> "ProcessRewardModel":
        """Load a PRM from a local folder or hub id.

        ``backend``: ``hf`` (transformers Auto classes), ``internvl-remote`` (the released
        VisualPRM checkpoints' remote-code format; needs ``trust_remote_code=True``) or ``auto``.
        Remaining keyword arguments go to :class:`ProcessRewardModel` (``max_steps``,
        ``aggregation``, ``batch_size``, ``orm``).
        """
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        if backend == "auto":
            backend = detect_backend(path_or_id)
        if backend == "hf":
            from rewards.backends.hf import HFBackend
            from rewards.loading import load_vlm

            model, processor = load_vlm(path_or_id, dtype=dt, device=dev, trust_remote_code=trust_remote_code)
            be = HFBackend(model, processor, max_length=max_length)
        elif backend == "internvl-remote":
            if not trust_remote_code:
                raise ValueError(
                    f"{path_or_id} uses InternVL's remote-code format: pass trust_remote_code=True "
                    "(--trust-remote-code) to run its code"
                )
            from rewards.backends.internvl_remote import InternVLRemoteBackend

            be = InternVLRemoteBackend.from_pretrained(path_or_id, dtype=dt, device=dev, max_length=max_length)
        else:
            raise ValueError(f"unknown backend {backend!r}; use 'hf', 'internvl-remote' or 'auto'")
        return cls(be, **kwargs)

    def split(self, solution: str) -> list[Step]:
        """The steps this PRM scores (ORM mode: the whole solution as one step)."""
        if self.orm:
            text = solution.strip()
            if not text:
                return []
            start = solution.index(text)
            return [Step(text, start, start + len(text))]
        return split_steps(solution, self.max_steps)

    @torch.inference_mode()
    def score_group(self, question: str, images: Sequence[Image.Image], solutions: Sequence[str]) -> list[ScoredSolution]:
        """Score every candidate solution of one question."""
        return self.score_groups([Group(question, images, solutions)])[0]

    @torch.inference_mode()
    def score_groups(self, groups: Iterable[Group]) -> list[list[ScoredSolution]]:
        """Score many groups; conversations of all groups are batched together."""
        groups = list(groups)
        items = []  # (group index, solution index, steps, conversation, images)
        for g, group in enumerate(groups):
            for s, solution in enumerate(group.solutions):
                steps = self.split(solution)
                conv = build_conversation(group.question, [st.text for st in steps], num_images=len(group.images))
                items.append((g, s, steps, conv, group.images))
        # Batch similar lengths together, keep images-with and images-without apart.
        order = sorted(range(len(items)), key=lambda i: (len(items[i][4]) > 0, sum(len(st.text) for st in items[i][2])))
        probs: dict[int, list[float]] = {}
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            buckets: dict[bool, list[int]] = {}
            for i in chunk:
                buckets.setdefault(len(items[i][4]) > 0, []).append(i)
            for idx in buckets.values():
                batch = self.backend.encode([items[i][3] for i in idx], [items[i][4] for i in idx])
                logits = self.backend.step_logits(batch)
                p = torch.softmax(logits, dim=-1)[..., 0].cpu()
                for row, i in enumerate(idx):
                    probs[i] = p[row, : items[i][3].num_steps].tolist()
        out: list[list[ScoredSolution]] = [[None] * len(gr.solutions) for gr in groups]  # type: ignore[list-item]
        for i, (g, s, steps, _, _) in enumerate(items):
            out[g][s] = ScoredSolution(steps, probs[i], aggregate(probs[i], self.aggregation))
        return out


def detect_backend(path_or_id: str) -> str:
    """``internvl-remote`` for InternVL remote-code checkpoints (VisualPRM-8B), else ``hf``."""
    from transformers import PretrainedConfig

    cfg, _ = PretrainedConfig.get_config_dict(path_or_id)
    archs = cfg.get("architectures") or []
    if "InternVLChatModel" in archs or (cfg.get("auto_map") and cfg.get("model_type") == "internvl_chat"):
        return "internvl-remote"
    return "hf"
