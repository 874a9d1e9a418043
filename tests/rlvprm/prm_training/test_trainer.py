"""The PRM trainer's auxiliary bag-of-tokens target, on hand-made tensors."""

import math

import pytest
import torch

from rlvprm.prm_training.trainer import bag_of_tokens_loss


def test_bag_of_tokens_loss_by_hand():
    # One row, two read positions: step 0 holds tokens {1, 2}, step 1 holds token {3}.
    input_ids = torch.tensor([[5, 1, 2, 9, 3, 9]])
    step_index = torch.tensor([[-1, 0, 0, -1, 1, -1]])
    rows = torch.tensor([0, 0])
    zero = torch.zeros(2, 8)
    assert bag_of_tokens_loss(zero, input_ids, step_index, rows).item() == pytest.approx(8 * math.log(2))
    right = torch.full((2, 8), -20.0)
    right[0, [1, 2]] = 20.0
    right[1, 3] = 20.0
    assert bag_of_tokens_loss(right, input_ids, step_index, rows).item() == pytest.approx(0.0, abs=1e-6)
    swapped = right.flip(0)  # each position predicting the other step's bag
    assert bag_of_tokens_loss(swapped, input_ids, step_index, rows).item() == pytest.approx(3 * 20.0, rel=1e-3)


def test_read_positions_of_several_rows_find_their_own_steps():
    input_ids = torch.tensor([[4, 1, 9, 0], [2, 9, 3, 9]])
    step_index = torch.tensor([[0, 0, -1, -1], [0, -1, 1, -1]])
    rows = torch.tensor([0, 1, 1])
    logits = torch.full((3, 5), -20.0)
    logits[0, [4, 1]] = 20.0
    logits[1, 2] = 20.0
    logits[2, 3] = 20.0
    assert bag_of_tokens_loss(logits, input_ids, step_index, rows).item() == pytest.approx(0.0, abs=1e-6)


def test_step_numbers_count_read_positions_within_each_row():
    from rlvprm.prm_training import trainer

    assert trainer.step_numbers(torch.tensor([0, 0, 1, 1, 1, 4])).tolist() == [0, 1, 0, 1, 2, 0]
    assert trainer.step_numbers(torch.tensor([], dtype=torch.long)).tolist() == []


def test_label_loss_with_a_likelihood_feature_is_the_scorers_cross_entropy(tiny_models, raw_file, tmp_path):
    """The trainer's label loss sees the '+' logit with the feature added, exactly as the scorer reads it."""
    from transformers import TrainingArguments

    from rewards.backends.hf import HFBackend
    from rewards.likelihood_feature import LikelihoodFeature
    from rewards.prm import ProcessRewardModel
    from rlvprm.labeling.formats import read_prm_records
    from rlvprm.prm_training.collate import StepLabelCollator
    from rlvprm.prm_training.data import RecordDataset
    from rlvprm.prm_training.model import load_model
    from rlvprm.prm_training.trainer import PRMTrainer

    model, processor = load_model(tiny_models("qwen2-vl"), torch.float32)
    feature = LikelihoodFeature(weight=0.7, bias=0.3)
    dataset = RecordDataset(list(read_prm_records(raw_file, image_root=raw_file.parent)), raw_file.parent)
    examples = [dataset[i] for i in range(4)]
    collator = StepLabelCollator(processor, feature_spans=True)
    batch = collator(examples)
    assert batch["step_spans"].shape == (4, 3, 2) and (batch["step_spans"][2, 2] == -1).all()  # record 2: 2 steps
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    trainer = PRMTrainer(model=model, args=args, kind="prm", processor=processor, label_loss="two_way",
                         likelihood_feature=feature, good_id=collator.good_id, bad_id=collator.bad_id)
    with torch.no_grad():
        loss = trainer.compute_loss(model, dict(batch)).item()
    scorer = ProcessRewardModel(HFBackend(model, processor, feature=feature))
    nll = []
    for ex in examples:
        probs = scorer.score_group(ex.record.question, ex.images, [ex.record.steps])[0].step_scores
        nll += [-math.log(p if label == "+" else 1 - p) for p, label in zip(probs, ex.record.labels)]
    assert loss == pytest.approx(sum(nll) / len(nll), rel=1e-4)
    assert set(trainer._metrics) >= {"feature_good", "feature_bad", "label_loss"}
    # By default the label loss does not reach the step tokens through the feature: its gradient at
    # the positions kept only for the feature is zero; with feature_gradient it is not.
    from rewards.likelihood_feature import feature_positions

    read = set((batch["step_targets"] != -100).nonzero()[:, 1].tolist())
    spans = [[(a, b) for a, b in row if a >= 0] for row in batch["step_spans"].tolist()]
    keep = sorted(read | set(feature_positions(spans)))
    only_feature = [j for j, p in enumerate(keep) if p not in read]
    assert only_feature
    for through in (False, True):
        trainer.feature_gradient = through
        seen = []
        def keep_grad(module, args, out):
            out.retain_grad()
            seen.append(out)

        hook = model.lm_head.register_forward_hook(keep_grad)
        trainer.compute_loss(model, dict(batch)).backward()
        hook.remove()
        model.zero_grad()
        assert seen[0].shape[1] == len(keep)
        assert (seen[0].grad[:, only_feature].abs().sum().item() > 0) == through
