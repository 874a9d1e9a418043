"""JSON-lines reading with line-numbered errors, and an append-only writer that resumes.

The input contract for jsonl files lives here, in one place: every error names the file and line
(bad JSON, a line that is not an object, bytes that are not UTF-8); ids are unique wherever outputs
are keyed by them (:func:`check_unique_ids`); an output never overwrites an input
(:func:`check_out_not_input`).

Long jobs write one line per finished record and flush it, so a crash loses at most the record in
flight; on restart :class:`ResumableWriter` drops a torn last line and reports which ids are done.
Any other bad line of an existing output (corrupt JSON in the middle, a line without the key) is an
error naming the file and line: only a kill can tear the last line, anything else means the file is
not what this run wrote.
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
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise RecordError(f"{path}:{n}: not UTF-8 text (byte {raw[err.start]:#04x} at column "
                                  f"{err.start + 1})") from None
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise RecordError(f"{path}:{n}: not valid JSON ({err.msg})") from None
            if not isinstance(rec, dict):
                raise RecordError(f"{path}:{n}: expected a JSON object, got {type(rec).__name__}")
            yield n, rec


def record_id(raw: dict[str, Any], line: int) -> str:
    """A record's id: its ``id`` field as text, or its line number when it has none."""
    return str(raw["id"]) if raw.get("id") is not None else str(line)


def check_unique_ids(rows: list[tuple[int, dict[str, Any]]], path: str | Path) -> None:
    """Refuse two records with one id: outputs keyed by id would pair or drop them silently."""
    seen: dict[str, int] = {}
    for line, raw in rows:
        rid = record_id(raw, line)
        if rid in seen:
            raise RecordError(f"{path}:{line}: record id {rid!r} appears on lines {seen[rid]} and {line}; "
                              "ids must be unique (outputs are keyed by id)")
        seen[rid] = line


def check_out_not_input(out: str | Path, *inputs: str | Path | None, option: str = "--out") -> None:
    """Refuse an output path that is one of the inputs: resuming or writing would read or destroy it."""
    out = Path(out)
    for inp in inputs:
        if inp is None:
            continue
        inp = Path(inp)
        same = out.resolve() == inp.resolve() or (out.exists() and inp.exists() and os.path.samefile(out, inp))
        if same:
            raise RecordError(f"{option} {out} is the input file {inp}: write the output elsewhere")
        if inp.is_dir() and out.suffix == ".jsonl" and inp.resolve() in out.resolve().parents:
            # A folder input is read as all its .jsonl files: the output would be read back next time.
            raise RecordError(f"{option} {out} lies inside the input folder {inp}: write the output elsewhere")


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
        for n, line in enumerate(good.split(b"\n"), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise RecordError(f"{self.path}:{n}: existing output line is not valid JSON; this file was not "
                                  "written by an interrupted run of this command: use another --out or "
                                  "delete it") from None
            if not isinstance(rec, dict) or rec.get(self.key) is None:
                raise RecordError(f"{self.path}:{n}: existing output line has no {self.key!r}; use another "
                                  "--out or delete it")
            self.done.add(str(rec[self.key]))
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
