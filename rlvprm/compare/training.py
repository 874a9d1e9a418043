"""What training an RL policy cost, read from the ``grpo_summary.json`` that ``rlvprm grpo`` wrote or
the ``ppo_summary.json`` of ``rlvprm ppo``.

Four counts, each a number of tokens through a model (the unit test-time compute is counted in):

- ``tokens_generated``: policy tokens sampled for the training batches;
- ``prm_tokens_scored``: tokens the PRM's models read scoring them (0 with the oracle checker);
- ``policy_tokens_trained``: prompt and completion tokens of the training batches, through the
  policy's forward and backward pass (TRL's ``num_tokens``);
- ``critic_tokens_trained``: the same tokens through PPO's critic (0 for GRPO, which has none).

A summary from this version of ``rlvprm grpo`` or ``rlvprm ppo`` holds them as counted (its ``compute``). An
older one is read as far as it allows, and says how: ``policy_tokens_trained`` is TRL's cumulative
``num_tokens`` at the last step; ``tokens_generated`` is the sum over steps of
``completions/mean_length`` times the completions per step, when every step was logged and made
one generation batch (else unknown); ``prm_tokens_scored`` is 0 for the oracle and unknown
otherwise; ``critic_tokens_trained`` is 0 for GRPO and the policy's count for PPO. An unknown count
is left out of the total, which the notes then call a lower bound.

Left out: the reference model's forward pass (``beta > 0``), extra passes with ``num_iterations >
1`` (the critic's rollout pass included), held-out evaluation during training, and everything before
RL (SFT of the base policy).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rlvprm.commands.policy_rl import SUMMARIES, summary_path
from rlvprm.config import ConfigError
from rlvprm.data.jsonl import RecordError

COUNTS = ("tokens_generated", "prm_tokens_scored", "policy_tokens_trained", "critic_tokens_trained")


@dataclass
class TrainingCost:
    """The training compute of one RL policy (module docstring), and how each count was found."""

    policy: str
    trained_from: str | None
    prm: str | None
    steps: int
    tokens_generated: int | None
    prm_tokens_scored: int | None
    policy_tokens_trained: int | None
    critic_tokens_trained: int | None
    how: str  # "counted" (this version's summary) or "read from the log history" (an older one)
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        """The known counts added up (a lower bound when one is unknown: see ``notes``)."""
        return sum(getattr(self, k) or 0 for k in COUNTS)

    def per_prompt(self, served_prompts: int) -> float:
        """The total spread over ``served_prompts`` prompts."""
        return self.total / served_prompts

    def as_dict(self, served_prompts: int) -> dict[str, Any]:
        return {**asdict(self), "total": self.total, "served_prompts": served_prompts,
                "per_prompt": self.per_prompt(served_prompts)}


def read_summary(folder: str | Path) -> tuple[dict[str, Any], str]:
    """The run summary in ``folder`` and the command that wrote it (``grpo`` or ``ppo``)."""
    try:
        path = summary_path(folder)
    except FileNotFoundError as err:
        raise ConfigError(f"RL policy {err} (compare reads the training cost from its summary)") from None
    command = next(c for c, name in SUMMARIES.items() if name == path.name)
    try:
        summary = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RecordError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None
    missing = [k for k in ("config", command, "log_history") if k not in summary]
    if missing:
        raise RecordError(f"{path} lacks {', '.join(missing)}: not a summary `rlvprm {command}` wrote")
    return summary, command


def training_cost(folder: str | Path) -> TrainingCost:
    """The training compute of the RL policy in ``folder`` (module docstring)."""
    summary, command = read_summary(folder)
    config, args, history = summary["config"], summary[command], summary["log_history"]
    steps = max((int(h.get("step", 0)) for h in history), default=0)
    common = dict(policy=str(folder), trained_from=config.get("policy"), prm=config.get("prm"), steps=steps)
    if "compute" in summary:
        counted = {"critic_tokens_trained": 0, **summary["compute"]}  # GRPO summaries name no critic
        return TrainingCost(**common, **{k: int(counted[k]) for k in COUNTS}, how="counted")

    notes = [f"{SUMMARIES[command]} was written before rlvprm {command} counted training compute: read from its "
             "log history"]
    logged = [h for h in history if "completions/mean_length" in h]
    trained = next((h for h in reversed(history) if "num_tokens" in h), None)
    policy_tokens = None
    if trained is not None and int(trained.get("step", -1)) == steps:
        policy_tokens = int(trained["num_tokens"])
    else:
        notes.append("policy tokens trained: the last step was not logged, so unknown")

    generated = None
    one_batch_per_step = (args.get("num_iterations", 1) == 1
                          and args.get("steps_per_generation") == args.get("gradient_accumulation_steps", 1))
    if one_batch_per_step and sorted(int(h["step"]) for h in logged) == list(range(1, steps + 1)):
        per_step = args["generation_batch_size"]
        generated = round(sum(h["completions/mean_length"] * per_step for h in logged))
        notes.append(f"tokens generated: completions/mean_length x {per_step} completions, summed over {steps} steps")
    else:
        notes.append("tokens generated: not every step was logged with one generation batch, so unknown")

    prm_tokens = None
    if config.get("prm") == "oracle":
        prm_tokens = 0  # the exact checker runs no model
    else:
        notes.append(f"PRM tokens scored in training: not logged by that {command} version, so unknown")
    critic_tokens = 0 if command == "grpo" else policy_tokens  # PPO's critic trains on the policy's batches
    if None in (policy_tokens, generated, prm_tokens, critic_tokens):
        notes.append("the training total leaves the unknown counts out: a lower bound")
    return TrainingCost(**common, tokens_generated=generated, prm_tokens_scored=prm_tokens,
                        policy_tokens_trained=policy_tokens, critic_tokens_trained=critic_tokens,
                        how="read from the log history", notes=notes)
