"""Held-out accuracy during GRPO: greedy (and optionally sampled) accuracy on prompts not trained on.

:class:`HeldOutAccuracy` is a ``transformers.TrainerCallback``. Before the first step, every
``every`` steps and after the last step it samples the held-out prompts with ``rlvprm.generation``'s
``HFSampler`` (the policy's prompt format, exact temperature), checks each answer with
``rewards.outcome.outcome_reward``, appends a line to ``heldout.jsonl`` in the output folder and
hands the numbers to the trainer's next log call (``heldout/greedy_accuracy``,
``heldout/sample_accuracy``), so they reach wandb beside the training metrics.

Left out: multi-process runs (the callback runs only in a single-process run and says so once
otherwise; use TRL's ``eval_strategy`` with an ``eval_dataset`` there) and vLLM sampling.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Sequence

from PIL import Image
from transformers import TrainerCallback

from rewards.outcome import outcome_reward

log = logging.getLogger(__name__)


class HeldOutAccuracy(TrainerCallback):
    """Greedy accuracy (and mean accuracy of ``samples`` samples per prompt) on held-out rows."""

    def __init__(
        self,
        rows: Sequence[dict],
        images: Sequence[Sequence[Image.Image]],
        processor,
        every: int,
        max_new_tokens: int = 96,
        samples: int = 0,
        temperature: float = 1.0,
        seed: int = 0,
        batch_size: int = 32,
    ):
        if every < 1:
            raise ValueError("every must be >= 1")
        self.rows, self.images, self.processor = list(rows), list(images), processor
        self.every, self.max_new_tokens, self.samples = every, max_new_tokens, samples
        self.temperature, self.seed, self.batch_size = temperature, seed, batch_size
        self.trainer = None  # set by the command, so results reach the trainer's log
        self.history: list[dict] = []
        self._warned = False

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._evaluate(args, state, model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0:
            self._evaluate(args, state, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if not self.history or self.history[-1]["step"] != state.global_step:
            self._evaluate(args, state, model)

    def _evaluate(self, args, state, model) -> None:
        if args.world_size > 1:
            if not self._warned:
                log.warning("held-out accuracy runs only in single-process runs; skipped")
                self._warned = True
            return
        from rlvprm.generation import HFSampler

        start = time.perf_counter()
        sampler = HFSampler(model, self.processor, progress=False)
        requests = [(row["question"], imgs, None) for row, imgs in zip(self.rows, self.images)]
        options = dict(max_new_tokens=self.max_new_tokens, seed=self.seed, batch_size=self.batch_size)
        greedy = sampler.sample(requests, 1, temperature=0.0, **options)
        record = {"step": state.global_step, "prompts": len(self.rows),
                  "greedy_accuracy": self._accuracy([g[:1] for g in greedy])}
        if self.samples:
            sampled = sampler.sample(requests, self.samples, temperature=self.temperature, **options)
            record["sample_accuracy"] = self._accuracy(sampled)
        record["seconds"] = round(time.perf_counter() - start, 2)
        self.history.append(record)
        if state.is_world_process_zero:
            Path(args.output_dir).mkdir(parents=True, exist_ok=True)
            with (Path(args.output_dir) / "heldout.jsonl").open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        log.info("held-out at step %d: %s", state.global_step, record)
        if self.trainer is not None:
            self.trainer.extra_logs.update({f"heldout/{k}": v for k, v in record.items() if k.endswith("accuracy")})

    def _accuracy(self, samples) -> float:
        scores = [
            outcome_reward(s.text, row["answer"], row.get("choices"))
            for row, per_prompt in zip(self.rows, samples)
            for s in per_prompt
        ]
        return sum(x > 0 for x in scores) / max(1, len(scores))
