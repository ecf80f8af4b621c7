"""The Digits page's input: a drawing, a held-out digit or an uploaded picture → 28×28 digit.

Each source ends in a :class:`ui.state.CurrentDigit` (uint8 28×28, white on black, the
MNIST convention) or in a message saying why there is none. Tests and demos can replace the
canvas by putting an RGBA array under ``st.session_state[ui.state.CANVAS_IMAGE]``, and an
upload by putting ``(name, bytes)`` under ``st.session_state[UPLOAD_BYTES]``.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from lrp_engine.digits import DigitResult, canvas_to_digit
from lrp_engine.io import ImageLoadError, image_to_digit, load_image

from . import resources
from .state import CANVAS_IMAGE, CurrentDigit

SOURCES = ("Draw", "Held-out digit", "Upload")
CANVAS_SIDE = 280  # px; strokes of 18 px become MNIST-like 2-px strokes at 28×28
IDX_KEY = "heldout_index"
#: (file name, bytes) that stands in for an upload when set (tests: AppTest cannot upload)
UPLOAD_BYTES = "digit_upload_bytes"
UPLOAD_TYPES = ["png", "jpg", "jpeg", "gif", "bmp", "webp", "tif", "tiff"]


def _canvas_rgba() -> np.ndarray | None:
    injected = st.session_state.get(CANVAS_IMAGE)
    if injected is not None:
        return np.asarray(injected)
    from streamlit_drawable_canvas import st_canvas  # only inside the Streamlit runtime

    res = st_canvas(fill_color="#000000", stroke_width=18, stroke_color="#FFFFFF",
                    background_color="#000000", height=CANVAS_SIDE, width=CANVAS_SIDE,
                    drawing_mode="freedraw", return_image_data=True, key="canvas",
                    update_streamlit=True)
    try:
        return res.image_data
    except Exception:  # noqa: BLE001 - the component has not sent a drawing yet
        return None


@st.cache_data(max_entries=64, show_spinner=False)
def _canvas_digit(rgba: np.ndarray | None) -> DigitResult:
    """``canvas_to_digit``, once per drawing: a settings change reruns the page with the
    same 280×280 canvas (~10 ms of preprocessing saved per rerun)."""
    return canvas_to_digit(rgba)


def _from_canvas() -> tuple[CurrentDigit | None, str | None]:
    st.caption("Draw one digit, large, in the middle of the black square.")
    res = _canvas_digit(_canvas_rgba())
    if not res.ok:
        return None, res.reason
    if res.note:
        st.caption(res.note)
    return CurrentDigit.from_image(res.image, "drawing"), None


def _random_index() -> None:
    _, labels = resources.heldout()
    cls = st.session_state.get("heldout_class", "any")
    pool = np.arange(len(labels)) if cls == "any" else np.flatnonzero(labels == int(cls))
    st.session_state[IDX_KEY] = int(np.random.default_rng().choice(pool))


def _first_of_class() -> None:
    cls = st.session_state.get("heldout_class", "any")
    if cls != "any":
        _, labels = resources.heldout()
        st.session_state[IDX_KEY] = int(np.flatnonzero(labels == int(cls))[0])


def _from_heldout() -> tuple[CurrentDigit | None, str | None]:
    images, labels = resources.heldout()
    c1, c2, c3 = st.columns([2, 2, 1], vertical_alignment="bottom")
    c1.selectbox("Class", ["any", *range(10)], key="heldout_class", on_change=_first_of_class,
                 help="Jump to a digit of this class; 'Random' draws from it.")
    idx = c2.number_input("Held-out digit #", 0, len(images) - 1, key=IDX_KEY,
                          help="One of the 1 000 bundled digits the model never saw in "
                               "training.")
    c3.button("Random", on_click=_random_index, width="stretch")
    i = int(idx)
    return CurrentDigit.from_image(images[i], f"held-out #{i}", int(labels[i])), None


def _from_upload() -> tuple[CurrentDigit | None, str | None]:
    f = st.file_uploader("A picture of one digit", type=UPLOAD_TYPES, key="digit_upload",
                         help="Dark on light or light on dark; it is cropped, scaled and "
                              "centred like MNIST. Kept in memory only.")
    injected = st.session_state.get(UPLOAD_BYTES)
    if f is not None:
        name, data = f.name, f.getvalue()
    elif injected is not None:
        name, data = injected
    else:
        return None, "Upload a picture of a digit (PNG, JPEG, …)."
    try:
        digit = image_to_digit(load_image(data))
    except ImageLoadError as e:
        st.error(f"{name}: {e}")
        return None, "Upload another picture of one digit, or draw one."
    return CurrentDigit.from_image(digit, f"upload: {name}"), None


def digit_input() -> tuple[CurrentDigit | None, str | None]:
    """Draw the input controls; return the digit, or None and a message saying why not."""
    source = st.radio("Input", SOURCES, horizontal=True, key="digit_source")
    if source == "Draw":
        return _from_canvas()
    if source == "Held-out digit":
        return _from_heldout()
    return _from_upload()
