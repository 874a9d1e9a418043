"""Published datasets by hub id, from an offline Hugging Face cache built on disk in their layouts.

Each cache entry is ``datasets--OpenGVLab--NAME/refs/main`` + ``snapshots/<commit>/`` holding the
dataset card's YAML header as published and a few rows in the published files and columns
(``rlvprm/data/hub.py`` says where the layouts come from). ``datasets`` and ``huggingface_hub`` run
for real; nothing is mocked but the cache location and offline flag.
"""

import json
import zipfile
from pathlib import Path

import pytest

from rlvprm.data.jsonl import RecordError
from rlvprm.data.hub import load_hub_split

COMMIT = "fedcba9876543210fedcba9876543210fedcba98"

# The YAML headers of the published cards (VisualProcessBench declares every column a string,
# which does not match test.jsonl: loading must not apply it).
VPB_CARD = """---
license: mit
task_categories:
- visual-question-answering
language:
- en
pretty_name: VisualProcessBench
dataset_info:
  features:
  - name: image
    dtype: string
  - name: question
    dtype: string
  - name: answer
    dtype: string
  - name: response
    dtype: string
  - name: policy_model
    dtype: string
  - name: data_source
    dtype: string
size_categories:
- 1K<n<10K
configs:
- config_name: default
  data_files:
  - split: test
    path: "test.jsonl"
---

# VisualProcessBench
"""
RAW_CARD = """---
license: mit
task_categories:
- visual-question-answering
language:
- en
pretty_name: VisualPRM400K-v1.1
size_categories:
- 100K<n<1M
configs:
- config_name: default
  data_files:
  - split: train
    path: "annotations.zip"
---

# VisualPRM400K-v1.1
"""
VPB_ROWS = [
    {"image": ["images/MMMU/a.png"], "question": "<image>\nWhat is 2+3?", "answer": "5",
     "response": {"steps": ["2 + 3 = 5.", "The answer is 5."], "process_correctness": [1, 1]},
     "policy_model": "InternVL2.5-8B", "data_source": "MMMU"},
    {"image": ["images/MathVision/b.png", "images/MathVision/c.png"], "question": "Which is larger?", "answer": "A",
     "response": {"steps": ["A is 4.", "B is 6.", "So A."], "process_correctness": [1, 0, -1]},
     "policy_model": "GPT-4o", "data_source": "MathVision"},
]
RAW_ROWS = [
    {"image": "geoqa/1.png", "question": "<image>\nFind x. Answer with a number.", "question_orig": "Find x.",
     "answer": "3", "response": "x + 1 = 4.\n\nSo x = 3.", "num_mc_sequences": 16,
     "steps_with_score": [{"step": "x + 1 = 4.", "score": 0.75, "num_mc_correct": 12, "num_mc_total": 16},
                          {"step": "So x = 3.", "score": 0.0, "num_mc_correct": 0, "num_mc_total": 16}]},
]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh offline hub cache with both published datasets, and ``datasets`` caching under tmp."""
    import datasets
    from huggingface_hub import constants

    hub = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)

    def entry(name: str) -> Path:
        repo = hub / f"datasets--OpenGVLab--{name}"
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(COMMIT)
        snap = repo / "snapshots" / COMMIT
        snap.mkdir(parents=True)
        return snap

    vpb = entry("VisualProcessBench")
    (vpb / "README.md").write_text(VPB_CARD)
    (vpb / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in VPB_ROWS))
    with zipfile.ZipFile(vpb / "images.zip", "w") as z:  # published beside the data; never read as data
        z.writestr("images/MMMU/a.png", b"not an image")
    raw = entry("VisualPRM400K-v1.1-Raw")
    (raw / "README.md").write_text(RAW_CARD)
    with zipfile.ZipFile(raw / "annotations.zip", "w") as z:
        z.writestr("annotations/geoqa_raw.jsonl", "".join(json.dumps(r) + "\n" for r in RAW_ROWS))
    return hub


def test_visualprocessbench_test_split_with_its_published_columns(cache):
    ds = load_hub_split("OpenGVLab/VisualProcessBench", "test")
    assert len(ds) == 2
    assert ds[1]["image"] == ["images/MathVision/b.png", "images/MathVision/c.png"]  # a list of paths
    assert ds[1]["response"] == {"steps": ["A is 4.", "B is 6.", "So A."], "process_correctness": [1, 0, -1]}
    assert [r["data_source"] for r in ds] == ["MMMU", "MathVision"]


def test_visualprm400k_raw_train_split_from_its_annotations_zip(cache):
    ds = load_hub_split("OpenGVLab/VisualPRM400K-v1.1-Raw", "train")
    (row,) = list(ds)
    assert row["image"] == "geoqa/1.png" and row["question_orig"] == "Find x."
    assert [s["score"] for s in row["steps_with_score"]] == [0.75, 0.0]


def test_a_split_the_card_does_not_name_is_an_error_listing_the_splits(cache):
    with pytest.raises(RecordError, match="has no split 'train'; its splits: test"):
        load_hub_split("OpenGVLab/VisualProcessBench", "train")


def test_a_dataset_in_no_cache_is_an_error_naming_it(cache):
    with pytest.raises(RecordError, match="'OpenGVLab/VisualPRM400K' is neither .* found online or in the caches"):
        load_hub_split("OpenGVLab/VisualPRM400K", "train")


def test_label_reads_the_raw_hub_id(cache):
    from rlvprm.labeling.formats import read_prm_records

    (rec,) = list(read_prm_records("OpenGVLab/VisualPRM400K-v1.1-Raw", threshold=0.0))
    assert rec.steps == ["x + 1 = 4.", "So x = 3."] and rec.labels == ["+", "-"]
    assert rec.images == ["geoqa/1.png"] and rec.question_orig == "Find x."


def test_eval_vpb_takes_the_hub_id(cache, tmp_path):
    from rlvprm.commands.eval_vpb import EvalVPBConfig, main

    scores = tmp_path / "scores.jsonl"
    scores.write_text(json.dumps({"id": "1", "step_scores": [0.9, 0.8]}) + "\n"
                      + json.dumps({"id": "2", "step_scores": [0.7, 0.6, 0.2]}) + "\n")
    report = main(EvalVPBConfig(data="OpenGVLab/VisualProcessBench", scores=str(scores), out=str(tmp_path / "out"),
                                sweep=False))
    # 4 labelled steps (the neutral one left out), all judged right at 0.5: macro-F1 1.
    assert report["overall"]["n_records"] == 2 and report["overall"]["macro_f1"] == pytest.approx(1.0)
    assert (tmp_path / "out" / "data.jsonl").read_text().count("\n") == 2
