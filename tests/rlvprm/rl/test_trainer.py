"""ProcessRewardGRPOTrainer on a tiny real Qwen2-VL, on the CPU, for a couple of steps.

A random tiny policy rarely writes a blank line, so the main test uses a scorer of its own that cuts
each completion into 8-character steps and scores them alternately high and low (and NaN for some
completions): steps that score differently inside one completion, whatever the policy writes. The
real PRM path (``PRMScorer`` around a tiny ``ProcessRewardModel``) runs on text-only prompts.
"""

import json
import math

import pytest
import torch
from trl import GRPOConfig

from rewards.backends.processors import load_processor
from rewards.prm import ProcessRewardModel
from rewards.steps import Step
from rlvprm.rl.batch_credit import CreditSettings
from rlvprm.rl.data import load_prompt_dataset
from rlvprm.rl.scorers import PRMScorer, StepScores
from rlvprm.rl.trainer import ProcessRewardGRPOTrainer
from rlvprm.world.write import write_world

NAN = float("nan")


class ChunkScorer:
    """Steps of 8 characters scored 0.9, 0.1, 0.9, ...; every 5th completion gets a NaN step."""

    name = "chunks"
    tokens_scored = 0  # no model reads anything

    def __init__(self):
        self.calls: list[list[StepScores]] = []
        self.seen = 0

    def score(self, rollouts):
        out = []
        for r in rollouts:
            steps = [Step(r.text[i : i + 8], i, min(i + 8, len(r.text))) for i in range(0, len(r.text), 8)]
            scores = [0.9 if k % 2 == 0 else 0.1 for k in range(len(steps))]
            if self.seen % 5 == 3 and scores:
                scores[0] = NAN
            self.seen += 1
            out.append(StepScores(steps, scores))
        self.calls.append(out)
        return out

    def prepare(self, accelerator, deepspeed):
        pass


class Recording(ProcessRewardGRPOTrainer):
    """Keeps every batch's advantages and completion mask."""

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        self.batches = getattr(self, "batches", []) + [
            {"advantages": output["advantages"].clone(), "completion_mask": output["completion_mask"].clone(),
             "trl_advantages": self.trl_advantages.clone()}
        ]
        return output


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return write_world(tmp_path_factory.mktemp("world"), seed=0, num_prompts=8, num_vpb=1, num_sft=1, progress=False)


def grpo_args(tmp_path, config=GRPOConfig, **overrides) -> GRPOConfig:
    """TRL's config (or ``config``, a subclass such as PPO's) for a two-step CPU run of the tiny policy."""
    options = dict(
        output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, per_device_train_batch_size=4, num_generations=4,
        max_completion_length=16, max_steps=2, beta=0.04, learning_rate=1e-2, logging_steps=1, report_to="none",
        gradient_checkpointing=False, save_strategy="no", seed=0, dataloader_num_workers=0,
    )
    options.update(overrides)
    return config(**options)


def test_trainer_steps_with_dense_credit(tiny_models, world, tmp_path):
    torch.manual_seed(0)
    policy = tiny_models("qwen2-vl")
    scorer = ChunkScorer()
    trainer = Recording(
        policy, scorer, CreditSettings(method="process", outcome_weight=0.5), grpo_args(tmp_path),
        train_dataset=load_prompt_dataset(world.prompts), processing_class=load_processor(policy),
    )
    assert trainer.ref_model is not None  # beta > 0: TRL reloaded the reference from the saved policy
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()

    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 2 and all(math.isfinite(h["loss"]) for h in logs)
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert changed, "no parameter changed"
    for key in ("prm/step_score_mean", "prm/outcome_agreement", "outcome/accuracy", "steps/per_completion",
                "steps/tokens_per_step", "steps/no_separator_frac", "kl", "completions/mean_length",
                "rewards/outcome/mean", "advantages/within_completion_std"):
        assert key in logs[0], key
    assert logs[0]["prm/unscored"] >= 1  # the NaN completions were counted
    # Training compute, cumulative: every completion token of each batch (the stop token included).
    generated = [int(b["completion_mask"].sum()) for b in trainer.batches]
    assert [h["tokens/generated"] for h in logs] == [generated[0], generated[0] + generated[1]]
    assert [h["prm/tokens_scored"] for h in logs] == [0, 0]
    assert logs[0]["advantages/within_completion_std"] > 0

    # Advantages are per token, and vary inside a completion whose steps score differently.
    varied = 0
    for batch, scored in zip(trainer.batches, scorer.calls):
        advantages, mask = batch["advantages"], batch["completion_mask"].bool()
        assert advantages.shape == mask.shape and torch.isfinite(advantages).all()
        assert (advantages[~mask] == 0).all()
        for row, result in enumerate(scored):
            values = advantages[row][mask[row]]
            if len(result.steps) >= 2 and not any(math.isnan(x) for x in result.scores):
                varied += values.unique().numel() > 1
    assert varied > 0


