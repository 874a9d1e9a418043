"""``PRMTrainer``: transformers' ``Trainer`` with the PRM losses and VisualProcessBench evaluation.

Only ``compute_loss`` and ``evaluate`` are replaced; optimisation, schedules, gradient accumulation,
mixed precision, DeepSpeed, checkpoints, resuming and logging (wandb via ``report_to``) are the
Trainer's own.

``compute_loss``, ``kind="prm"``: one forward pass per batch, logits kept only at the positions
that carry a target (the read positions, plus the LM positions when ``aux_lm_weight > 0``), the
step label loss (``losses.step_label_loss``) plus ``aux_lm_weight`` times the mean next-token loss
on the LM positions, plus ``aux_bag_weight`` times :func:`bag_of_tokens_loss` at the read
positions. With a likelihood feature (``rewards.likelihood_feature``) the logits at the positions
that predict the steps' tokens are kept too, and the label loss sees the ``+`` logit with the
feature added, exactly as the scorer computes it; the label loss reaches the step tokens'
probabilities through the feature only with ``feature_gradient`` (by default the feature is
detached there and the auxiliary LM loss alone shapes it). ``kind="implicit"``: token
log-probabilities of the solution under the trained model and under the frozen reference
(``rewards.likelihood.token_logprobs``, the scorer's own code) and PRIME's outcome loss. With LoRA
the reference is the same model with its adapters switched off, so no second copy is held.

``evaluate`` scores a VisualProcessBench-format set with the scorer the saved model will be used
as (``ProcessRewardModel`` on the current weights, or ``ImplicitPRM``) and logs
``eval_macro_f1``, ``eval_auc``, ``eval_position_matched_auc`` and more
(``evaluation.flat_metrics``). Every process scores the whole set (under ZeRO-3 every process must
run the same forward passes), so keep the set small; only the main process reports.

Besides the loss, training logs ``label_loss``, ``label_accuracy`` (the two-way prediction at the
read positions against the label), ``lm_loss``, with a likelihood feature ``feature_good`` and
``feature_bad`` (its mean on right and on wrong steps), or for implicit PRMs ``reward_mean`` and
``outcome_accuracy`` (sign of the sequence reward against the outcome), averaged over the logging
interval.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, Trainer

from rewards.backends.hf import HFBackend
from rewards.likelihood import ImplicitPRM, token_logprobs
from rewards.likelihood_feature import LikelihoodFeature, add_feature, feature_positions, running_min_feature
from rewards.prm import ProcessRewardModel
from rlvprm.prm_training.collate import IGNORE
from rlvprm.prm_training.evaluation import EvalSet, flat_metrics, score_eval_set
from rlvprm.prm_training.losses import implicit_outcome_loss, step_label_loss


class AdapterOff(torch.nn.Module):
    """A peft model seen with its adapters switched off: the frozen reference of a LoRA run."""

    def __init__(self, peft_model):
        super().__init__()
        self.inner = peft_model

    @property
    def dtype(self):
        return self.inner.dtype

    def forward(self, **kwargs):
        with self.inner.disable_adapter():
            return self.inner(**kwargs)


def step_numbers(rows: torch.Tensor) -> torch.Tensor:
    """Which step of its row each read position judges, for ``rows`` sorted as ``nonzero`` lists them.

    >>> step_numbers(torch.tensor([0, 0, 0, 1, 1, 3])).tolist()
    [0, 1, 2, 0, 1, 0]
    """
    k = torch.zeros_like(rows)
    for j in range(1, len(rows)):
        k[j] = k[j - 1] + 1 if rows[j] == rows[j - 1] else 0
    return k


def bag_of_tokens_loss(logits: torch.Tensor, input_ids: torch.Tensor, step_index: torch.Tensor,
                       rows: torch.Tensor) -> torch.Tensor:
    """Auxiliary target: at each read position, which vocabulary tokens the judged step contains.

    ``logits`` ``(N, V)`` at the N read positions (row-major, as ``nonzero`` lists them; the k-th of
    a row judges that row's step k), ``input_ids`` and ``step_index`` ``(B, L)``, ``rows`` ``(N,)``.
    Binary cross-entropy of every vocabulary logit against the multi-hot bag of the step's token
    ids, summed over the vocabulary and averaged over read positions. It trains the path from a
    step's tokens to its read position, which a ``+``/``-`` head needs and a policy lacks
    (``benchmarks/prm_read_probe.py``).
    """
    n, vocab = logits.shape
    bags = torch.zeros(n, vocab, device=logits.device)
    k_in_row = step_numbers(rows)
    for j in range(n):
        tokens = input_ids[rows[j]][step_index[rows[j]] == k_in_row[j]]
        bags[j, tokens[tokens < vocab]] = 1.0
    return F.binary_cross_entropy_with_logits(logits.float(), bags, reduction="sum") / max(n, 1)


class PRMTrainer(Trainer):
    # compute_loss returns a per-micro-batch mean; let training_step divide by the accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        *args,
        kind: str,
        processor,
        label_loss: str = "full_vocab",
        aux_lm_weight: float = 0.0,
        aux_bag_weight: float = 0.0,
        likelihood_feature: LikelihoodFeature | None = None,
        feature_gradient: bool = False,
        good_id: int | None = None,
        bad_id: int | None = None,
        reference=None,
        beta: float = 0.05,
        implicit_score: str = "step",
        implicit_running_min: bool = True,
        eval_set: EvalSet | None = None,
        eval_threshold: float = 0.5,
        **kwargs,
    ):
        super().__init__(*args, eval_dataset=eval_set, **kwargs)
        self.kind = kind
        self.processor = processor
        self.label_loss = label_loss
        self.aux_lm_weight = aux_lm_weight
        self.aux_bag_weight = aux_bag_weight
        self.likelihood_feature = likelihood_feature
        self.feature_gradient = feature_gradient
        self.good_id, self.bad_id = good_id, bad_id
        self.reference = reference
        self.beta = beta
        self.implicit_score = implicit_score
        self.implicit_running_min = implicit_running_min
        self.eval_set = eval_set
        self.eval_threshold = eval_threshold
        self._metrics: dict[str, list[float]] = defaultdict(list)

    # --- loss -----------------------------------------------------------------------------------

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.kind == "implicit":
            loss = self._implicit_loss(model, inputs)
        else:
            loss = self._step_label_loss(model, inputs)
        return (loss, None) if return_outputs else loss

    def _step_label_loss(self, model, inputs):
        targets = inputs.pop("step_targets")  # (B, L)
        lm = inputs.pop("lm_targets", None)  # (B, L) or None
        step_index = inputs.pop("step_index", None)  # (B, L) or None
        spans = inputs.pop("step_spans", None)  # (B, S, 2) or None
        rows, pos = (targets != IGNORE).nonzero(as_tuple=True)
        keep = [pos]
        if lm is not None and self.aux_lm_weight > 0:
            lm_rows, lm_pos = (lm != IGNORE).nonzero(as_tuple=True)
            keep.append(lm_pos)
        if self.likelihood_feature is not None:
            if spans is None:
                raise ValueError("a likelihood feature needs step_spans in the batch "
                                 "(StepLabelCollator(feature_spans=True))")
            spans = [[(s, e) for s, e in row if s >= 0] for row in spans.tolist()]
            keep.append(torch.tensor(feature_positions(spans), device=pos.device, dtype=pos.dtype))
        keep = torch.unique(torch.cat(keep))  # sorted: the positions whose logits are computed
        logits = model(**inputs, logits_to_keep=keep, use_cache=False).logits  # (B, K, V)
        picked = raw = logits[rows, torch.searchsorted(keep, pos)]  # (N, V)
        labels = targets[rows, pos]
        if self.likelihood_feature is not None:
            feature = running_min_feature(logits, keep, inputs["input_ids"], spans)[rows, step_numbers(rows)]  # (N,)
            if not self.feature_gradient:
                feature = feature.detach()  # only the LM loss shapes the step tokens' probabilities
            pair = add_feature(picked[:, [self.good_id, self.bad_id]], feature, self.likelihood_feature)
            picked = picked.clone()
            picked[:, self.good_id] = pair[:, 0]
            with torch.no_grad():  # the feature's mean on right and on wrong steps
                for name, label in (("feature_good", self.good_id), ("feature_bad", self.bad_id)):
                    if (labels == label).any():
                        self._metrics[name].append(feature[labels == label].mean().item())
        loss = step_label_loss(picked, labels, self.good_id, self.bad_id, self.label_loss)
        with torch.no_grad():
            judged_good = picked[:, self.good_id] > picked[:, self.bad_id]
            self._metrics["label_loss"].append(loss.item())
            self._metrics["label_accuracy"].append((judged_good == (labels == self.good_id)).float().mean().item())
        if lm is not None and self.aux_lm_weight > 0 and lm_rows.numel():
            lm_logits = logits[lm_rows, torch.searchsorted(keep, lm_pos)]
            lm_loss = F.cross_entropy(lm_logits.float(), lm[lm_rows, lm_pos])
            self._metrics["lm_loss"].append(lm_loss.item())
            loss = loss + self.aux_lm_weight * lm_loss
        if step_index is not None and self.aux_bag_weight > 0:
            bag_loss = bag_of_tokens_loss(raw, inputs["input_ids"], step_index, rows)
            self._metrics["bag_loss"].append(bag_loss.item())
            loss = loss + self.aux_bag_weight * bag_loss
        return loss

    def _implicit_loss(self, model, inputs):
        mask = inputs.pop("solution_mask")  # (B, T)
        outcomes = inputs.pop("outcomes")  # (B,)
        T = mask.shape[1]
        policy = token_logprobs(model, inputs, T)
        with torch.no_grad():
            reference = token_logprobs(self._reference(model), inputs, T)
        loss, rewards = implicit_outcome_loss(policy, reference, mask, outcomes, self.beta)
        with torch.no_grad():
            self._metrics["reward_mean"].append(rewards.mean().item())
            self._metrics["outcome_accuracy"].append(((rewards > 0).float() == outcomes).float().mean().item())
        return loss

    def _reference(self, model):
        if self.reference is not None:
            return self.reference
        return AdapterOff(self.accelerator.unwrap_model(model))

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._metrics:
            logs.update({k: sum(v) / len(v) for k, v in self._metrics.items() if v})
            self._metrics.clear()
        super().log(logs, start_time)

    # --- resuming ------------------------------------------------------------------------------

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        """Load a full-weight checkpoint through ``from_pretrained``, which renames its tensors.

        transformers saves some architectures (Qwen2-VL among them) under their original tensor
        names, and the Trainer's own loader puts the state dict in without renaming, non-strictly:
        the resumed run would silently keep its initial weights. Adapters and sharded checkpoints
        take the Trainer's own path.
        """
        target = self.accelerator.unwrap_model(model if model is not None else self.model)
        folder = Path(resume_from_checkpoint)
        full = any((folder / f).exists() for f in ("model.safetensors", "model.safetensors.index.json"))
        if isinstance(target, PreTrainedModel) and full:
            loaded = type(target).from_pretrained(folder, dtype=target.dtype)
            target.load_state_dict(loaded.state_dict(), strict=True)
            return
        super()._load_from_checkpoint(resume_from_checkpoint, model)

    # --- evaluation -----------------------------------------------------------------------------

    def scorer(self):
        """The scorer the saved model will be used as, on the current weights."""
        model = self.accelerator.unwrap_model(self.model)
        batch = self.args.per_device_eval_batch_size
        if self.kind == "implicit":
            reference = self.reference if self.reference is not None else AdapterOff(model)
            return ImplicitPRM(model, reference, self.processor, beta=self.beta, score=self.implicit_score,
                               running_min=self.implicit_running_min, batch_size=batch)
        return ProcessRewardModel(HFBackend(model, self.processor, feature=self.likelihood_feature), batch_size=batch)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        data = eval_dataset if eval_dataset is not None else self.eval_set
        if data is None:
            raise ValueError("no evaluation set: give --eval-data (a VisualProcessBench-format jsonl)")
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        start = time.perf_counter()
        try:
            with self.autocast_smart_context_manager():
                scored = score_eval_set(self.scorer(), data)
        finally:
            model.train(was_training)
        metrics = flat_metrics(data, scored, self.eval_threshold, metric_key_prefix)
        metrics[f"{metric_key_prefix}_seconds"] = round(time.perf_counter() - start, 2)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics
