"""The model and its preprocessing card, for the Image explorer and the MRI inspector.

:func:`choose_model_and_card` draws the sidebar's model choice (a bundled model, VGG-16
with ImageNet weights, an operator's model, or "your own checkpoint") and, for the latter,
the checkpoint, an
optional model card (JSON), the architecture (every registry architecture, searchable), the
class names and the preprocessing card editor (:func:`ui.card_editor.card_editor`). It
returns a :class:`Setup`: the model and the card that makes its input.

A model card restores the architecture, class names, preprocessing and provenance; a
safetensors checkpoint whose metadata holds one does so by itself (an uploaded card file
wins over it). A card that contradicts its checkpoint (classes, architecture, channels) is
an ``st.error`` naming both files. Tests put bytes under :data:`MODEL_CARD_UPLOAD` (and a
name under ``MODEL_CARD_UPLOAD + "_name"``) instead of using the uploader; the JSON the
download button offers is kept under ``f"{ns}_model_card_json"``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st
from torch import nn

from lrp_engine.checkpoints import CheckpointError, LoadedModel
from lrp_engine.io import load_image
from lrp_engine.models.card import (
    CardError,
    ModelCard,
    PreprocessingCard,
    card_from_json,
    card_from_safetensors,
)
from lrp_engine.models.zoo import (
    ARCHITECTURES,
    IMAGENET_CLASSES,
    bundled_weights,
    preprocessing,
    spec,
)
from lrp_engine.operator_models import (
    ENV,
    OperatorModel,
    OperatorModelError,
    configured_path,
    read_config,
)
from lrp_engine.operator_models import build as build_operator_model

from . import resources
from .card_editor import card_editor
from .scan_input import (
    CHECKPOINT_TYPES,
    CHECKPOINT_UPLOAD,
    CLASS_NAMES_UPLOAD,
    MODEL_LABELS,
    ModelChoice,
    _vgg16,
    parse_class_names,
    plain,
    read_upload,
)

MODEL_CARD_UPLOAD = "model_card_upload_bytes"


@dataclass(frozen=True)
class Setup:
    """The model to explain and the card that makes its input (``card.low``/``card.high``:
    the zB bounds)."""

    model: ModelChoice
    card: PreprocessingCard


def arch_label(arch: str) -> str:
    """``ResNet-18 · resnet18``: the label and the registry (torchvision) name."""
    return f"{spec(arch).label} · {arch}"


def first_in_channels(model: nn.Module) -> int | None:
    """The channel count the model's first convolution takes (None: no convolution)."""
    for mod in model.modules():
        if isinstance(mod, nn.modules.conv._ConvNd):
            return int(mod.in_channels)
    return None


def choose_model_and_card(options: tuple[str, ...], ns: str, default_arch: str = "vgg16",
                          scan: bool = False) -> Setup | None:
    """The sidebar's model choice among ``options`` (keys of
    :data:`ui.scan_input.MODEL_LABELS`) → :class:`Setup`, captioned in the sidebar with
    its label, the device and its loading notes; None after a message saying what is
    missing. Bundled models use their architecture's card."""
    setup = _choose_model_and_card(options, ns, default_arch, scan)
    if setup is not None:
        m = setup.model
        st.sidebar.caption(f"{plain(m.label)} · {resources.device_label()}")
        for note in m.notes:
            st.sidebar.caption(plain(note))
    return setup


def _choose_model_and_card(options: tuple[str, ...], ns: str, default_arch: str,
                           scan: bool) -> Setup | None:
    ops = _operator_models()
    labels = {**MODEL_LABELS, **{f"{OPERATOR}{o.name}": f"{o.label} (this server's)"
                                 for o in ops}}
    kind = st.sidebar.radio("Model", (*options, *(f"{OPERATOR}{o.name}" for o in ops)),
                            key=f"{ns}_model", format_func=labels.__getitem__)
    if kind.startswith(OPERATOR):
        return _operator_setup(next(o for o in ops if f"{OPERATOR}{o.name}" == kind))
    if kind == "checkpoint":
        return _checkpoint_setup(ns, default_arch, scan)
    if kind == "efficientnet_lite0":
        with st.spinner("Loading EfficientNet-Lite0…"):
            model = resources.imagenet_model("efficientnet_lite0")
        m: ModelChoice | None = ModelChoice(model, "efficientnet_lite0", "efficientnet_lite0",
                                            tuple(IMAGENET_CLASSES), MODEL_LABELS[kind])
    elif kind == "vgg16":
        m = _vgg16(ns)
    elif kind == "mri_demo3d":
        from lrp_engine.mri_demo3d import CLASS_NAMES, SLICE_PREPROCESSING

        m = ModelChoice(resources.mri_demo3d_model(), "mri_demo3d", "mri_demo3d",
                        tuple(CLASS_NAMES), MODEL_LABELS["mri_demo3d"])
        return Setup(m, SLICE_PREPROCESSING)  # a volume [1, 1, D, H, W] of such slices
    else:
        m = ModelChoice(resources.mri_demo_model(), "mri_demo", "mri_demo",
                        bundled_weights("mri_demo").class_names, MODEL_LABELS["mri_demo"])
    return None if m is None else Setup(m, preprocessing(m.arch))


