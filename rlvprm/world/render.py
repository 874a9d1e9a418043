"""Render a strip of values with PIL, and read the values back from its pixels.

The image is one row of square cells (``cell_size`` px, 28 by default = one merged Qwen2-VL vision
token), white background, at most one value per cell, blank cells allowed. Two kinds of cell:

- ``"digits"``: a 5 x 7 bitmap digit (``glyphs.py``) scaled to 16-20 px high, drawn as one dark
  rectangle per bitmap pixel, with random height, width, stroke size, colour and a jitter of its
  centre inside the cell;
- ``"dots"``: 1 to 5 small squares or discs in a dice pattern, with random size, spacing, colour
  and jitter.

Ink never leaves its cell, so a value never straddles two vision tokens. :func:`render_strip`
returns the image with its layout (value and ink box per filled cell). :func:`read_strip` decodes
an image by template matching (digits) or by counting connected blobs (dots); the tests use it to
show every rendered value is legible. It is a check of the renderer, not a model: it knows the cell
grid and the kind of cell, and reads clean renders only (no noise, blur or resizing).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from rlvprm.world.glyphs import DIGIT_BITS, DOT_PATTERNS, GLYPH_COLS, GLYPH_ROWS, cropped_bitmap

KINDS = ("digits", "dots")
_INK_THRESHOLD = 160  # grey level below this is ink; ink colours stay at or under 90, paper is 255


@dataclass(frozen=True)
class DrawnCell:
    """One filled cell: its position (0 = leftmost), its value and the box around its ink.

    ``bbox`` is ``(x0, y0, x1, y1)`` in image pixels, end-exclusive, as PIL's ``getbbox``.
    """

    index: int
    value: int
    bbox: tuple[int, int, int, int]


@dataclass(frozen=True)
class Strip:
    """A rendered strip: the RGB image, the kind of its cells, and its filled cells left to right."""

    image: Image.Image
    kind: str
    cell_size: int
    cells: tuple[DrawnCell, ...]

    @property
    def values(self) -> list[int | None]:
        """The value of every cell, ``None`` for blank ones."""
        out: list[int | None] = [None] * (self.image.width // self.cell_size)
        for cell in self.cells:
            out[cell.index] = cell.value
        return out


def render_strip(
    values: Sequence[int | None],
    kind: str,
    rng: random.Random,
    cell_size: int = 28,
    jitter: int = 3,
    glyph_height: tuple[int, int] = (16, 20),
) -> Strip:
    """Draw ``values`` (one per cell, ``None`` = blank) as a ``cell_size x cell_size*len(values)`` strip.

    >>> strip = render_strip([3, None, 7], "digits", random.Random(0))
    >>> strip.image.size, [c.index for c in strip.cells], read_strip(strip.image, "digits")
    ((84, 28), [0, 2], [3, None, 7])
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    image = Image.new("RGB", (cell_size * len(values), cell_size), "white")
    draw = ImageDraw.Draw(image)
    for index, value in enumerate(values):
        if value is None:
            continue
        box = (index * cell_size, 0, (index + 1) * cell_size, cell_size)
        colour = tuple(rng.randint(0, 90) for _ in range(3))
        if kind == "digits":
            _draw_digit(draw, value, box, colour, rng, jitter, glyph_height)
        else:
            _draw_dots(draw, value, box, colour, rng, jitter)
    ink = _ink(image)
    filled = []
    for index, value in enumerate(values):
        if value is not None:
            ys, xs = np.nonzero(ink[:, index * cell_size : (index + 1) * cell_size])
            x0 = index * cell_size + int(xs.min())
            bbox = (x0, int(ys.min()), index * cell_size + int(xs.max()) + 1, int(ys.max()) + 1)
            filled.append(DrawnCell(index, value, bbox))
    return Strip(image, kind, cell_size, tuple(filled))


def _ink(image: Image.Image) -> np.ndarray:
    """``(H, W)`` boolean mask of the ink pixels."""
    return np.asarray(image.convert("L")) < _INK_THRESHOLD


def _centre(box, half_w: float, half_h: float, rng: random.Random, jitter: int) -> tuple[float, float]:
    """A jittered centre for a glyph of the given half-size, kept one pixel inside ``box``."""
    x0, y0, x1, y1 = box
    cx = (x0 + x1) / 2 + rng.randint(-jitter, jitter)
    cy = (y0 + y1) / 2 + rng.randint(-jitter, jitter)
    cx = min(max(cx, x0 + 1 + half_w), x1 - 1 - half_w)
    cy = min(max(cy, y0 + 1 + half_h), y1 - 1 - half_h)
    return cx, cy


