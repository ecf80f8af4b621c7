"""Session-state keys shared between pages, and the "current digit".

The Digits page stores the digit it explains under :data:`CURRENT_DIGIT`; the Filters page
shows that digit's activations. Tests (and anything else) can inject a drawing by putting an
RGBA array [H, W, 4] under :data:`CANVAS_IMAGE`: the Digits page then uses it instead of
the canvas.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

#: RGBA uint8 [H, W, 4] that replaces the canvas drawing when set (tests, demos)
CANVAS_IMAGE = "canvas_image"
#: the :class:`CurrentDigit` last explained on the Digits page
CURRENT_DIGIT = "current_digit"
#: the bundled model chosen in the sidebar
MODEL_ID = "model_id"


@dataclass(frozen=True)
class CurrentDigit:
    """A 28×28 uint8 digit (white on black) and where it came from."""

    data: bytes  # image.tobytes(), the cache key of every explanation
    source: str  # e.g. "held-out #12", "drawing", "upload: seven.png"
    label: int | None = None  # the true class when known

    @property
    def image(self) -> np.ndarray:
        return np.frombuffer(self.data, dtype=np.uint8).reshape(28, 28)

    @classmethod
    def from_image(cls, image: np.ndarray, source: str, label: int | None = None
                   ) -> CurrentDigit:
        a = np.ascontiguousarray(image, dtype=np.uint8)
        if a.shape != (28, 28):
            raise ValueError(f"a digit is 28×28, got {a.shape}")
        return cls(a.tobytes(), source, label)


def set_current_digit(digit: CurrentDigit) -> None:
    st.session_state[CURRENT_DIGIT] = digit


def current_digit() -> CurrentDigit | None:
    d = st.session_state.get(CURRENT_DIGIT)
    return d if isinstance(d, CurrentDigit) else None


def model_id(default: str = "lenet") -> str:
    return st.session_state.get(MODEL_ID, default)
