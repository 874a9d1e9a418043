"""One GRPO step of ``rlvprm grpo`` broken into its parts: the PRM's share at equal policy and PRM size.

The trainer is ``ProcessRewardGRPOTrainer`` built as ``rlvprm grpo`` builds it, with the settings of
``recipes/grpo/visual-arith-process.yaml`` (process credit plus the outcome advantage, beta 0.01, loss
dapo, AdamW, one optimizer step per generation batch), on 4 prompts x 8 completions. Policy and PRM are
two Qwen2-VLs of one size built here (``bench_group_scoring.build_bench_model``, 9.9M parameters each
at the defaults, other seeds): the PRM reads P(+) of its ``+``/``-`` tokens like any rlvprm PRM
(``rlvprm.rl.scorers.load_scorer``). Each prompt has one image of about 256 image tokens; a completion
is 80 tokens (the random policy's blank line is favoured so that a completion has a few steps). fp32,
CPU, one thread.

Each part is timed by wrapping the trainer's own methods (:class:`StepTimes`):

- generation: ``_generate`` (prompt tokenising and ``model.generate``);
- PRM scoring: the step scorer's ``score``, called by the reward function;
- reference / old log-probs: ``_get_per_token_logps_and_entropies`` while TRL builds the batch;
- update: the same function inside the loss (its forward pass), then the loss, backward and the
  optimizer step (up to ``on_optimizer_step``);
- other: the rest of the step (``on_step_begin`` to ``on_step_end``): outcome reward, step spans,
  credit, batching, logging.

Shared-prefix scoring on and off are measured on the same completions: every scoring call runs the PRM
both ways (which goes first alternates) and hands TRL the shared-prefix scores; a step with one way
counts the step's time less the other way's. The first step is a warm-up and is not counted.

Left out: old log-probs (TRL computes them only when generation and optimizer steps are misaligned:
``steps_per_generation`` above ``gradient_accumulation_steps``, ``num_iterations`` > 1, or vLLM; the
recipes keep them aligned, so only the reference is measured), vLLM, GPUs, bf16, several processes,
PPO (rlvprm has none), and a trained policy (a random one writes noise, which costs the same tokens).

Run: python benchmarks/bench_rl_step.py [--steps 2] [--prompts 4] [--generations 8] [--image-tokens 256]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from transformers import PrinterCallback, ProgressCallback, TrainerCallback

PARTS = (
    "generation",
    "PRM scoring",
    "reference / old log-probs",
    "update: log-probs forward",
    "update: loss, backward, optimizer step",
    "other",
)


class StepTimes(TrainerCallback):
    """Seconds of each of ``PARTS`` in every step of ``trainer``, from timers around its own methods.

    ``steps`` holds one dict per step: every part, ``total`` (the whole step) and whatever was
    :meth:`add`-ed. Install before ``trainer.train()``.
    """

    def __init__(self, trainer):
        self.steps: list[dict[str, float]] = []
        self._building = False  # inside _generate_and_score_completions: log-probs there are reference / old
        self._prepared = 0.0
        self._wrap(trainer, "_generate", lambda: "generation")
        self._wrap(trainer.scorer, "score", lambda: "PRM scoring")
        self._wrap(trainer, "_get_per_token_logps_and_entropies",
                   lambda: "reference / old log-probs" if self._building else "update: log-probs forward")
        inner_build = trainer._generate_and_score_completions

        def build(*args, **kwargs):
            self._building = True
            try:
                return inner_build(*args, **kwargs)
            finally:
                self._building = False

        trainer._generate_and_score_completions = build
        inner_prepare = trainer._prepare_inputs

        def prepare(*args, **kwargs):
            try:
                return inner_prepare(*args, **kwargs)
            finally:
                self._prepared = time.perf_counter()

        trainer._prepare_inputs = prepare
        trainer.add_callback(self)

    def _wrap(self, owner, name: str, part) -> None:
        inner = getattr(owner, name)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.add(part(), time.perf_counter() - t0)

        setattr(owner, name, timed)

    def add(self, part: str, seconds: float) -> None:
        if self.steps:
            self.steps[-1][part] = self.steps[-1].get(part, 0.0) + seconds

    def on_step_begin(self, args, state, control, **kwargs):
        self.steps.append({part: 0.0 for part in PARTS} | {"total": time.perf_counter()})

    def on_optimizer_step(self, args, state, control, **kwargs):
        step = self.steps[-1]
        step["update: loss, backward, optimizer step"] = (
            time.perf_counter() - self._prepared - step["update: log-probs forward"])

    def on_step_end(self, args, state, control, **kwargs):
        step = self.steps[-1]
        step["total"] = time.perf_counter() - step["total"]
        step["other"] = step["total"] - sum(step[p] for p in PARTS if p != "other")


class BothWays:
    """Stands in for ``prm.score_groups``: scores with the shared prefix on and off, returns 'on''s scores.

    Adds each way's seconds to ``times`` as ``shared prefix on`` / ``shared prefix off``.
    """

    def __init__(self, prm, times: StepTimes):
        self.prm, self.inner, self.times = prm, prm.score_groups, times
        self.calls = 0
        self.max_diff = 0.0

    def __call__(self, groups):
        out = {}
        for shared in (True, False) if self.calls % 2 == 0 else (False, True):
            self.prm.shared_prefix = shared
            t0 = time.perf_counter()
            out[shared] = self.inner(groups)
            self.times.add(f"shared prefix {'on' if shared else 'off'}", time.perf_counter() - t0)
        self.prm.shared_prefix = True
        self.calls += 1
        for a, b in zip(out[True], out[False]):
            for x, y in zip(a, b):
                self.max_diff = max([self.max_diff] + [abs(p - q) for p, q in zip(x.step_scores, y.step_scores)])
        return out[True]


def write_prompts(folder: Path, prompts: int, image_tokens: int) -> Path:
    from bench_group_scoring import image_of

    rows = []
    for i in range(prompts):
        image_of(image_tokens).save(folder / f"image{i}.png")
        rows.append({"id": f"p{i}", "image": f"image{i}.png", "answer": str(7 + i),
                     "question": f"<image>\nWhat is the sum of the numbers in the image, plus {i}?"})
    path = folder / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def build_trainer(tmp: Path, args):
    from bench_group_scoring import allow_image_tokens, build_bench_model
    from trl import GRPOConfig

    from rewards.backends.processors import load_processor
    from rlvprm.rl.batch_credit import CreditSettings
    from rlvprm.rl.data import load_prompt_dataset
    from rlvprm.rl.scorers import load_scorer
    from rlvprm.rl.trainer import ProcessRewardGRPOTrainer

    policy = str(build_bench_model(tmp / "policy", args.hidden, args.layers, seed=0))
    prm = str(build_bench_model(tmp / "prm", args.hidden, args.layers, seed=1))
    processor = load_processor(policy)
    processor.tokenizer.padding_side = "left"
    allow_image_tokens(processor.image_processor, args.image_tokens)
    tok = processor.tokenizer
    # TRL suppresses the image token; the other specials too here, and a full stop with a blank line is
    # made likelier (about one token in 16) so that a random policy's completion holds a few steps.
    (step_end,) = tok.convert_tokens_to_ids(tok.tokenize(".\n\n"))
    config = GRPOConfig(
        output_dir=str(tmp / "out"), use_cpu=True, bf16=False, seed=0, report_to="none", save_strategy="no",
        per_device_train_batch_size=args.prompts * args.generations, num_generations=args.generations,
        max_completion_length=args.completion_tokens, temperature=1.0, beta=0.01, loss_type="dapo",
        learning_rate=1e-5, lr_scheduler_type="constant", max_steps=1 + args.steps, logging_steps=1,
        gradient_checkpointing=False, dataloader_num_workers=0,
        generation_kwargs={"suppress_tokens": [i for i in tok.all_special_ids if i != tok.eos_token_id],
                           "sequence_bias": [[[step_end], 3.5]]},
    )
    scorer = load_scorer(prm, dtype="float32", batch_size=8, device="cpu")
    allow_image_tokens(scorer.prm.backend.processor.image_processor, args.image_tokens)
    train = load_prompt_dataset(write_prompts(tmp, args.prompts, args.image_tokens))
    trainer = ProcessRewardGRPOTrainer(policy, scorer, CreditSettings(method="process", outcome_weight=1.0), config,
                                       train_dataset=train, processing_class=processor)
    for quiet in (PrinterCallback, ProgressCallback):  # the table is the output
        trainer.remove_callback(quiet)
    return trainer, scorer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2, help="steps measured, after one warm-up step")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--image-tokens", type=int, default=256)
    ap.add_argument("--completion-tokens", type=int, default=80)
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--layers", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        trainer, scorer = build_trainer(Path(tmp), args)
        times = StepTimes(trainer)
        both = BothWays(scorer.prm, times)
        scorer.prm.score_groups = both
        trainer.train()
    policy, prm = trainer.model, scorer.prm.backend.model
    tcfg = policy.config.text_config
    logs = [h for h in trainer.state.log_history if "loss" in h][1:]
    print(f"policy and PRM: Qwen2-VL, {sum(p.numel() for p in policy.parameters()) / 1e6:.1f}M and "
          f"{sum(p.numel() for p in prm.parameters()) / 1e6:.1f}M parameters (text hidden {tcfg.hidden_size}, "
          f"{tcfg.num_hidden_layers} layers, intermediate {tcfg.intermediate_size}; vision embed "
          f"{policy.config.vision_config.embed_dim}); fp32, CPU, {torch.get_num_threads()} thread")
    print(f"step: {args.prompts} prompts x {args.generations} completions, ~{args.image_tokens} image tokens a prompt, "
          f"completions {mean(logs, 'completions/mean_length'):.0f} tokens and {mean(logs, 'steps/per_completion'):.1f} "
          f"steps on average; process credit, beta 0.01; mean of {len(times.steps) - 1} steps after a warm-up")
    completions = len(times.steps) * args.prompts * args.generations
    print(f"tokens a completion: policy sequence {trainer.state.num_input_tokens_seen / completions:.0f} (prompt with "
          f"image, completion), PRM conversation {scorer.tokens_scored / completions:.0f} (its system prompt, image, "
          f"question, steps)")
    measured = times.steps[1:]
    columns = {way: breakdown(measured, skip=f"shared prefix {other}")
               for way, other in (("on", "off"), ("off", "on"))}
    print(f"{'part':<40} | {'shared prefix on':>16} | {'shared prefix off':>17}")
    print(f"{'':<40} | {'s/step':>7} {'share':>8} | {'s/step':>7} {'share':>9}")
    for part in PARTS + ("total",):
        name = "GRPO step" if part == "total" else part
        on, off = columns["on"], columns["off"]
        print(f"{name:<40} | {on[part]:>7.2f} {on[part] / on['total']:>8.1%} | "
              f"{off[part]:>7.2f} {off[part] / off['total']:>9.1%}")
    print(f"PRM scoring, shared prefix on vs off: {columns['off']['PRM scoring'] / columns['on']['PRM scoring']:.2f}x "
          f"faster; step scores equal within {both.max_diff:.1e}")
    print(f"PRM scoring share with the shared prefix off: {columns['off']['PRM scoring'] / columns['off']['total']:.1%}")
    share = columns["on"]["PRM scoring"] / columns["on"]["total"]
    print(f"PRM scoring share of a GRPO step (policy = PRM size, N={args.generations}): {share:.1%}")


def breakdown(steps: list[dict], skip: str) -> dict[str, float]:
    """Mean seconds per step of each part and the total, less the PRM scoring of the other way ``skip``."""
    out = {part: sum(s[part] for s in steps) / len(steps) for part in PARTS + ("total",)}
    other = sum(s.get(skip, 0.0) for s in steps) / len(steps)
    out["PRM scoring"] -= other
    out["total"] -= other
    return out


def mean(logs: list[dict], key: str) -> float:
    values = [h[key] for h in logs if key in h]
    return sum(values) / len(values) if values else float("nan")


if __name__ == "__main__":
    main()
