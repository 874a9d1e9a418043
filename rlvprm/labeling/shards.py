"""Data-parallel shards of a labelling run, and merging them back into one file.

Shard ``i`` of ``n`` labels a contiguous slice of the prompt records (after ``--limit``) and writes
``OUT.shard-i-of-n.jsonl`` (``OUT`` without its ``.jsonl``), so concatenating the shards in order
gives the records in the order of the data file. Since every record is seeded from its own id
(``rlvprm.labeling.mc``), the merged file equals what one unsharded run writes.

:func:`merge_shards` checks that every shard of ``n`` is there, keeps each id once (the first seen)
and writes ``OUT``; the shards' ``.skipped.jsonl`` lists merge the same way. A shard with a torn
last line (still running, or killed) stops the merge: re-run that shard to finish it first.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from rlvprm.data.jsonl import RecordError, read_jsonl


def shard_path(out: str | Path, shard: int, num_shards: int) -> Path:
    """The file shard ``shard`` of ``num_shards`` writes; ``out`` itself when there is one shard.

    >>> shard_path("runs/labels.jsonl", 1, 4).name
    'labels.shard-1-of-4.jsonl'
    """
    out = Path(out)
    if num_shards == 1:
        return out
    return out.with_name(f"{_stem(out)}.shard-{shard}-of-{num_shards}.jsonl")


def skipped_path(out: str | Path) -> Path:
    """Where the records a run passed over are listed: ``OUT.skipped.jsonl``."""
    return Path(str(out) + ".skipped.jsonl")


def shard_slice(num_items: int, shard: int, num_shards: int) -> slice:
    """The contiguous slice of ``num_items`` that shard ``shard`` takes (sizes differ by at most 1).

    >>> [shard_slice(5, i, 2) for i in range(2)]
    [slice(0, 2, None), slice(2, 5, None)]
    """
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard must be in [0, {num_shards}), got {shard}")
    return slice(shard * num_items // num_shards, (shard + 1) * num_items // num_shards)


def find_shards(out: str | Path, num_shards: int | None = None) -> list[Path]:
    """Every shard file of ``out``, in shard order; raises when one is missing or counts disagree."""
    out = Path(out)
    pattern = re.compile(re.escape(_stem(out)) + r"\.shard-(\d+)-of-(\d+)\.jsonl")
    found: dict[int, dict[int, Path]] = {}
    for path in out.parent.glob(f"{_stem(out)}.shard-*-of-*.jsonl"):
        match = pattern.fullmatch(path.name)
        if match:
            found.setdefault(int(match.group(2)), {})[int(match.group(1))] = path
    if num_shards is None:
        if len(found) != 1:
            counts = sorted(found) or "none"
            raise RecordError(f"expected shards of one count next to {out}, found counts {counts}; "
                              "pass --num-shards")
        num_shards = next(iter(found))
    shards = found.get(num_shards, {})
    missing = [i for i in range(num_shards) if i not in shards]
    if missing:
        raise RecordError(f"shard(s) {missing} of {num_shards} are missing next to {out}")
    return [shards[i] for i in range(num_shards)]


def merge_shards(out: str | Path, num_shards: int | None = None) -> dict:
    """Merge the shards of ``out`` into ``out`` (ids de-duplicated, shard order kept)."""
    out = Path(out)
    paths = find_shards(out, num_shards)
    rows, duplicates = _merge(paths, out)
    skipped = [skipped_path(p) for p in paths if skipped_path(p).exists()]
    num_skipped = _merge(skipped, skipped_path(out))[0] if skipped else 0
    return {"shards": len(paths), "rows": rows, "duplicates": duplicates, "skipped": num_skipped,
            "out": str(out)}


def _merge(paths: list[Path], out: Path) -> tuple[int, int]:
    seen: set[str] = set()
    rows = duplicates = 0
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for path in paths:
            if path.stat().st_size and not path.read_bytes().endswith(b"\n"):
                raise RecordError(f"{path} ends in a torn line: is that shard still running, or was it "
                                  "killed? Re-run it (it resumes) before merging")
            for _, row in read_jsonl(path):
                rid = str(row["id"])
                if rid in seen:
                    duplicates += 1
                    continue
                seen.add(rid)
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                rows += 1
    os.replace(tmp, out)
    return rows, duplicates


def _stem(out: Path) -> str:
    return out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name
