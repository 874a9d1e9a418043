"""Published datasets by hub id (VisualProcessBench, VisualPRM400K-v1.1-Raw), online or from a local cache.

    rows = load_hub_split("OpenGVLab/VisualProcessBench", "test")

The repo's files come through ``huggingface_hub`` (``snapshot_download``): its cache
(``HF_HUB_CACHE``), ``revision``, ``token`` and offline mode (``HF_HUB_OFFLINE``) behave as for
models, so a dataset fetched once (``hf download --repo-type dataset ID``, or an earlier online run)
loads offline. The split's data files are the ones the dataset card's ``configs`` name, and they
are read with ``datasets``' ``json`` / ``parquet`` builders (cached in ``HF_DATASETS_CACHE``) with
the columns as they are in the files. Only when no snapshot of the repo can be had does it fall
back to ``datasets.load_dataset(ID, split=...)`` (offline, that finds a dataset ``datasets``
itself prepared earlier).

Why not ``datasets.load_dataset(ID)`` alone (checked with datasets 5.2 on locally built copies of
the published layouts, ``tests/rlvprm/data/test_hub.py``): offline it never looks in the hub cache,
only in its own prepared cache; and VisualProcessBench's card declares every column a ``string``
(``dataset_info.features``) while ``image`` is a list and ``response`` an object in ``test.jsonl``,
so building from the card fails with "Couldn't cast array of type list<item: string> to string".

The published layouts, as their dataset cards and file listings on the hub show them (read
through the search tool; no file was downloaded here):
- ``OpenGVLab/VisualProcessBench``: ``README.md`` (config ``default``, split ``test`` ->
  ``test.jsonl``), ``test.jsonl`` (``image``: a list of paths, ``question``, ``answer``,
  ``response: {steps, process_correctness}``, ``policy_model``, ``data_source``), ``images.zip``.
- ``OpenGVLab/VisualPRM400K-v1.1-Raw``: ``README.md`` (config ``default``, split ``train`` ->
  ``annotations.zip``), ``annotations.zip`` (jsonl inside: ``image`` one path, ``question``,
  ``answer``, ``response``, ``steps_with_score``, ``num_mc_sequences``; ``question_orig`` per the
  InternVL pipeline code), ``images.zip`` (21.6 GB).
Assumed, not seen: the names of the files inside ``annotations.zip`` (any ``.jsonl`` is read) and
the layout inside ``images.zip`` (the image paths are relative to where it is extracted: pass that
folder as ``--image-root``). The image archives are never downloaded here: ``images.zip`` is not a
data file of any split.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator

from rlvprm.data.jsonl import RecordError

log = logging.getLogger(__name__)

BUILDERS = {".jsonl": "json", ".json": "json", ".zip": "json", ".parquet": "parquet"}


def load_hub_split(dataset_id: str, split: str, revision: str | None = None, token: str | bool | None = None):
    """The ``split`` of the hub dataset ``dataset_id`` as a ``datasets.Dataset`` (module docstring)."""
    import datasets

    try:
        folder = _snapshot(dataset_id, ["README.md"], revision, token)
    except Exception as first:  # no snapshot: offline without it, no such repo, no network
        try:
            return datasets.load_dataset(dataset_id, split=split, revision=revision, token=token)
        except Exception as err:  # datasets raises many types; say what was tried
            raise RecordError(f"{dataset_id!r} is neither an existing file or folder nor a hub dataset found online or "
                              f"in the caches ({type(first).__name__}: {first}; datasets: {err})") from err
    patterns = split_files(folder / "README.md", split, dataset_id)
    folder = _snapshot(dataset_id, patterns, revision, token)
    files = sorted({str(p) for pat in patterns for p in folder.glob(pat) if p.is_file()})
    if not files:
        raise RecordError(f"{dataset_id} [{split}]: no file matching {patterns} in {folder}")
    builders = {BUILDERS.get(Path(f).suffix) for f in files}
    if len(builders) != 1 or None in builders:
        raise RecordError(f"{dataset_id} [{split}]: cannot read {files} as one json or parquet set")
    log.info("%s [%s]: %s from %s", dataset_id, split, ", ".join(Path(f).name for f in files), folder)
    return datasets.load_dataset(builders.pop(), data_files={split: files}, split=split)


def split_files(card: Path, split: str, dataset_id: str = "") -> list[str]:
    """The data-file patterns the card's ``configs`` give ``split`` (the ``default`` config, else the first)."""
    from huggingface_hub import DatasetCard

    configs = DatasetCard.load(card).data.to_dict().get("configs") or []
    if not configs:
        raise RecordError(f"{dataset_id}: the dataset card names no configs, so its splits are unknown")
    config = next((c for c in configs if c.get("config_name") == "default"), configs[0])
    data_files = config.get("data_files") or []
    if isinstance(data_files, str) or not all(isinstance(d, dict) for d in data_files):
        data_files = [{"split": "train", "path": data_files}]  # files without split names: datasets' train
    splits = {d["split"]: d["path"] for d in data_files}
    if split not in splits:
        raise RecordError(f"{dataset_id} has no split {split!r}; its splits: {', '.join(splits) or 'none'}")
    paths = splits[split]
    return [paths] if isinstance(paths, str) else list(paths)


def hub_rows(dataset_id: str, split: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(row number, where, row)`` for every row of a hub dataset's split."""
    for n, row in enumerate(load_hub_split(dataset_id, split)):
        yield str(n), f"{dataset_id}[{split}][{n}]", dict(row)


def _snapshot(dataset_id: str, patterns: list[str], revision, token) -> Path:
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(dataset_id, repo_type="dataset", revision=revision, token=token,
                                  allow_patterns=patterns))
