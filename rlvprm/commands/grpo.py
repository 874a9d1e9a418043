"""`rlvprm grpo`: GRPO of a vision-language policy with dense per-step rewards from a PRM.

    rlvprm grpo --config recipes/grpo/visual-arith-process.yaml [--key value ...]

Two configs share the command line: :class:`DenseGRPOConfig` (the policy, the prompt set, the step
scorer, shared with `rlvprm ppo` in ``rlvprm.commands.policy_rl``, and the credit) and TRL's own ``GRPOConfig``, whose options (``learning_rate``,
``num_generations``, ``beta``, ``loss_type``, ``use_vllm``, ``deepspeed``, ...) pass through unchanged.
Under ``accelerate launch`` the same command runs on many GPUs (``recipes/launch/``).

The trainer is ``rlvprm.rl.trainer.ProcessRewardGRPOTrainer``; the step scorer is a PRM folder or hub
id, or ``oracle`` for the visual-arith world's exact checker. With ``heldout_every``, greedy accuracy
on held-out prompts is measured as training goes (``heldout.jsonl`` in the output folder). At the
end the policy is saved to ``output_dir`` with ``grpo_summary.json`` (both configs, the held-out
curve, every logged metric, and the counted training compute that ``rlvprm compare`` amortises) and ``curves.png`` (held-out accuracy and the hacking signals against
the step; ``python -m rlvprm.plots grpo RUN...`` overlays several runs).

Options that TRL's config parser reads from JSON strings (``model_init_kwargs``,
``gradient_checkpointing_kwargs``) are written as JSON strings in recipes.

Left out: PPO (`rlvprm ppo`), tool calling, hub dataset ids as ``data``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from trl import GRPOConfig

# EXTRA_RANGES: bounds on TRL's options, which the CLI reads from the command module.
from rlvprm.commands.policy_rl import EXTRA_RANGES, PolicyRLConfig, finish_run, prepare_run, train_policy  # noqa: F401
from rlvprm.config import field

EXTRA_CONFIGS = (GRPOConfig,)


@dataclass
class DenseGRPOConfig(PolicyRLConfig):
    credit: Literal["outcome", "prm_sequence", "process", "min_form", "ps_grpo"] = field(
        "process", help="credit assignment (rlvprm.rl.credit): outcome, prm_sequence, process, min_form, ps_grpo"
    )
    outcome_weight: float = field(0.0, help="weight of the outcome advantage added to the credit's advantage")
    prm_empty_value: float = field(0.0, help="prm_sequence: reward of a completion with no steps")
    min_form_temperature: float | None = field(None, min=0, help="min_form: softmin temperature (unset: hard minimum)")
    ps_grpo_drop_threshold: float = field(0.3, help="ps_grpo: a PRM score drop between steps larger than this is a flaw")
    ps_grpo_penalty: float = field(0.5, help="ps_grpo: reward taken off a correct answer with a flawed process")

    def __post_init__(self) -> None:
        if self.credit == "outcome" and self.outcome_weight:
            raise ValueError("credit 'outcome' is the outcome advantage already: set outcome_weight to 0")
        super().__post_init__()

    def credit_settings(self):
        from rlvprm.rl.batch_credit import CreditSettings

        return CreditSettings(
            method=self.credit, outcome_weight=self.outcome_weight, aggregation=self.prm_aggregation,
            empty_value=self.prm_empty_value, min_form_temperature=self.min_form_temperature,
            drop_threshold=self.ps_grpo_drop_threshold, penalty=self.ps_grpo_penalty,
        )


def main(cfg: DenseGRPOConfig, args: GRPOConfig) -> dict:
    from rlvprm.rl.trainer import ProcessRewardGRPOTrainer

    parts = prepare_run(cfg, args)
    trainer = ProcessRewardGRPOTrainer(
        cfg.policy, parts.scorer, cfg.credit_settings(), args, train_dataset=parts.train,
        processing_class=parts.processor, callbacks=[parts.heldout] if parts.heldout else None,
        peft_config=parts.peft_config,
    )
    result = train_policy(trainer, cfg, parts, args)
    return finish_run("grpo", trainer, cfg, args, parts, result)
