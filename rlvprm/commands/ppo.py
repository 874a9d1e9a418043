"""`rlvprm ppo`: PPO of a vision-language policy with PRM step rewards and a critic.

    rlvprm ppo --config recipes/ppo/visual-arith-process-prm.yaml [--key value ...]

Two configs share the command line: :class:`DensePPOConfig` (the policy, prompt set and step scorer
options it shares with `rlvprm grpo`, ``rlvprm.commands.policy_rl``, then the rewards, GAE and the
critic) and ``rlvprm.rl.ppo_trainer.PPOConfig``, TRL's ``GRPOConfig`` unchanged except that
``num_generations`` may be 1. TRL's options keep their meaning, with PPO's names for two of them:
``num_iterations`` is the number of PPO epochs over a rollout batch, ``steps_per_generation`` its
minibatches, and ``beta`` is the KL coefficient *in the reward* (not a loss term).

The trainer is ``rlvprm.rl.ppo_trainer.ProcessRewardPPOTrainer``; the critic starts as a copy of the
policy's backbone with a zero value head (or the PRM's backbone, ``critic_model: prm``, or any model
sharing the policy's tokenizer). At the end the policy is saved
to ``output_dir``, the critic to ``output_dir/critic``, with ``ppo_summary.json`` and
``curves.png``; checkpoints hold the critic too, and ``--resume-from-checkpoint`` restores it
(under DeepSpeed the critic folders are DeepSpeed checkpoints).
``python -m rlvprm.plots grpo RUN...`` overlays PPO and GRPO runs.

Left out: tool calling, hub dataset ids as ``data``, a critic sharing the policy's weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# EXTRA_RANGES: bounds on TRL's options, which the CLI reads from the command module.
from rlvprm.commands.policy_rl import EXTRA_RANGES, PolicyRLConfig, finish_run, prepare_run, train_policy  # noqa: F401
from rlvprm.config import field
from rlvprm.rl.ppo_trainer import PPOConfig

EXTRA_CONFIGS = (PPOConfig,)


@dataclass
class DensePPOConfig(PolicyRLConfig):
    step_reward: Literal["score", "centered", "delta"] = field(
        "score", help="a step's reward from its PRM score s_k: 'score' (s_k), 'centered' (s_k - step_center) or "
                      "'delta' (s_k - s_{k-1}, s_0 = step_center: a completion's step rewards sum to s_K - step_center)"
    )
    step_center: float = field(0.5, help="centered and delta: the step score that earns nothing")
    step_weight: float = field(1.0, help="weight of the step rewards (each at its step's last token)")
    outcome_weight: float = field(1.0, help="weight of the outcome reward (1 right, 0 wrong) at the last token")
    gamma: float = field(1.0, min=0, max=1, help="GAE discount per token")
    lam: float = field(0.95, min=0, max=1, help="GAE lambda")
    whiten_advantages: bool = field(True, help="whiten advantages over the real tokens of the whole batch")
    value_clip: float | None = field(0.2, min=0, help="clip of the value loss around the rollout's values (unset: no clip)")
    critic_model: str | None = field(None, help="model the critic starts from: unset (the policy), 'prm' (the PRM's "
                                              "backbone, from the prm folder) or a folder or hub id; it reads the "
                                              "policy's tokens, so it must share the policy's tokenizer (checked)")
    critic_learning_rate: float = field(1e-5, min=0, help="the critic's AdamW learning rate (constant)")
    critic_weight_decay: float = field(0.0, min=0, help="the critic's AdamW weight decay")
    critic_max_grad_norm: float | None = field(1.0, min=0, help="clip of the critic's gradient norm (unset: none)")
    value_warmup_steps: int = field(0, min=0, help="value warm-up: rollout batches generated before this optimiser "
                                                  "step train only the critic (the policy's advantages are 0)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.critic_model == "prm" and (self.prm == "oracle" or ":" in self.prm.split("/")[0]):
            raise ValueError(f"critic_model 'prm' starts the critic from the PRM's backbone: prm {self.prm!r} is not a "
                             "model folder or hub id")

    def critic_source(self) -> str | None:
        """Where the critic starts: None (the policy), or a model folder or hub id."""
        return self.prm if self.critic_model == "prm" else self.critic_model

    def ppo_settings(self):
        from rlvprm.rl.ppo_trainer import PPOSettings

        return PPOSettings(
            step_reward=self.step_reward, step_center=self.step_center, step_weight=self.step_weight,
            outcome_weight=self.outcome_weight, gamma=self.gamma, lam=self.lam,
            whiten_advantages=self.whiten_advantages, value_clip=self.value_clip,
            critic_learning_rate=self.critic_learning_rate, critic_weight_decay=self.critic_weight_decay,
            critic_max_grad_norm=self.critic_max_grad_norm, value_warmup_steps=self.value_warmup_steps,
            aggregation=self.prm_aggregation,
        )


def main(cfg: DensePPOConfig, args: PPOConfig) -> dict:
    from rlvprm.rl.ppo_trainer import ProcessRewardPPOTrainer

    parts = prepare_run(cfg, args)
    trainer = ProcessRewardPPOTrainer(
        cfg.policy, parts.scorer, cfg.ppo_settings(), args, train_dataset=parts.train,
        processing_class=parts.processor, critic=cfg.critic_source(),
        callbacks=[parts.heldout] if parts.heldout else None, peft_config=parts.peft_config,
    )
    result = train_policy(trainer, cfg, parts, args)
    trainer.save_critic(Path(args.output_dir) / "critic")
    return finish_run("ppo", trainer, cfg, args, parts, result)
