"""Inputs of the Image explorer and the MRI inspector: uploads, models, photos and scans.

* :func:`read_upload`: a file uploader → :class:`Upload` (bytes, name, sha256), read in
  memory only. Tests and demos replace an uploader by putting bytes under its session-state
  key (:data:`IMAGE_UPLOAD`, :data:`CHECKPOINT_UPLOAD`, :data:`CLASS_NAMES_UPLOAD`,
  :data:`SCAN_UPLOAD`; the file name, optional, under the same key + ``"_name"``), like
  :data:`ui.state.CANVAS_IMAGE` replaces the canvas.
* :class:`ModelChoice`: the model a page explains (the sidebar's choice is drawn by
  :func:`ui.model_setup.choose_model_and_card`).
* :func:`photo_input`: a bundled sample or an uploaded photo.
* :func:`scan_model_input`, :func:`scan_background`: a scan's slice → the bundled demo
  model's input and the windowed picture under its heatmap (the scan itself is chosen by
  :mod:`ui.scan_viewer`).

Every bad input ends in an ``st.error``/``st.info`` in plain words and ``None``; user text
(file names, class names, messages quoting them) goes through :func:`plain` before it reaches
anything that renders Markdown.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import streamlit as st
import torch
from torch import nn

from lrp_engine import has_dropout, medical
from lrp_engine.models.card import PreprocessingCard
from lrp_engine.models.zoo import (
    IMAGENET_CLASSES,
    WeightsUnavailableError,
    model_label,
    preprocessing,
)

from . import resources

#: session-state keys whose bytes replace an uploader (tests, demos)
IMAGE_UPLOAD = "image_upload_bytes"
CHECKPOINT_UPLOAD = "checkpoint_upload_bytes"
CLASS_NAMES_UPLOAD = "class_names_upload_bytes"
SCAN_UPLOAD = "scan_upload_bytes"

#: the folder holding lrp_engine: the repository, or site-packages once installed
ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DIR = ROOT / "lrp_engine" / "assets" / "images"
#: the bundled photos (lrp_engine/assets/IMAGES.md), file → what it shows
SAMPLES = {"cat_chelsea.jpg": "Chelsea the cat", "coffee.jpg": "A cup of coffee",
           "astronaut.jpg": "Astronaut Eileen Collins", "rocket.jpg": "A rocket launch"}
PHOTO_TYPES = ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"]
CHECKPOINT_TYPES = ["pt", "pth", "safetensors", "bin", "ckpt"]
#: the model choices, key → label: the registry's models as the registry names them, the
#: 3-D demo (a volume model, not in the registry) and the user's own checkpoint
MODEL_LABELS = {
    **{arch: model_label(arch) for arch in ("efficientnet_lite0", "vgg16", "mri_demo")},
    "mri_demo3d": "Bundled 3-D demo CNN (synthetic lesion volumes, not diagnostic)",
    "checkpoint": "Your own checkpoint",
}
MAX_CLASS_NAMES = 100_000
#: upload digests remembered per session (a series may be thousands of files)
MAX_DIGESTS = 4096
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&^=])")


def plain(text: object) -> str:
    """``text`` with every Markdown/HTML special character escaped: it renders literally in
    ``st.markdown``, ``st.error``, captions and labels (user data is never markup)."""
    s = str(text).replace("\r", " ").replace("\n", " ")
    return _MD_SPECIAL.sub(r"\\\1", s)


# -- uploads ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Upload:
    """An uploaded (or bundled, or injected) file: its bytes, name and sha256 (hex)."""

    data: bytes = field(repr=False)
    name: str
    digest: str


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_upload(label: str, key: str, inject_key: str, types: list[str] | None = None,
                help: str | None = None, container: object = st) -> Upload | None:
    """A file uploader's file (None before one is chosen), or the bytes injected under
    ``st.session_state[inject_key]`` instead of the uploader. The digest of a large upload
    is computed once per file, not on every rerun."""
    injected = st.session_state.get(inject_key)
    if injected is not None:
        data = bytes(injected)
        name = str(st.session_state.get(f"{inject_key}_name") or "injected file")
        return Upload(data, name, _digest(data))
    f = container.file_uploader(label, type=types, key=key, help=help)
    if f is None:
        return None
    return uploaded(f)


def uploaded(f: object) -> Upload:
    """An uploader's file as an :class:`Upload`; its digest is computed once per file (a
    session memo by file id), not on every rerun."""
    data = f.getvalue()
    memo = st.session_state.setdefault("_upload_digests", {})
    digest = memo.get(f.file_id)
    if digest is None:
        digest = memo[f.file_id] = _digest(data)
        while len(memo) > MAX_DIGESTS:
            memo.pop(next(iter(memo)))
    return Upload(data, f.name, digest)


# -- models -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelChoice:
    """A model ready to explain (shared: never modify it), its cache ``key``, architecture,
    one class name per output, a display ``label`` (may hold user text: use :func:`plain`)
    and loading ``notes``."""

    model: nn.Module
    key: str
    arch: str
    class_names: tuple[str, ...]
    label: str
    notes: tuple[str, ...] = ()

    @property
    def preprocessing(self) -> PreprocessingCard:
        """What the model's input must look like (size, channels, mean/std, zB bounds)."""
        return preprocessing(self.arch)

    @property
    def has_dropout(self) -> bool:
        """Whether B-LRP can sample networks (a dropout layer exists)."""
        return has_dropout(self.model)