def test_trainer_with_a_real_prm_on_text_only_prompts(tiny_models, tmp_path):
    rows = [{"id": f"t{i}", "question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(4)]
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = load_prompt_dataset(data)
    assert "images" not in dataset.column_names
    policy = tiny_models("qwen2-vl")
    prm = ProcessRewardModel.from_pretrained(policy, device="cpu", batch_size=4)
    trainer = ProcessRewardGRPOTrainer(
        policy, PRMScorer(prm), CreditSettings(method="min_form", min_form_temperature=0.5),
        grpo_args(tmp_path, max_steps=1, beta=0.0), train_dataset=dataset, processing_class=load_processor(policy),
    )
    assert not prm.backend.model.training
    assert not any(p.requires_grad for p in prm.backend.model.parameters())
    trainer.train()
    log = next(h for h in trainer.state.log_history if "loss" in h)
    assert math.isfinite(log["loss"])
    assert log["steps/no_steps_frac"] < 1
    assert log["prm/tokens_scored"] == trainer.scorer.tokens_scored > 0  # what the PRM read, one process
    assert 0 <= log["prm/step_score_mean"] <= 1


def test_trainer_with_an_implicit_prm_on_image_prompts(tiny_models, world, tmp_path):
    from rewards import ImplicitPRM, load_scorer
    from rlvprm.models.tiny import build_tiny_model

    policy = tiny_models("qwen2-vl")
    folder = build_tiny_model("qwen2-vl", tmp_path / "implicit", seed=1)
    (folder / "implicit_prm.json").write_text(json.dumps({"reference": policy, "beta": 0.5}))
    prm = load_scorer(str(folder), device="cpu", batch_size=4)
    assert isinstance(prm, ImplicitPRM)
    trainer = ProcessRewardGRPOTrainer(
        policy, PRMScorer(prm), CreditSettings(method="process", outcome_weight=1.0),
        grpo_args(tmp_path, max_steps=1, beta=0.0), train_dataset=load_prompt_dataset(world.prompts),
        processing_class=load_processor(policy),
    )
    for model in (prm.model, prm.reference):
        assert not model.training and not any(p.requires_grad for p in model.parameters())
    trainer.train()
    log = next(h for h in trainer.state.log_history if "loss" in h)
    assert math.isfinite(log["loss"]) and log["prm/unscored"] < 1
    # Other weights than the reference: the implicit step scores are not all one half.
    assert 0 <= log["prm/step_score_mean"] <= 1 and log["prm/step_score_mean"] != pytest.approx(0.5, abs=1e-3)


def test_outcome_credit_reproduces_trl_advantages(tiny_models, world, tmp_path):
    """With credit 'outcome' the per-token advantages are TRL's own (B,) advantages on every token:
    rows, groups and normalisation line up with TRL's batch."""
    policy = tiny_models("qwen2-vl")
    trainer = Recording(
        policy, ChunkScorer(), CreditSettings(method="outcome"), grpo_args(tmp_path, max_steps=1, beta=0.0),
        train_dataset=load_prompt_dataset(world.prompts), processing_class=load_processor(policy),
    )
    reward_function = trainer.reward_funcs[0]
    assert reward_function is trainer.outcome_and_steps

    def some_right(**kwargs):
        # The random tiny policy never answers right: call every third completion right.
        reward_function(**kwargs)
        for i, completion in enumerate(reward_function._scored):
            completion.outcome = float(i % 3 == 0)
        return [c.outcome for c in reward_function._scored]

    trainer.reward_funcs[0] = some_right
    trainer.train()
    batch = trainer.batches[0]
    mask = batch["completion_mask"].bool()
    expected = batch["trl_advantages"][:, None].expand_as(mask)
    assert batch["trl_advantages"].abs().sum() > 0
    torch.testing.assert_close(batch["advantages"][mask], expected[mask], rtol=0, atol=1e-6)