# -- models the server's operator configured (LRP_MODELS) -------------------------------------

OPERATOR = "operator:"


@st.cache_resource(show_spinner=False)
def _operator_config(path: str) -> tuple[tuple[OperatorModel, ...], str | None]:
    """The operator's models of the TOML file ``path`` (read once per server process)."""
    try:
        return tuple(read_config(path)), None
    except OperatorModelError as e:
        return (), str(e)


def _operator_models() -> tuple[OperatorModel, ...]:
    path = configured_path()
    if path is None:
        return ()
    ops, error = _operator_config(path)
    if error is not None:
        st.sidebar.error(f"The server's model list ({ENV}) cannot be used: {plain(error)}")
    return ops


@st.cache_resource(max_entries=4, show_spinner=False)
def _operator_model(_spec: OperatorModel, key: str) -> tuple[nn.Module, int]:
    """The operator's model on :func:`ui.resources.device` and its number of outputs."""
    import torch

    model = build_operator_model(_spec)
    c, (h, w) = _spec.preprocessing.channels, _spec.preprocessing.size
    with torch.no_grad():
        k = int(model(torch.zeros(1, c, h, w)).shape[-1])
    return model.to(resources.device()).eval(), k


def _operator_setup(op: OperatorModel) -> Setup | None:
    try:
        with st.spinner(f"Loading {op.label}…"):
            model, k = _operator_model(op, f"{op.name}-{op.file}-{op.weights}")
    except OperatorModelError as e:
        st.error(plain(e))
        return None
    names = op.class_names or tuple(f"class {i}" for i in range(k))
    if len(names) != k:
        st.error(f"{plain(op.label)}: the server's configuration lists {len(names)} class "
                 f"names for a model with {k} outputs.")
        return None
    st.sidebar.caption(f"{k} classes · {plain(op.preprocessing.describe())}")
    m = ModelChoice(model, f"operator-{op.name}", op.name, names, op.label,
                    (f"defined by this server's operator in {op.file.name}",))
    return Setup(m, op.preprocessing)


def _read_model_card(up: object, ckpt: object) -> tuple[ModelCard | None,
                                                        PreprocessingCard | None, str]:
    """(model card, preprocessing card, where it came from) of the card upload, else of the
    safetensors checkpoint's metadata. Raises CardError worded with the file's name."""
    if up is not None:
        try:
            card = card_from_json(up.data)
        except CardError as e:
            raise CardError(f"{up.name}: {e}") from None
        if isinstance(card, ModelCard):
            return card, card.preprocessing, up.name
        return None, card, up.name
    if ckpt is not None:
        try:
            card = card_from_safetensors(ckpt.data)
        except CardError as e:
            raise CardError(f"{ckpt.name}: {e}") from None
        if card is not None:
            return card, card.preprocessing, f"{ckpt.name} (its metadata)"
    return None, None, ""


def _registry_name(arch: str) -> str | None:
    low = arch.strip().lower()
    return next((a for a in ARCHITECTURES if a.lower() == low), None)


@dataclass(frozen=True)
class _CardSource:
    """The model card of the card upload or of the checkpoint's metadata: the card, its
    preprocessing, where it came from, the error that kept it from being read, and a tag
    that changes with the card's file."""

    model: ModelCard | None
    preprocessing: PreprocessingCard | None
    where: str
    error: str | None
    tag: str


def _card_source(card_up: object, up: object) -> _CardSource:
    try:
        mcard, pcard, where = _read_model_card(card_up, up)
        error = None
    except CardError as e:
        mcard, pcard, where, error = None, None, "", str(e)
    tag = (card_up.digest if card_up is not None else
           up.digest if mcard is not None and up is not None else "")
    return _CardSource(mcard, pcard, where, error, tag)


def _architecture(ns: str, default_arch: str, card: _CardSource) -> str:
    """The architecture select box; a new model card sets it once to the card's."""
    s = st.session_state
    arch_key = f"{ns}_ckpt_arch"
    if card.model is not None and s.get(f"{ns}_card_applied") != card.tag:
        s[f"{ns}_card_applied"] = card.tag
        name = _registry_name(card.model.architecture)
        if name is not None:
            s[arch_key] = name
    if arch_key not in s or s[arch_key] not in ARCHITECTURES:
        s[arch_key] = default_arch if default_arch in ARCHITECTURES else next(iter(ARCHITECTURES))
    arch = st.sidebar.selectbox("Architecture", list(ARCHITECTURES), key=arch_key,
                                format_func=arch_label,
                                help="Every architecture of the registry: type to search "
                                     "(e.g. 'resnet', 'vit_b_16').")
    st.sidebar.caption(spec(arch).description)
    return arch