def _rect(draw: ImageDraw.ImageDraw, box, x0: float, y0: float, x1: float, y1: float, colour) -> None:
    """Fill the pixels whose centres lie in ``[x0, x1) x [y0, y1)``, at least one, clipped to ``box``."""
    left, top = max(round(x0), box[0]), max(round(y0), box[1])
    right, bottom = min(max(round(x1), left + 1), box[2]), min(max(round(y1), top + 1), box[3])
    draw.rectangle((left, top, right - 1, bottom - 1), fill=colour)


def _draw_digit(draw, digit: int, box, colour, rng: random.Random, jitter: int, glyph_height) -> None:
    height = rng.randint(*glyph_height)
    width = height * rng.uniform(0.55, 0.7)
    unit_w, unit_h = width / GLYPH_COLS, height / GLYPH_ROWS
    # Each bitmap pixel covers at least its own cell (neighbours touch, no dotted strokes), up to 1.4x (bold).
    stroke = rng.uniform(1.0, 1.4)
    cx, cy = _centre(box, width / 2, height / 2, rng, jitter)
    left, top = cx - width / 2, cy - height / 2
    half_w, half_h = unit_w * stroke / 2, unit_h * stroke / 2
    for r, c in DIGIT_BITS[digit]:
        bx, by = left + (c + 0.5) * unit_w, top + (r + 0.5) * unit_h
        _rect(draw, box, bx - half_w, by - half_h, bx + half_w, by + half_h, colour)


def _draw_dots(draw, count: int, box, colour, rng: random.Random, jitter: int) -> None:
    scale = (box[2] - box[0]) / 28
    size = max(2, round(rng.randint(4, 5) * scale))
    pitch = size + max(2, round(rng.randint(2, 3) * scale))  # at least 2 px of paper between dots
    half = pitch + size / 2
    cx, cy = _centre(box, half, half, rng, jitter)
    mirror = rng.random() < 0.5
    disc = rng.random() < 0.5
    for r, c in DOT_PATTERNS[count]:
        if mirror:
            c = 2 - c
        x = round(cx + (c - 1) * pitch - size / 2)
        y = round(cy + (r - 1) * pitch - size / 2)
        if disc:
            draw.ellipse((x, y, x + size - 1, y + size - 1), fill=colour)
        else:
            draw.rectangle((x, y, x + size - 1, y + size - 1), fill=colour)


# ---------------------------------------------------------------------------------------------
# Reading back


def read_strip(image: Image.Image, kind: str, cell_size: int = 28) -> list[int | None]:
    """The value in every cell of a rendered strip, ``None`` where a cell has no ink."""
    ink = _ink(image)
    values: list[int | None] = []
    for x in range(0, image.width - cell_size + 1, cell_size):
        mask = ink[:cell_size, x : x + cell_size]
        if not mask.any():
            values.append(None)
        elif kind == "digits":
            values.append(_match_digit(mask))
        else:
            values.append(_count_blobs(mask))
    return values


_TEMPLATES = {d: np.array(cropped_bitmap(d), dtype=bool) for d in DIGIT_BITS}


def _match_digit(mask: np.ndarray) -> int:
    """The digit whose bitmap, stretched over the ink's box, disagrees with the fewest samples."""
    ys, xs = np.nonzero(mask)
    y0, x0 = ys.min(), xs.min()
    h, w = ys.max() - y0 + 1, xs.max() - x0 + 1
    best, best_err = -1, float("inf")
    for digit, template in _TEMPLATES.items():
        rows, cols = template.shape
        sy = (y0 + (np.arange(rows) + 0.5) * h / rows).astype(int)
        sx = (x0 + (np.arange(cols) + 0.5) * w / cols).astype(int)
        err = np.mean(mask[np.ix_(sy, sx)] != template)
        if err < best_err:
            best, best_err = digit, err
    return best


def _count_blobs(mask: np.ndarray) -> int:
    """Connected groups of ink pixels (4-neighbourhood)."""
    seen = np.zeros_like(mask)
    h, w = mask.shape
    blobs = 0
    for y, x in zip(*np.nonzero(mask)):
        if seen[y, x]:
            continue
        blobs += 1
        stack = [(y, x)]
        seen[y, x] = True
        while stack:
            cy, cx = stack.pop()
            for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
    return blobs
