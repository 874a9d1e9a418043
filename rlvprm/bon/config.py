"""The types every stage of ``rlvprm bon`` shares: its config, one usable prompt, and the skip list.

They live apart from ``run.py`` (which only orchestrates) so that the stages, and ``rlvprm compare``,
import them without importing the pipeline back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from rewards.aggregate import parse_aggregation
from rlvprm.config import field
from rlvprm.data.jsonl import RecordError
from rlvprm.data.records import Record

log = logging.getLogger(__name__)

LIKELIHOOD = "likelihood"  # --prm likelihood: the policy's own step probabilities as process scores
DEFAULT_AGGREGATIONS = ["mean", "min", "max", "last", "prod", "softmin:0.1"]


@dataclass
class BonConfig:
    policy: str = field(help="policy to sample from: a local folder or a hub id")
    data: str = field(help="prompt set (jsonl): id, image or images, question, answer; optional data_source, choices")
    prm: str = field(help="PRM (local folder or hub id: VisualPRM-style, implicit or stacked), or 'likelihood' for the "
                      "policy's own step probabilities")
    out: str = field(help="run folder: candidates.jsonl, scores.jsonl, results.json, results.md, scaling.png")
    orm: str | None = field(None, help="also score every whole candidate with this model in ORM mode (one step)")
    image_root: str | None = field(None, help="folder that image paths are relative to (default: the data file's folder)")
    n: int = field(8, min=1, help="candidates per prompt, sampled once; selection runs at N = 1, 2, 4, ..., n")
    temperature: float = field(1.0, min=0, help="sampling temperature of the candidates (the greedy answer uses 0)")
    top_p: float = field(1.0, min=0, max=1, help="nucleus sampling threshold")
    max_new_tokens: int = field(1024, min=1, help="longest candidate, in tokens")
    seed: int = field(0, help="seed of sampling and of the subsets drawn at N < n")
    greedy: bool = field(True, help="also decode one greedy answer per prompt (pass@1 greedy)")
    sampler: Literal["hf", "vllm"] = field("hf", help="generation backend: transformers generate, or vLLM")
    chunk_size: int = field(16, min=1, help="prompts per sampling and scoring call, the unit written and resumed "
                                     "(vLLM: hundreds)")
    logprobs: Literal["auto", "policy", "sampler", "none"] = field(
        "auto", help="per-step policy log-probabilities: 'policy' (a teacher-forced pass, hf only), 'sampler' "
        "(returned while sampling), 'none', or 'auto' (policy for hf, sampler for vllm)")
    likelihood_score: Literal["step_prob", "mean_token_prob", "min_token_prob"] = field(
        "step_prob", help="--prm likelihood: a step's score before the running minimum")
    prm_backend: Literal["auto", "hf", "internvl-remote"] = field("auto", help="format of the PRM and ORM")
    prm_prompt: Literal["checkpoint", "training"] = field("checkpoint", help="PRM and ORM: the released checkpoints' "
                                                          "prompt: 'checkpoint' (what their own code writes: the config's "
                                                          "template and system message) or 'training' (the PRM prompt they "
                                                          "were trained with); rlvprm's own PRMs use the same prompt either way")
    trust_remote_code: bool = field(False, help="let the PRM's and ORM's own code run (VisualPRM-8B needs it)")
    policy_trust_remote_code: bool = field(False, help="let the policy checkpoint's own code run")
    max_steps: int | None = field(None, min=1, help="merge a candidate's steps evenly down to at most this many")
    max_length: int | None = field(None, min=1, help="longest PRM conversation in tokens; a longer candidate is an "
                                              "error (with --skip-bad: unscored, ranked last)")
    prm_batch_size: int = field(8, min=1, help="solutions per PRM forward pass")
    aggregations: list[str] = field(DEFAULT_AGGREGATIONS, help="response scores from step scores, one strategy each")
    num_subsets: int = field(32, min=1, help="random subsets per prompt at each N < n (all of them when there are fewer)")
    dtype: str = field("auto", help="float32, bfloat16, float16 or auto (bf16 on a GPU that has it, else fp32)")
    device: str = field("auto", help="cpu, cuda, cuda:N or auto (policy and reward models)")
    vllm_gpu_memory_utilization: float = field(0.5, min=0, max=1, help="--sampler vllm: share of GPU memory vLLM may take "
                                                         "(the PRM needs the rest)")
    threads: int = field(0, min=0, help="torch CPU threads (0: torch's default)")
    limit: int | None = field(None, min=1, help="use only the first N rows of --data")
    skip_bad: bool = field(False, help="count and list bad prompts, mismatched records and unscorable "
                                       "candidates instead of stopping")

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError("n must be >= 1")
        if self.temperature == 0 and self.n > 1:
            raise ValueError("temperature 0 makes all n candidates the same greedy answer: use temperature > 0")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("need temperature >= 0 and 0 < top_p <= 1")
        for name in ("max_new_tokens", "chunk_size", "prm_batch_size", "num_subsets"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("max_steps must be >= 1")
        if not self.aggregations:
            raise ValueError("give at least one aggregation")
        for agg in self.aggregations:
            parse_aggregation(agg)  # raises naming the valid ones
        if self.sampler == "vllm" and self.logprobs == "policy":
            raise ValueError("logprobs=policy needs the transformers model: use logprobs=sampler (or auto) with vLLM")
        if self.prm == LIKELIHOOD and self.resolved_logprobs == "none":
            raise ValueError("--prm likelihood scores steps by the policy's log-probabilities: "
                             "do not set logprobs=none")

    @property
    def resolved_logprobs(self) -> str:
        if self.logprobs != "auto":
            return self.logprobs
        return "policy" if self.sampler == "hf" else "sampler"


@dataclass
class BonPrompt:
    """One usable prompt: its normalised record and the raw row (the world's truth rides there)."""

    record: Record
    row: dict
    line: int  # in --data, for error messages

    @property
    def id(self) -> str:
        return self.record.id


class Skips:
    """Bad input: raised as :class:`RecordError` unless ``skip_bad``, then listed by stage."""

    def __init__(self, skip_bad: bool):
        self.skip_bad = skip_bad
        self.items: list[dict[str, str]] = []

    def __call__(self, rid: str, stage: str, reason: str) -> None:
        if not self.skip_bad:
            raise RecordError(f"{reason} (use --skip-bad to skip and count such records)")
        log.warning("skipping: %s", reason)
        self.items.append({"id": rid, "stage": stage, "reason": reason})


def is_world(prompts: list[BonPrompt]) -> bool:
    """Whether every prompt is a visual-arith world row (it carries ``form`` and ``values``)."""
    return bool(prompts) and all("form" in p.row and "values" in p.row for p in prompts)
