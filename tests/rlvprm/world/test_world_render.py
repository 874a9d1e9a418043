"""The renderer draws legible strips: every value reads back from the pixels, ink stays in its cell."""

import random

import numpy as np
import pytest

from rlvprm.world.render import read_strip, render_strip


def _random_cells(rng, kind, num_cells=6):
    values = range(10) if kind == "digits" else range(1, 6)
    return [rng.choice([None, *values]) for _ in range(num_cells)]


@pytest.mark.parametrize("kind", ["digits", "dots"])
def test_values_read_back_for_many_seeds(kind):
    for seed in range(300):
        rng = random.Random(seed)
        cells = _random_cells(rng, kind)
        strip = render_strip(cells, kind, rng)
        assert read_strip(strip.image, kind) == cells, f"seed {seed}"
        assert strip.values == cells


@pytest.mark.parametrize("kind, values", [("digits", list(range(10))), ("dots", [1, 2, 3, 4, 5])])
def test_every_glyph_is_legible_at_every_size(kind, values):
    for seed in range(40):
        for height in (16, 18, 20):
            strip = render_strip(values, kind, random.Random(seed), glyph_height=(height, height))
            assert read_strip(strip.image, kind) == values


def test_layout_boxes_hold_the_ink_inside_each_cell():
    rng = random.Random(7)
    for _ in range(100):
        kind = rng.choice(["digits", "dots"])
        cells = _random_cells(rng, kind)
        strip = render_strip(cells, kind, rng)
        pixels = np.asarray(strip.image)
        assert strip.image.size == (28 * 6, 28) and strip.image.mode == "RGB"
        assert [c.index for c in strip.cells] == [i for i, v in enumerate(cells) if v is not None]
        ink = pixels.min(axis=2) < 255
        for cell in strip.cells:
            x0, y0, x1, y1 = cell.bbox
            assert cell.index * 28 <= x0 < x1 <= (cell.index + 1) * 28 and 0 <= y0 < y1 <= 28
            inside = ink[:, cell.index * 28 : (cell.index + 1) * 28]
            ys, xs = np.nonzero(inside)
            assert (xs.min() + cell.index * 28, ys.min(), xs.max() + 1 + cell.index * 28, ys.max() + 1) == cell.bbox
            if kind == "digits":
                assert 16 <= y1 - y0 <= 22  # 16-20 px glyphs, bold strokes add at most a pixel each side
        for i, value in enumerate(cells):
            if value is None:
                assert not ink[:, i * 28 : (i + 1) * 28].any()
        # Paper is pure white (the processor maps it to 0) and ink is dark.
        paper = (pixels == 255).all(axis=2)
        assert (pixels[~paper] <= 90).all()


def test_same_seed_same_pixels_and_variation_across_seeds():
    a = render_strip([3, None, 8], "digits", random.Random(1)).image
    b = render_strip([3, None, 8], "digits", random.Random(1)).image
    c = render_strip([3, None, 8], "digits", random.Random(2)).image
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_bad_kind_is_rejected():
    with pytest.raises(ValueError, match="kind"):
        render_strip([1], "letters", random.Random(0))
