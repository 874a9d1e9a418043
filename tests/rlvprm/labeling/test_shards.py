"""Shard file names, contiguous slices that cover the data, and merging shards back."""

import doctest
import json

import pytest

from rlvprm.data.jsonl import RecordError
from rlvprm.labeling import shards
from rlvprm.labeling.shards import find_shards, merge_shards, shard_path, shard_slice, skipped_path


def test_docstring_examples_hold():
    assert doctest.testmod(shards).failed == 0


@pytest.mark.parametrize("n,k", [(0, 3), (5, 1), (7, 3), (10, 4), (2, 5)])
def test_slices_cover_every_item_once_in_order(n, k):
    items = list(range(n))
    assert sum((items[shard_slice(n, i, k)] for i in range(k)), []) == items


def test_names():
    assert shard_path("out/labels.jsonl", 0, 1).as_posix() == "out/labels.jsonl"
    assert shard_path("out/labels.jsonl", 2, 3).as_posix() == "out/labels.shard-2-of-3.jsonl"
    assert shard_path("out/labels", 0, 2).as_posix() == "out/labels.shard-0-of-2.jsonl"
    assert skipped_path("out/labels.jsonl").name == "labels.jsonl.skipped.jsonl"
    with pytest.raises(ValueError):
        shard_slice(4, 2, 2)


def write(path, ids):
    path.write_text("".join(json.dumps({"id": i, "v": f"{path.name}:{i}"}) + "\n" for i in ids))


def test_merge_keeps_shard_order_and_drops_duplicate_ids(tmp_path):
    out = tmp_path / "labels.jsonl"
    write(shard_path(out, 1, 2), ["c", "d", "b"])
    write(shard_path(out, 0, 2), ["a", "b"])
    write(skipped_path(shard_path(out, 1, 2)), ["x"])
    summary = merge_shards(out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b", "c", "d"]
    assert rows[1]["v"] == "labels.shard-0-of-2.jsonl:b"  # the first one seen is kept
    assert summary == {"shards": 2, "rows": 4, "duplicates": 1, "skipped": 1, "out": str(out)}
    assert [json.loads(line)["id"] for line in skipped_path(out).read_text().splitlines()] == ["x"]


def test_missing_shards_mixed_counts_and_torn_lines_stop_the_merge(tmp_path):
    out = tmp_path / "labels.jsonl"
    write(shard_path(out, 0, 3), ["a"])
    write(shard_path(out, 2, 3), ["c"])
    with pytest.raises(RecordError, match=r"shard\(s\) \[1\] of 3 are missing"):
        merge_shards(out)
    write(shard_path(out, 1, 3), ["b"])
    write(shard_path(out, 0, 2), ["a"])
    with pytest.raises(RecordError, match="one count"):
        find_shards(out)
    assert [p.name for p in find_shards(out, 3)] == [f"labels.shard-{i}-of-3.jsonl" for i in range(3)]
    with shard_path(out, 1, 3).open("a") as fh:
        fh.write('{"id": "b2", "v"')
    with pytest.raises(RecordError, match="torn line"):
        merge_shards(out, 3)
    assert not out.exists()
