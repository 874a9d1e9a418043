"""JSON-lines reading with line-numbered errors, and an append-only writer that resumes.

Long jobs write one line per finished record and flush it, so a crash loses at most the record in
flight; on restart :class:`ResumableWriter` drops a torn last line and reports which ids are done.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator


class RecordError(ValueError):
    """A record that cannot be used; the message names the record."""


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)``; a malformed line raises :class:`RecordError` naming it."""
    path = Path(path)
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise RecordError(f"{path}:{n}: not valid JSON ({err.msg})") from None
            if not isinstance(rec, dict):
                raise RecordError(f"{path}:{n}: expected a JSON object, got {type(rec).__name__}")
            yield n, rec


def write_jsonl(path: str | Path, records) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


class ResumableWriter:
    """Append records to a jsonl file; ``done`` holds the keys of records already there."""

    def __init__(self, path: str | Path, key: str = "id"):
        self.path = Path(path)
        self.key = key
        self.done: set[str] = set()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self._recover()
        self._fh = self.path.open("a", encoding="utf-8")

    def _recover(self) -> None:
        raw = self.path.read_bytes()
        keep = len(raw)
        if raw and not raw.endswith(b"\n"):
            keep = raw.rfind(b"\n") + 1  # a torn last line from a crash
        good = raw[:keep]
        for line in good.decode("utf-8").splitlines():
            if line.strip():
                self.done.add(str(json.loads(line)[self.key]))
        if keep != len(raw):
            with self.path.open("r+b") as fh:
                fh.truncate(keep)

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()
        self.done.add(str(record[self.key]))

    def sync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if not self._fh.closed:
            self.sync()
            self._fh.close()

    def __enter__(self) -> "ResumableWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