def _card_unusable(card: _CardSource) -> bool:
    """Whether the model card cannot be used (said in an ``st.error``)."""
    if card.error is not None:
        st.error(f"The model card cannot be used: {plain(card.error)}")
        return True
    if card.model is not None and _registry_name(card.model.architecture) is None:
        st.error(f"The model card {plain(card.where)} is for architecture "
                 f"'{plain(card.model.architecture)}', which this app does not know.")
        return True
    return False


def _contradicts(card: _CardSource, up: object, k: int, arch: str, in_ch: int | None) -> bool:
    """Whether the model card contradicts the loaded checkpoint (said in an ``st.error``)."""
    if card.model is None:
        return False
    try:
        card.model.check_against(k, arch, in_ch)
    except CardError as e:
        st.error(f"The model card {plain(card.where)} contradicts the checkpoint "
                 f"{plain(up.name)}: {plain(e)}.")
        return True
    return False


def _edited_card(ns: str, arch: str, up: object, card: _CardSource, in_ch: int | None,
                 scan: bool) -> PreprocessingCard | None:
    """The preprocessing card editor (reset by a new checkpoint, architecture or card);
    None when its card is invalid or does not fit the model's first layer."""
    with st.expander("Preprocessing card: what the model sees", expanded=True):
        pre = card_editor(f"{ns}_pre", preprocessing(arch),
                          source=f"{up.digest[:16]}-{arch}-{card.tag[:16]}",
                          loaded=card.preprocessing, scan=scan)
        if pre is not None and in_ch is not None and pre.channels != in_ch:
            st.error(f"The preprocessing gives {pre.channels} channel(s) but the model's "
                     f"first layer takes {in_ch}: choose {in_ch} channel(s).")
            return None
    return pre


def _card_download(ns: str, card: _CardSource, out: dict[str, object]) -> None:
    """The provenance field and the model card's download button (the card's JSON also
    under ``f"{ns}_model_card_json"``); ``out``: the card's other fields."""
    s, sb = st.session_state, st.sidebar
    prov_key = f"{ns}_provenance"
    if card.model is not None and s.get(f"{ns}_provenance_for") != card.tag:
        s[f"{ns}_provenance_for"] = card.tag
        s[prov_key] = card.model.provenance
    provenance = sb.text_area("Provenance (for the model card)", key=prov_key,
                              max_chars=20_000, placeholder="Who trained it, on what, when…")
    try:
        text = ModelCard(**out, provenance=provenance).to_json()
    except CardError as e:
        sb.error(f"No model card can be written: {plain(e)}")
    else:
        s[f"{ns}_model_card_json"] = text
        sb.download_button("Download the model card (JSON)", text, "model_card.json",
                           "application/json", on_click="ignore", key=f"{ns}_card_download")


def _class_names_file(names_up: object) -> tuple[bool, tuple[str, ...] | None]:
    """(whether the class-name upload is usable, its names); a bad one is an ``st.error``."""
    if names_up is None:
        return True, None
    try:
        return True, parse_class_names(names_up.data)
    except ValueError as e:
        st.error(f"{plain(names_up.name)}: {plain(e)}")
        return False, None


def _checkpoint_setup(ns: str, default_arch: str, scan: bool) -> Setup | None:
    sb = st.sidebar
    up = read_upload("Checkpoint (.pt, .pth, .safetensors)", f"{ns}_ckpt_file",
                     CHECKPOINT_UPLOAD, CHECKPOINT_TYPES, container=sb,
                     help="A state dict (torch.save(model.state_dict(), …)) or a safetensors "
                          "file (its model card, if any, is read too). Pickled Python objects "
                          "are refused, never executed. Kept in memory only.")
    card_up = read_upload("Model card (.json, optional)", f"{ns}_card_file", MODEL_CARD_UPLOAD,
                          ["json"], container=sb,
                          help="Architecture, classes, class names and preprocessing, as the "
                               "download button below writes it. Read as data only.")
    card = _card_source(card_up, up)
    arch = _architecture(ns, default_arch, card)
    names_up = read_upload("Class names (optional text file, one per line)",
                           f"{ns}_ckpt_names", CLASS_NAMES_UPLOAD, ["txt", "csv"], container=sb)
    if _card_unusable(card):
        return None
    if up is None:
        st.info("Upload a checkpoint in the sidebar (a state dict saved with torch.save, or a "
                ".safetensors file), with its model card if you have one, and choose its "
                "architecture.")
        return None
    names_ok, names = _class_names_file(names_up)
    loaded = _load(up, arch, names) if names_ok else None
    if loaded is None:
        return None
    k = loaded.num_classes
    sb.caption(f"{k} classes (read from the checkpoint)")
    in_ch = first_in_channels(loaded.model)
    if _contradicts(card, up, k, arch, in_ch):
        return None
    class_names = tuple(loaded.class_names)
    if names is None and card.model is not None and card.model.class_names:
        class_names = tuple(card.model.class_names)
    pre = _edited_card(ns, arch, up, card, in_ch, scan)
    if pre is None:
        return None
    _card_download(ns, card, {"architecture": arch, "num_classes": k, "preprocessing": pre,
                              "class_names": class_names})
    notes = list(loaded.notes)
    if card.where:
        notes.append(f"model card from {card.where}")
    m = ModelChoice(loaded.model, f"checkpoint-{up.digest[:16]}-{arch}-{k}", arch, class_names,
                    f"{up.name} ({spec(arch).label}, {k} classes)", tuple(notes))
    return Setup(m, pre)


