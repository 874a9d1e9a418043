"""A scorer's own side files (``likelihood_feature.json``, ``implicit_prm.json``, ...), from a folder or the hub.

transformers fetches a model's weights, config and processor from a local folder or a hub id; the
files rlvprm adds beside them must come from the same place the same way, or a scorer loaded by
hub id silently loses its configuration (issue 16: a PRM with a likelihood feature scored as one
without). :func:`find_scorer_file` is the one lookup every loader uses:

- a local folder: the file in it, or ``None``;
- a hub id: ``huggingface_hub.hf_hub_download`` with the same ``revision``, ``token`` and cache
  (``HF_HUB_CACHE``) that ``from_pretrained`` uses, so offline mode (``HF_HUB_OFFLINE=1``) reads
  the cache and an online run downloads the file into it.

Three answers are possible for a hub id: the file (a path), known to be absent (the hub said so,
or the cache recorded that it said so earlier: ``.no_exist``), and unknown (offline or
unreachable, and not in the cache). A file the caller *requires* (``required=True``: the file that
makes a folder the kind of scorer being loaded) is an error naming it unless found. An optional
file that is unknown is treated as absent, as transformers treats optional files, but with a
warning naming it: the scorer may be loading without part of its configuration.

Left out: ``subfolder`` and ``repo_type`` (scorers are model repos with their files at the top).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


class ScorerFileError(FileNotFoundError, ValueError):
    """A side file the scorer's type requires could not be found or fetched.

    Both a missing file and a bad argument (what the callers of the loaders already catch).
    """


def is_local(path_or_id: str | os.PathLike) -> bool:
    """True for an existing local folder (what transformers loads from disk rather than the hub)."""
    return os.path.isdir(path_or_id)


def hub_kwargs(revision: str | None, token: str | bool | None) -> dict:
    """The hub options that are set, for ``from_pretrained`` calls (unset ones keep their defaults)."""
    return {k: v for k, v in (("revision", revision), ("token", token)) if v is not None}


def find_scorer_file(
    path_or_id: str | os.PathLike,
    filename: str,
    *,
    required: bool = False,
    revision: str | None = None,
    token: str | bool | None = None,
    needed_for: str = "this scorer",
) -> Path | None:
    """The path of ``filename`` beside the model at ``path_or_id`` (folder or hub id), or ``None``.

    ``required``: raise :class:`ScorerFileError` naming the file (and why it is needed,
    ``needed_for``) instead of returning ``None``.
    """
    if is_local(path_or_id):
        path = Path(path_or_id) / filename
        if path.is_file():
            return path
        if required:
            raise ScorerFileError(f"{path_or_id} has no {filename}, which {needed_for} requires")
        return None
    found, why = _from_hub(str(path_or_id), filename, revision, token)
    if found is not None:
        return found
    if required:
        raise ScorerFileError(f"{filename} of {path_or_id} (revision {revision or 'main'}) could not be fetched, "
                              f"and {needed_for} requires it: {why}")
    if why != "absent":
        log.warning("%s: could not tell whether it has %s (%s); loading without it", path_or_id, filename, why)
    return None


def _from_hub(repo_id: str, filename: str, revision: str | None, token) -> tuple[Path | None, str]:
    """``(path, "")``, ``(None, "absent")`` when the repo is known not to have the file, else ``(None, why)``."""
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RemoteEntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, token=token)), ""
    except RemoteEntryNotFoundError:  # the hub answered: this revision has no such file
        return None, "absent"
    except HFValidationError as err:
        # Not a repo id (a folder path that does not exist, say): say that, not "offline".
        return None, f"{repo_id!r} is neither a local folder nor a valid hub id ({err})"
    except LocalEntryNotFoundError as err:
        cached = try_to_load_from_cache(repo_id, filename, revision=revision)
        if cached is not None and not isinstance(cached, str):  # the cache's record of an earlier "not found"
            return None, "absent"
        mode = "offline mode (HF_HUB_OFFLINE)" if constants.HF_HUB_OFFLINE else "the hub was not reachable"
        return None, f"not in the Hugging Face cache {constants.HF_HUB_CACHE} and {mode} ({type(err).__name__})"
    except OSError as err:  # repository or revision not found, gated, HTTP errors: all subclasses of OSError
        return None, f"{type(err).__name__}: {err}"
