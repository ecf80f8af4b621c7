"""The preprocessing card editor shared by the Image explorer and the MRI inspector.

:func:`card_editor` shows a preset choice (the architecture's default, "ImageNet evaluation",
"resize to a square, no normalisation", a loaded model card's, or "custom") and the card's
fields (input H×W, resize mode, channels, pixel range, normalisation, interpolation and, for
scans, windowing), and returns the :class:`~lrp_engine.models.card.PreprocessingCard` they
make, or None after an ``st.error`` in plain words. Choosing a preset fills the fields;
editing a field makes the preset "custom".
"""

from __future__ import annotations

import streamlit as st

from lrp_engine.models.card import (
    CARD_PRESETS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INTERPOLATIONS,
    RESIZE_MODES,
    WINDOW_PERCENTILES,
    CardError,
    PreprocessingCard,
)

DEFAULT = "architecture default"
FROM_CARD = "from the model card"
CUSTOM = "custom"
#: the named presets offered (besides the architecture's default and a loaded card)
PRESETS = ("ImageNet evaluation", "resize to a square, no normalisation")
RESIZE_LABELS = {"shorter-side-crop": "shorter side, then centre crop",
                 "stretch": "stretch to H×W", "pad-square": "pad to a square, then resize"}
CHANNEL_LABELS = {1: "1 (grey)", 3: "3 (RGB; grey pictures repeated to 3)"}
RANGE_LABELS = {1.0: "0…1", 255.0: "0…255"}
NORMS = ("ImageNet", "none", "custom")
WINDOW_LABELS = {"percentile": "percentile ({:g}–{:g} % → 0…1)".format(*WINDOW_PERCENTILES),
                 "none": "raw intensities"}
#: the largest input side offered (a card allows 4096; a 4096² input would take a shared
#: server's memory for one visitor's explanation)
MAX_EDIT_SIDE = 1024
_FIELDS = ("h", "w", "resize", "resize_size", "channels", "range", "norm", "mean", "std",
           "interp", "window")


def _k(ns: str, name: str) -> str:
    return f"{ns}_card_{name}"


def _numbers_text(v: tuple[float, ...]) -> str:
    return ", ".join(f"{x:.6g}" for x in v)


def _norm_of(card: PreprocessingCard) -> str:
    if not card.mean:
        return "none"
    pr = card.pixel_range
    if (len(card.mean) == 3
            and all(abs(m - a * pr) < 1e-9 for m, a in zip(card.mean, IMAGENET_MEAN, strict=True))
            and all(abs(s - a * pr) < 1e-9 for s, a in zip(card.std, IMAGENET_STD, strict=True))):
        return "ImageNet"
    return "custom"


def fill(ns: str, card: PreprocessingCard) -> None:
    """Put ``card``'s values into the editor's widgets (before they are drawn; sides beyond
    :data:`MAX_EDIT_SIDE` are clipped to it)."""
    s = st.session_state
    s[_k(ns, "h")] = min(int(card.size[0]), MAX_EDIT_SIDE)
    s[_k(ns, "w")] = min(int(card.size[1]), MAX_EDIT_SIDE)
    s[_k(ns, "resize")] = card.resize
    s[_k(ns, "resize_size")] = min(int(card.resize_side), 2 * MAX_EDIT_SIDE)
    s[_k(ns, "channels")] = card.channels
    s[_k(ns, "range")] = card.pixel_range
    s[_k(ns, "norm")] = _norm_of(card)
    s[_k(ns, "mean")] = _numbers_text(card.mean) if card.mean else ""
    s[_k(ns, "std")] = _numbers_text(card.std) if card.std else ""
    s[_k(ns, "interp")] = card.interpolation
    s[_k(ns, "window")] = card.windowing


def _numbers(text: str, what: str, channels: int) -> tuple[float, ...]:
    parts = [p for p in str(text).replace(";", ",").replace(" ", ",").split(",") if p]
    if not parts:
        raise CardError(f"custom normalisation needs the {what}: one number per channel, "
                        "separated by commas")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise CardError(f"the {what} must be numbers separated by commas, got "
                        f"'{str(text)[:60]}'") from None
    if len(values) == 1 and channels > 1:
        values = values * channels
    if len(values) != channels:
        raise CardError(f"the {what} needs one value per channel ({channels}), got "
                        f"{len(values)}")
    return values


def _build(ns: str, scan: bool) -> PreprocessingCard:
    s = st.session_state
    channels = int(s[_k(ns, "channels")])
    pr = float(s[_k(ns, "range")])
    norm = s[_k(ns, "norm")]
    if norm == "none":
        mean: tuple[float, ...] = ()
        std: tuple[float, ...] = ()
    elif norm == "ImageNet":
        if channels != 3:
            raise CardError("ImageNet normalisation has one mean and std per RGB channel: "
                            "choose 3 channels, or no or custom normalisation")
        mean = tuple(m * pr for m in IMAGENET_MEAN)
        std = tuple(v * pr for v in IMAGENET_STD)
    else:
        mean = _numbers(s[_k(ns, "mean")], "mean", channels)
        std = _numbers(s[_k(ns, "std")], "std", channels)
    resize = s[_k(ns, "resize")]
    return PreprocessingCard(
        size=(int(s[_k(ns, "h")]), int(s[_k(ns, "w")])), resize=resize,
        resize_size=int(s[_k(ns, "resize_size")]) if resize == "shorter-side-crop" else None,
        channels=channels, pixel_range=pr, mean=mean, std=std,
        windowing=s[_k(ns, "window")] if scan else "none",
        interpolation=s[_k(ns, "interp")])


