"""Hand-drawn digits → MNIST-style 28×28 images, prepared the way MNIST itself was.

MNIST digits were size-normalised to fit a 20×20 box (keeping the aspect ratio,
anti-aliased) and then centred in a 28×28 field by their centre of mass. A drawing on the
dashboard's canvas (white strokes on black, ~280×280 RGBA) goes through the same steps in
:func:`canvas_to_digit`; uploaded pictures reuse :func:`ink_to_digit` after their background
has been made black (see :mod:`lrp_engine.io`).

Nothing here raises for a bad drawing: the result says why there is no digit
(:attr:`DigitResult.reason`), so the page can show a plain message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

#: where a digit came from, as its messages name it
DigitSource = Literal["canvas", "image"]

#: side of the output image and of the box the digit's longest side is scaled to (MNIST)
FIELD = 28
BOX = 20
#: ink below this fraction of full white counts as background when cropping
INK_THRESHOLD = 0.1
#: fewer ink pixels than this (at canvas resolution) is "blank"
MIN_INK_PIXELS = 4
#: a drawing whose ink covers more than this fraction of the whole canvas is not a digit
MAX_INK_FRACTION = 0.6


@dataclass(frozen=True)
class DigitResult:
    """The preprocessed digit, or why there is none.

    ``image``: uint8 [28, 28] in 0…255 (white digit on black, like MNIST) or None;
    ``reason``: a plain sentence when ``image`` is None; ``note``: an optional caveat about a
    digit that was produced (e.g. a dense scribble); ``bbox``: (top, left, bottom, right) of
    the ink in the input, bottom/right exclusive.
    """

    image: np.ndarray | None
    reason: str | None = None
    note: str | None = None
    bbox: tuple[int, int, int, int] | None = None

    @property
    def ok(self) -> bool:
        return self.image is not None


def rgba_to_ink(rgba: np.ndarray) -> np.ndarray:
    """Canvas pixels → ink intensity float64 [H, W] in [0, 1].

    ``rgba``: [H, W, 4] / [H, W, 3] / [H, W], uint8 (0…255) or float (0…1). Ink is the
    brightness (mean of R, G, B) weighted by alpha, so white strokes on black or on a
    transparent background both read as ink 1.
    """
    a = np.asarray(rgba)
    if a.dtype == np.uint8 or a.dtype == np.uint16:
        x = a.astype(np.float64) / np.iinfo(a.dtype).max
    else:
        x = np.nan_to_num(a.astype(np.float64))
        if x.size and x.max() > 1.0:  # float data in 0…255
            x = x / 255.0
    x = np.clip(x, 0.0, 1.0)
    if x.ndim == 2:
        return x
    if x.ndim != 3 or x.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"expected an image [H, W], [H, W, 3] or [H, W, 4], got {a.shape}")
    c = x.shape[2]
    if c in (1, 2):
        grey = x[..., 0]
        alpha = x[..., 1] if c == 2 else 1.0
    else:
        grey = x[..., :3].mean(-1)
        alpha = x[..., 3] if c == 4 else 1.0
    return grey * alpha


def canvas_to_digit(rgba: np.ndarray | None) -> DigitResult:
    """The canvas's RGBA image (white strokes on black) → an MNIST-style digit.

    Blank canvases (no image, or fewer than a few ink pixels) and canvases that are almost
    entirely white give ``image=None`` with a reason. Any other drawing is cropped to its ink,
    scaled so its longest side is 20 px, and centred by mass in 28×28 (see
    :func:`ink_to_digit`).
    """
    if rgba is None:
        return DigitResult(None, _blank("canvas"))
    try:
        ink = rgba_to_ink(rgba)
    except ValueError as e:
        return DigitResult(None, f"The canvas image could not be read ({e}).")
    return ink_to_digit(ink)


def _ink_mask(ink: np.ndarray) -> np.ndarray:
    return ink >= INK_THRESHOLD


def _blank(source: DigitSource) -> str:
    if source == "canvas":
        return "The canvas is blank: draw a digit (one stroke is enough)."
    return f"The {source} is blank: no digit was found in it."


def ink_to_digit(ink: np.ndarray, source: DigitSource = "canvas") -> DigitResult:
    """Ink intensities [H, W] in [0, 1] (digit bright, background 0) → MNIST-style digit.

    1. crop to the bounding box of pixels with ink ≥ 0.1;
    2. scale (area-averaging, aspect ratio kept) so the longest side is 20 px;
    3. stretch the contrast so the brightest pixel is 255;
    4. paste into 28×28 so the centre of mass lies at the field's centre (13.5, 13.5),
       kept inside the field.

    ``source`` names the input in messages ("canvas", "image").
    """
    ink = np.clip(np.nan_to_num(np.asarray(ink, dtype=np.float64)), 0.0, 1.0)
    if ink.ndim != 2 or ink.size == 0:
        return DigitResult(None, f"Expected a 2-D image, got shape {ink.shape}.")
    mask = _ink_mask(ink)
    n_ink = int(mask.sum())
    if n_ink < MIN_INK_PIXELS:
        return DigitResult(None, _blank(source))
    frac = n_ink / mask.size
    if frac > MAX_INK_FRACTION:
        return DigitResult(None, f"The ink covers {frac:.0%} of the {source}: that is a filled "
                                 "area, not a digit."
                                 + (" Clear the canvas and draw one digit." if source == "canvas"
                                    else ""))
    rows = np.flatnonzero(mask.any(1))
    cols = np.flatnonzero(mask.any(0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    crop = np.where(mask, ink, 0.0)[top:bottom, left:right]
    patch = _scale_longest_side(crop, BOX)
    peak = patch.max()
    if peak <= 0:
        return DigitResult(None, _blank(source))
    patch = patch / peak
    image = _centre_by_mass(patch, FIELD)
    note = None
    box_fill = float(mask[top:bottom, left:right].mean())
    if box_fill > 0.5 and min(bottom - top, right - left) > 0.25 * max(mask.shape):
        note = (f"The drawing fills {box_fill:.0%} of its box: a dense scribble may not look "
                "like any digit to the model.")
    return DigitResult(np.round(image * 255).astype(np.uint8), note=note,
                       bbox=(int(top), int(left), int(bottom), int(right)))


def _scale_longest_side(crop: np.ndarray, size: int) -> np.ndarray:
    """Resize so that max(h, w) == size (aspect kept, each side ≥ 1 px), values in [0, 1]."""
    h, w = crop.shape
    s = size / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    img = Image.fromarray(crop.astype(np.float32))
    method = Image.Resampling.BOX if s < 1 else Image.Resampling.BILINEAR
    return np.clip(np.asarray(img.resize((nw, nh), method), dtype=np.float64), 0.0, 1.0)


def centre_of_mass(img: np.ndarray) -> tuple[float, float]:
    """Intensity-weighted mean (row, col) of a non-negative image (its centre if empty)."""
    total = img.sum()
    if total <= 0:
        return (img.shape[0] - 1) / 2, (img.shape[1] - 1) / 2
    r = np.arange(img.shape[0]) @ img.sum(1) / total
    c = np.arange(img.shape[1]) @ img.sum(0) / total
    return float(r), float(c)


def _centre_by_mass(patch: np.ndarray, field: int) -> np.ndarray:
    """Paste ``patch`` into a ``field``×``field`` zero image, its centre of mass at the
    field's centre (rounded to whole pixels) as far as the borders allow."""
    h, w = patch.shape
    cr, cc = centre_of_mass(patch)
    centre = (field - 1) / 2
    top = int(np.clip(round(centre - cr), 0, field - h))
    left = int(np.clip(round(centre - cc), 0, field - w))
    out = np.zeros((field, field))
    out[top:top + h, left:left + w] = patch
    return out