def _vgg16(ns: str) -> ModelChoice | None:
    """VGG-16 from the hub cache (or downloaded once); offline: the reason and a path field."""
    failed = f"{ns}_vgg16_unavailable"
    if st.session_state.get(failed) is None:
        try:
            with st.spinner("Loading VGG-16 (the first time, this downloads 528 MB)…"):
                model = resources.imagenet_model("vgg16")
            return ModelChoice(model, "vgg16", "vgg16", tuple(IMAGENET_CLASSES),
                               MODEL_LABELS["vgg16"])
        except WeightsUnavailableError as e:
            st.session_state[failed] = str(e)  # do not retry the download on every rerun
    st.error(plain(st.session_state[failed]))
    c1, c2 = st.columns([4, 1], vertical_alignment="bottom")
    path = c1.text_input("Path of a local copy of vgg16-397923af.pth", key=f"{ns}_vgg16_path",
                         placeholder="/path/to/vgg16-397923af.pth",
                         help="A file on the computer that runs this app; it is read with "
                              "weights_only=True (no pickled code runs).")
    if c2.button("Try the download again", key=f"{ns}_vgg16_retry"):
        st.session_state.pop(failed, None)
        st.rerun()
    if not path.strip():
        return None
    try:
        with st.spinner("Loading VGG-16…"):
            model = resources.imagenet_model("vgg16", path.strip())
    except WeightsUnavailableError as e:
        st.error(plain(e))
        return None
    return ModelChoice(model, f"vgg16-file-{_digest(path.strip().encode())[:12]}", "vgg16",
                       tuple(IMAGENET_CLASSES), MODEL_LABELS["vgg16"])


def parse_class_names(data: bytes) -> tuple[str, ...]:
    """A text file of class names → names: one per line, or one line of comma-separated
    names; blank lines skipped. ValueError in plain words for unusable files."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError("the class-names file is not UTF-8 text") from None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if len(lines) == 1 and "," in lines[0]:
        lines = [p.strip() for p in lines[0].split(",") if p.strip()]
    if not lines:
        raise ValueError("the class-names file is empty")
    if len(lines) > MAX_CLASS_NAMES:
        raise ValueError(f"the class-names file has {len(lines)} lines; at most "
                         f"{MAX_CLASS_NAMES} are accepted")
    return tuple(ln[:200] for ln in lines)


@functools.lru_cache(maxsize=len(SAMPLES))
def _sample(name: str) -> Upload:
    data = (SAMPLE_DIR / name).read_bytes()
    return Upload(data, name, _digest(data))


def photo_input() -> tuple[Upload | None, str | None]:
    """A bundled sample photo or an upload; or None and a message saying what to do."""
    source = st.radio("Photo", ("Bundled sample", "Upload"), horizontal=True, key="img_source")
    if source == "Bundled sample":
        name = st.selectbox("Sample", list(SAMPLES), key="img_sample",
                            format_func=SAMPLES.__getitem__,
                            help="Public-domain / CC0 photos (lrp_engine/assets/IMAGES.md).")
        return _sample(name), None
    up = read_upload("A photo (JPEG, PNG, WebP, GIF, BMP, TIFF)", "img_upload", IMAGE_UPLOAD,
                     PHOTO_TYPES, help="Kept in memory only: never written to disk or sent "
                                       "anywhere.")
    return up, None if up is not None else "Upload a photo, or pick a bundled sample."


def scan_model_input(array: np.ndarray, kind: str, arch: str) -> np.ndarray:
    """The bundled 2-D demo model's input [1, C, S, S] (float32) from a slice [rows, cols]:
    a demo slice of the model's own size as it is (as trained); anything else through
    :func:`lrp_engine.medical.scan_to_tensor` (0.5–99.5 percentiles → 0…1, padded square,
    resized), repeated to the model's channels and normalised."""
    pre = preprocessing(arch)
    size = pre.size[0]
    if kind == "demo" and array.shape == (size, size):
        return np.ascontiguousarray(array[None, None], dtype=np.float32)
    x01 = medical.scan_to_tensor(array, size=size)
    x = pre.normalise(x01.expand(1, pre.channels, size, size))
    return np.ascontiguousarray(x.numpy(), dtype=np.float32)


def scan_background(array: np.ndarray, size: int, centre: float, width: float) -> np.ndarray:
    """The windowed slice (uint8) resampled exactly like the model's input ([size, size]):
    the picture under the heatmap."""
    a = np.nan_to_num(np.asarray(array, dtype=np.float64))
    if a.shape == (size, size):
        return medical.window(a, centre, width)
    lo, hi = float(a.min()), float(a.max())
    t = medical.scan_to_tensor(a, size=size, low_pct=0.0, high_pct=100.0)[0, 0].double().numpy()
    raw = lo + t * (hi - lo if hi > lo else 1.0)
    return medical.window(raw, centre, width)


def to_device(x: np.ndarray) -> torch.Tensor:
    """``x`` as a tensor on :func:`ui.resources.device` (for the rule table's shapes)."""
    return torch.from_numpy(x).to(resources.device())
