"""Training examples for ``rlvprm train-prm``: step-labelled records, outcome-labelled records.

- ``--kind prm`` trains on step labels: VisualPRM400K-v1.1-Raw (``+`` iff the MC score is above a
  threshold) or VisualPRM400K conversations, read by ``rlvprm.labeling.formats.read_prm_records``
  (the reader ``rlvprm label --convert`` uses), which checks every record by building its
  conversation: no steps, an empty step, label counts that do not match the steps, image counts that
  do not match the question, and image files that are not there are errors naming the record, or
  with ``skip_bad`` counted skips. Labels are never shifted to fit.
- ``--kind implicit`` trains on outcome labels (PRIME): a solution and whether its final answer is
  right. :func:`read_outcome_records` takes the solution from ``response`` (a string, or
  VisualProcessBench's ``{steps}``), Raw ``steps_with_score`` or ``conversations``; the outcome from
  an ``outcome`` field (true/false or 1/0) or, failing that, by checking the solution against
  ``answer`` with ``rewards.outcome.outcome_reward``.

Both read a jsonl file, a folder of them, or a hub dataset id (``rlvprm.data.hub``: online or from
the local cache). Images are opened when an example is fetched.

:func:`check_lengths` measures every example with the collator's own encoding once, before
training, so an over-long conversation is an error naming it (or a counted skip) instead of a
batch that fails or a truncation that cuts labels off.
"""

from __future__ import annotations

import logging
import numbers
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Sequence

from PIL import Image
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from rewards.backends.base import find_markup, markup_error
from rewards.conversation import ConversationError, parse_visualprm_conversations
from rewards.images import to_rgb
from rewards.likelihood import solution_steps
from rewards.outcome import accepted_answers
from rewards.prompt import build_prompt_messages
from rewards.steps import join_steps
from rlvprm.data.jsonl import RecordError, read_jsonl
from rlvprm.data.records import open_image
from rlvprm.labeling.formats import PRMRecord, checked_records

log = logging.getLogger(__name__)


class OutcomeRecord(NamedTuple):
    """One solution with its outcome label; ``solution`` is a text or a list of given steps."""

    id: str
    images: list
    question: str
    solution: str | list[str]
    outcome: bool


class Example(NamedTuple):
    """A record with its images opened (what the collators take)."""

    record: PRMRecord | OutcomeRecord
    images: list[Image.Image]


def open_images(record: PRMRecord | OutcomeRecord, image_root: str | Path | None) -> list[Image.Image]:
    """The record's images as RGB (paths are relative to ``image_root``); errors name the record."""
    return [
        to_rgb(image) if isinstance(image, Image.Image) else open_image(image, image_root, record.id)
        for image in record.images
    ]


class RecordDataset(Dataset):
    """Records kept in memory; images opened on access (so data-loader workers share the work)."""

    def __init__(self, records: Sequence[PRMRecord | OutcomeRecord], image_root: str | Path | None):
        self.records = list(records)
        self.image_root = image_root

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Example:
        rec = self.records[i]
        return Example(rec, open_images(rec, self.image_root))


def default_image_root(source: str | Path, image_root: str | Path | None) -> str | None:
    """``image_root`` if given, else the data file's folder (or the data folder); None for hub ids."""
    if image_root is not None:
        return str(image_root)
    path = Path(source)
    if path.is_file():
        return str(path.parent)
    if path.is_dir():
        return str(path)
    return None


def iter_rows(source: str | Path, split: str = "train") -> Iterator[tuple[str, str, dict]]:
    """``(default id, where, row)`` for a jsonl file, a folder of them, or a hub dataset id."""
    path = Path(source)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(path.rglob("*.jsonl"))
        if not files:
            raise RecordError(f"{path} holds no .jsonl files")
    else:
        from rlvprm.data.hub import hub_rows

        yield from hub_rows(str(source), split)
        return
    for file in files:
        for line, row in read_jsonl(file):
            name = str(line) if file == path else f"{file.relative_to(path).as_posix()}:{line}"
            yield name, f"{file}:{line}", row


