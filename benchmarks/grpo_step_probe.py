"""How large a GRPO update can be before it stops doing what its gradient says.

Builds ``ProcessRewardGRPOTrainer`` exactly as ``rlvprm grpo`` does (outcome credit), takes one
generation batch, and computes the gradient of TRL's loss three ways: the full advantages, only the
positive ones, only the negative ones. For each it moves the weights a fixed distance (L2 norm of
the whole update) along the descent direction and reports how the summed log-probability of the
batch's own completions changed, separately for completions with positive and negative advantage,
then puts the weights back. A random direction of the same norm is the control.

In the linear regime the descent step raises the positive completions and lowers the negative ones;
past it both fall (the update is larger than the loss surface allows). That norm is the most any
optimiser step may move the weights: SGD's step is ``lr * min(|g|, max_grad_norm)``, Adam's about
``lr * sqrt(number of parameters)`` in the first steps.

    python benchmarks/grpo_step_probe.py --policy rlvprm/data/checkpoints/toy-policy \\
        --data runs/visual-arith/world/prompts.jsonl --prompts 2 --scales 1e-4,1e-3,3e-3,1e-2,3e-2
"""

from __future__ import annotations

import argparse
import inspect

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", default="rlvprm/data/checkpoints/toy-policy", help="policy folder")
    parser.add_argument("--data", required=True, help="prompt set (jsonl with images, answers)")
    parser.add_argument("--prompts", type=int, default=2, help="prompts in the batch")
    parser.add_argument("--generations", type=int, default=8, help="completions per prompt")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    parser.add_argument("--scales", default="1e-4,1e-3,3e-3,1e-2,3e-2", help="update norms to try, comma-separated")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    from trl import GRPOConfig

    from rewards.backends.processors import load_processor
    from rlvprm.rl.batch_credit import CreditSettings
    from rlvprm.rl.data import load_prompt_dataset
    from rlvprm.rl.scorers import OracleScorer
    from rlvprm.rl.trainer import ProcessRewardGRPOTrainer

    train = load_prompt_dataset(args.data, limit=args.prompts)
    processor = load_processor(args.policy)
    processor.tokenizer.padding_side = "left"
    batch = args.prompts * args.generations
    config = GRPOConfig(output_dir="/tmp/grpo-step-probe", use_cpu=True, bf16=False, per_device_train_batch_size=batch,
                        num_generations=args.generations, max_completion_length=96, temperature=args.temperature,
                        beta=0.0, loss_type="dapo", report_to="none", max_steps=1, seed=args.seed)
    trainer = ProcessRewardGRPOTrainer(args.policy, OracleScorer(), CreditSettings(method="outcome"), config,
                                       train_dataset=train, processing_class=processor)
    rows = [train[i] for i in range(args.prompts) for _ in range(args.generations)]
    out = trainer._generate_and_score_completions(rows)
    model = trainer.model
    model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.training_step in a real run
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], 1)
    mask = torch.cat([out["prompt_mask"], out["completion_mask"]], 1)
    accepted = inspect.signature(trainer._get_per_token_logps_and_entropies).parameters
    extra = {k: out[k] for k in out if k in accepted and k not in ("input_ids", "attention_mask")}

    def completion_logps() -> torch.Tensor:
        with torch.no_grad():
            lp, _, _ = trainer._get_per_token_logps_and_entropies(model, ids, mask, out["completion_ids"].size(1), **extra)
        return (lp * out["completion_mask"]).sum(1)

    full = out["advantages"].clone()
    sign = full[:, 0]
    base = completion_logps()
    print(f"{batch} completions: {int((sign > 0).sum())} with positive advantage, {int((sign < 0).sum())} negative")
    print(f"{'gradient of':>12} {'|g|':>7} {'update norm':>12} {'d logp (+)':>11} {'d logp (-)':>11}")
    for name, adv in (("all", full), ("positives", full.clamp(min=0)), ("negatives", full.clamp(max=0)), ("random", None)):
        model.zero_grad()
        if adv is None:
            gen = torch.Generator().manual_seed(args.seed)
            grads = {n: torch.randn(p.shape, generator=gen) for n, p in params.items()}
        else:
            out["advantages"] = adv
            trainer.compute_loss(model, out).backward()
            grads = {n: p.grad.detach().clone() for n, p in params.items() if p.grad is not None}
        norm = float(torch.sqrt(sum((g**2).sum() for g in grads.values())))
        for scale in (float(x) for x in args.scales.split(",")):
            with torch.no_grad():
                for n, g in grads.items():
                    params[n].add_(g, alpha=-scale / norm)
            delta = completion_logps() - base
            with torch.no_grad():
                for n, g in grads.items():
                    params[n].add_(g, alpha=scale / norm)
            shown = "-" if adv is None else f"{norm:.3f}"
            print(f"{name:>12} {shown:>7} {scale:>12.0e} {float(delta[sign > 0].mean()):>11.3f} "
                  f"{float(delta[sign < 0].mean()):>11.3f}")


if __name__ == "__main__":
    main()
