"""``rlvprm train-prm --kind stacked``: fit a ``rewards.stacked.StackedScorer`` on labelled steps.

Every component (``--components NAME=scorer:PATH`` for anything ``rewards.load_scorer`` loads,
``NAME=likelihood:POLICY`` for the policy's own step probability) scores every step of the
training records (either step-label format, as ``--kind prm`` reads them); a logistic regression
on the components' logits (full-batch L-BFGS, a small L2 penalty ``--stacked-l2``, fp64) gives one
weight per component and a bias. The output folder holds ``stacked_scorer.json`` (components,
weights, bias, training fit) and ``train_prm.json``; ``rewards.load_scorer`` loads it, so
evaluation, Best-of-N and RL take it like any PRM. With ``--eval-data`` the fitted scorer is
evaluated as the other kinds are (``rlvprm.prm_training.evaluation``), and so is every component
alone, so the table says what the combination adds; each component scores the set once.

Left out: resuming (the fit takes minutes: one scoring pass over the data, then L-BFGS), a
held-out split of the fitting data (fit on a dev set, evaluate on the test set), and threshold
tuning (the fitted scorer is calibrated, so 0.5 is meant).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from rewards.prm import Group
from rewards.scorers import load_component
from rewards.stacked import STACKED_CONFIG, combine, component_scores, logit

log = logging.getLogger(__name__)


def parse_components(specs: list[str]) -> list[dict]:
    """``["prm=scorer:runs/prm", "lik=likelihood:POLICY"]`` -> component specs; errors say the form."""
    out, names = [], set()
    for spec in specs:
        name, sep, rest = spec.partition("=")
        kind, sep2, path = rest.partition(":")
        if not (sep and sep2 and name and path) or kind not in ("scorer", "likelihood"):
            raise ValueError(f"component {spec!r}: write NAME=scorer:PATH or NAME=likelihood:POLICY")
        if name in names:
            raise ValueError(f"component name {name!r} appears twice")
        names.add(name)
        out.append({"name": name, "kind": kind, "path": path})
    if not out:
        raise ValueError("--kind stacked needs --components (at least one)")
    return out


def fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float) -> tuple[list[float], float]:
    """Weights and bias of ``P(y=1) = sigmoid(x @ w + b)``, L2 on ``w`` only (mean log-loss + l2 * |w|^2)."""
    x, y = x.double(), y.double()
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=500, tolerance_grad=1e-10, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y) + l2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().tolist(), float(b.detach())


def component_features(components: list, records: list, image_root, batch: int = 16, progress: bool = True):
    """``(features (steps, components), labels (steps,))`` over all records' given steps."""
    from rlvprm.prm_training.data import open_images

    feats, labels = [], []
    bar = tqdm(total=len(records), desc="score components", unit="rec", disable=not progress)
    for start in range(0, len(records), batch):
        recs = records[start : start + batch]
        groups = [Group(r.question, open_images(r, image_root), [list(r.steps)]) for r in recs]
        for rec, (scores,) in zip(recs, component_scores(components, groups)):
            if any(len(s) != len(rec.labels) for s in scores):
                raise ValueError(f"record {rec.id}: a component scored {[len(s) for s in scores]} steps, "
                                 f"the record has {len(rec.labels)} labels")
            for k, label in enumerate(rec.labels):
                feats.append([logit(s[k]) for s in scores])
                labels.append(1.0 if label == "+" else 0.0)
        bar.update(len(recs))
    bar.close()
    return torch.tensor(feats, dtype=torch.float64), torch.tensor(labels, dtype=torch.float64)


def fit_stacked(cfg, args, records: list, image_root, counts: dict, skipped: list[dict]) -> dict:
    """Fit, save and evaluate a stacked scorer (the ``--kind stacked`` branch of ``train-prm``)."""
    from rlvprm.evaluation.vpb import ScoredSteps
    from rlvprm.prm_training.evaluation import eval_groups, flat_metrics, load_eval_set

    start = time.perf_counter()
    specs = parse_components(cfg.components)
    load = dict(device=str(args.device), dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code,
                batch_size=args.per_device_eval_batch_size, max_steps=None)
    components = [load_component(s, **load) for s in specs]
    x, y = component_features(components, records, image_root, progress=not args.disable_tqdm)
    weights, bias = fit_logistic(x, y, cfg.stacked_l2)
    z = x @ torch.tensor(weights, dtype=torch.float64) + bias
    train_acc = float(((z > 0).double() == y).double().mean())
    log.info("stacked fit on %d steps: weights %s, bias %.4f, train accuracy %.4f",
             len(y), dict(zip([s["name"] for s in specs], weights)), bias, train_acc)

    evals = None
    if cfg.eval_data:
        # Each component scores the set once; the stack's scores are combined from those.
        data = load_eval_set(cfg.eval_data, cfg.eval_image_root, cfg.eval_limit)
        per_record = [rows[0] for recs, groups in eval_groups(data) for rows in component_scores(components, groups)]

        def metrics(step_scores) -> dict[str, float]:
            scored = [ScoredSteps(rec.id, list(rec.labels), step_scores(parts), rec.data_source)
                      for rec, parts in zip(data.records, per_record)]
            return flat_metrics(data, scored, cfg.eval_threshold)

        evals = {"stacked": metrics(lambda parts: combine(parts, weights, bias))}
        for j, spec in enumerate(specs):
            evals[spec["name"]] = metrics(lambda parts, j=j: list(parts[j]))
    seconds = time.perf_counter() - start
    summary = {
        "kind": "stacked", "records": len(records), "skipped": len(skipped), **counts,
        "components": specs, "weights": weights, "bias": bias, "train_steps": len(y), "train_accuracy": train_acc,
        "seconds": round(seconds, 1), "final_eval": evals.get("stacked") if evals else None, "component_evals": evals,
    }
    out = Path(args.output_dir)
    if args.should_save:
        out.mkdir(parents=True, exist_ok=True)
        (out / STACKED_CONFIG).write_text(json.dumps(
            {"components": specs, "weights": weights, "bias": bias, "aggregation": "min",
             "fit": {"steps": len(y), "l2": cfg.stacked_l2, "train_accuracy": train_acc, "data": cfg.data}},
            indent=1) + "\n")
        (out / "train_prm.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    named = ", ".join(f"{s['name']} {w:+.3f}" for s, w in zip(specs, weights))
    metric = f", eval macro-F1 {evals['stacked']['eval_macro_f1']:.4f}" if evals else ""
    print(f"train-prm (stacked): {len(records)} records, {len(y)} steps, weights {named}, bias {bias:+.3f}, "
          f"{seconds:.0f} s{metric} -> {out}")
    return summary
