"""The records rlvprm reads: prompt sets and VisualProcessBench, normalised to one shape.

A prompt record has ``id``, ``image`` or ``images`` (paths relative to ``image_root``), ``question``,
``answer`` and optionally ``response`` (a solution string), ``data_source`` and ``choices``.
A VisualProcessBench record has ``image`` (a list of paths), ``question``, ``answer``,
``response: {steps, process_correctness}``, ``policy_model`` and ``data_source``; it has no id, so
its line number stands in. Every problem raises :class:`RecordError` naming the record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from rewards.images import to_rgb
from rewards.outcome import accepted_answers
from rlvprm.data.jsonl import RecordError


@dataclass
class Record:
    id: str
    question: str
    image_paths: list[str]
    answer: str | list[str] | None = None  # one accepted answer, or several (rewards.outcome.accepted_answers)
    response: str | list[str] | None = None  # a solution text, or given steps (VisualProcessBench)
    labels: list[int] | None = None  # VisualProcessBench process_correctness: 1, 0 (neutral), -1
    data_source: str | None = None
    choices: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def parse_record(raw: dict[str, Any], line: int, require_response: bool = False) -> Record:
    """Normalise one raw jsonl record (prompt-set or VisualProcessBench format)."""
    rid = str(raw["id"]) if raw.get("id") is not None else str(line)
    where = f"record {rid} (line {line})"
    question = raw.get("question")
    if not isinstance(question, str) or not question.strip():
        raise RecordError(f"{where}: no question")
    images = raw.get("images", raw.get("image"))
    if images is None:
        paths: list[str] = []
    elif isinstance(images, str):
        paths = [images]
    elif isinstance(images, list) and all(isinstance(p, str) for p in images):
        paths = list(images)
    else:
        raise RecordError(f"{where}: 'image'/'images' must be a path or a list of paths")
    response = raw.get("response")
    labels = None
    if isinstance(response, dict):
        try:
            response, labels = vpb_response(response)
        except RecordError as err:
            raise RecordError(f"{where}: {err}") from None
    elif response is not None and not isinstance(response, str):
        raise RecordError(f"{where}: response must be a string or {{steps: [...]}}")
    if require_response and (response is None or (isinstance(response, str) and not response.strip())
                             or (isinstance(response, list) and not any(s.strip() for s in response))):
        raise RecordError(f"{where}: empty response")
    answer = raw.get("answer")
    if answer is not None:
        try:
            accepted = accepted_answers(answer)
        except ValueError as err:
            raise RecordError(f"{where}: {err}") from None
        answer = accepted if isinstance(answer, (list, tuple)) else accepted[0]
    known = {"id", "question", "image", "images", "answer", "response", "data_source", "choices"}
    return Record(
        id=rid,
        question=question,
        image_paths=paths,
        answer=answer,
        response=response,
        labels=labels,
        data_source=raw.get("data_source"),
        choices=raw.get("choices"),
        extra={k: v for k, v in raw.items() if k not in known},
    )


def has_answer(record: Record) -> bool:
    """Whether the record gives an answer to check against (some accepted answer is not blank)."""
    answers = [record.answer] if isinstance(record.answer, str) else (record.answer or [])
    return any(a.strip() for a in answers)


def vpb_response(response: dict[str, Any]) -> tuple[list[str], list[int] | None]:
    """``(steps, process_correctness)`` of a VisualProcessBench ``response`` (labels None when absent).

    Raises :class:`RecordError` saying what is wrong (the caller names the record).
    """
    steps = response.get("steps")
    if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
        raise RecordError("response.steps must be a list of strings")
    labels = response.get("process_correctness")
    if labels is not None:
        if not isinstance(labels, list) or len(labels) != len(steps):
            count = len(labels) if isinstance(labels, list) else "no list of"
            raise RecordError(f"response.steps and process_correctness differ in length ({len(steps)} steps, "
                              f"{count} labels)")
        if any(x not in (1, 0, -1) for x in labels):
            raise RecordError("process_correctness values must be 1, 0 or -1")
    return steps, labels


def load_images(record: Record, image_root: str | Path | None) -> list[Image.Image]:
    """Open the record's images as RGB; a missing or unreadable file raises naming the record."""
    return [open_image(rel, image_root, record.id) for rel in record.image_paths]


def open_image(rel: str | Path, image_root: str | Path | None, record_id: str) -> Image.Image:
    """One image as RGB (``rewards.images.to_rgb``), its path relative to ``image_root``; errors name the record."""
    path = (Path(image_root) if image_root else Path(".")) / rel
    if not path.exists():
        raise RecordError(f"record {record_id}: image {path} does not exist")
    try:
        with Image.open(path) as im:
            # Oriented as a viewer shows it; 16-bit, palette, alpha and CMYK keep their picture.
            return to_rgb(ImageOps.exif_transpose(im))
    except (UnidentifiedImageError, OSError) as err:
        raise RecordError(f"record {record_id}: image {path} cannot be read ({err})") from None
