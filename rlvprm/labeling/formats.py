"""The two published step-label formats, written and read exactly (DESIGN.md section 4).

- **VisualPRM400K-v1.1-Raw**, one line per rollout: ``image``, ``question`` (the policy prompt,
  with ``<image>``), ``answer``, ``response``, ``num_mc_sequences``, ``steps_with_score: [{step,
  score, num_mc_correct, num_mc_total}]``, and ``question_orig`` (the question before the policy
  prompt wrapper; rlvprm's policy saw the record's question as given, so it is that). rlvprm adds
  ``id`` (``{record id}-r{k}`` for rollout ``k``) and keeps the prompt's ``data_source``; nothing
  else. ``question_orig`` reads back into :class:`PRMRecord`; the conversation format has no such
  field, so converting drops it (the conversation is built from ``question``, as before).
- **VisualPRM400K conversations**: ``id``, ``image``, ``conversations: [{from, value}]``, built by
  ``rewards.conversation.build_conversation`` (the builder the scorer and the trainer use), with
  the labels in the ``gpt`` turns.

A Raw step is ``+`` iff its score is above the threshold (VisualPRM: 0.0, "some continuation
succeeded"). :func:`read_prm_records` reads either format, telling them apart line by line by
their keys, from a jsonl file, a folder of jsonl files, or a hub dataset id (``rlvprm.data.hub``:
online or from the local cache, tested on a local copy of the published layout). Every record is
checked by building its conversation, so a record that reads is one training can use; a bad one
(no steps, an empty step, a score that is not a number, turns that do not alternate, an image count
that does not match the question's ``<image>`` placeholders, an image file that is not there)
raises :class:`RecordError` naming it, or with ``skip_bad`` is counted and passed over. Labels are
never shifted to fit.

:func:`read_prm_records` also reads **VisualProcessBench** rows (``response.steps`` with
``process_correctness``: 1 is ``+``, -1 is ``-``; a neutral 0 has no label and is an error), so an
exact-label set (the visual-arith world's ``vpb_test.jsonl``) trains or fits a scorer directly.

Left out: images stored inside hub rows when converting (conversion writes paths).
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any, Iterator, NamedTuple

from rewards.conversation import (
    IMAGE_PLACEHOLDER,
    ConversationError,
    build_conversation,
    parse_visualprm_conversations,
    to_visualprm_conversations,
)
from rlvprm.data.jsonl import RecordError, read_jsonl
from rlvprm.data.records import vpb_response
from rlvprm.labeling.mc import Rollout


class PRMRecord(NamedTuple):
    """One solution with step labels, from either format.

    ``images`` are paths as written (relative to an image root), or PIL images when a hub
    dataset stores them; ``labels`` are ``"+"``/``"-"``, one per step.
    """

    id: str
    images: list
    question: str
    steps: list[str]
    labels: list[str]
    question_orig: str | None = None  # Raw rows: the question before the policy prompt wrapper


def rollout_id(record_id: str, k: int) -> str:
    """The id of rollout ``k`` of a prompt record: ``{record_id}-r{k}``."""
    return f"{record_id}-r{k}"


def split_rollout_id(rid: str) -> tuple[str, int]:
    """``(record id, k)`` of a rollout id.

    >>> split_rollout_id("prompts-000003-r2")
    ('prompts-000003', 2)
    """
    head, sep, tail = rid.rpartition("-r")
    if not sep or not tail.isdigit():
        raise ValueError(f"{rid!r} is not a rollout id ('<record id>-r<k>')")
    return head, int(tail)


def policy_question(question: str, num_images: int) -> str:
    """The question as the policy saw it: images first when it has no ``<image>`` placeholder."""
    if num_images and IMAGE_PLACEHOLDER not in question:
        return f"{IMAGE_PLACEHOLDER}\n" * num_images + question
    return question


def raw_record(
    record_id: str,
    rollout: Rollout,
    image: str | list[str],
    question: str,
    answer: str | list[str],
    num_mc: int,
    data_source: str | None = None,
    question_orig: str | None = None,
) -> dict[str, Any]:
    """One VisualPRM400K-v1.1-Raw line for a labelled rollout (``question_orig`` written when given)."""
    rec = {
        "id": rollout_id(record_id, rollout.index),
        "image": image,
        "question": question,
        **({"question_orig": question_orig} if question_orig is not None else {}),
        "answer": answer,
        "response": rollout.response,
        "num_mc_sequences": num_mc,
        "steps_with_score": [s.as_dict() for s in rollout.steps],
    }
    if data_source is not None:
        rec["data_source"] = data_source
    return rec


def step_label(score: float, threshold: float = 0.0) -> str:
    """``+`` iff ``score > threshold``.

    >>> step_label(0.0), step_label(0.0625), step_label(0.4, threshold=0.5)
    ('-', '+', '-')
    """
    return "+" if score > threshold else "-"


def mc_step_score(entry: dict[str, Any], i: int, num_mc: int | None = None) -> float:
    """The MC score of one ``steps_with_score`` entry, checked: :class:`RecordError` says what is wrong.

    A score is a finite number in [0, 1] (a NaN would otherwise become a silent ``-``); when the
    counts are given, ``0 <= num_mc_correct <= num_mc_total``, and ``num_mc_total`` is at most the
    record's ``num_mc_sequences``.
    """
    score = entry.get("score")
    if isinstance(score, bool) or not isinstance(score, numbers.Real):
        raise RecordError(f"step {i + 1} has no numeric 'score' (got {score!r})")
    if not math.isfinite(score) or not 0 <= score <= 1:
        raise RecordError(f"step {i + 1}: MC score {score!r} is not a finite number in [0, 1]")
    correct = _count(entry, "num_mc_correct", f"step {i + 1}")
    total = _count(entry, "num_mc_total", f"step {i + 1}")
    if correct is not None and total is not None and correct > total:
        raise RecordError(f"step {i + 1}: num_mc_correct {correct} is more than num_mc_total {total}")
    if total is not None and num_mc is not None and total > num_mc:
        raise RecordError(f"step {i + 1}: num_mc_total {total} is more than the record's num_mc_sequences {num_mc}")
    return float(score)


def _count(obj: dict[str, Any], key: str, where: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise RecordError(f"{where}: {key} must be a count (an integer >= 0), got {value!r}")
    return int(value)


def parse_prm_row(row: dict[str, Any], rid: str, where: str, threshold: float = 0.0) -> PRMRecord:
    """A :class:`PRMRecord` from one row of either format; :class:`RecordError` names bad ones."""
    rid = str(row["id"]) if row.get("id") is not None else rid
    name = f"record {rid} ({where})"
    question_orig = None
    try:
        images = _image_list(row)
        if "conversations" in row:
            conversations = row["conversations"]
            if not isinstance(conversations, list) or not all(isinstance(c, dict) for c in conversations):
                raise RecordError("'conversations' must be a list of {from, value} turns")
            question, steps, labels = parse_visualprm_conversations(conversations)
        elif "steps_with_score" in row:
            question = row.get("question")
            if not isinstance(question, str):
                raise RecordError("no question")
            entries = row["steps_with_score"]
            if not isinstance(entries, list):
                raise RecordError("'steps_with_score' must be a list")
            steps, labels = [], []
            num_mc = _count(row, "num_mc_sequences", "record")
            for i, entry in enumerate(entries):
                if not isinstance(entry, dict) or not isinstance(entry.get("step"), str):
                    raise RecordError(f"step {i + 1} has no 'step' text")
                score = mc_step_score(entry, i, num_mc)
                steps.append(entry["step"])
                labels.append(step_label(float(score), threshold))
            question_orig = row.get("question_orig")
            if question_orig is not None and not isinstance(question_orig, str):
                raise RecordError(f"'question_orig' must be text (got {type(question_orig).__name__})")
        elif isinstance(row.get("response"), dict) and "process_correctness" in row["response"]:
            question = row.get("question")
            if not isinstance(question, str):
                raise RecordError("no question")
            steps, labels = vpb_response(row["response"])
            if labels is None:
                raise RecordError("response.process_correctness is null")
            if 0 in labels:
                raise RecordError(f"step {labels.index(0) + 1} is labelled 0: only 1 and -1 train (a neutral step "
                                  "has no +/- label)")
            labels = ["+" if x == 1 else "-" for x in labels]
        else:
            raise RecordError("neither 'conversations' (VisualPRM400K), 'steps_with_score' (VisualPRM400K-Raw) "
                              "nor response.process_correctness (VisualProcessBench)")
        # The builder rejects no steps, empty steps and image-count mismatches.
        build_conversation(question, steps, num_images=len(images), labels=labels)
    except (RecordError, ConversationError) as err:
        raise RecordError(f"{name}: {err}") from None
    return PRMRecord(rid, images, question, steps, labels, question_orig)


def read_prm_records(
    source: str | Path,
    threshold: float = 0.0,
    split: str = "train",
    image_root: str | Path | None = None,
    skip_bad: bool = False,
    skipped: list[dict] | None = None,
) -> Iterator[PRMRecord]:
    """Yield the step-labelled records of ``source`` (a jsonl file, a folder of them, or a hub id).

    ``threshold`` applies to Raw scores (conversation rows carry their labels). With
    ``image_root``, image paths must exist under it. With ``skip_bad``, bad records are appended to
    ``skipped`` as ``{id, reason}`` instead of raising.
    """
    parse = lambda row, rid, where: parse_prm_row(row, rid, where, threshold)  # noqa: E731
    yield from checked_records(_rows(source, split), parse, image_root, skip_bad, skipped)


def checked_records(rows, parse, image_root=None, skip_bad: bool = False, skipped: list[dict] | None = None):
    """Parse ``(rid, where, row)`` triples with ``parse``; with ``image_root`` image paths must exist.

    A bad record raises :class:`RecordError` naming it, or with ``skip_bad`` is appended to
    ``skipped`` as ``{id, reason}`` and left out.
    """
    root = Path(image_root) if image_root is not None else None
    for rid, where, row in rows:
        try:
            rec = parse(row, rid, where)
            if root is not None:
                for image in rec.images:
                    if isinstance(image, str) and not (root / image).exists():
                        raise RecordError(f"record {rec.id} ({where}): image {root / image} does not exist")
        except RecordError as err:
            if not skip_bad:
                raise RecordError(f"{err} (use --skip-bad to skip and count such records)") from None
            if skipped is not None:
                skipped.append({"id": str(row.get("id", rid)), "reason": str(err)})
            continue
        yield rec


def conversation_record(rec: PRMRecord) -> dict[str, Any]:
    """The VisualPRM400K conversation line of a record (``image``: one path, or a list of them)."""
    if not all(isinstance(p, str) for p in rec.images):
        raise RecordError(f"record {rec.id}: images held inside the dataset cannot be written as paths")
    conv = build_conversation(rec.question, rec.steps, num_images=len(rec.images), labels=rec.labels)
    image = rec.images[0] if len(rec.images) == 1 else list(rec.images)
    return {"id": rec.id, "image": image, "conversations": to_visualprm_conversations(conv)}


def _image_list(row: dict[str, Any]) -> list:
    images = row.get("images", row.get("image"))
    if images is None:
        return []
    if isinstance(images, (list, tuple)):
        return list(images)
    return [images]


def _rows(source: str | Path, split: str) -> Iterator[tuple[str, str, dict]]:
    """``(default id, where, row)`` for every row; the default id stands in when a row has none."""
    path = Path(source)
    if path.is_file():
        for line, row in read_jsonl(path):
            yield str(line), f"{path}:{line}", row
    elif path.is_dir():
        files = sorted(path.rglob("*.jsonl"))
        if not files:
            raise RecordError(f"{path} holds no .jsonl files")
        for file in files:
            rel = file.relative_to(path).as_posix()
            for line, row in read_jsonl(file):
                yield f"{rel}:{line}", f"{file}:{line}", row
    else:
        from rlvprm.data.hub import hub_rows

        yield from hub_rows(str(source), split)