def parse_outcome_row(row: dict[str, Any], rid: str, where: str) -> OutcomeRecord:
    """An :class:`OutcomeRecord` from one row; :class:`RecordError` names a bad one."""
    rid = str(row["id"]) if row.get("id") is not None else rid
    try:
        images = row.get("images", row.get("image"))
        images = [] if images is None else list(images) if isinstance(images, (list, tuple)) else [images]
        question = row.get("question")
        response = row.get("response")
        if "conversations" in row:
            question, steps, _ = parse_visualprm_conversations(row["conversations"])
            solution: str | list[str] = steps
        elif isinstance(response, str):
            solution = response
        elif isinstance(response, dict) and isinstance(response.get("steps"), list):
            solution = [str(s) for s in response["steps"]]
        elif isinstance(row.get("steps_with_score"), list):
            solution = [s.get("step") if isinstance(s, dict) else None for s in row["steps_with_score"]]
            if not all(isinstance(s, str) for s in solution):
                raise RecordError("a step of 'steps_with_score' has no 'step' text")
        else:
            raise RecordError("no solution: give 'response' (text or {steps}), 'steps_with_score' or 'conversations'")
        if not isinstance(question, str) or not question.strip():
            raise RecordError("no question")
        build_prompt_messages(question, len(images))  # raises on an image count that does not match
        if not solution_steps(solution)[1]:
            raise RecordError("the solution has no steps (empty response)")
        outcome = row.get("outcome")
        if outcome is not None:
            if isinstance(outcome, bool) or (isinstance(outcome, numbers.Real) and outcome in (0, 1)):
                outcome = bool(outcome)
            else:
                raise RecordError(f"'outcome' must be true/false or 1/0, got {outcome!r}")
        elif row.get("answer") is not None and any(a.strip() for a in accepted_answers(row["answer"])):
            from rewards.outcome import outcome_reward

            text = solution if isinstance(solution, str) else join_steps(solution)
            outcome = outcome_reward(text, row["answer"], row.get("choices")) > 0.5
        else:
            raise RecordError("no outcome label: give 'outcome' (true/false) or 'answer' to check the solution against")
    except (ValueError, ConversationError) as err:  # RecordError is a ValueError
        raise RecordError(f"record {rid} ({where}): {err}") from None
    return OutcomeRecord(rid, images, question, solution, outcome)


def read_outcome_records(
    source: str | Path,
    image_root: str | Path | None = None,
    split: str = "train",
    skip_bad: bool = False,
    skipped: list[dict] | None = None,
) -> Iterator[OutcomeRecord]:
    """Yield the outcome-labelled records of ``source``; with ``image_root`` images must exist there."""
    yield from checked_records(iter_rows(source, split), parse_outcome_row, image_root, skip_bad, skipped)


def drop_markup(records: list, markers: Sequence[str], skip_bad: bool, skipped: list[dict]) -> list:
    """``records`` without those whose text holds a special token (an error unless ``skip_bad``).

    Checked on the text alone, before training starts: the collator's encoding refuses such a record
    too (``rewards.backends.base.check_markup``), but only when its batch comes up, mid-run.
    """
    keep = []
    for rec in records:
        parts = [("the question", rec.question)]
        steps = rec.steps if hasattr(rec, "steps") else ([rec.solution] if isinstance(rec.solution, str) else rec.solution)
        parts += [(f"step {k}", text) for k, text in enumerate(steps, 1)]
        found = next(((where, m) for where, text in parts if (m := find_markup(text, markers)) is not None), None)
        if found is None:
            keep.append(rec)
            continue
        reason = f"record {rec.id}: {markup_error(*found)}"
        if not skip_bad:
            raise RecordError(f"{reason} (use --skip-bad to skip and count such records)")
        log.warning("skipping: %s", reason)
        skipped.append({"id": rec.id, "reason": reason})
    return keep


def check_lengths(
    dataset: RecordDataset,
    length_of: Callable[[Example], int],
    max_length: int,
    skip_bad: bool,
    skipped: list[dict],
    progress: bool = True,
) -> RecordDataset:
    """``dataset`` without the examples longer than ``max_length`` tokens (an error unless ``skip_bad``).

    One pass of the processor over the data (``length_of`` is the collator's own encoding), so the
    count includes the image tokens exactly as training will see them.
    """
    keep = []
    for i in tqdm(range(len(dataset)), desc="checking lengths", unit="rec", disable=not progress):
        example = dataset[i]
        n = length_of(example)
        if n <= max_length:
            keep.append(dataset.records[i])
            continue
        reason = f"record {example.record.id}: {n} tokens, over max_length={max_length}"
        if not skip_bad:
            raise RecordError(f"{reason} (raise --max-length, or use --skip-bad to skip and count such records)")
        log.warning("skipping: %s", reason)
        skipped.append({"id": example.record.id, "reason": reason})
    return RecordDataset(keep, dataset.image_root)
