"""`rlvprm train-prm`: train an image-text-to-text model into a process reward model.

    rlvprm train-prm --config recipes/train_prm/visual-arith.yaml [--key value ...]
    rlvprm train-prm --init POLICY --data labels.jsonl --output-dir runs/prm --eval-data vpb_test.jsonl
    rlvprm train-prm --kind implicit --init POLICY --data outcomes.jsonl --output-dir runs/implicit-prm

Two configs share the command line: :class:`TrainPRMConfig` (model, data, kind, loss, LoRA) and
:class:`PRMTrainingArguments`, transformers' ``TrainingArguments`` with VisualPRM's schedule as its
defaults (AdamW, lr 1e-5, 5% warm-up, cosine, 1 epoch); every TrainingArguments option
(``per_device_train_batch_size``, ``bf16``, ``deepspeed``, ``report_to``, ``save_steps``,
``eval_strategy``, ``resume_from_checkpoint``, ...) passes through unchanged, so the same command runs
under ``accelerate launch`` on many GPUs (``recipes/launch/``).

**Kinds.** ``prm`` (default): a VisualPRM-style PRM from step labels (VisualPRM400K-v1.1-Raw with
``--threshold``, or VisualPRM400K conversations). Inputs are built by the scorer's own code
(``build_conversation`` + ``HFBackend.encode``), so the targets sit exactly at the positions
``ProcessRewardModel`` reads; the loss is only on the label tokens (``--label-loss full_vocab``,
the default, or ``two_way``; ``rlvprm.prm_training.losses``). With ``--likelihood-feature`` the
verdict also gets the model's own surprise at the step's tokens, in the same forward pass
(``rewards.likelihood_feature``; train it with ``--aux-lm-weight``, which a small model needs to
predict steps in the PRM conversation at all). ``implicit``: a PRIME-style implicit
PRM from outcome labels only (``rewards.likelihood.ImplicitPRM``), against the frozen ``--reference``
(default: ``--init``). ``stacked``: no gradient training; a logistic combination of scorers (trained
PRMs, implicit PRMs, the policy's likelihood) fitted on step labels (``rlvprm.prm_training.stacked``,
``rewards.stacked``).

**Output.** ``output_dir`` receives a model that loads straight into
``rewards.ProcessRewardModel.from_pretrained`` (``kind=prm``; LoRA adapters merged) or
``rewards.likelihood.ImplicitPRM.from_pretrained`` (``kind=implicit``, with ``implicit_prm.json``
naming the reference and beta; with ``--likelihood-feature``, ``likelihood_feature.json``), the
processor, ``train_prm.json`` (both configs, data counts, label
prior, time, the Trainer's log history, the last evaluation), ``curves.png`` (the loss and the
evaluations against the step; ``python -m rlvprm.plots train-prm RUN...`` overlays runs) and
``skipped.jsonl`` when records were skipped. Checkpoints (``checkpoint-N``) resume with
``--resume-from-checkpoint PATH`` (or ``last``).

**Evaluation.** With ``--eval-data`` (VisualProcessBench format) the scorer on the current weights
is evaluated at ``eval_strategy``/``eval_steps`` and at the end: step macro-F1 at
``--eval-threshold`` (fixed), AUC, position-matched AUC (per error type when records carry
``error_type``), logged as ``eval_*`` metrics (to wandb with ``report_to: wandb``).

**Bad input.** Records with no steps, label counts that do not match the steps, image counts that
do not match the question, missing images, and (with ``--max-length``) over-long conversations stop
the run with a message naming the record, or with ``--skip-bad`` are skipped, counted and listed.
Labels are never shifted.

Left out: packing, sequence parallelism, multi-image records mixed with text-only records in one
batch (a batch is all one or all the other), re-merging a record's steps (steps train as given).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from transformers import TrainerCallback, TrainingArguments, set_seed

from rlvprm.config import field

log = logging.getLogger(__name__)


@dataclass
class PRMTrainingArguments(TrainingArguments):
    """transformers' TrainingArguments with VisualPRM's training schedule as the defaults."""

    output_dir: str | None = dataclasses.field(
        default="runs/train-prm", metadata={"help": "where the trained PRM, checkpoints and train_prm.json go"}
    )
    learning_rate: float = dataclasses.field(default=1e-5, metadata={"help": "AdamW peak learning rate (VisualPRM: 1e-5)"})
    warmup_steps: float = dataclasses.field(
        default=0.05, metadata={"help": "warm-up steps; a value below 1 is a share of all steps (VisualPRM: 5%)"}
    )
    lr_scheduler_type: str = dataclasses.field(default="cosine", metadata={"help": "learning-rate schedule (VisualPRM: cosine)"})
    num_train_epochs: float = dataclasses.field(default=1.0, metadata={"help": "epochs over the data (VisualPRM: 1)"})
    logging_steps: float = dataclasses.field(default=10, metadata={"help": "log every N optimiser steps"})
    remove_unused_columns: bool = dataclasses.field(
        default=False, metadata={"help": "keep False: the PRM collators build the batches themselves"}
    )


EXTRA_CONFIGS = (PRMTrainingArguments,)

DEFAULT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class TrainPRMConfig:
    data: str = field(help="training data: Raw or conversation jsonl (kind prm), outcome-labelled jsonl (kind implicit); "
                           "a file, a folder of them, or a hub dataset id")
    init: str | None = field(None, help="model to start from: any image-text-to-text folder or hub id, e.g. the trained "
                                        "policy (kinds prm and implicit)")
    kind: Literal["prm", "implicit", "stacked"] = field(
        "prm", help="prm: VisualPRM-style +/- PRM from step labels; implicit: PRIME-style implicit PRM from outcome "
                    "labels; stacked: a logistic combination of trained scorers and the policy's likelihood, fitted "
                    "on step labels (rewards.stacked)")
    image_root: str | None = field(None, help="folder image paths are relative to (default: the data file's folder)")
    hub_split: str = field("train", help="split to read when --data is a hub dataset id")
    threshold: float = field(0.0, min=0, max=1, help="kind prm, Raw records: a step is '+' iff its MC score is above this")
    limit: int | None = field(None, min=1, help="train on the first N usable records only")
    labels_in_input: bool = field(False, help="kind prm: put the labels (not '+' placeholders) in the assistant turns, "
                                              "as the released VisualPRM checkpoints were trained (DESIGN.md section 7)")
    label_loss: Literal["full_vocab", "two_way"] = field(
        "full_vocab", help="kind prm: cross-entropy of the label over the full vocabulary (VisualPRM) or over the "
                           "+/- logits only")
    aux_lm_weight: float = field(0.0, min=0, help="kind prm: weight of a language-model loss on the question and the steps "
                                           "before the first '-' (0: off)")
    aux_bag_weight: float = field(0.0, min=0, help="kind prm: weight of an auxiliary target at each read position: the "
                                            "bag of token ids of the judged step (0: off; use with label_loss two_way)")
    likelihood_feature: bool = field(False, help="kind prm: add the model's own running-minimum step log-probability "
                                                 "to the '+' logit, in training and in scoring (rewards.likelihood_feature; "
                                                 "saved as likelihood_feature.json); use with aux_lm_weight > 0")
    feature_gradient: bool = field(False, help="kind prm, with likelihood_feature: let the label loss train the step "
                                               "tokens' probabilities through the feature (default: the feature is "
                                               "detached there, so only the LM loss shapes it)")
    beta: float = field(0.05, min=0, help="kind implicit: reward scale beta of r = beta * log(pi / pi_ref) (PRIME: 0.05)")
    reference: str | None = field(None, help="kind implicit: frozen reference model (default: --init; with LoRA, "
                                             "the model with its adapters off)")
    implicit_score: Literal["step", "cumulative"] = field(
        "step", help="kind implicit: step score = sigmoid(step reward) or sigmoid(cumulative reward)")
    implicit_running_min: bool = field(True, help="kind implicit: each step score is the running minimum over steps")
    balance_outcomes: bool = field(False, help="kind implicit: keep as many wrong-outcome as right-outcome records "
                                               "(the larger class down-sampled at random, seeded by --seed)")
    components: list[str] = field([], help="kind stacked, comma-separated (a list in a recipe): NAME=scorer:PATH "
                                           "(any PRM or implicit PRM) or NAME=likelihood:POLICY (the policy's own "
                                           "step probability), one or more")
    stacked_l2: float = field(1e-4, min=0, help="kind stacked: L2 penalty on the combination weights")
    use_lora: bool = field(False, help="train LoRA adapters (peft) instead of all weights; merged on save")
    lora_r: int = field(16, min=1, help="LoRA rank")
    lora_alpha: int = field(32, min=1, help="LoRA alpha")
    lora_dropout: float = field(0.05, min=0, max=1, help="LoRA dropout")
    lora_target_modules: list[str] = field(DEFAULT_LORA_TARGETS, help="modules that get adapters (names, or one regex)")
    freeze_vision_tower: bool = field(False, help="freeze the vision encoder (its projector stays trainable)")
    dtype: str = field("float32", help="weights' dtype when loaded: float32, bfloat16, float16 or auto")
    trust_remote_code: bool = field(False, help="allow the checkpoint's own code to run")
    max_length: int | None = field(None, min=1, help="longest example in tokens (checked once before training, images "
                                              "included); longer ones are errors, or skipped with --skip-bad")
    skip_bad: bool = field(False, help="skip bad records (counted, listed in OUTPUT_DIR/skipped.jsonl) instead of stopping")
    eval_data: str | None = field(None, help="VisualProcessBench-format jsonl to evaluate on (step macro-F1, AUCs)")
    eval_image_root: str | None = field(None, help="folder the eval images are relative to (default: its folder)")
    eval_limit: int | None = field(None, min=1, help="evaluate on the first N records only")
    eval_threshold: float = field(0.5, help="a step is judged correct when its score is above this (fixed)")
    threads: int = field(0, min=0, help="torch CPU threads (0: torch's default)")

    def __post_init__(self) -> None:
        if self.kind != "stacked" and not self.init:
            raise ValueError(f"kind {self.kind!r} needs --init (the model to start from)")
        if self.kind == "stacked" and not self.components:
            raise ValueError("kind 'stacked' needs --components NAME=scorer:PATH or NAME=likelihood:POLICY")
        if self.kind != "stacked" and self.components:
            raise ValueError("components apply to kind 'stacked' only")
        if self.stacked_l2 < 0:
            raise ValueError("stacked_l2 must be >= 0")
        if self.balance_outcomes and self.kind != "implicit":
            raise ValueError("balance_outcomes applies to kind 'implicit' only")
        if self.kind != "prm" and (self.labels_in_input or self.aux_lm_weight or self.aux_bag_weight or self.likelihood_feature):
            raise ValueError("labels_in_input, aux_lm_weight, aux_bag_weight and likelihood_feature apply to kind 'prm', "
                             f"not {self.kind!r}")
        if self.kind == "prm" and self.reference is not None:
            raise ValueError("reference applies to kind 'implicit' only")
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")
        if self.feature_gradient and not self.likelihood_feature:
            raise ValueError("feature_gradient applies with likelihood_feature only")
        if self.aux_lm_weight < 0 or self.aux_bag_weight < 0:
            raise ValueError("aux_lm_weight and aux_bag_weight must be >= 0")
        if not 0 <= self.threshold < 1:
            raise ValueError(f"threshold must be in [0, 1), got {self.threshold}")
        if self.lora_r < 1:
            raise ValueError("lora_r must be >= 1")
        for name in ("max_length", "limit", "eval_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1")
        if not math.isfinite(self.eval_threshold):
            raise ValueError("eval_threshold must be a finite number")


class SaveProcessor(TrainerCallback):
    """Write the processor (and a likelihood feature) into every checkpoint, so a full-weight checkpoint loads for scoring."""

    def __init__(self, processor, feature=None):
        self.processor = processor
        self.feature = feature

    def on_save(self, args, state, control, **kwargs):
        from rewards.backends.processors import save_processor

        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            save_processor(self.processor, folder)
            if self.feature is not None:
                self.feature.save(folder)


def load_records(cfg: TrainPRMConfig, skipped: list[dict], seed: int = 0) -> tuple[list, str | None]:
    """The training records of ``cfg.data`` and the image root their paths are relative to."""
    from rlvprm.labeling.formats import read_prm_records
    from rlvprm.prm_training.data import default_image_root, read_outcome_records

    root = default_image_root(cfg.data, cfg.image_root)
    if cfg.kind in ("prm", "stacked"):
        records = read_prm_records(cfg.data, cfg.threshold, cfg.hub_split, root, cfg.skip_bad, skipped)
    else:
        records = read_outcome_records(cfg.data, root, cfg.hub_split, cfg.skip_bad, skipped)
    records = list(itertools.islice(records, cfg.limit))
    if not records:
        raise ValueError(f"{cfg.data}: no usable training records" + (f" ({len(skipped)} skipped)" if skipped else ""))
    if cfg.balance_outcomes:
        records = balance_outcomes(records, seed)
    return records, root


def balance_outcomes(records: list, seed: int) -> list:
    """As many right-outcome as wrong-outcome records: the larger class down-sampled at random, order kept."""
    import random

    right = [i for i, r in enumerate(records) if r.outcome]
    wrong = [i for i, r in enumerate(records) if not r.outcome]
    if not right or not wrong:
        raise ValueError(f"balance_outcomes: every record has the same outcome ({len(records)} records)")
    small, large = sorted((right, wrong), key=len)
    keep = set(small) | set(random.Random(seed).sample(large, len(small)))
    log.info("balance_outcomes: %d right, %d wrong -> %d of each", len(right), len(wrong), len(small))
    return [r for i, r in enumerate(records) if i in keep]


def label_counts(cfg: TrainPRMConfig, records: list) -> dict:
    """Steps and the label prior (kinds prm, stacked) or outcome balance (kind implicit)."""
    if cfg.kind in ("prm", "stacked"):
        labels = [x for r in records for x in r.labels]
        bad = labels.count("-") / len(labels)
        entropy = -sum(p * math.log(p) for p in (bad, 1 - bad) if p > 0)
        return {"steps": len(labels), "wrong_step_share": round(bad, 4), "label_prior_entropy": round(entropy, 4)}
    right = sum(r.outcome for r in records) / len(records)
    return {"right_outcome_share": round(right, 4)}


def resume_arg(value: str | None) -> str | bool | None:
    if value is None:
        return None
    return True if value.lower() in ("true", "last", "latest") else value


def main(cfg: TrainPRMConfig, args: PRMTrainingArguments) -> dict:
    from rewards.backends.base import special_token_texts
    from rewards.likelihood_feature import LikelihoodFeature
    from rewards.prm import resolve_dtype
    from rlvprm.prm_training.collate import OutcomeCollator, StepLabelCollator
    from rlvprm.prm_training.data import RecordDataset, check_lengths, drop_markup
    from rlvprm.prm_training.evaluation import load_eval_set
    from rlvprm.prm_training.model import add_lora, freeze_vision_tower, load_model, save_for_scoring, trainable_summary
    from rlvprm.prm_training.trainer import PRMTrainer

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if args.eval_strategy != "no" and cfg.eval_data is None:
        raise ValueError(f"eval_strategy is {args.eval_strategy!r} but no --eval-data was given")
    start = time.perf_counter()
    skipped: list[dict] = []
    records, image_root = load_records(cfg, skipped, args.seed)
    counts = label_counts(cfg, records)
    log.info("%d training records (%s), %d skipped", len(records), counts, len(skipped))
    if cfg.kind == "stacked":
        from rlvprm.prm_training.stacked import fit_stacked

        return fit_stacked(cfg, args, records, image_root, counts, skipped)

    set_seed(args.seed)  # LoRA adapters are initialised at random
    dtype = resolve_dtype(cfg.dtype, args.device)
    model, processor = load_model(cfg.init, dtype, cfg.trust_remote_code)
    reference = None
    if cfg.kind == "implicit" and not (cfg.use_lora and cfg.reference is None):
        reference, _ = load_model(cfg.reference or cfg.init, dtype, cfg.trust_remote_code)
        reference.requires_grad_(False)
        reference.eval()
        reference.to(args.device)
    if cfg.use_lora:
        model = add_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules)
        if args.activation_checkpointing:
            model.enable_input_require_grads()
    if cfg.freeze_vision_tower:
        freeze_vision_tower(model)
    sizes = trainable_summary(model)
    log.info("%s parameters, %s trainable", f"{sizes['parameters']:,}", f"{sizes['trainable_parameters']:,}")

    feature = LikelihoodFeature() if cfg.likelihood_feature else None
    if cfg.kind == "prm":
        collator = StepLabelCollator(processor, cfg.labels_in_input, lm_steps=cfg.aux_lm_weight > 0,
                                     bag_steps=cfg.aux_bag_weight > 0, feature_spans=cfg.likelihood_feature)
    else:
        collator = OutcomeCollator(processor)
    records = drop_markup(records, special_token_texts(processor.tokenizer), cfg.skip_bad, skipped)
    if not records:
        raise ValueError(f"{cfg.data}: no usable training records ({len(skipped)} skipped)")
    dataset = RecordDataset(records, image_root)
    if cfg.max_length is not None:
        dataset = check_lengths(dataset, collator.length, cfg.max_length, cfg.skip_bad, skipped,
                                progress=not args.disable_tqdm)
        if not len(dataset):
            raise ValueError(f"no training record fits max_length={cfg.max_length}")
    eval_set = load_eval_set(cfg.eval_data, cfg.eval_image_root, cfg.eval_limit) if cfg.eval_data else None

    trainer = PRMTrainer(
        model=model, args=args, train_dataset=dataset, data_collator=collator, callbacks=[SaveProcessor(processor, feature)],
        kind=cfg.kind, processor=processor, label_loss=cfg.label_loss, aux_lm_weight=cfg.aux_lm_weight,
        aux_bag_weight=cfg.aux_bag_weight, likelihood_feature=feature,
        feature_gradient=cfg.feature_gradient,
        good_id=getattr(collator, "good_id", None), bad_id=getattr(collator, "bad_id", None), reference=reference,
        beta=cfg.beta, implicit_score=cfg.implicit_score, implicit_running_min=cfg.implicit_running_min, eval_set=eval_set, eval_threshold=cfg.eval_threshold,
    )
    result = trainer.train(resume_from_checkpoint=resume_arg(args.resume_from_checkpoint))
    train_seconds = time.perf_counter() - start
    final_eval = None
    if eval_set is not None:
        evals = [h for h in trainer.state.log_history if "eval_macro_f1" in h or "eval_seconds" in h]
        if evals and evals[-1].get("step") == trainer.state.global_step:
            final_eval = evals[-1]
        else:
            final_eval = trainer.evaluate()
    out = Path(args.output_dir)
    save_for_scoring(trainer, processor, out, cfg.use_lora)
    summary = {
        "kind": cfg.kind,
        "records": len(dataset),
        "skipped": len(skipped),
        **counts,
        **sizes,
        "global_steps": trainer.state.global_step,
        "train_loss": result.training_loss,
        "seconds": round(train_seconds, 1),
        "final_eval": final_eval,
        "config": dataclasses.asdict(cfg),
        "training_arguments": {k: v for k, v in args.to_dict().items() if isinstance(v, (str, int, float, bool, type(None)))},
        "log_history": trainer.state.log_history,
    }
    if args.should_save:
        out.mkdir(parents=True, exist_ok=True)
        if cfg.kind == "implicit":
            from rewards.likelihood import IMPLICIT_CONFIG

            ref = cfg.reference or cfg.init
            ref = str(Path(ref).resolve()) if Path(ref).exists() else ref
            (out / IMPLICIT_CONFIG).write_text(json.dumps({"reference": ref, "beta": cfg.beta, "score": cfg.implicit_score,
                                                           "running_min": cfg.implicit_running_min}, indent=1) + "\n")
        if feature is not None:
            feature.save(out)
        (out / "train_prm.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
        from rlvprm.plots import plot_runs

        plot_runs([summary], [out.name], out / "curves.png", kind="train-prm", smooth=5)
        if skipped:
            with (out / "skipped.jsonl").open("w", encoding="utf-8") as fh:
                for item in skipped:
                    fh.write(json.dumps(item, ensure_ascii=False) + "\n")
    metric = f", eval macro-F1 {final_eval['eval_macro_f1']:.4f}" if final_eval and "eval_macro_f1" in final_eval else ""
    print(f"train-prm ({cfg.kind}): {len(dataset)} records, {trainer.state.global_step} steps in {train_seconds:.0f} s, "
          f"final train loss {result.training_loss:.4f}{metric}, {len(skipped)} skipped -> {out}")
    return summary
