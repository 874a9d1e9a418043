"""What `rlvprm grpo` and `rlvprm ppo` share: the policy, prompt, step-scorer, held-out and LoRA
options, and the setup and summary of a run.

:class:`PolicyRLConfig` holds the options both commands take (each command's config adds its own
credit options); :func:`prepare_run` loads the prompt set, the policy's processor, the step scorer,
the LoRA config and the held-out callback; :func:`finish_run` saves the policy and writes
``{name}_summary.json`` and ``curves.png``.

Left out: anything algorithm-specific (``rlvprm.commands.grpo``, ``rlvprm.commands.ppo``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from rlvprm.config import field

log = logging.getLogger(__name__)

# Bounds on TRL's own options, which pass through undeclared: TRL does not check these itself, and a
# negative batch size otherwise fails deep in a data loader ("maxlen must be non-negative").
EXTRA_RANGES = {
    name: {"min": 1} for name in (
        "per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
        "num_generations", "max_completion_length", "steps_per_generation", "num_iterations",
    )
} | {"num_train_epochs": {"min": 0}, "learning_rate": {"min": 0}, "beta": {"min": 0}, "temperature": {"min": 0}}


@dataclass
class PolicyRLConfig:
    policy: str = field(help="the policy: a model folder or hub id (saved to disk: beta > 0 reloads it as the reference)")
    data: str = field(help="prompt set (jsonl: id, image(s), question, answer)")
    prm: str = field(help="step scorer: a PRM folder or hub id (VisualPRM-style, implicit or stacked), or 'oracle' "
                      "(the visual-arith world's exact checker)")
    image_root: str | None = field(None, help="folder the image paths are relative to (default: the data file's folder)")
    num_prompts: int | None = field(None, min=1, help="train on the first N prompts only")
    prm_aggregation: str = field("mean", help="response score from step scores (prm_sequence, agreement metric)")
    prm_backend: Literal["auto", "hf", "internvl-remote"] = field("auto", help="PRM format")
    prm_prompt: Literal["checkpoint", "training"] = field("checkpoint", help="the released checkpoints' prompt: 'checkpoint' (what their own code writes: the config's template and system message) or 'training' (the PRM prompt they were trained with); rlvprm's own PRMs use the same prompt either way")
    prm_dtype: str = field("auto", help="PRM dtype: float32, bfloat16, float16 or auto (bf16 on GPUs that have it)")
    prm_batch_size: int = field(8, min=1, help="PRM conversations per forward pass (ZeRO-3: all of a process's at once)")
    prm_max_steps: int | None = field(None, min=1, help="merge a completion's steps evenly down to this many for the PRM")
    prm_max_length: int | None = field(None, min=1, help="longest PRM conversation in tokens; longer ones count as unscored")
    prm_trust_remote_code: bool = field(False, help="run the PRM checkpoint's own code (needed by VisualPRM-8B)")
    heldout_every: int = field(0, min=0, help="measure held-out accuracy every N steps (0: never)")
    heldout_data: str | None = field(None, help="held-out prompt set (default: the rows of data after num_prompts)")
    heldout_prompts: int = field(100, min=1, help="number of held-out prompts")
    heldout_samples: int = field(0, min=0, help="also the mean accuracy of this many samples per held-out prompt")
    freeze_vision: bool = field(False, help="keep the vision encoder and projector fixed (train the language model only)")
    use_peft: bool = field(False, help="train a LoRA adapter instead of the whole policy")
    lora_r: int = field(16, min=1, help="LoRA rank")
    lora_alpha: int = field(32, min=1, help="LoRA alpha")
    lora_dropout: float = field(0.05, min=0, max=1, help="LoRA dropout")
    lora_target_modules: list[str] = field(["q_proj", "k_proj", "v_proj", "o_proj"], help="modules that get adapters")
    threads: int = field(0, min=0, help="torch CPU threads (0: torch's default)")

    def __post_init__(self) -> None:
        if self.num_prompts is not None and self.num_prompts < 1:
            raise ValueError("num_prompts must be >= 1")
        if self.heldout_every < 0 or self.heldout_prompts < 1 or self.heldout_samples < 0:
            raise ValueError("heldout_every and heldout_samples must be >= 0, heldout_prompts >= 1")
        if self.heldout_every and self.heldout_data is None and self.num_prompts is None:
            raise ValueError("held-out prompts come from the rows of data after num_prompts: set num_prompts "
                             "(or give heldout_data)")
        if self.prm_batch_size < 1:
            raise ValueError("prm_batch_size must be >= 1")


SUMMARIES = {"grpo": "grpo_summary.json", "ppo": "ppo_summary.json"}  # command -> the summary its run folder holds


def summary_path(folder: str | Path) -> Path:
    """The summary :func:`finish_run` wrote into the run folder ``folder`` (``grpo_summary.json`` or
    ``ppo_summary.json``); FileNotFoundError when there is no folder, no summary, or both."""
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    found = [Path(folder) / name for name in SUMMARIES.values() if (Path(folder) / name).is_file()]
    if len(found) != 1:
        what = "both " + " and ".join(SUMMARIES.values()) if found else f"no {' or '.join(SUMMARIES.values())}"
        raise FileNotFoundError(f"{folder} has {what}: give the output folder of one finished `rlvprm grpo` or "
                                "`rlvprm ppo` run")
    return found[0]


VISION_PARTS = (".visual.", "vision_tower", "vision_model", "multi_modal_projector")


def freeze_vision(model) -> int:
    """Stop gradients into the vision encoder and projector; the number of tensors frozen.

    Runs before ``train()`` builds the optimiser, which takes only parameters that need gradients.
    """
    frozen = 0
    for name, param in model.named_parameters():
        if any(part in f".{name}" for part in VISION_PARTS):
            param.requires_grad_(False)
            frozen += 1
    if not frozen:
        raise ValueError(f"freeze_vision found no vision parameters (names containing one of {VISION_PARTS})")
    return frozen


def heldout_rows(cfg: PolicyRLConfig) -> tuple[list[dict], list[list]]:
    """The held-out rows and their images (never rows the policy trains on)."""
    from rlvprm.data.jsonl import read_jsonl
    from rlvprm.data.records import load_images, parse_record

    path = Path(cfg.heldout_data or cfg.data)
    root = cfg.image_root or str(path.parent)
    skip = 0 if cfg.heldout_data else cfg.num_prompts
    rows, images = [], []
    for index, (line, raw) in enumerate(read_jsonl(path)):
        if index < skip:
            continue
        if len(rows) >= cfg.heldout_prompts:
            break
        record = parse_record(raw, line)
        rows.append({"question": record.question, "answer": record.answer, "choices": record.choices, "id": record.id})
        images.append(load_images(record, root))
    if not rows:
        raise ValueError(f"no held-out prompts in {path} after the first {skip} rows")
    return rows, images


@dataclass
class RunParts:
    """What a policy-RL trainer is built from."""

    train: object  # datasets.Dataset of prompt rows
    processor: object
    scorer: object  # rlvprm.rl.scorers.StepScorer
    peft_config: object | None
    heldout: object | None  # rlvprm.rl.heldout.HeldOutAccuracy


def prepare_run(cfg: PolicyRLConfig, args) -> RunParts:
    """Load the prompt set, the policy's processor, the step scorer, the LoRA config and the held-out
    callback (``args``: TRL's ``GRPOConfig`` or a subclass)."""
    from rewards.backends.processors import load_processor
    from rlvprm.rl.data import load_prompt_dataset
    from rlvprm.rl.heldout import HeldOutAccuracy
    from rlvprm.rl.scorers import load_scorer

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    train = load_prompt_dataset(cfg.data, cfg.image_root, limit=cfg.num_prompts)
    processor = load_processor(cfg.policy, trust_remote_code=args.trust_remote_code)
    processor.tokenizer.padding_side = "left"
    scorer = load_scorer(
        cfg.prm, backend=cfg.prm_backend, prm_prompt=cfg.prm_prompt, dtype=cfg.prm_dtype, max_steps=cfg.prm_max_steps,
        aggregation=cfg.prm_aggregation, batch_size=cfg.prm_batch_size, max_length=cfg.prm_max_length,
        trust_remote_code=cfg.prm_trust_remote_code, device=str(args.device),
    )
    peft_config = None
    if cfg.use_peft:
        from peft import LoraConfig

        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                 target_modules=list(cfg.lora_target_modules), task_type="CAUSAL_LM")
    heldout = None
    if cfg.heldout_every:
        rows, images = heldout_rows(cfg)
        heldout = HeldOutAccuracy(rows, images, processor, cfg.heldout_every, max_new_tokens=args.max_completion_length,
                                  samples=cfg.heldout_samples, temperature=args.temperature, seed=args.seed)
    return RunParts(train, processor, scorer, peft_config, heldout)


