"""lrp_engine.digits: canvas drawings are prepared like MNIST (20 px box, centred by mass)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lrp_engine.digits import (
    DigitResult,
    canvas_to_digit,
    centre_of_mass,
    ink_to_digit,
    rgba_to_ink,
)


def _canvas(size: int = 280) -> np.ndarray:
    """An empty canvas as st_canvas returns it: black, opaque RGBA uint8."""
    c = np.zeros((size, size, 4), np.uint8)
    c[..., 3] = 255
    return c


def _stroke(c: np.ndarray, points: list[tuple[int, int]], width: int = 18) -> np.ndarray:
    """Draw white round-ish strokes between successive (row, col) points."""
    r = width // 2
    for (r0, c0), (r1, c1) in itertools.pairwise(points):
        n = max(abs(r1 - r0), abs(c1 - c0)) + 1
        for t in np.linspace(0, 1, n):
            y, x = round(r0 + t * (r1 - r0)), round(c0 + t * (c1 - c0))
            c[max(0, y - r):y + r, max(0, x - r):x + r, :3] = 255
    return c


def test_blank_canvas_gives_a_reason():
    for blank in (None, _canvas(), np.zeros((280, 280, 4), np.uint8)):
        res = canvas_to_digit(blank)
        assert isinstance(res, DigitResult) and not res.ok and res.image is None
        assert res.reason == "The canvas is blank: draw a digit (one stroke is enough)."


def test_a_dot_of_antialiasing_is_still_blank():
    c = _canvas()
    c[100:102, 100:102, :3] = 255  # 4 pixels would count; 3 do not
    c[101, 101, :3] = 0
    assert not canvas_to_digit(c).ok


def test_one_stroke_is_centred_by_mass_in_the_central_20px():
    c = _stroke(_canvas(), [(40, 150), (240, 135)])  # a slightly slanted "1"
    res = canvas_to_digit(c)
    assert res.ok and res.reason is None
    img = res.image
    assert img.shape == (28, 28) and img.dtype == np.uint8 and img.max() == 255
    r, col = centre_of_mass(img.astype(float))
    assert abs(r - 13.5) <= 0.5 and abs(col - 13.5) <= 0.5
    ys, xs = np.nonzero(img)
    assert ys.min() >= 4 and ys.max() <= 23 and xs.min() >= 4 and xs.max() <= 23
    assert ys.max() - ys.min() + 1 == 20  # the longest side is scaled to 20 px
    assert res.bbox[0] == 31 and res.bbox[2] == 249  # the ink's rows, stroke width included


def test_seven_keeps_aspect_and_is_centred_by_mass():
    c = _stroke(_canvas(), [(50, 60), (50, 220), (240, 110)])  # a "7"
    res = canvas_to_digit(c)
    assert res.ok
    img = res.image.astype(float)
    r, col = centre_of_mass(img)
    assert abs(r - 13.5) <= 0.5 and abs(col - 13.5) <= 0.5
    ys, xs = np.nonzero(res.image)
    assert ys.max() - ys.min() + 1 == 20 and xs.max() - xs.min() + 1 < 20
    assert img[ys.min(), :].sum() > img[ys.max(), :].sum()  # the bar is at the top


def test_transparent_background_reads_like_black():
    c = np.zeros((280, 280, 4), np.uint8)  # transparent; the stroke is opaque white
    c = _stroke(c, [(40, 140), (240, 140)])
    c[c[..., 0] == 255, 3] = 255
    a = canvas_to_digit(c)
    b = canvas_to_digit(_stroke(_canvas(), [(40, 140), (240, 140)]))
    assert a.ok and np.array_equal(a.image, b.image)


def test_full_white_canvas_is_rejected():
    c = _canvas()
    c[..., :3] = 255
    res = canvas_to_digit(c)
    assert not res.ok and "covers 100% of the canvas" in res.reason


def test_scribble_is_processed_with_a_note():
    rng = np.random.default_rng(3)
    c = _canvas()
    pts = [tuple(int(v) for v in rng.integers(60, 220, 2)) for _ in range(25)]
    res = canvas_to_digit(_stroke(c, pts, width=24))
    assert res.ok and res.image.shape == (28, 28)
    assert res.note is not None and "scribble" in res.note


def test_small_drawing_is_upscaled_to_20px():
    c = _stroke(_canvas(), [(130, 140), (150, 140)], width=4)  # 22 px tall
    res = canvas_to_digit(c)
    assert res.ok
    ys, _ = np.nonzero(res.image)
    assert ys.max() - ys.min() + 1 == 20


def test_rgba_to_ink_accepts_formats():
    assert rgba_to_ink(np.full((2, 2), 1.0)).tolist() == [[1.0, 1.0], [1.0, 1.0]]
    assert rgba_to_ink(np.full((2, 2, 3), 255, np.uint8)).max() == 1.0
    half = np.zeros((1, 1, 4), np.uint8)
    half[..., :3], half[..., 3] = 255, 51
    assert rgba_to_ink(half)[0, 0] == pytest.approx(0.2)
    with pytest.raises(ValueError):
        rgba_to_ink(np.zeros((2, 2, 5)))
    assert not canvas_to_digit(np.zeros((2, 2, 5))).ok  # reported, not raised


def test_ink_to_digit_names_its_source():
    res = ink_to_digit(np.zeros((10, 10)), source="image")
    assert res.reason == "The image is blank: no digit was found in it."
