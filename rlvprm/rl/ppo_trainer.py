"""PPO with PRM step rewards and a critic, on TRL's GRPO machinery.

TRL 1.16 has no PPO trainer. Its ``GRPOTrainer`` already does what PPO needs around the update:
generation (transformers or vLLM), multimodal batching, old and reference log-probabilities, several
passes over a rollout batch (``num_iterations``, PPO's epochs; ``steps_per_generation`` its
minibatches), the clipped policy loss and logging. Its loss takes (B, T) advantages from a subclass.
So PPO here is the GRPO seam of ``rlvprm.rl.trainer`` with the advantages built the PPO way:

1. TRL generates and builds the batch; the reward function (``OutcomeAndSteps``, the one GRPO uses)
   scores the outcome and every step with the step scorer.
2. Per-token rewards (``rlvprm.rl.ppo_credit.token_rewards``): each step's reward (its score,
   centred, or its change from the previous step: ``PPOSettings.step_reward``) at the step's last
   policy token, the outcome at the last token, minus ``beta`` x the per-token KL estimate
   log pi_old - log pi_ref on every token (InstructGPT's penalty, in the reward).
3. The critic (``rlvprm.rl.critic``: a separate model, from the policy, the PRM's backbone or any
   model with the policy's tokenizer) values every completion token at rollout time; GAE(gamma,
   lambda) gives advantages and returns per completion (no group needed: ``num_generations`` may be
   1); advantages are whitened over the real tokens of the whole batch (all processes).
4. The policy loss is TRL's, with its KL term off (the KL is in the reward). Beside it, on the same
   micro-batch, the critic takes a step on the clipped value loss (a token mean over the batch of
   every process, like TRL's ``dapo`` loss) with its own optimizer and learning rate. For the first
   ``value_warmup_steps`` optimiser steps the advantages are zero, so only the critic learns (with
   TRL's default ``weight_decay`` 0 the policy does not move at all).

``beta`` is TRL's option with PPO's meaning: the KL coefficient in the reward, not a loss term; with
``beta > 0`` TRL keeps the reference model as in GRPO. Checkpoints hold the critic and its optimizer
(``checkpoint-N/critic/``); ``resume_from_checkpoint`` restores them with the policy.

Logged beside TRL's metrics: the GRPO hacking signals (``steps/per_completion``,
``steps/tokens_per_step``, ``prm/outcome_agreement``, ...), ``kl`` (the rollout's mean per-token
KL estimate), and ``ppo/*`` (mean return and value, explained variance, value loss, value clipping,
whether the step is a warm-up step).

Left out: tool calling and environments (as in GRPO), adaptive KL control, and a critic sharing the
policy's weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from accelerate.utils import gather, pad_across_processes
from trl import GRPOConfig

from rlvprm.rl import credit, ppo_credit
from rlvprm.rl.batch_credit import CreditSettings, batch_metrics, gather_batch
from rlvprm.rl.critic import CriticOptimizer, ValueModel, check_same_tokenizer, load_critic
from rlvprm.rl.rollouts import to_step_batch
from rlvprm.rl.scorers import StepScorer
from rlvprm.rl.trainer import StepRewardTrainer

log = logging.getLogger(__name__)

# Keys of TRL's batch that carry images, passed on to the critic as to the policy.
MULTIMODAL_KEYS = ("pixel_values", "image_grid_thw", "num_images", "pixel_attention_mask", "spatial_shapes",
                   "num_tiles", "image_sizes", "token_type_ids", "mm_token_type_ids", "image_position_ids")


class _OneGeneration(int):
    """The number 1 everywhere but in ``GRPOConfig``'s ``num_generations < 2`` check."""

    def __lt__(self, other):
        return False if other == 2 else int(self) < other


@dataclass
class PPOConfig(GRPOConfig):
    """TRL's ``GRPOConfig``, every option unchanged, except that ``num_generations`` may be 1.

    GRPO refuses a group of one (it has no baseline); in PPO the critic is the baseline. TRL's other
    uses of ``num_generations`` (the generation batch holds whole groups; the group statistics of
    the outcome reward, which PPO replaces) hold for 1, so only that one check is passed.
    """

    def __post_init__(self):
        if self.num_generations == 1:
            self.num_generations = _OneGeneration(1)
        super().__post_init__()
        self.num_generations = int(self.num_generations)


@dataclass
class PPOSettings:
    """How rewards, advantages and the critic are built (the recipe's PPO options)."""

    step_reward: str = "score"  # ppo_credit.STEP_REWARDS
    step_center: float = 0.5  # centered and delta: the score that earns nothing
    step_weight: float = 1.0
    outcome_weight: float = 1.0
    gamma: float = 1.0
    lam: float = 0.95
    whiten_advantages: bool = True
    value_clip: float | None = 0.2
    critic_learning_rate: float = 1e-5
    critic_weight_decay: float = 0.0
    critic_max_grad_norm: float | None = 1.0
    value_warmup_steps: int = 0
    aggregation: str = "mean"  # the response score of the PRM/outcome agreement metric

    def __post_init__(self) -> None:
        if self.step_reward not in ppo_credit.STEP_REWARDS:
            raise ValueError(f"unknown step_reward {self.step_reward!r}; choose one of {list(ppo_credit.STEP_REWARDS)}")
        if not (0 <= self.gamma <= 1 and 0 <= self.lam <= 1):
            raise ValueError("gamma and lam must lie in [0, 1]")


