"""What a model's hidden state at the PRM's read positions knows about the step it judges.

For the records of a step-labelled set (VisualPRM400K conversations or VisualProcessBench rows), the
model (a policy to initialise a ``+``/``-`` PRM from) encodes each VisualPRM conversation exactly as
``rewards.ProcessRewardModel`` does; a logistic regression per layer is fitted on the hidden states
at the read positions (or at the last token of each step's text, ``--at step-end``) for two targets:
the step labels, and a content-only control, "the step's text contains the digit 7". Held-out
accuracy next to the majority-class rate says whether the information is there before any PRM
training: if even the control is not decodable, a ``+``/``-`` head has to build the path from the
step's tokens to the read position from scratch.

``--at likelihood`` asks the other question: does the model's own next-token probability of the
step's tokens, in the same PRM conversation, separate right from wrong steps? It prints the AUC
of the likelihood feature (``rewards.likelihood_feature``: each step's least likely token, and its
running minimum over the steps so far) against the step labels, no fitting involved.

    python benchmarks/prm_read_probe.py --model rlvprm/data/checkpoints/toy-policy \\
        --data runs/world-train/vpb_test.jsonl --limit 400
    python benchmarks/prm_read_probe.py --model runs/train-prm/visual-arith --data runs/world/vpb_test.jsonl --at likelihood
"""

from __future__ import annotations

import argparse

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="rlvprm/data/checkpoints/toy-policy", help="model folder")
    parser.add_argument("--data", required=True, help="step-labelled records (conversations or VisualProcessBench)")
    parser.add_argument("--image-root", default=None, help="image folder (default: the data file's folder)")
    parser.add_argument("--limit", type=int, default=400, help="records to encode")
    parser.add_argument("--at", choices=("read", "step-end", "likelihood"), default="read",
                        help="which token's hidden state to probe, or 'likelihood': the AUC of the model's own "
                             "step log-probability feature")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from rewards.conversation import build_conversation
    from rewards.prm import ProcessRewardModel
    from rlvprm.labeling.formats import read_prm_records
    from rlvprm.prm_training.data import default_image_root, open_images
    from rlvprm.prm_training.stacked import fit_logistic

    root = default_image_root(args.data, args.image_root)
    records = [r for _, r in zip(range(args.limit), read_prm_records(args.data, image_root=root))]
    backend = ProcessRewardModel.from_pretrained(args.model, device="cpu", dtype="float32").backend
    if args.at == "likelihood":
        likelihood_aucs(backend, records, root)
        return
    end_id = backend.processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    feats: dict[int, list[torch.Tensor]] = {}
    control, labels = [], []
    for start in range(0, len(records), 16):
        chunk = records[start : start + 16]
        convs = [build_conversation(r.question, r.steps, num_images=len(r.images)) for r in chunk]
        batch = backend.encode(convs, [open_images(r, root) for r in chunk])
        with torch.no_grad():
            out = backend.model(**{k: v for k, v in batch.inputs.items() if isinstance(v, torch.Tensor)},
                                output_hidden_states=True, use_cache=False)
        ids = batch.inputs["input_ids"]
        for i, (rec, positions) in enumerate(zip(chunk, batch.read_positions)):
            for step, label, p in zip(rec.steps, rec.labels, positions):
                if args.at == "step-end":  # the token before the user turn's end marker
                    while ids[i, p].item() != end_id:
                        p -= 1
                    p -= 1
                for layer, h in enumerate(out.hidden_states):
                    feats.setdefault(layer, []).append(h[i, p])
                control.append(1.0 if "7" in step else 0.0)
                labels.append(1.0 if label == "+" else 0.0)
    n = len(labels)
    cut = int(n * 0.75)
    print(f"{len(records)} records, {n} steps (fit on {cut}, held out {n - cut}); hidden state at the {args.at} token")
    print(f"{'layer':>5} {'target':>12} {'held-out acc':>13} {'majority':>9}")
    for layer, rows in feats.items():
        x = torch.stack(rows).double()
        x = (x - x[:cut].mean(0)) / (x[:cut].std(0) + 1e-6)
        for name, target in (("contains 7", control), ("step label", labels)):
            y = torch.tensor(target, dtype=torch.float64)
            w, b = fit_logistic(x[:cut], y[:cut], l2=1e-3)
            acc = float((((x[cut:] @ torch.tensor(w, dtype=torch.float64) + b) > 0).double() == y[cut:]).double().mean())
            majority = float(max(y[cut:].mean(), 1 - y[cut:].mean()))
            print(f"{layer:>5} {name:>12} {acc:>13.3f} {majority:>9.3f}")


def likelihood_aucs(backend, records, root) -> None:
    """AUC of each step's least likely token and of its running minimum, against the step labels."""
    from rewards.conversation import build_conversation
    from rewards.likelihood_feature import feature_positions, running_min_feature, step_min_logprobs
    from rlvprm.evaluation.vpb import auc
    from rlvprm.prm_training.data import open_images

    step_min: dict[str, list[float]] = {"+": [], "-": []}
    running: dict[str, list[float]] = {"+": [], "-": []}
    for start in range(0, len(records), 16):
        chunk = records[start : start + 16]
        convs = [build_conversation(r.question, r.steps, num_images=len(r.images)) for r in chunk]
        batch = backend.encode(convs, [open_images(r, root) for r in chunk], step_spans=True)
        keep = torch.tensor(feature_positions(batch.step_spans))
        inputs = {k: v for k, v in batch.inputs.items() if isinstance(v, torch.Tensor)}
        with torch.no_grad():
            logits = backend.model(**inputs, logits_to_keep=keep, use_cache=False).logits
            ids = batch.inputs["input_ids"]
            own = step_min_logprobs(logits, keep, ids, batch.step_spans)
            run = running_min_feature(logits, keep, ids, batch.step_spans)
        for i, rec in enumerate(chunk):
            for k, label in enumerate(rec.labels):
                step_min[label].append(own[i, k].item())
                running[label].append(run[i, k].item())
    n = sum(len(v) for v in running.values())
    print(f"{len(records)} records, {n} steps ({len(running['-'])} wrong)")
    print(f"AUC of the step's least likely token:       {auc(step_min['+'], step_min['-']):.3f}")
    print(f"AUC of its running minimum (the feature):   {auc(running['+'], running['-']):.3f}")


if __name__ == "__main__":
    main()
