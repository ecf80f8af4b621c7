"""Inputs of the Image explorer and the MRI inspector: uploads, models, photos and scans.

* :func:`read_upload`: a file uploader → :class:`Upload` (bytes, name, sha256), read in
  memory only. Tests and demos replace an uploader by putting bytes under its session-state
  key (:data:`IMAGE_UPLOAD`, :data:`CHECKPOINT_UPLOAD`, :data:`CLASS_NAMES_UPLOAD`,
  :data:`SCAN_UPLOAD`; the file name, optional, under the same key + ``"_name"``), like
  :data:`ui.state.CANVAS_IMAGE` replaces the canvas.
* :class:`ModelChoice`: the model a page explains (the sidebar's choice is drawn by
  :func:`ui.model_setup.choose_model_and_card`).
* :func:`photo_input`: a bundled sample or an uploaded photo.
* :func:`scan_input`, :func:`window_controls`, :func:`scan_model_input`,
  :func:`scan_background`: a demo slice, DICOM, NIfTI or PNG/JPEG → a 2-D scan, its display
  window and the model's input.

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

from lrp_engine import medical
from lrp_engine.io import ImageLoadError, load_image
from lrp_engine.models.card import PreprocessingCard
from lrp_engine.models.zoo import (
    IMAGENET_CLASSES,
    WeightsUnavailableError,
    preprocessing,
)

from . import resources

#: session-state keys whose bytes replace an uploader (tests, demos)
IMAGE_UPLOAD = "image_upload_bytes"
CHECKPOINT_UPLOAD = "checkpoint_upload_bytes"
CLASS_NAMES_UPLOAD = "class_names_upload_bytes"
SCAN_UPLOAD = "scan_upload_bytes"

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = ROOT / "assets" / "images"
#: the bundled photos (assets/IMAGES.md), file → what it shows
SAMPLES = {"cat_chelsea.jpg": "Chelsea the cat", "coffee.jpg": "A cup of coffee",
           "astronaut.jpg": "Astronaut Eileen Collins", "rocket.jpg": "A rocket launch"}
PHOTO_TYPES = ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"]
CHECKPOINT_TYPES = ["pt", "pth", "safetensors", "bin", "ckpt"]
#: the model choices, key → label
MODEL_LABELS = {
    "efficientnet_lite0": "EfficientNet-Lite0 (bundled, ImageNet)",
    "vgg16": "VGG-16 (ImageNet)",
    "mri_demo": "Bundled demo CNN (synthetic lesions, not diagnostic)",
    "checkpoint": "Your own checkpoint",
}
MAX_CLASS_NAMES = 100_000
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
    data = f.getvalue()
    memo = st.session_state.setdefault("_upload_digests", {})
    digest = memo.get(f.file_id)
    if digest is None:
        digest = memo[f.file_id] = _digest(data)
        while len(memo) > 8:
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
        return any(isinstance(m, nn.modules.dropout._DropoutNd) for m in self.model.modules())


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
                            help="Public-domain / CC0 photos (assets/IMAGES.md).")
        return _sample(name), None
    up = read_upload("A photo (JPEG, PNG, WebP, GIF, BMP, TIFF)", "img_upload", IMAGE_UPLOAD,
                     PHOTO_TYPES, help="Kept in memory only: never written to disk or sent "
                                       "anywhere.")
    return up, None if up is not None else "Upload a photo, or pick a bundled sample."


@dataclass(frozen=True)
class Scan:
    """One 2-D scan: ``array`` float32 [H, W] in the file's units (after DICOM rescale),
    where it came from, its ``kind`` ("demo", "DICOM", "NIfTI", "image"), the default display
    window (centre, width), the ``digest`` of its file (every slice of a volume shares it, and
    the window set for it), ``notes``/``meta`` from reading it, and for demo slices the
    ground-truth lesion ``mask`` (bool [96, 96]) and true class ``label``."""

    array: np.ndarray
    source: str
    kind: str
    window: tuple[float, float]
    digest: str
    notes: tuple[str, ...] = ()
    meta: dict = field(default_factory=dict)
    mask: np.ndarray | None = None
    label: int | None = None


def scan_kind(data: bytes, name: str = "") -> str:
    """"DICOM", "NIfTI" or "image", from the content (the name only breaks ties)."""
    n = name.lower()
    if data[128:132] == b"DICM" or n.endswith((".dcm", ".dicom", ".ima")):
        return "DICOM"
    if data[:2] == b"\x1f\x8b" or n.endswith((".nii", ".nii.gz")):
        return "NIfTI"
    head = int.from_bytes(data[:4], "little") if len(data) >= 4 else 0
    head_be = int.from_bytes(data[:4], "big") if len(data) >= 4 else 0
    if {head, head_be} & {348, 540} and len(data) >= 348:
        return "NIfTI"
    return "image"


def _session_memo(kind: str, digest: str, read: object) -> object:
    """``read()`` once per uploaded file in this session (one entry: the current scan)."""
    memo = st.session_state.get("_scan_memo")
    if memo is None or memo[0] != (kind, digest):
        memo = ((kind, digest), read())
        st.session_state["_scan_memo"] = memo
    return memo[1]


def _default_window(array: np.ndarray, meta: dict) -> tuple[float, float]:
    c, w = meta.get("window_center"), meta.get("window_width")
    if c is not None and w is not None and w > 0:
        return float(c), float(w)
    return medical.auto_window(array)


def scan_input(n_demo: int) -> Scan | None:
    """The scan: one of the demo's ``n_demo`` held-out slices or an upload (DICOM, NIfTI with
    axis and slice selectors, PNG/JPEG). None after an ``st.info``/``st.error`` saying why."""
    source = st.radio("Scan", ("Demo held-out slice", "Upload"), horizontal=True,
                      key="mri_source",
                      help="Demo slices are synthetic: a healthy template with drawn lesions.")
    if source == "Demo held-out slice":
        from lrp_engine.mri_demo import CLASS_NAMES

        batch = resources.mri_held_out(n_demo)
        i = int(st.number_input("Held-out slice #", 0, n_demo - 1, 0, key="mri_demo_index",
                                help="Synthetic slices the demo model never saw in training."))
        label = int(batch.labels[i])
        st.caption(f"True class: {CLASS_NAMES[label]} (synthetic).")
        return Scan(array=batch.images[i, 0].numpy(), source=f"demo held-out slice #{i}",
                    kind="demo", window=(0.5, 1.0), digest=f"demo-{i}",
                    mask=batch.masks[i].numpy(), label=label)
    up = read_upload("A scan: DICOM (.dcm), NIfTI (.nii, .nii.gz), PNG or JPEG", "mri_upload",
                     SCAN_UPLOAD, None, help="Read in memory only: never written to disk, "
                                             "never sent anywhere.")
    if up is None:
        st.info("Upload a scan (DICOM, NIfTI or PNG/JPEG), or choose a demo slice.")
        return None
    kind = scan_kind(up.data, up.name)
    try:
        if kind == "DICOM":
            img = _session_memo(kind, up.digest, lambda: medical.read_dicom(up.data))
            return Scan(img.array, f"DICOM {up.name}", kind,
                        _default_window(img.array, img.meta), up.digest, tuple(img.notes),
                        dict(img.meta))
        if kind == "NIfTI":
            return _nifti(up)
        grey = _session_memo(kind, up.digest, lambda: np.asarray(
            load_image(up.data).convert("L"), dtype=np.float32))
        return Scan(grey, f"image {up.name}", kind, (127.5, 255.0), up.digest)
    except (medical.ScanLoadError, ImageLoadError) as e:
        st.error(f"{plain(up.name)} (read as {kind}): {plain(e)}")
        return None


def _nifti(up: Upload) -> Scan:
    def read() -> tuple[medical.ScanVolume, tuple[float, float]]:
        v = medical.read_nifti(up.data)
        return v, medical.auto_window(v.volume)  # one window for every slice

    vol, window = _session_memo("NIfTI", up.digest, read)
    c1, c2 = st.columns(2)
    axis = c1.selectbox("Axis", (2, 1, 0), key="mri_nifti_axis",
                        format_func=lambda a: medical.AXIS_NAMES[a])
    n = int(vol.volume.shape[axis])
    index = c2.slider("Slice", 0, max(n - 1, 1), n // 2, key=f"mri_nifti_slice_{axis}",
                      disabled=n == 1)
    index = min(int(index), n - 1)
    sl, _ = medical.volume_slice(vol.volume, axis, index)
    meta = {**vol.meta, "axis": medical.AXIS_NAMES[axis], "slice": index}
    return Scan(sl, f"NIfTI {up.name}, {medical.AXIS_NAMES[axis]} slice {index + 1} of {n}",
                "NIfTI", window, up.digest, tuple(vol.notes), meta)


def window_controls(scan: Scan) -> tuple[float, float]:
    """Window centre (level) and width sliders in the scan's units (display only)."""
    a = scan.array
    lo, hi = float(a.min()), float(a.max())
    if not hi > lo:
        hi = lo + 1.0
    span = hi - lo
    c0, w0 = scan.window
    c0 = float(np.clip(c0, lo, hi))
    w0 = float(np.clip(w0, span / 1000, 2 * span))
    fmt = "%.3f" if span < 10 else "%.1f"
    c1, c2 = st.columns(2)
    tag = scan.digest[:24]
    centre = c1.slider("Window centre (level)", lo, hi, c0, step=span / 1000, format=fmt,
                       key=f"mri_wc_{tag}", help="Display only: the model's input is not "
                                                 "windowed.")
    width = c2.slider("Window width", span / 1000, 2 * span, w0, step=span / 1000, format=fmt,
                      key=f"mri_ww_{tag}", help="Values centre ± width/2 span black…white.")
    return float(centre), float(width)


