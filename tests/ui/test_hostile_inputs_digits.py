"""Hostile and odd uploads and canvases on the Digits page: a clear message or a prediction,
never an exception, and the next valid input works in the same session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from lrp_explorer.ui.digit_input import UPLOAD_BYTES
from lrp_explorer.ui.state import CANVAS_IMAGE
from tests.hostile_files import bad_files, odd_files

PAGE = str(Path(__file__).resolve().parents[2] / "lrp_explorer" / "app_pages" / "digits.py")
#: the specific words each bad file's message must contain
EXPECTED = {"empty.png": "empty", "truncated.png": "truncated", "truncated.jpg": "truncated",
            "letter.png": "text", "random.png": "not an image", "bomb.png": "too large",
            "blank.png": "blank"}


@pytest.fixture(scope="module")
def at() -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=120)
    app.run()
    app.radio(key="digit_source").set_value("Upload").run()
    return app


def _ok(at: AppTest) -> None:
    assert not at.exception, at.exception
    assert at.metric and at.metric[0].label == "Prediction"
    assert at.metric[0].value in [str(d) for d in range(10)]


@pytest.mark.parametrize("name", list(EXPECTED))
def test_bad_upload_gives_a_specific_message_then_a_good_one_works(at: AppTest,
                                                                   name: str) -> None:
    at.session_state[UPLOAD_BYTES] = (name, bad_files()[name])
    at.run()
    assert not at.exception
    assert len(at.error) == 1 and EXPECTED[name] in at.error[0].value.lower()
    assert at.error[0].value.startswith(name) and "Traceback" not in at.error[0].value
    assert not at.metric
    at.session_state[UPLOAD_BYTES] = ("one.png", odd_files()["palette.png"])
    at.run()
    _ok(at)
    assert not at.error


@pytest.mark.parametrize("name", list(odd_files()))
def test_odd_but_valid_pictures_are_read(at: AppTest, name: str) -> None:
    at.session_state[UPLOAD_BYTES] = (name, odd_files()[name])
    at.run()
    if name == "one_pixel.png":  # a single white pixel is not a digit: said so, no crash
        assert not at.exception and at.error and "blank" in at.error[0].value.lower()
        return
    _ok(at)
    if name not in ("exif_rotated.jpg", "wide_10000x40.png"):  # a vertical bar reads "1"
        assert at.metric[0].value == "1", name


@pytest.mark.parametrize("canvas", ["blank", "white", "dot", "nan"])
def test_degenerate_canvases(canvas: str) -> None:
    app = AppTest.from_file(PAGE, default_timeout=120)
    img = np.zeros((280, 280, 4), np.float64 if canvas == "nan" else np.uint8)
    img[..., 3] = 255
    if canvas == "white":
        img[..., :3] = 255
    elif canvas == "dot":
        img[140, 140, :3] = 255
    elif canvas == "nan":
        img[..., :3] = np.nan
    app.session_state[CANVAS_IMAGE] = img
    app.run()
    assert not app.exception
    assert not app.metric
    assert app.info and ("blank" in app.info[0].value or "white" in app.info[0].value
                         or "canvas" in app.info[0].value), app.info[0].value
