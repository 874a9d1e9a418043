"""MC labels against the world's exact labels: precision and recall of '-' steps, by hand."""

import pytest

from rlvprm.labeling.quality import exact_step_labels, mc_label_quality
from rlvprm.world import problem_from_row

ROW = {"id": "p-1", "data_source": "mixed", "form": "a + b * c", "values": [3, 7, 5],
       "question": "<image>\nWhat is a + b * c?", "answer": "38"}
RIGHT = ["The numbers are 3, 7 and 5.", "7 * 5 = 35.", "3 + 35 = 38.", "The answer is \\boxed{38}."]
WRONG = ["The numbers are 3, 7 and 5.", "3 + 7 = 10.", "10 * 5 = 50.", "The answer is \\boxed{50}."]


def rec(rid, steps, scores):
    return {"id": rid, "steps_with_score": [{"step": s, "score": x, "num_mc_correct": 0, "num_mc_total": 4}
                                            for s, x in zip(steps, scores)]}


def test_exact_labels_per_step_and_with_merged_steps():
    problem = problem_from_row(ROW)
    assert exact_step_labels(problem, RIGHT) == [True] * 4
    assert exact_step_labels(problem, WRONG) == [True, False, False, False]
    merged = ["\n\n".join(WRONG[:2]), "\n\n".join(WRONG[2:])]
    assert exact_step_labels(problem, merged) == [False, False]


def test_precision_and_recall_by_hand():
    records = [
        rec("p-1-r0", RIGHT, [1.0, 0.25, 0.75, 1.0]),  # no exact '-'; '<0.5' wrongly flags step 2
        rec("p-1-r1", WRONG, [0.5, 0.0, 0.25, 0.0]),   # exact: + - - -
    ]
    report = mc_label_quality(records, [ROW])
    assert report["rollouts"] == 2
    every = report["all"]
    assert every["steps"] == 8 and every["exact_wrong"] == 3
    # score == 0 flags r1 steps 2 and 4: both exactly wrong; step 3 (0.25) is missed.
    assert every["rules"]["score == 0"] == {"predicted_wrong": 2, "precision": 1.0, "recall": pytest.approx(2 / 3)}
    # score < 0.5 flags r0 step 2 and r1 steps 2, 3, 4.
    assert every["rules"]["score < 0.5"] == {"predicted_wrong": 4, "precision": 0.75, "recall": 1.0}
    # Continued steps leave out each rollout's last step (scored by its outcome).
    cont = report["continued"]
    assert cont["steps"] == 6 and cont["exact_wrong"] == 2
    assert cont["rules"]["score == 0"] == {"predicted_wrong": 1, "precision": 1.0, "recall": 0.5}
    assert cont["rules"]["score < 0.5"] == {"predicted_wrong": 3, "precision": pytest.approx(2 / 3), "recall": 1.0}


def test_unknown_prompt_id_is_an_error():
    with pytest.raises(KeyError, match="p-9"):
        mc_label_quality([rec("p-9-r0", RIGHT, [1, 1, 1, 1])], [ROW])


def test_exact_records_relabel_rollouts_in_the_vpb_format(tmp_path):
    import json

    from rlvprm.data.records import parse_record
    from rlvprm.labeling.quality import exact_records, main

    raw = [dict(rec("p-1-r0", RIGHT, [1.0, 0.25, 0.75, 1.0]), image="img/p-1.png", question=ROW["question"],
                answer="38", data_source="mixed"),
           dict(rec("p-1-r1", WRONG, [0.5, 0.5, 0.25, 0.0]), image="img/p-1.png", question=ROW["question"],
                answer="38", data_source="mixed")]
    out = exact_records(raw, [ROW])
    assert [r["response"]["process_correctness"] for r in out] == [[1, 1, 1, 1], [1, -1, -1, -1]]
    assert [r["error_type"] for r in out] == ["none", "arithmetic"]
    assert out[1]["image"] == ["img/p-1.png"] and out[1]["response"]["steps"] == WRONG
    parse_record(out[1], 1)  # a valid VisualProcessBench record
    labels, prompts = tmp_path / "raw.jsonl", tmp_path / "prompts.jsonl"
    labels.write_text("".join(json.dumps(r) + "\n" for r in raw))
    prompts.write_text(json.dumps(ROW) + "\n")
    main([str(labels), str(prompts), "--exact-out", str(tmp_path / "exact.jsonl")])
    assert [json.loads(line) for line in (tmp_path / "exact.jsonl").read_text().splitlines()] == out
    with pytest.raises(SystemExit):
        main([str(labels), str(prompts), "--exact-out", str(labels)])