def scan_model_input(scan: Scan, arch: str) -> np.ndarray:
    """The model's input [1, C, S, S] (float32): a demo slice as it is for the demo model;
    otherwise :func:`lrp_engine.medical.scan_to_tensor` (0.5–99.5 percentiles → 0…1, padded
    square, resized), repeated to the model's channels and normalised."""
    pre = preprocessing(arch)
    size = pre.size[0]
    if scan.kind == "demo" and arch == "mri_demo":
        return np.ascontiguousarray(scan.array[None, None], dtype=np.float32)
    x01 = medical.scan_to_tensor(scan.array, size=size)
    x = pre.normalise(x01.expand(1, pre.channels, size, size))
    return np.ascontiguousarray(x.numpy(), dtype=np.float32)


def scan_background(scan: Scan, size: int, centre: float, width: float) -> np.ndarray:
    """The windowed scan (uint8) resampled exactly like the model's input ([size, size]):
    the picture under the heatmap."""
    a = np.nan_to_num(np.asarray(scan.array, dtype=np.float64))
    lo, hi = float(a.min()), float(a.max())
    t = medical.scan_to_tensor(a, size=size, low_pct=0.0, high_pct=100.0)[0, 0].double().numpy()
    raw = lo + t * (hi - lo if hi > lo else 1.0)
    return medical.window(raw, centre, width)


def to_device(x: np.ndarray) -> torch.Tensor:
    """``x`` as a tensor on :func:`ui.resources.device` (for the rule table's shapes)."""
    return torch.from_numpy(x).to(resources.device())
