"""Glyphs: the 5 x 7 digit bitmaps and the dot patterns the renderer draws and the reader matches.

Drawn by hand so that rendering never depends on a system font (CI machines may have none). Each
digit is 7 rows of 5 columns, ``#`` for ink. The dot patterns are dice faces on a 3 x 3 grid, one
pattern per count 1 to 5, so a cell's count is also readable at a glance.
"""

from __future__ import annotations

_DIGIT_ROWS = {
    0: (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    1: ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    2: (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    3: ("#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."),
    4: ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    5: ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    6: ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    7: ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    8: (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    9: (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
}

GLYPH_ROWS = 7
GLYPH_COLS = 5

# digit -> tuple of (row, col) of ink
DIGIT_BITS: dict[int, tuple[tuple[int, int], ...]] = {
    d: tuple((r, c) for r, row in enumerate(rows) for c, ch in enumerate(row) if ch == "#")
    for d, rows in _DIGIT_ROWS.items()
}

# Digits a reader plausibly confuses; perception errors prefer these.
CONFUSABLE: dict[int, tuple[int, ...]] = {
    0: (8, 6, 9), 1: (7, 4), 2: (3, 7), 3: (8, 2, 5), 4: (1, 9), 5: (6, 3, 9),
    6: (5, 8, 0), 7: (1, 2), 8: (3, 0, 6, 9), 9: (8, 4, 5),
}

# count -> dot positions on a 3 x 3 grid as (row, col); 2 and 3 also come mirrored (flip columns).
DOT_PATTERNS: dict[int, tuple[tuple[int, int], ...]] = {
    1: ((1, 1),),
    2: ((0, 0), (2, 2)),
    3: ((0, 0), (1, 1), (2, 2)),
    4: ((0, 0), (0, 2), (2, 0), (2, 2)),
    5: ((0, 0), (0, 2), (1, 1), (2, 0), (2, 2)),
}


def cropped_bitmap(digit: int) -> list[list[bool]]:
    """The digit's bitmap cut to the box around its ink (the ``1`` is 3 columns wide)."""
    bits = DIGIT_BITS[digit]
    r0, r1 = min(r for r, _ in bits), max(r for r, _ in bits)
    c0, c1 = min(c for _, c in bits), max(c for _, c in bits)
    grid = [[False] * (c1 - c0 + 1) for _ in range(r1 - r0 + 1)]
    for r, c in bits:
        grid[r - r0][c - c0] = True
    return grid
