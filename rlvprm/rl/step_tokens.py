"""Map a completion's steps (character spans) onto the policy's completion tokens.

The PRM scores steps of *text*, split by ``rewards.steps.split_steps`` with character spans; the GRPO
loss needs a value per *token* of the policy. The policy's tokenizer and the PRM's may differ, so the
bridge is the text itself: decode the policy's completion ids once, note where each token's text
ends, and give each step the last token that writes a character of it.

- :func:`token_char_ends`: the decoded text and, per token, how many characters of it are written
  once that token is decoded (special tokens write none, and a byte-level token that ends inside a
  multi-byte character writes nothing until the token that completes the character).
- :func:`step_last_tokens`: per step, the index of the token holding its last character.

Decoding is incremental (each token decoded with a few tokens of context, as streaming detokenisers
do), checked against the one-shot decode; when a tokenizer's decode is not incremental in that way
(clean-up rules that look across tokens), the exact but quadratic path decodes every prefix.

Left out: tokens that straddle two steps are given to the earlier one (where the step ends), and
text a tokenizer adds on decode that no token wrote (none of the byte-level BPEs do).
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Sequence

from rewards.steps import Step

REPLACEMENT = "\ufffd"  # what a decode shows for the bytes of an unfinished UTF-8 character
_CONTEXT = 6  # tokens decoded before each new one, so a tokenizer sees what it needs around it


def token_char_ends(tokenizer, ids: Sequence[int], exact: bool = False) -> tuple[str, list[int]]:
    """``(text, ends)``: ``text = tokenizer.decode(ids, skip_special_tokens=True)`` and, for each
    token ``k``, ``ends[k]`` = the number of characters of ``text`` written by tokens ``0..k``.

    ``ends`` is non-decreasing and its last value is ``len(text)``. ``exact=True`` skips the
    incremental path and decodes every prefix (quadratic in the length; what the incremental path
    falls back to when its pieces do not add up to ``text``).
    """
    ids = list(ids)
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if not exact:
        ends = _incremental_ends(tokenizer, ids, text)
        if ends is not None:
            return text, ends
    return text, _prefix_ends(tokenizer, ids, text)


def _decode(tokenizer, ids: Sequence[int]) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=True) if ids else ""


def _incremental_ends(tokenizer, ids: list[int], text: str) -> list[int] | None:
    """Streaming-detokeniser pieces: decode ``ids[start:k+1]`` against ``ids[start:read]``, where
    ``read`` is the first token not yet written out. ``None`` if the pieces do not rebuild ``text``."""
    pieces: list[str] = []
    ends: list[int] = []
    written = 0
    read = 0
    for k in range(len(ids)):
        start = max(0, read - _CONTEXT)
        before = _decode(tokenizer, ids[start:read])
        after = _decode(tokenizer, ids[start : k + 1])
        if after.endswith(REPLACEMENT) or not after.startswith(before):
            # An unfinished character (or a decode that rewrites its context): wait for more tokens.
            ends.append(written)
            continue
        piece = after[len(before) :]
        pieces.append(piece)
        written += len(piece)
        ends.append(written)
        read = k + 1
    if "".join(pieces) != text:
        return None
    return ends


def _prefix_ends(tokenizer, ids: list[int], text: str) -> list[int]:
    """Exact: ``ends[k]`` is the length of the longest common prefix of ``text`` and the decode of
    ``ids[:k+1]`` (so a trailing unfinished character counts for the token that finishes it)."""
    ends: list[int] = []
    written = 0
    for k in range(len(ids)):
        prefix = _decode(tokenizer, ids[: k + 1])
        n = 0
        limit = min(len(prefix), len(text))
        while n < limit and prefix[n] == text[n]:
            n += 1
        written = max(written, n)  # keep ends non-decreasing whatever the tokenizer does
        ends.append(written)
    if ends:
        ends[-1] = len(text)
    return ends


def step_last_tokens(steps: Sequence[Step], ends: Sequence[int]) -> list[int]:
    """For each step, the index of the first token whose text reaches the step's last character.

    ``steps`` carry spans into the decoded text (``split_steps``); ``ends`` from
    :func:`token_char_ends`. A step whose last character no token reaches (the text was cut short)
    gets the last token.

    >>> from rewards.steps import split_steps
    >>> ends = [3, 5, 6, 9]  # tokens "abc", "\\n\\n", "d", "ef."
    >>> step_last_tokens(split_steps("abc\\n\\ndef."), ends)
    [0, 3]
    """
    last = len(ends) - 1
    return [min(bisect_left(ends, step.end), last) for step in steps]
