"""`rlvprm train-prm` end to end on a tiny Qwen2-VL: full and LoRA runs, resume, implicit PRM, bad input."""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file

from rewards.likelihood import ImplicitPRM
from rewards.prm import Group, ProcessRewardModel
from rlvprm.cli import main as cli
from rlvprm.commands.train_prm import PRMTrainingArguments, TrainPRMConfig, main
from rlvprm.config import ConfigError, parse
from rlvprm.data.jsonl import RecordError
from rlvprm.labeling.formats import read_prm_records
from rlvprm.prm_training.collate import IGNORE, StepLabelCollator
from rlvprm.prm_training.data import RecordDataset

SAMPLE_VPB = Path(__file__).resolve().parents[3] / "rlvprm" / "data" / "sample" / "vpb_sample.jsonl"
QUESTION = "<image>\nWhat is the sum of the numbers in the image?"


pytestmark = pytest.mark.usefixtures("one_thread")


def write_data(root: Path, n: int = 8) -> Path:
    """Raw records (labels from MC scores) with an outcome-checkable response, images on disk."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        im = Image.new("RGB", (56, 28), "white")
        ImageDraw.Draw(im).text((4, 8), f"{i} 2", fill="black")
        im.save(root / "images" / f"{i}.png")
        wrong = i % 2
        steps = [f"The numbers are {i} and {2 + wrong}.", f"{i} + {2 + wrong} = {i + 2 + wrong}.",
                 f"The answer is \\boxed{{{i + 2 + wrong}}}."]
        scores = [0.0 if wrong else 1.0] * 3
        rows.append({"id": f"r{i}", "image": f"images/{i}.png", "question": QUESTION, "answer": str(i + 2),
                     "response": "\n\n".join(steps), "num_mc_sequences": 4,
                     "steps_with_score": [{"step": s, "score": sc, "num_mc_correct": 0, "num_mc_total": 4}
                                          for s, sc in zip(steps, scores)]})
    path = root / "raw.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run(model: str, data: Path, out: Path, *extra: str) -> dict:
    argv = ["--init", model, "--data", str(data), "--output-dir", str(out), "--per-device-train-batch-size", "2",
            "--learning-rate", "1e-3", "--logging-steps", "1", "--use-cpu", "true", "--disable-tqdm", "true",
            "--report-to", "none", *extra]
    return main(*parse([TrainPRMConfig, PRMTrainingArguments], argv, command="train-prm"))


def losses(summary: dict) -> list[float]:
    return [h["loss"] for h in summary["log_history"] if "loss" in h]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def full_run(tiny_models, data, tmp_path_factory):
    """4 steps of full fine-tuning, a checkpoint every 2, evaluation at step 2 and at the end."""
    out = tmp_path_factory.mktemp("full") / "prm"
    summary = run(tiny_models("qwen2-vl"), data, out, "--max-steps", "4", "--save-steps", "2",
                  "--eval-data", str(SAMPLE_VPB), "--eval-strategy", "steps", "--eval-steps", "2",
                  "--label-loss", "two_way")
    return out, summary


def test_full_run_moves_the_loss_and_saves_a_prm_that_scores(full_run, tiny_models, data):
    out, summary = full_run
    trace = losses(summary)
    assert len(trace) == 4 and all(map(torch.isfinite, torch.tensor(trace)))
    assert trace[-1] < trace[0]
    assert summary["records"] == 8 and summary["wrong_step_share"] == 0.5 and summary["global_steps"] == 4
    evals = [h for h in summary["log_history"] if "eval_macro_f1" in h]
    assert [h["step"] for h in evals] == [2, 4] and summary["final_eval"]["step"] == 4
    assert 0 <= evals[-1]["eval_auc"] <= 1 and "eval_position_matched_auc/perception" in evals[-1]
    before = load_file(Path(tiny_models("qwen2-vl")) / "model.safetensors")
    after = load_file(out / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # The saved folder loads straight into the scorer, and its read positions are the training targets.
    prm = ProcessRewardModel.from_pretrained(str(out), device="cpu", dtype="float32")
    records = list(read_prm_records(data, image_root=data.parent))
    example = RecordDataset(records, data.parent)[1]
    scored = prm.score_group(QUESTION, example.images, [example.record.steps])[0]
    assert len(scored.step_scores) == 3 and all(0 <= s <= 1 for s in scored.step_scores)
    batch = StepLabelCollator(prm.backend.processor)([example])
    conv = prm.prepare(Group(QUESTION, example.images, [example.record.steps]))[0][1]
    read = prm.backend.encode([conv], [example.images]).read_positions[0]
    assert (batch["step_targets"][0] != IGNORE).nonzero().flatten().tolist() == read
    # Checkpoints carry the processor, so a full-weight checkpoint scores too.
    assert ProcessRewardModel.from_pretrained(str(out / "checkpoint-2"), device="cpu").score_group(
        QUESTION, example.images, ["a\n\nb"])[0].step_scores
    info = json.loads((out / "train_prm.json").read_text())
    assert info["config"]["label_loss"] == "two_way" and info["training_arguments"]["learning_rate"] == 1e-3
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_resume_from_a_checkpoint_ends_where_the_uninterrupted_run_ends(full_run, tiny_models, data, tmp_path):
    out, summary = full_run
    resumed = run(tiny_models("qwen2-vl"), data, tmp_path / "resumed", "--max-steps", "4", "--save-steps", "2",
                  "--label-loss", "two_way", "--resume-from-checkpoint", str(out / "checkpoint-2"))
    assert resumed["global_steps"] == 4
    steps = [h["step"] for h in resumed["log_history"] if "loss" in h]
    assert steps == [1, 2, 3, 4]  # 1 and 2 come from the checkpoint's trainer state
    assert losses(resumed) == pytest.approx(losses(summary), rel=1e-4)
    a = load_file(out / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_lora_run_with_frozen_vision_skips_bad_records_and_logs_to_wandb(tiny_models, data, tmp_path, monkeypatch):
    bad = tmp_path / "data"
    shutil.copytree(data.parent, bad)
    with (bad / "raw.jsonl").open("a") as fh:
        fh.write(json.dumps({"id": "empty", "image": "images/0.png", "question": QUESTION, "steps_with_score": []}) + "\n")
        fh.write(json.dumps({"id": "gone", "image": "images/gone.png", "question": QUESTION,
                             "steps_with_score": [{"step": "a", "score": 1.0}]}) + "\n")
    with pytest.raises(RecordError, match="record empty"):
        run(tiny_models("qwen2-vl"), bad / "raw.jsonl", tmp_path / "x", "--max-steps", "1")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    out = tmp_path / "lora"
    summary = run(tiny_models("qwen2-vl"), bad / "raw.jsonl", out, "--max-steps", "4", "--save-strategy", "no",
                  "--use-lora", "true", "--lora-r", "4", "--freeze-vision-tower", "true", "--skip-bad", "true",
                  "--report-to", "wandb", "--run-name", "test-lora")
    assert summary["skipped"] == 2
    assert [json.loads(x)["id"] for x in (out / "skipped.jsonl").read_text().splitlines()] == ["empty", "gone"]
    assert 0 < summary["trainable_parameters"] < summary["parameters"] / 4
    trace = losses(summary)
    assert trace[-1] < trace[0]
    assert list((tmp_path / "wandb").glob("offline-run-*"))
    # Merged on save: an ordinary checkpoint with the base model's tensor names.
    base = load_file(Path(tiny_models("qwen2-vl")) / "model.safetensors")
    merged = load_file(out / "model.safetensors")
    assert merged.keys() == base.keys()
    vision = [k for k in base if k.startswith("visual.") and ".merger." not in k]
    assert vision and all(torch.equal(base[k], merged[k]) for k in vision)
    assert any(not torch.equal(base[k], merged[k]) for k in base if "q_proj" in k)
    prm = ProcessRewardModel.from_pretrained(str(out), device="cpu")
    assert len(prm.score_group(QUESTION, [Image.new("RGB", (56, 28), "white")], ["a\n\nb\n\nc"])[0].step_scores) == 3


@pytest.mark.parametrize("lora", [False, True])
def test_implicit_prm_trains_from_outcomes_and_scores(tiny_models, data, tmp_path, lora):
    out = tmp_path / "implicit"
    extra = ["--use-lora", "true", "--lora-r", "4"] if lora else []
    # 4 records, batches of 2: steps 3 and 4 see the records of steps 1 and 2 again.
    summary = run(tiny_models("qwen2-vl"), data, out, "--kind", "implicit", "--beta", "0.5", "--max-steps", "4",
                  "--limit", "4", "--save-strategy", "no", "--eval-data", str(SAMPLE_VPB), *extra)
    assert summary["right_outcome_share"] == 0.5  # odd records answer i + 3, not i + 2
    trace = losses(summary)
    assert trace[0] == pytest.approx(0.6931, abs=1e-3)  # the model starts equal to its reference: r = 0
    assert trace[-1] < trace[0]
    assert "eval_macro_f1" in summary["final_eval"]
    info = json.loads((out / "implicit_prm.json").read_text())
    assert info["beta"] == 0.5 and Path(info["reference"]) == Path(tiny_models("qwen2-vl")).resolve()
    prm = ImplicitPRM.from_pretrained(str(out), device="cpu", dtype="float32")
    image = [Image.new("RGB", (56, 28), "white")]
    scored = prm.score_group(QUESTION, image, ["The numbers are 1 and 2.\n\n1 + 2 = 3.", ["x", "y"]])
    assert [len(s.step_scores) for s in scored] == [2, 2]
    assert any(abs(s - 0.5) > 1e-4 for r in scored for s in r.step_scores)  # moved away from its reference


def test_stacked_scorer_is_fitted_saved_and_loaded(tiny_models, data, tmp_path):
    from rewards import load_scorer
    from rewards.stacked import StackedScorer, combine

    policy = tiny_models("qwen2-vl")
    out = tmp_path / "stacked"
    argv = ["--kind", "stacked", "--components", f"prm=scorer:{policy},lik=likelihood:{policy}",
            "--data", str(data), "--output-dir", str(out), "--use-cpu", "true", "--disable-tqdm", "true",
            "--eval-data", str(SAMPLE_VPB)]
    summary = main(*parse([TrainPRMConfig, PRMTrainingArguments], argv, command="train-prm"))
    assert summary["train_steps"] == 24 and summary["wrong_step_share"] == 0.5
    assert len(summary["weights"]) == 2 and all(math.isfinite(w) for w in summary["weights"])
    assert set(summary["component_evals"]) == {"stacked", "prm", "lik"}
    assert "eval_macro_f1" in summary["final_eval"]
    scorer = load_scorer(str(out), device="cpu", dtype="float32")
    assert isinstance(scorer, StackedScorer) and scorer.weights == summary["weights"]
    image = [Image.new("RGB", (56, 28), "white")]
    steps = ["The numbers are 1 and 2.", "1 + 2 = 3."]
    parts = [c.score_group(QUESTION, image, [steps])[0].step_scores for c in scorer.components]
    got = scorer.score_group(QUESTION, image, [steps])[0].step_scores
    assert got == pytest.approx(combine(parts, summary["weights"], summary["bias"]))


def test_cli_and_config_errors(tiny_models, data, tmp_path, capsys):
    assert cli(["train-prm", "--data", "y", "--kind", "stacked"]) == 1
    assert "needs --components" in capsys.readouterr().err
    assert cli(["train-prm", "--data", "y"]) == 1
    assert "needs --init" in capsys.readouterr().err
    assert cli(["train-prm", "--init", "x", "--data", "y", "--kind", "implicit", "--aux-lm-weight", "1"]) == 1
    assert "apply to kind 'prm'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="unknown key"):
        recipe = tmp_path / "r.yaml"
        recipe.write_text("command: train-prm\ninit: x\ndata: y\nlerning_rate: 1\n")
        parse([TrainPRMConfig, PRMTrainingArguments], ["--config", str(recipe)], command="train-prm")
    cfg, args = parse([TrainPRMConfig, PRMTrainingArguments], ["--init", "x", "--data", "y"], command="train-prm")
    assert (args.learning_rate, args.warmup_steps, args.num_train_epochs) == (1e-5, 0.05, 1.0)
    assert args.lr_scheduler_type == "cosine" and cfg.label_loss == "full_vocab" and not cfg.labels_in_input
    with pytest.raises(ValueError, match="no --eval-data"):
        run(tiny_models("qwen2-vl"), data, tmp_path / "o", "--eval-strategy", "steps", "--max-steps", "1")


def test_bag_of_tokens_target_trains_and_is_logged(tiny_models, data, tmp_path):
    summary = run(tiny_models("qwen2-vl"), data, tmp_path / "bag", "--max-steps", "3", "--label-loss", "two_way",
                  "--aux-bag-weight", "0.05", "--save-strategy", "no")
    logs = [h for h in summary["log_history"] if "bag_loss" in h]
    assert len(logs) == 3 and all(math.isfinite(h["bag_loss"]) and h["bag_loss"] > 0 for h in logs)
    assert logs[-1]["bag_loss"] < logs[0]["bag_loss"]
    with pytest.raises(ValueError, match="apply to kind 'prm'"):
        parse([TrainPRMConfig, PRMTrainingArguments], ["--init", "x", "--data", "y", "--kind", "implicit",
                                                        "--aux-bag-weight", "1"], command="train-prm")


def test_balance_outcomes_down_samples_the_larger_class():
    from collections import namedtuple

    from rlvprm.commands.train_prm import balance_outcomes

    Rec = namedtuple("Rec", "id outcome")
    records = [Rec("a", True), Rec("b", False), Rec("c", True), Rec("d", True), Rec("e", False)]
    kept = balance_outcomes(records, seed=0)
    assert [r.outcome for r in kept].count(True) == 2 and [r.outcome for r in kept].count(False) == 2
    assert [r.id for r in kept] == sorted(r.id for r in kept)  # file order kept
    assert balance_outcomes(records, seed=0) == kept
    with pytest.raises(ValueError, match="same outcome"):
        balance_outcomes([Rec("a", True)], seed=0)
    with pytest.raises(ValueError, match="kind 'implicit' only"):
        parse([TrainPRMConfig, PRMTrainingArguments], ["--init", "x", "--data", "y", "--balance-outcomes"],
              command="train-prm")


@pytest.mark.parametrize("lora", [False, True])
def test_likelihood_feature_trains_is_saved_and_scores(tiny_models, data, tmp_path, lora):
    from rewards.likelihood_feature import FEATURE_CONFIG, LikelihoodFeature

    out = tmp_path / "feature"
    extra = ["--use-lora", "true", "--lora-r", "4"] if lora else []
    summary = run(tiny_models("qwen2-vl"), data, out, "--max-steps", "3", "--save-steps", "3", "--label-loss",
                  "two_way", "--aux-lm-weight", "1.0", "--likelihood-feature", "--eval-data", str(SAMPLE_VPB), *extra)
    logs = [h for h in summary["log_history"] if "label_loss" in h]
    assert len(logs) == 3 and all(h["feature_good"] < 0 and h["feature_bad"] < 0 for h in logs)
    assert losses(summary)[-1] < losses(summary)[0]
    assert 0 <= summary["final_eval"]["eval_auc"] <= 1
    assert json.loads((out / "checkpoint-3" / FEATURE_CONFIG).read_text()) == {"weight": 1.0, "bias": 0.0}
    assert json.loads((out / FEATURE_CONFIG).read_text()) == {"weight": 1.0, "bias": 0.0}
    prm = ProcessRewardModel.from_pretrained(str(out), device="cpu", dtype="float32")  # LoRA: merged on save
    assert prm.backend.feature == LikelihoodFeature()
    scores = prm.score_group(QUESTION, [Image.new("RGB", (56, 28), "white")], ["3 + 4 = 7.\n\n\\boxed{7}"])[0]
    assert len(scores.step_scores) == 2
    with pytest.raises(ValueError, match="likelihood_feature apply to kind 'prm'"):
        parse([TrainPRMConfig, PRMTrainingArguments], ["--init", "x", "--data", "y", "--kind", "implicit",
                                                        "--likelihood-feature"], command="train-prm")
    with pytest.raises(ValueError, match="feature_gradient applies with likelihood_feature only"):
        parse([TrainPRMConfig, PRMTrainingArguments], ["--init", "x", "--data", "y", "--feature-gradient"],
              command="train-prm")
