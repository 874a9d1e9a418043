"""``CompareConfig``: the options of ``rlvprm compare`` (test-time against train-time use of a PRM)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rewards.aggregate import parse_aggregation
from rlvprm.bon.config import LIKELIHOOD, BonConfig
from rlvprm.config import ConfigError, field

BASE = "base"  # the base policy's name in every table and folder
# Options compare sets on every `rlvprm bon` run itself, so --bon may not set them.
OWN_BON_OPTIONS = {"policy": "--base / --rl", "data": "--data", "prm": "--prm", "out": "--out", "n": "--n",
                   "seed": "--seed", "num_subsets": "--num-subsets", "temperature": "--temperature",
                   "max_new_tokens": "--max-new-tokens", "image_root": "--image-root", "limit": "--limit",
                   "threads": "--threads", "skip_bad": "--skip-bad", "aggregations": "--aggregation",
                   "greedy": "(always on)", "logprobs": "(always none: its teacher-forced pass is compute no "
                                                      "method here uses)", "orm": "(not compared)"}


@dataclass
class CompareConfig:
    base: str = field(help="the base policy (a model folder or hub id): Best-of-N with the PRM and self-consistency")
    prm: str = field(help="the PRM: any scorer `rewards.load_scorer` loads (folder or hub id, implicit, stacked, "
                      "likelihood:POLICY)")
    data: str = field(help="prompt set (jsonl): id, image or images, question, answer; optional data_source (the "
                       "family of the tables)")
    out: str = field(help="run folder: bon/<policy>/ (one `rlvprm bon` run per policy), compare.json, compare.md, "
                      "compute.png and compute-<family>.png")
    served_prompts: int = field(min=1, help="prompts an RL policy will serve: its counted training compute is "
                                            "divided by this and added to every one of its prompts")
    rl: list[str] = field([], help="RL-trained policies: `rlvprm grpo` or `rlvprm ppo` output folders (with their summary), "
                                   "named by their folder, or NAME=FOLDER; comma-separated or --rl repeated")
    n: int = field(8, min=1, help="candidates per prompt, sampled once per policy; methods run at N = 1, 2, 4, ..., n")
    aggregation: str = field("mean", help="response score from the PRM's step scores (mean, min, max, last, prod, "
                                          "softmin:T)")
    temperature: float = field(1.0, min=0, help="sampling temperature of the candidates (the greedy answer uses 0)")
    max_new_tokens: int = field(1024, min=1, help="longest candidate, in tokens")
    seed: int = field(0, help="seed of sampling and of the subsets drawn at N < n")
    num_subsets: int = field(32, min=1, help="random subsets per prompt at each N < n (all of them when there are fewer)")
    image_root: str | None = field(None, help="folder that image paths are relative to (default: the data file's folder)")
    limit: int | None = field(None, min=1, help="use only the first N rows of --data")
    threads: int = field(0, min=0, help="torch CPU threads (0: torch's default)")
    skip_bad: bool = field(False, help="skip and count bad prompts and unscorable candidates instead of stopping")
    base_bon: str | None = field(None, help="an existing `rlvprm bon` run folder of the base policy to use instead of "
                                            "sampling and scoring it again: it must hold the same prompt file, N, seed, "
                                            "temperature, max_new_tokens, chunk_size and PRM (its extra strategies, ORM and "
                                            "log-probabilities are ignored)")
    bon: dict[str, Any] = field({}, help="further `rlvprm bon` options for every policy's run, as a mapping (JSON "
                                         "on the command line): top_p, sampler, "
                                         "chunk_size, prm_batch_size, max_steps, max_length, dtype, device, ... "
                                         "(`rlvprm bon --help` explains each)")

    def __post_init__(self) -> None:
        if self.prm == LIKELIHOOD:
            raise ConfigError("--prm likelihood reads log-probabilities saved while sampling, whose compute is not "
                              "counted: use --prm likelihood:POLICY (a scorer whose tokens are counted)")
        parse_aggregation(self.aggregation)  # raises naming the valid ones
        for key in self.bon:
            if key in OWN_BON_OPTIONS:
                raise ConfigError(f"--bon may not set {key!r}: compare sets it itself ({OWN_BON_OPTIONS[key]})")
        self.bon_config(self.base, self.out)  # an unknown or contradictory bon option fails now, not after sampling

    def bon_config(self, policy: str, out: str) -> BonConfig:
        """The ``rlvprm bon`` run of one policy: the same prompts, N, seed and PRM for every policy."""
        try:
            return BonConfig(policy=policy, data=self.data, prm=self.prm, out=out, n=self.n, seed=self.seed,
                             temperature=self.temperature, max_new_tokens=self.max_new_tokens,
                             num_subsets=self.num_subsets, image_root=self.image_root, limit=self.limit,
                             threads=self.threads, skip_bad=self.skip_bad, aggregations=[self.aggregation],
                             greedy=True, logprobs="none", **self.bon)
        except TypeError as err:
            raise ConfigError(f"--bon: {err} (the valid keys are the options of `rlvprm bon`)") from None
        except ValueError as err:
            raise ConfigError(f"--bon: {err}") from None
