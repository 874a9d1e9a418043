"""Written world folders: published keys, images that open and read back, steps that split back,
labels the checker agrees with, byte-identical files for the same seed."""

import json
from pathlib import Path

from PIL import Image

from rewards.steps import join_steps, split_steps
from rlvprm.world.check import check_solution
from rlvprm.world.config import WorldConfig
from rlvprm.world.render import read_strip
from rlvprm.world.write import make_example, problem_from_row, write_set, write_world


def _rows(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _image(root, rel, kind):
    image = Image.open(root / rel)
    image.load()
    assert image.size == (28 * 6, 28) and image.mode == "RGB"
    return [v for v in read_strip(image, kind) if v is not None]


def test_world_folder_round_trips(tmp_path):
    files = write_world(tmp_path, seed=5, num_prompts=15, num_vpb=30, num_sft=15, progress=False)
    root = files.root

    prompts = _rows(files.prompts)
    assert len(prompts) == 15
    for row in prompts:
        assert set(row) == {"id", "image", "question", "answer", "data_source", "form", "values"}
        assert isinstance(row["image"], str) and row["question"].startswith("<image>\n")
        problem = problem_from_row(row)
        assert _image(root, row["image"], problem.kind) == row["values"]
        assert str(problem.answer) == row["answer"]
        # A list of accepted answers (issue 15: bon raised TypeError on world rows) reads the same truth.
        assert problem_from_row({**row, "answer": [row["answer"], "another spelling"]}) == problem

    vpb = _rows(files.vpb)
    assert {row["error_type"] for row in vpb} == {"none", "perception", "arithmetic"}
    for row in vpb:
        assert set(row) == {"id", "image", "question", "answer", "response", "policy_model", "data_source",
                            "error_type", "form", "values"}
        assert row["policy_model"] == "visual-arith-generator" and len(row["image"]) == 1
        problem = problem_from_row(row)
        assert _image(root, row["image"][0], problem.kind) == row["values"]
        steps, labels = row["response"]["steps"], row["response"]["process_correctness"]
        text = join_steps(steps)
        assert [s.text for s in split_steps(text)] == steps
        assert set(labels) <= {1, -1} and len(labels) == len(steps)
        assert check_solution(problem, text) == [label == 1 for label in labels]
        assert (row["error_type"] == "none") == all(label == 1 for label in labels)

    sft = _rows(files.sft)
    for i, row in enumerate(sft):
        assert set(row) == {"id", "image", "question", "answer", "solution", "reference", "flaws",
                            "process_correctness", "data_source", "form", "values"}
        assert [s.text for s in split_steps(row["solution"])] == list(make_example(5, "sft", i, WorldConfig()).solution.steps)
        problem = problem_from_row(row)
        assert all(check_solution(problem, row["reference"]))
        assert row["reference"].endswith(f"\\boxed{{{row['answer']}}}.")
        assert check_solution(problem, row["solution"]) == [label == 1 for label in row["process_correctness"]]
        assert (row["solution"] == row["reference"]) == (row["flaws"] == [])
    assert any(row["flaws"] for row in sft)  # the default teacher is flawed

    manifest = json.loads(files.manifest.read_text())
    assert manifest["seed"] == 5 and manifest["counts"] == {"prompts": 15, "vpb": 30, "sft": 15}
    assert len(list((root / "images").rglob("*.png"))) == 60


def test_same_seed_same_bytes_and_prefix_stable(tmp_path):
    a = _tree(write_world(tmp_path / "a", seed=1, num_prompts=8, num_vpb=8, num_sft=8, progress=False).root)
    b = _tree(write_world(tmp_path / "b", seed=1, num_prompts=8, num_vpb=8, num_sft=8, progress=False).root)
    c = _tree(write_world(tmp_path / "c", seed=2, num_prompts=8, num_vpb=8, num_sft=8, progress=False).root)
    assert a == b
    assert a["prompts.jsonl"] != c["prompts.jsonl"]
    small = write_set(tmp_path / "small", "vpb", seed=1, num=3, progress=False)
    assert small.read_text().splitlines() == a["vpb_test.jsonl"].decode().splitlines()[:3]


def test_command_line_writes_a_small_world(tmp_path):
    from rlvprm.world.write import main

    files = main([str(tmp_path / "w"), "--seed", "3", "--num-prompts", "2", "--num-vpb", "3", "--num-sft", "0"])
    assert len(files.prompts.read_text().splitlines()) == 2
    assert len(files.vpb.read_text().splitlines()) == 3
    assert files.sft.read_text() == ""


def test_flaw_rates_change_only_the_sft_solutions(tmp_path):
    clean = WorldConfig(flaw_rates=dict.fromkeys(WorldConfig().flaw_rates, 0.0))
    a = _tree(write_world(tmp_path / "a", seed=3, num_prompts=6, num_vpb=6, num_sft=40, progress=False).root)
    b = _tree(write_world(tmp_path / "b", seed=3, num_prompts=6, num_vpb=6, num_sft=40, config=clean,
                          progress=False).root)
    assert {k: v for k, v in a.items() if k not in ("sft.jsonl", "world.json")} == \
        {k: v for k, v in b.items() if k not in ("sft.jsonl", "world.json")}
    flawed, plain = _rows(tmp_path / "a" / "sft.jsonl"), _rows(tmp_path / "b" / "sft.jsonl")
    assert [r["reference"] for r in flawed] == [r["solution"] for r in plain]
    assert all(r["flaws"] == [] and r["solution"] == r["reference"] for r in plain)
