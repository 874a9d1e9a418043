"""``to_rgb``: any PIL image as 8-bit RGB with its picture intact; the one conversion every path uses.

``Image.convert("RGB")`` alone loses pictures silently: a 16-bit grayscale PNG (mode ``I;16``/``I``)
is clipped at 255, so nearly everything turns white; an RGBA image whose picture lives in the alpha
channel (black ink, varying transparency) turns all black; a palette image with a transparent index
shows whatever colour that index holds. Here:

- 16/32-bit integer and float grayscale is rescaled to 0..255 (values up to 65535 by /257, as a
  16-bit file means; floats in [0, 1] by 255; larger or negative ranges are stretched min..max);
- any transparency (RGBA, LA, PA, palette with ``transparency``) is composited over white, the
  paper colour a reader assumes;
- CMYK, YCbCr, LAB, HSV, 1-bit and the rest go through Pillow's own conversion.

Run ``python -m pytest -q tests/rewards/test_images.py``. Left out: colour profiles (ICC) and EXIF
orientation (callers that open files apply ``ImageOps.exif_transpose`` first).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

_WHITE = (255, 255, 255)


def to_rgb(image: Image.Image) -> Image.Image:
    """The image as mode ``RGB``, 8 bits per channel, transparency composited over white.

    The result holds its pixels in memory (an RGB file image is loaded, not copied), so it outlives
    the ``with Image.open(...)`` block it came from.
    """
    if image.mode == "RGB":
        image.load()
        return image
    if image.mode in ("I", "F") or image.mode.startswith("I;"):
        return _wide_gray(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    elif image.mode == "P":
        return image.convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return Image.alpha_composite(paper, rgba).convert("RGB")
    return image.convert("RGB")


def _wide_gray(image: Image.Image) -> Image.Image:
    arr = np.asarray(image, dtype=np.float64)
    if arr.size == 0:
        return Image.new("RGB", image.size, _WHITE)
    lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
    if image.mode.startswith("I;16") or (lo >= 0 and hi <= 65535 and image.mode != "F" and hi > 255):
        scaled = arr / 257.0  # 65535 -> 255: a 16-bit file's full range
    elif image.mode == "F" and lo >= 0 and hi <= 1:
        scaled = arr * 255.0  # a float image in [0, 1]
    elif lo >= 0 and hi <= 255:
        scaled = arr  # already 8-bit values in a wide mode
    elif hi > lo:
        scaled = (arr - lo) / (hi - lo) * 255.0
    else:
        scaled = np.zeros_like(arr)
    gray = np.clip(np.rint(np.nan_to_num(scaled)), 0, 255).astype(np.uint8)
    return Image.fromarray(gray, mode="L").convert("RGB")
