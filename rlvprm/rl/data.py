"""A prompt set (DESIGN.md section 4) as the ``datasets.Dataset`` that TRL's GRPO trainer reads.

Each row becomes:

- ``prompt``: the policy's chat messages (``rlvprm.generation.build_prompt_messages``: one user turn,
  the images where ``<image>`` stands), with empty image slots that TRL fills from ``images``;
- ``images``: the row's images, decoded lazily from their paths (only when the row has images);
- ``question``, ``answer``, ``choices``, ``id`` and every other column of the record (the visual-arith
  world's ``form`` and ``values``, say), which TRL hands to reward functions as keyword arguments.

A prompt set with no images at all gives a text-only dataset (no ``images`` column). Records are
checked with ``rlvprm.data.records.parse_record``; a missing image file is an error naming the
record, found before training starts.

Left out: hub dataset ids (load them with ``datasets`` and map rows through :func:`prompt_row`),
and prompt sets that mix rows with and without images (TRL batches them, the processors of some
architectures do not).
"""

from __future__ import annotations

from pathlib import Path

from rlvprm.data.jsonl import RecordError, read_jsonl
from rlvprm.data.records import Record, parse_record
from rlvprm.generation import build_prompt_messages


def prompt_row(record: Record, image_root: Path) -> dict:
    """The dataset row of one prompt record (``images`` as absolute paths, decoded by ``datasets``)."""
    if record.answer is None:
        raise RecordError(f"record {record.id}: no answer (GRPO's outcome reward needs one)")
    try:
        prompt = build_prompt_messages(record.question, len(record.image_paths))
    except ValueError as err:
        raise RecordError(f"record {record.id}: {err}") from None
    row = {
        "prompt": prompt,
        "question": record.question,
        "answer": record.answer,
        "choices": record.choices,
        "id": record.id,
        **record.extra,
    }
    if record.data_source is not None:
        row["data_source"] = record.data_source
    paths = []
    for rel in record.image_paths:
        path = image_root / rel
        if not path.exists():
            raise RecordError(f"record {record.id}: image {path} does not exist")
        paths.append(str(path.resolve()))
    row["images"] = paths
    return row


def load_prompt_dataset(path: str | Path, image_root: str | Path | None = None, limit: int | None = None):
    """The prompt set at ``path`` (jsonl) as a ``datasets.Dataset`` for ``GRPOTrainer``.

    ``image_root`` defaults to the file's folder; ``limit`` keeps the first rows.
    """
    import datasets

    path = Path(path)
    root = Path(image_root) if image_root else path.parent
    rows = []
    for line, raw in read_jsonl(path):
        if limit is not None and len(rows) >= limit:
            break
        rows.append(prompt_row(parse_record(raw, line), root))
    if not rows:
        raise RecordError(f"{path} holds no prompt records")
    with_images = [bool(r["images"]) for r in rows]
    if any(with_images) and not all(with_images):
        missing = [r["id"] for r, has in zip(rows, with_images) if not has][:5]
        raise RecordError(f"{path} mixes rows with and without images (no image: {missing}...); split the set")
    if not any(with_images):
        for r in rows:
            del r["images"]
    dataset = datasets.Dataset.from_list(rows)
    if "images" in dataset.column_names:
        dataset = dataset.cast_column("images", datasets.Sequence(datasets.Image(mode="RGB")))
    return dataset