def _load(up: object, arch: str, names: tuple[str, ...] | None) -> LoadedModel | None:
    args = (up.digest, arch, None, names)
    errors = st.session_state.setdefault("_checkpoint_errors", {})
    if args in errors:  # a bad file is not re-read on every rerun
        st.error(errors[args])
        return None
    try:
        with st.spinner("Reading the checkpoint…"):
            return resources.user_checkpoint(up.data, *args, up.name)
    except CheckpointError as e:
        errors[args] = msg = f"{plain(up.name)}: {plain(e)}"
        while len(errors) > 8:
            errors.pop(next(iter(errors)))
        st.error(msg)
        return None


# -- the model's input -------------------------------------------------------------------------

@dataclass(frozen=True)
class CardInput:
    """The model input ``x`` (float32 [1, C, H, W]) made by a card, the picture of it
    ``shown`` (uint8 [H, W] or [H, W, 3]: the pixels before normalisation) and a caption
    with its shape and value range."""

    x: np.ndarray
    shown: np.ndarray
    caption: str


def _shown(card: PreprocessingCard, x) -> np.ndarray:
    px = card.denormalise(x)[0]
    lo, hi = float(px.min()), float(px.max())
    if card.windowing == "none" and card.pixel_range == 1.0 and lo >= -1e-6 and hi <= 1 + 1e-6:
        img = px.clamp(0, 1)
    else:  # raw intensities: their own range
        img = (px - lo) / (hi - lo) if hi > lo else px * 0
    a = img.mul(255).round().byte().permute(1, 2, 0).numpy()
    return a[..., 0] if a.shape[-1] == 1 else a


def _caption(x: np.ndarray) -> str:
    shape = "×".join(str(d) for d in x.shape)
    return (f"The tensor the model sees: {shape}, values {float(x.min()):.4g} … "
            f"{float(x.max()):.4g}")


@st.cache_data(max_entries=16, show_spinner=False)
def card_input(image: object, card_json: str) -> CardInput:
    """``image`` (photo bytes, or a 2-D numpy array of a scan) through the card (its JSON)."""
    card = PreprocessingCard.from_json(card_json)
    src = load_image(image) if isinstance(image, bytes) else image
    x = card.to_tensor(src)
    xa = np.ascontiguousarray(x.numpy(), dtype=np.float32)
    return CardInput(xa, _shown(card, x), _caption(xa))


def scan_pixels(array: np.ndarray, kind: str) -> np.ndarray:
    """A scan as the card should read it: pictures (PNG/JPEG, 8-bit values) as uint8, so
    they take torchvision's PIL path (``Resize`` + ``ToTensor``); DICOM/NIfTI intensities
    as float32."""
    a = np.asarray(array)
    if kind == "image" and np.isfinite(a).all() and a.min() >= 0 and a.max() <= 255 \
            and np.array_equal(a, np.round(a)):
        return a.astype(np.uint8)
    return a.astype(np.float32)


def display_geometry(card: PreprocessingCard, windowed: np.ndarray) -> np.ndarray:
    """The windowed scan (uint8 [H, W]) resized and cropped exactly like the model input:
    the picture under the heatmap."""
    geo = card.replace(channels=1, pixel_range=1.0, mean=(), std=(), windowing="none")
    px = geo.to_pixels(np.ascontiguousarray(windowed, dtype=np.uint8))
    return px[0, 0].clamp(0, 1).mul(255).round().byte().numpy()


__all__ = ["MODEL_CARD_UPLOAD", "CardInput", "Setup", "arch_label", "card_input",
           "choose_model_and_card", "display_geometry", "first_in_channels", "scan_pixels"]