class _ValuesAsLogProbs:
    """The critic behind TRL's forward protocol: TRL's ``_get_per_token_logps_and_entropies`` calls
    ``model(..., labels=..., fused_lm_head=True)`` and keeps ``log_probs[:, -K:]``, where entry j
    belongs to the hidden state at position j (it predicts token j + 1). Returning the critic's
    values there, aligned the same way, gives V_t = the value of the state before completion token
    t, and lets TRL's own chunking and per-architecture image slicing serve the critic too."""

    def __init__(self, critic):
        self.critic = critic

    def __call__(self, labels=None, fused_lm_head=None, **inputs):
        return SimpleNamespace(log_probs=self.critic(**inputs)[:, :-1])


class ProcessRewardPPOTrainer(StepRewardTrainer):
    """PPO of a vision-language policy with PRM step rewards and a critic (see the module docstring).

    Args:
        model: the policy, a path or a loaded model (with ``beta > 0`` TRL reloads the reference from its path).
        scorer: the source of step scores (``rlvprm.rl.scorers.load_scorer``).
        ppo: rewards, GAE and critic options.
        args: :class:`PPOConfig` (TRL's ``GRPOConfig`` allowing ``num_generations`` 1); ``beta`` is the KL
            coefficient in the reward, ``num_iterations`` the PPO epochs.
        critic: a :class:`ValueModel`, or a folder or hub id to load one from (default: the policy's path, new
            head), e.g. the PRM's folder; a model other than the policy must share the policy's tokenizer.
        train_dataset, processing_class, **kwargs: as for ``ProcessRewardGRPOTrainer``.
    """

    weighting = "weighted by the PPO settings"

    def __init__(
        self,
        model: Any,
        scorer: StepScorer,
        ppo: PPOSettings,
        args: GRPOConfig,
        train_dataset=None,
        processing_class=None,
        critic: ValueModel | str | None = None,
        **kwargs,
    ):
        super().__init__(model, scorer, args, train_dataset=train_dataset, processing_class=processing_class, **kwargs)
        self.ppo = ppo
        if not isinstance(critic, ValueModel):
            policy_source = model if isinstance(model, str) else model.config._name_or_path
            if critic is not None and str(critic) != str(policy_source):
                check_same_tokenizer(critic, self._tokenizer, trust_remote_code=args.trust_remote_code)
                log.info("critic starts from %s (a new value head)", critic)
            try:
                critic = load_critic(critic or policy_source, dtype=next(self.model.parameters()).dtype,
                                     trust_remote_code=args.trust_remote_code)
            except (OSError, ValueError) as err:
                raise ValueError(f"the critic cannot start from {critic or policy_source} (not a transformers model "
                                 f"AutoModel loads): {err}") from err
        if args.gradient_checkpointing:
            critic.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs)
        self.critic = CriticOptimizer(
            critic, self.accelerator, ppo.critic_learning_rate, ppo.critic_weight_decay, ppo.critic_max_grad_norm,
            accumulation=args.gradient_accumulation_steps,
            deepspeed_config=self.accelerator.state.deepspeed_plugin.deepspeed_config if self.is_deepspeed_enabled else None,
        )

    # -- rollout: rewards, values, GAE ---------------------------------------------------------------

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        mask = output["completion_mask"]
        scored = self.outcome_and_steps.take()
        self._count_compute(scored, mode, mask.device)
        local = to_step_batch(scored, mask.device)
        step_scores, step_mask, unscored_rows = credit.sanitize_step_rewards(local.step_rewards, local.step_mask)
        step_rewards = ppo_credit.step_reward_values(step_scores, step_mask, self.ppo.step_reward, self.ppo.step_center)

        with torch.no_grad():
            kl = None
            if self.beta != 0.0:
                rollout_logps = output.get("old_per_token_logps")
                if rollout_logps is None:  # TRL skips it when the batch is used once, on-policy
                    rollout_logps = self._batch_logps(output)
                kl = rollout_logps - output["ref_per_token_logps"]
            old_values = self._values(output)
        rewards = ppo_credit.token_rewards(
            step_rewards, step_mask, local.step_end, local.outcome, mask, kl=kl, kl_coef=self.beta,
            step_weight=self.ppo.step_weight, outcome_weight=self.ppo.outcome_weight,
        )
        advantages, returns = ppo_credit.gae(rewards, old_values, mask, self.ppo.gamma, self.ppo.lam)
        if self.ppo.whiten_advantages:
            moments = self.accelerator.reduce(ppo_credit.masked_moments(advantages, mask), reduction="sum")
            advantages = ppo_credit.whiten(advantages, mask, moments)
        warmup = mode == "train" and self.state.global_step < self.ppo.value_warmup_steps
        output["advantages"] = torch.zeros_like(advantages) if warmup else advantages
        output["old_values"] = old_values
        output["returns"] = returns

        self._log_rollout(mode, local, mask, output["advantages"], unscored_rows, rewards, old_values, returns, kl, warmup)
        return output

    def _batch_logps(self, batch) -> torch.Tensor:
        """The policy's per-token log-probabilities of the batch's completions (B, T), as TRL computes them."""
        input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
        attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
        logps, _, _ = self._get_per_token_logps_and_entropies(
            self.model, input_ids, attention_mask, batch["completion_ids"].size(1),
            batch_size=self.args.per_device_train_batch_size, **_multimodal(batch),
        )
        return logps

    def _values(self, batch) -> torch.Tensor:
        """The critic's values V_t of the batch's completion tokens (B, T)."""
        input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
        attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
        values, _, _ = self._get_per_token_logps_and_entropies(
            _ValuesAsLogProbs(self.critic.module), input_ids, attention_mask, batch["completion_ids"].size(1),
            batch_size=self.args.per_device_train_batch_size, **_multimodal(batch),
        )
        return values.float()

    # -- update: TRL's policy loss without its KL term, and the critic's step ---------------------------

    def _compute_loss(self, model, inputs):
        beta, self.beta = self.beta, 0.0  # the KL is in the rewards already
        try:
            loss = super()._compute_loss(model, inputs)
        finally:
            self.beta = beta
        if self.model.training:
            self._fit_critic(inputs)
        return loss

    def _fit_critic(self, inputs) -> None:
        mask = inputs["completion_mask"]
        values = self._values(inputs)
        # A token mean over the rollout batch of every process, as TRL's "dapo" policy loss: the critic's
        # optimizer averages P processes' gradients over A accumulated micro-batches, and a rollout
        # batch (num_items_in_batch tokens) holds steps_per_generation micro-batches of each process.
        tokens = inputs["num_items_in_batch"].clamp(min=1) / (self.accelerator.num_processes * self.args.steps_per_generation)
        value_loss, clip_frac = ppo_credit.clipped_value_loss(
            values, inputs["old_values"], inputs["returns"], mask, self.ppo.value_clip, num_tokens=tokens
        )
        self.critic.backward(value_loss)
        metrics = self._metrics["train"]
        metrics["ppo/value_loss"].append(self.accelerator.reduce(value_loss.detach(), reduction="mean").item())
        metrics["ppo/value_clip_frac"].append(self.accelerator.reduce(clip_frac, reduction="mean").item())

    # -- logging, checkpoints --------------------------------------------------------------------------

    def _log_rollout(self, mode, local, mask, advantages, unscored_rows, rewards, values, returns, kl, warmup) -> None:
        everything, all_masks = gather_batch(local, mask)
        all_advantages = gather(pad_across_processes(advantages.contiguous(), dim=1, pad_index=0))
        unscored = torch.zeros(mask.shape[0], dtype=torch.long, device=mask.device)
        unscored[unscored_rows] = 1
        unscored = gather(unscored).bool()
        metrics = self._metrics[mode]
        for name, value in batch_metrics(everything, all_advantages, all_masks, unscored,
                                         CreditSettings(aggregation=self.ppo.aggregation)).items():
            metrics[name].append(value)

        def token_stats(x: torch.Tensor) -> tuple[float, float]:
            """Mean and variance over the real tokens of every process."""
            total, total_sq, count = self.accelerator.reduce(
                ppo_credit.masked_moments(x.float(), mask), reduction="sum").unbind()
            mean = total / count.clamp(min=1)
            return mean.item(), (total_sq / count.clamp(min=1) - mean**2).item()

        var_returns = token_stats(returns)[1]
        metrics["ppo/return_mean"].append(token_stats(returns)[0])
        metrics["ppo/value_mean"].append(token_stats(values)[0])
        metrics["ppo/reward_per_completion"].append(gather((rewards * mask).sum(dim=1)).mean().item())
        metrics["ppo/explained_variance"].append(
            1 - token_stats(returns - values)[1] / var_returns if var_returns > 0 else float("nan"))
        metrics["ppo/warmup"].append(float(warmup))
        if kl is not None:
            metrics["kl"].append(token_stats(kl)[0])
        if unscored_rows.numel() and self.accelerator.is_main_process:
            log.warning("%d completions had NaN or missing step scores; they get the outcome reward only",
                        int(unscored_rows.numel()))

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

        folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        self.critic.save(folder / "critic")

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            self.critic.load(Path(checkpoint) / "critic")

    def save_critic(self, folder: str | Path) -> None:
        """The critic (and its optimizer state) into ``folder``, e.g. ``OUTPUT_DIR/critic``."""
        self.critic.save(folder)


def _multimodal(batch: dict) -> dict:
    return {key: batch[key] for key in MULTIMODAL_KEYS if batch.get(key) is not None}
