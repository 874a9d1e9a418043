"""``to_rgb`` keeps the picture of 16-bit, palette, alpha-only and CMYK images (issue 15)."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from rewards.images import to_rgb
from rlvprm.data.records import open_image


def ink(size=(28, 28)) -> np.ndarray:
    """A mask of where a small picture (a filled box) is drawn."""
    m = Image.new("L", size, 0)
    ImageDraw.Draw(m).rectangle((6, 6, 20, 20), fill=255)
    return np.asarray(m) > 0


def rgb_of(image) -> np.ndarray:
    out = to_rgb(image)
    assert out.mode == "RGB"
    return np.asarray(out).astype(int)


def test_16_bit_grayscale_is_rescaled_not_clipped(tmp_path):
    mask = ink()
    arr = np.where(mask, 1000, 60000).astype(np.uint16)  # dark box on light ground, 16-bit
    path = tmp_path / "g16.png"
    Image.fromarray(arr).save(path)  # Pillow writes a 16-bit grayscale PNG
    got = np.asarray(open_image(path.name, tmp_path, "r")).astype(int)
    assert got[mask].max() <= 4 and got[~mask].min() >= 230  # clipping would make both 255


def test_32_bit_and_float_images():
    mask = ink()
    got = rgb_of(Image.fromarray(np.where(mask, 0, 65535).astype(np.int32), mode="I"))
    assert got[mask].max() == 0 and got[~mask].min() == 255
    got = rgb_of(Image.fromarray(np.where(mask, 0.0, 1.0).astype(np.float32), mode="F"))
    assert got[mask].max() == 0 and got[~mask].min() == 255


def test_picture_in_alpha_is_composited_over_white():
    mask = ink()
    rgba = np.zeros((28, 28, 4), np.uint8)  # black everywhere, visible only where the box is
    rgba[..., 3] = np.where(mask, 255, 0)
    got = rgb_of(Image.fromarray(rgba, mode="RGBA"))
    assert got[mask].max() == 0 and got[~mask].min() == 255  # convert("RGB") gives all 0
    la = Image.fromarray(rgba[..., 3], mode="L").convert("LA")
    la.putalpha(Image.fromarray(rgba[..., 3]))
    assert rgb_of(la)[~mask].min() == 255


def test_palette_with_a_transparent_index():
    p = Image.new("P", (28, 28), 0)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    ImageDraw.Draw(p).rectangle((6, 6, 20, 20), fill=1)
    p.info["transparency"] = 0  # black index 0 is the transparent background
    got = rgb_of(p)
    mask = ink()
    assert (got[mask] == [255, 0, 0]).all() and got[~mask].min() == 255


def test_cmyk_and_rgb():
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # red in CMYK
    assert tuple(rgb_of(cmyk)[0, 0]) == (255, 0, 0)
    rgb = Image.new("RGB", (2, 2), "blue")
    assert to_rgb(rgb) is rgb


@pytest.mark.parametrize("mode", ["1", "L", "P", "YCbCr", "I;16B"])
def test_every_mode_becomes_rgb(mode):
    im = Image.new(mode, (3, 3))
    assert to_rgb(im).mode == "RGB" and to_rgb(im).size == (3, 3)
