"""The world's VisualProcessBench-format test set reads back through eval-vpb's own reader."""

import json

from rlvprm.commands.eval_vpb import EvalVPBConfig, main as eval_vpb
from rlvprm.data.jsonl import read_jsonl
from rlvprm.data.records import load_images, parse_record
from rlvprm.world.write import write_set


def test_world_vpb_set_evaluates_with_exact_and_flipped_judges(tmp_path):
    path = write_set(tmp_path, "vpb", seed=3, num=40, progress=False)
    rows = list(read_jsonl(path))
    records = [parse_record(raw, line, require_response=True) for line, raw in rows]
    assert all(len(load_images(r, tmp_path)) == 1 for r in records)
    assert {r.data_source for r in records} == {"add", "mixed", "count"}
    # A judge that knows the exact labels, and one that gets every step backwards.
    for name, flip in (("exact", False), ("flipped", True)):
        scores = tmp_path / f"{name}.jsonl"
        with scores.open("w") as fh:
            for r in records:
                s = [float((lab == 1) != flip) for lab in r.labels]
                fh.write(json.dumps({"id": r.id, "step_scores": s}) + "\n")
        metrics = eval_vpb(EvalVPBConfig(data=str(path), scores=str(scores), out=str(tmp_path / name)))
        expected = 0.0 if flip else 1.0
        assert metrics["overall"]["macro_f1"] == expected
        assert metrics["step_weighted_macro_f1"] == expected
        assert set(metrics["sources"]) == {"add", "mixed", "count"}