def _preset_cards(default: PreprocessingCard, loaded: PreprocessingCard | None
                  ) -> dict[str, PreprocessingCard]:
    """The cards a preset name stands for (the model card's first, when there is one)."""
    cards: dict[str, PreprocessingCard] = {FROM_CARD: loaded} if loaded is not None else {}
    return {**cards, DEFAULT: default, **{p: CARD_PRESETS[p] for p in PRESETS}}


def _on_preset(ns: str, cards: dict[str, PreprocessingCard]) -> None:
    chosen = st.session_state[_k(ns, "preset")]
    if chosen in cards:
        fill(ns, cards[chosen])


def _on_field(ns: str) -> None:
    st.session_state[_k(ns, "preset")] = CUSTOM


def _field_widgets(ns: str, scan: bool) -> None:
    """The card's fields; editing one makes the preset 'custom'."""
    s = st.session_state

    def kw(name: str) -> dict[str, object]:
        return {"key": _k(ns, name), "on_change": _on_field, "args": (ns,)}

    c1, c2, c3 = st.columns(3)
    c1.number_input("Input height", 1, MAX_EDIT_SIDE, step=1, **kw("h"))
    c2.number_input("Input width", 1, MAX_EDIT_SIDE, step=1, **kw("w"))
    c3.selectbox("Resize", RESIZE_MODES, format_func=RESIZE_LABELS.__getitem__, **kw("resize"))
    c1, c2, c3 = st.columns(3)
    if s[_k(ns, "resize")] == "shorter-side-crop":
        c1.number_input("Shorter side before the crop", 1, 2 * MAX_EDIT_SIDE, step=1,
                        **kw("resize_size"))
    c2.selectbox("Channels", (1, 3), format_func=CHANNEL_LABELS.__getitem__,
                 help="As many as the model's first layer takes.", **kw("channels"))
    c3.selectbox("Interpolation", INTERPOLATIONS, **kw("interp"))
    c1, c2, c3 = st.columns(3)
    c1.radio("Pixel range", (1.0, 255.0), format_func=RANGE_LABELS.__getitem__,
             horizontal=True, **kw("range"))
    c2.radio("Normalisation", NORMS, horizontal=True,
             help="ImageNet: mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225), times "
                  "255 for pixels 0…255.", **kw("norm"))
    if scan:
        c3.radio("Windowing", ("percentile", "none"), format_func=WINDOW_LABELS.__getitem__,
                 **kw("window"))
    if s[_k(ns, "norm")] == "custom":
        m1, m2 = st.columns(2)
        m1.text_input("Mean (one per channel, in pixel-range units)", **kw("mean"))
        m2.text_input("Std (one per channel, in pixel-range units)", **kw("std"))


def card_editor(ns: str, default: PreprocessingCard, source: str,
                loaded: PreprocessingCard | None = None, scan: bool = False
                ) -> PreprocessingCard | None:
    """The editor (in the current container); ``default``: the architecture's card;
    ``source``: a tag of the model and card file (a new one resets the fields: to
    ``loaded``, a model card's preprocessing, when given, else to ``default``); ``scan``:
    offer windowing (MRI inspector). Returns the card, or None after an ``st.error``."""
    s = st.session_state
    cards = _preset_cards(default, loaded)
    options = [*cards, CUSTOM]
    if s.get(_k(ns, "source")) != source or any(_k(ns, f) not in s for f in _FIELDS):
        s[_k(ns, "source")] = source
        s[_k(ns, "preset")] = FROM_CARD if loaded is not None else DEFAULT
        fill(ns, cards[s[_k(ns, "preset")]])
    if s.get(_k(ns, "preset")) not in options:
        s[_k(ns, "preset")] = CUSTOM
    st.selectbox("Preprocessing preset", options, key=_k(ns, "preset"), on_change=_on_preset,
                 args=(ns, cards),
                 help="A preset fills the fields below; editing a field makes it 'custom'.")
    _field_widgets(ns, scan)
    chosen = cards.get(s[_k(ns, "preset")])
    if chosen is not None and max(chosen.size) > MAX_EDIT_SIDE:
        st.warning(f"An input side above {MAX_EDIT_SIDE} px is not offered on this shared "
                   f"server: {chosen.size[0]}×{chosen.size[1]} was reduced to at most "
                   f"{MAX_EDIT_SIDE} per side.")
    try:
        return _build(ns, scan)
    except CardError as e:
        from .scan_input import plain

        st.error(f"The preprocessing card is not valid: {plain(e)}")
        return None


__all__: list[str] = ["CUSTOM", "DEFAULT", "FROM_CARD", "card_editor", "fill"]