def train_policy(trainer, cfg: PolicyRLConfig, parts: RunParts, args):
    """Hand the trainer to the held-out callback, freeze the vision side if asked, and train."""
    if parts.heldout:
        parts.heldout.trainer = trainer
    if cfg.freeze_vision:
        log.info("vision side frozen: %d parameter tensors", freeze_vision(trainer.model))
    return trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)


def _prompt_info(scorer) -> dict | None:
    """Which prompt the PRM writes (``rewards.scorers.prompt_info``); None for the oracle."""
    from rewards.scorers import prompt_info

    return prompt_info(scorer.prm) if hasattr(scorer, "prm") else None


def _launch_info(accelerator) -> dict:
    """How the run was spread: processes, accelerate's distributed type, the DeepSpeed ZeRO stage."""
    plugin = accelerator.state.deepspeed_plugin
    return {"num_processes": accelerator.num_processes, "distributed_type": accelerator.distributed_type.value,
            "zero_stage": plugin.zero_stage if plugin is not None else None}


def finish_run(name: str, trainer, cfg: PolicyRLConfig, args, parts: RunParts, result) -> dict:
    """Save the policy to ``output_dir`` with ``{name}_summary.json`` (both configs, how the run was
    launched, the held-out curve, every logged metric) and ``curves.png``; return the summary."""
    trainer.save_model(args.output_dir)
    summary = {
        "config": dataclasses.asdict(cfg),
        name: {k: v for k, v in args.to_dict().items() if isinstance(v, (int, float, str, bool, type(None)))},
        "train": result.metrics,
        "prm_prompt": _prompt_info(parts.scorer),
        "launch": _launch_info(trainer.accelerator),
        "heldout": parts.heldout.history if parts.heldout else [],
        "last_log": next((h for h in reversed(trainer.state.log_history) if "loss" in h), {}),
        "log_history": trainer.state.log_history,
    }
    if hasattr(trainer, "compute"):  # counted training compute (rlvprm.rl.trainer), what `rlvprm compare` amortises
        counts = trainer.compute or {}
        trained = int(trainer.state.num_input_tokens_seen)
        summary["compute"] = {"tokens_generated": counts.get("tokens/generated", 0),
                              "prm_tokens_scored": counts.get("prm/tokens_scored", 0),
                              "policy_tokens_trained": trained,
                              # PPO's critic trains on the policy's batches (its rollout pass and the
                              # epochs left out, as for the policy); GRPO has no critic
                              "critic_tokens_trained": trained if hasattr(trainer, "critic") else 0}
    if trainer.accelerator.is_main_process:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(args.output_dir) / SUMMARIES[name]).write_text(json.dumps(summary, indent=2) + "\n")
        from rlvprm.plots import plot_runs

        plot_runs([summary], [Path(args.output_dir).name], Path(args.output_dir) / "curves.png")
    return summary
