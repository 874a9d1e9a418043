"""What produced a resumable output, recorded beside it, so a resume can never mix two runs.

Long jobs (``score``, ``label``, ``bon``) append to their outputs and skip ids already there. Ids
alone cannot tell whether the lines were written by the same model on the same data with the same
options, so each job records those ``settings`` (a JSON object: the model as given, the data file's
SHA-256, the options that change results) in a small metadata file, and :func:`check_resume`
refuses to resume an output whose recorded settings differ, naming every difference.

An output that exists without a metadata file (written before this check, or by hand) is resumed
and the settings are recorded from then on: nothing tells what produced it, so refusing it would
only block the runs it came from.

Facts learned only once the job has loaded its model (which prompt a PRM writes) are kept beside
the settings under ``"info"`` (:func:`record_info`): written by every run, never compared, since
they follow from the settings. Left out: fingerprinting model weights (the model is recorded as
given; a different model saved at the same path is not noticed).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


INFO = "info"


class RunMismatch(ValueError):
    """An existing output was written by a different run; the message names the differences."""


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, for recording which data an output was computed from."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


WEIGHTS = "model.safetensors"  # a model folder's weights, as `save_pretrained` writes them unsharded


def weights_sha256(folder: str | Path) -> str | None:
    """SHA-256 of a model folder's ``model.safetensors`` (None when it has none: a hub id, sharded weights)."""
    path = Path(folder) / WEIGHTS
    return file_sha256(path) if path.is_file() else None


def check_resume(meta: str | Path, settings: dict[str, Any], output: str | Path, stage: str | None = None) -> None:
    """Record ``settings`` in ``meta``; raise :class:`RunMismatch` if ``output`` was started under others.

    ``stage`` keeps several settings objects in one metadata file (``bon``'s sample and score stages).
    """
    meta, output = Path(meta), Path(output)
    saved = json.loads(meta.read_text()) if meta.exists() else {}
    info = saved.pop(INFO, None)
    old = saved.get(stage) if stage is not None else (saved or None)
    settings = json.loads(json.dumps(settings))  # as it will read back: tuples become lists
    started = output.exists() and output.stat().st_size > 0
    if started and old is not None and old != settings:
        diff = ", ".join(f"{k}: {old.get(k)!r} -> {settings.get(k)!r}" for k in sorted(set(old) | set(settings))
                         if old.get(k) != settings.get(k))
        what = f"{stage} settings" if stage else "settings"
        raise RunMismatch(f"{output} was written with other {what} ({diff}; recorded in {meta}); use another "
                          f"--out, or delete {output.name} to start it again")
    if started and old is None:
        log.warning("%s has no record of what produced it (%s): resuming it and recording this run's settings",
                    output, meta)
    if stage is not None:
        saved[stage] = settings
    else:
        saved = dict(settings)
    if info is not None and old == settings:  # what another run learned is not kept
        saved[INFO] = info
    _write(meta, saved)


def record_info(meta: str | Path, **entries: Any) -> None:
    """Add ``entries`` to the ``"info"`` object of ``meta`` (after :func:`check_resume` wrote it)."""
    meta = Path(meta)
    saved = json.loads(meta.read_text()) if meta.exists() else {}
    saved[INFO] = {**saved.get(INFO, {}), **json.loads(json.dumps(entries))}
    _write(meta, saved)


def _write(meta: Path, saved: dict[str, Any]) -> None:
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps(saved, indent=1, sort_keys=True) + "\n")
