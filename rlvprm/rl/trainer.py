"""GRPO with dense per-step rewards: a ``trl.GRPOTrainer`` whose advantages are per token.

TRL does everything it does for GRPO: generation (transformers or vLLM, colocated or on a server),
multimodal batching, old and reference log-probabilities, KL, every loss type, logging. rlvprm
changes one thing, the advantages: TRL 1.16 computes one advantage per completion, shape (B,),
inside ``_generate_and_score_completions``, and its loss takes (B, T) advantages from a subclass
(``if advantages.dim() == 1: advantages = advantages.unsqueeze(1)`` in ``_compute_loss``). That is
the seam. This subclass lets TRL build the whole training batch and then replaces
``output["advantages"]`` with per-token advantages from ``rlvprm.rl.credit``.

How a batch is scored:

1. TRL calls the one reward function, :class:`OutcomeAndSteps` (logged by TRL as
   ``rewards/outcome``), with the completion ids and every column of the prompt rows. It returns
   the verifiable outcome reward (``rewards.outcome.outcome_reward`` against ``answer``) and keeps,
   per completion, the steps, the step scores (a PRM or the world's oracle, ``rlvprm.rl.scorers``,
   with the prompt's images) and each step's last policy token (``rlvprm.rl.step_tokens``).
2. After TRL's own batch is built, the step rewards of every process are gathered, credit is
   assigned over whole groups, and each process keeps its rows (``rlvprm.rl.batch_credit``).
3. The hacking signals go into TRL's metrics, so they reach the console, wandb and TensorBoard with
   TRL's own (``kl``, ``completions/mean_length``, ``rewards/outcome/mean``).
4. Training compute is counted, not estimated: ``tokens/generated`` (policy tokens sampled, the
   stop token included, as TRL's completion lengths) and ``prm/tokens_scored`` (tokens the PRM's
   models read, ``ScoredSolution.num_tokens``; 0 for the oracle), both cumulative over all
   processes like TRL's ``num_tokens``, training batches only. ``rlvprm compare`` amortises them.
   Resumed from a checkpoint, they carry on from the last logged value.

TRL's ``scale_rewards`` applies to the sequence-level credits (``outcome``, ``prm_sequence``,
``ps_grpo``); ``process`` and ``min_form`` normalise over steps. TRL's ``reward_weights`` and
``multi_objective_aggregation`` do not apply (one reward function; its advantages are replaced).

The seam is a private method: trl is pinned (``pyproject.toml``), and
``tests/rlvprm/rl/test_trainer.py`` fails if the batch TRL builds changes shape.

Left out: tool calling and environments (their completions interleave tool output with policy
tokens, which step spans would have to skip), and PPO (its own module).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch
from trl import GRPOConfig, GRPOTrainer

from rlvprm.rl.batch_credit import CreditSettings, batch_advantages
from rlvprm.rl.rollouts import ScoredCompletion, score_completions, to_step_batch
from rlvprm.rl.scorers import StepScorer

log = logging.getLogger(__name__)

# Cumulative training compute in the log history (module docstring, point 4).
COMPUTE_KEYS = ("tokens/generated", "prm/tokens_scored")

# Reward-function keyword arguments that are TRL's, not columns of the prompt row.
_NOT_COLUMNS = {"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric", "environments"}


class OutcomeAndSteps:
    """The trainer's reward function: returns outcome rewards, keeps the step scores for the credit.

    TRL calls it once per generation batch on each process, with that process's completions.
    """

    def __init__(self, scorer: StepScorer):
        self.__name__ = "outcome"  # the name TRL logs the reward under
        self.scorer = scorer
        self.tokenizer = None  # the policy's, set by the trainer
        self._scored: list[ScoredCompletion] | None = None

    def __call__(self, prompts, completions, completion_ids, **kwargs) -> list[float]:
        columns = {k: v for k, v in kwargs.items() if k not in _NOT_COLUMNS}
        rows = [{k: v[i] for k, v in columns.items()} for i in range(len(completion_ids))]
        images = [row.get("images") or ([row["image"]] if row.get("image") is not None else []) for row in rows]
        self._scored = score_completions(self.tokenizer, self.scorer, rows, images, completion_ids)
        return [c.outcome for c in self._scored]

    def take(self) -> list[ScoredCompletion]:
        """The completions scored by the last call (each batch is taken once)."""
        if self._scored is None:
            raise RuntimeError("no scored completions: TRL did not call the outcome reward function for this batch")
        scored, self._scored = self._scored, None
        return scored


class StepRewardTrainer(GRPOTrainer):
    """TRL's ``GRPOTrainer`` with one reward function, :class:`OutcomeAndSteps`, whose step scores a
    subclass turns into advantages (GRPO credit here, PPO's GAE in ``rlvprm.rl.ppo_trainer``).

    It also merges ``extra_logs`` (held-out accuracy, set by ``rlvprm.rl.heldout``) into the next log.
    ``weighting`` names what mixes outcome and step rewards, for the error on TRL's ``reward_weights``.
    """

    weighting = "the subclass's settings"

    def __init__(self, model: Any, scorer: StepScorer, args: GRPOConfig, train_dataset=None, processing_class=None,
                 **kwargs):
        name = type(self).__name__
        if "reward_funcs" in kwargs:
            raise TypeError(f"{name} makes its own reward function; do not pass reward_funcs")
        if args.reward_weights is not None:
            raise ValueError(f"reward_weights does not apply: the outcome and step rewards are {self.weighting}")
        self.outcome_and_steps = OutcomeAndSteps(scorer)
        tokenizer = getattr(processing_class, "tokenizer", processing_class)
        if getattr(tokenizer, "padding_side", "left") != "left":
            # TRL pads prompt ids on the left but takes the image fields (Qwen2-VL's mm_token_type_ids)
            # from the processor as it pads: a processor padding on the right shifts them against the
            # tokens of every padded prompt, and the policy's log-probabilities change with the batch.
            log.info("the policy's processor pads on the %s; set to the left, as TRL pads prompts", tokenizer.padding_side)
            tokenizer.padding_side = "left"
        super().__init__(model=model, reward_funcs=[self.outcome_and_steps], args=args, train_dataset=train_dataset,
                         processing_class=processing_class, **kwargs)
        if self.tools or self.environment_factories is not None:
            raise ValueError("tool calling and environments are not supported with step rewards (see the module docstring)")
        self.scorer = scorer
        self.outcome_and_steps.tokenizer = self._tokenizer
        scorer.prepare(self.accelerator, deepspeed=self.is_deepspeed_enabled)
        self.extra_logs: dict[str, float] = {}  # merged into the next log call (held-out accuracy)
        self.compute: dict[str, int] | None = None  # cumulative counts (module docstring, point 4)
        self._prm_tokens_seen = 0  # scorer.tokens_scored at the last batch, to take differences

    def _count_compute(self, scored: list[ScoredCompletion], mode: str, device) -> None:
        """Add this batch's generated and PRM-read tokens, over all processes, to the training totals."""
        prm_tokens = self.scorer.tokens_scored - self._prm_tokens_seen
        self._prm_tokens_seen = self.scorer.tokens_scored
        local = torch.tensor([[sum(c.num_tokens for c in scored), prm_tokens]], dtype=torch.long, device=device)
        total = self.accelerator.gather(local).sum(0).tolist()  # every process joins, in eval mode too
        if mode != "train":
            return
        if self.compute is None:  # a resumed run carries on from its last logged counts
            last = next((h for h in reversed(self.state.log_history) if COMPUTE_KEYS[0] in h), {})
            self.compute = {key: int(last.get(key, 0)) for key in COMPUTE_KEYS}
        for key, value in zip(COMPUTE_KEYS, total):
            self.compute[key] += int(value)
            self._metrics[mode][key] = [self.compute[key]]

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.extra_logs:
            logs = {**logs, **self.extra_logs}
            self.extra_logs = {}
        super().log(logs, start_time)


class ProcessRewardGRPOTrainer(StepRewardTrainer):
    """``GRPOTrainer`` with per-token advantages from step scores.

    Args:
        model: the policy, a path or a loaded model (with ``beta > 0`` TRL reloads the reference model
            from the model's path, so a model built in memory must be saved first).
        scorer: the source of step scores (``rlvprm.rl.scorers.load_scorer``).
        credit: the credit method and its options; ``scale_rewards`` is taken from ``args``.
        args: TRL's ``GRPOConfig``, used unchanged.
        train_dataset: prompt rows (``rlvprm.rl.data.load_prompt_dataset``): ``prompt``, ``answer``,
            and ``images`` when there are images.
        processing_class: the policy's processor; pass it for tiny local models, whose saved
            processor ``AutoProcessor`` cannot rebuild without torchvision.
        **kwargs: the rest of ``GRPOTrainer``'s arguments (``eval_dataset``, ``callbacks``,
            ``peft_config``, ...), except ``reward_funcs``.
    """

    weighting = "mixed by the credit settings"

    def __init__(
        self,
        model: Any,
        scorer: StepScorer,
        credit: CreditSettings,
        args: GRPOConfig,
        train_dataset=None,
        processing_class=None,
        **kwargs,
    ):
        super().__init__(model, scorer, args, train_dataset=train_dataset, processing_class=processing_class, **kwargs)
        self.credit = dataclasses.replace(credit, scale_rewards=self.scale_rewards)
        self.trl_advantages = None

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        # TRL's own (B,) advantages from the outcome reward, kept for tests and debugging.
        self.trl_advantages = output["advantages"]
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        completion_mask = output["completion_mask"]
        scored = self.outcome_and_steps.take()
        self._count_compute(scored, mode, completion_mask.device)
        local = to_step_batch(scored, completion_mask.device)
        result = batch_advantages(local, completion_mask, group_size, self.credit, self.accelerator.process_index)
        output["advantages"] = result.advantages
        for name, value in result.metrics(self.credit).items():
            self._metrics[mode][name].append(value)
        if result.unscored.any() and self.accelerator.is_main_process:
            log.warning(
                "%d completions had NaN or missing step scores; their process advantage is 0",
                int(result.unscored.sum()),
            )
        return output


