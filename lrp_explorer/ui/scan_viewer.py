"""The MRI inspector's scan: where it comes from, which slice is on screen, and how it is drawn.

* :func:`scan_source`: a demo slice, a demo volume, or uploads (DICOM files, a study's .zip,
  NIfTI, PNG/JPEG; several at once) → one :class:`ScanChoice` (the user picks a series when
  an upload holds several).
* :func:`slice_controls`: the plane, the slice and the display convention (radiological by
  default, neurological as a switch) → :class:`SliceSettings`.
* :func:`window_controls`: a window preset (the file's, the modality's, auto, full) and the
  centre/width sliders.
* :func:`scan_figure` / :func:`orient_figure`: a slice with its R/L, A/P, S/I markers, a
  scale bar and the voxel spacing's aspect.

Uploads are read in memory (never written to disk); tests put bytes, or a list of
``(name, bytes)``, under :data:`ui.scan_input.SCAN_UPLOAD` instead of the uploader.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from lrp_engine.scans import AXIS_NAMES, Convention, SliceView, Volume, slice_array, view

from . import resources
from .scan_input import SCAN_UPLOAD, Upload, _digest, plain, uploaded

#: what the scan uploader takes (the content decides; the name only breaks ties)
SCAN_TYPES = ["dcm", "dicom", "ima", "zip", "nii", "gz", "png", "jpg", "jpeg", "tif", "tiff",
              "bmp", "webp"]
MAX_UPLOAD_FILES = 2000
DEMO_SPACING = 1.97  # mm per pixel of the demo's slices (lrp_engine/assets/MRI.md)
DEMO_SOURCES = ("Demo held-out slice", "Demo volume", "Upload")
CONVENTION_TEXT = {
    "radiological": "radiological: the patient's right on the image's left",
    "neurological": "neurological: the patient's left on the image's left"}


@dataclass(frozen=True)
class ScanChoice:
    """The scan on the page: its :class:`~lrp_engine.scans.Volume`, a de-identified
    ``source`` (shown and reported; never a file name), the ``kind`` ("demo", "DICOM",
    "NIfTI", "image"), a ``digest`` naming the upload and series (state and caches key on
    it), reading ``problems`` (files skipped), and for demo scans the ground-truth lesion
    ``mask`` (bool, the volume's shape) and true class ``label``."""

    volume: Volume
    source: str
    kind: str
    digest: str
    problems: tuple[str, ...] = ()
    mask: np.ndarray | None = None
    label: int | None = None

    @property
    def study_date(self) -> str | None:
        """The study date (YYYY-MM-DD) when the file has one: reported only on request."""
        return self.volume.study_date


def read_uploads(label: str, key: str, help: str | None = None) -> list[Upload]:
    """The uploaded files, or what a test put under :data:`SCAN_UPLOAD` (bytes with an
    optional ``SCAN_UPLOAD + "_name"``, or a list of (name, bytes))."""
    injected = st.session_state.get(SCAN_UPLOAD)
    if injected is not None:
        if isinstance(injected, (bytes, bytearray)):
            injected = [(st.session_state.get(f"{SCAN_UPLOAD}_name") or "injected file",
                         injected)]
        return [Upload(bytes(d), str(n), _digest(bytes(d))) for n, d in injected]
    files = st.file_uploader(label, type=SCAN_TYPES, key=key, help=help,
                             accept_multiple_files=True) or []
    return [uploaded(f) for f in files[:MAX_UPLOAD_FILES]]


def _memo(key: tuple, read: object) -> object:
    """``read()`` once per upload in this session (one entry: the current upload)."""
    memo = st.session_state.get("_scan_set_memo")
    if memo is None or memo[0] != key:
        memo = (key, read())
        st.session_state["_scan_set_memo"] = memo
    return memo[1]


def _demo_slice(n_demo: int) -> ScanChoice:
    from lrp_engine.mri_demo import CLASS_NAMES

    batch = resources.mri_held_out(n_demo)
    i = int(st.number_input("Held-out slice #", 0, n_demo - 1, 0, key="mri_demo_index",
                            help="Synthetic slices the demo model never saw in training."))
    label = int(batch.labels[i])
    st.caption(f"True class: {CLASS_NAMES[label]} (synthetic).")
    spacing = (DEMO_SPACING, DEMO_SPACING)
    vol = Volume.from_display_slice(batch.images[i, 0].numpy(), spacing, kind="demo",
                                    description=f"demo held-out slice #{i}",
                                    windows={"demo": (0.5, 1.0)})
    mask = Volume.from_display_slice(batch.masks[i].numpy().astype(np.float32), spacing).data
    return ScanChoice(vol, vol.description, "demo", f"demo-{i}", mask=mask > 0.5, label=label)


def _demo_volume() -> ScanChoice:
    from lrp_engine.mri_demo import CLASS_NAMES

    i = int(st.number_input("Demo volume #", 0, 19, 0, key="mri_demo_volume_index",
                            help="Synthetic volumes (32 axial slices) the 3-D demo model "
                                 "never saw in training."))
    vol_zhw, mask_zhw, label = resources.mri_demo_volume(i)
    st.caption(f"True class: {CLASS_NAMES[label]} (synthetic).")
    spacing = (DEMO_SPACING, DEMO_SPACING, 2.0)
    vol = Volume.from_axial_stack(vol_zhw, spacing, kind="demo",
                                  description=f"demo volume #{i} ({vol_zhw.shape[0]} slices)",
                                  windows={"demo": (0.5, 1.0)})
    mask = Volume.from_axial_stack(mask_zhw.astype(np.float32), spacing).data > 0.5
    return ScanChoice(vol, vol.description, "demo", f"demo-volume-{i}", mask=mask, label=label)


def scan_source(n_demo: int) -> ScanChoice | None:
    """The scan: a demo slice or volume, or uploads read into volumes (a series chooser when
    there are several). None after an ``st.info``/``st.error`` saying why."""
    from lrp_engine.scans import ScanLoadError, read_scans

    source = st.radio("Scan", DEMO_SOURCES, horizontal=True, key="mri_source",
                      help="Demo scans are synthetic: a healthy template with drawn lesions.")
    if source == DEMO_SOURCES[0]:
        return _demo_slice(n_demo)
    if source == DEMO_SOURCES[1]:
        return _demo_volume()
    files = read_uploads(
        "Scans: DICOM files or a study's .zip (a series), NIfTI (.nii, .nii.gz), PNG/JPEG",
        "mri_upload", help="Several files at once make a series. Read in memory only: never "
                           "written to disk, never sent anywhere.")
    if not files:
        st.info("Upload a scan: DICOM files (one per slice, or multi-frame), a .zip of a "
                "study, a NIfTI volume, or a PNG/JPEG; or choose a demo scan.")
        return None
    key = tuple(sorted((u.name, u.digest) for u in files))
    try:
        scans = _memo(key, lambda: read_scans([(u.name, u.data) for u in files]))
    except ScanLoadError as e:  # its message names the file(s) already
        st.error(plain(e) if len(files) == 1 else f"{len(files)} files: {plain(e)}")
        return None
    if scans.problems:
        with st.expander(f"{len(scans.problems)} file(s) skipped", expanded=len(files) == 1):
            for p in scans.problems:
                st.caption(plain(p))
    vols = scans.volumes
    i = 0
    if len(vols) > 1:
        i = int(st.selectbox("Series", range(len(vols)), key="mri_series",
                             format_func=lambda k: plain(vols[k].description),
                             help="This upload holds several series: choose one."))
        i = min(i, len(vols) - 1)
    vol = vols[i]
    digest = _digest(repr((key, i)).encode())
    return ScanChoice(vol, vol.description or vol.kind, vol.kind, digest,
                      tuple(scans.problems))


# -- the slice on screen -------------------------------------------------------------------

@dataclass(frozen=True)
class SliceSettings:
    """The plane (``axis``: 0 sagittal, 1 coronal, 2 axial), the slice ``index`` and the
    display ``convention``."""

    axis: int
    index: int
    convention: Convention

    def describe(self, n: int) -> str:
        """E.g. "axial slice 11 of 30"."""
        return f"{AXIS_NAMES[self.axis]} slice {self.index + 1} of {n}"


def slice_controls(scan: ScanChoice) -> SliceSettings:
    """The plane (when the volume has more than one slice), the slice slider and the
    radiological/neurological switch."""
    vol = scan.volume
    planes = [a for a in (2, 1, 0) if vol.data.shape[a] > 1] if min(vol.shape) > 1 else []
    c1, c2 = st.columns([1, 2])
    if planes:
        axis = int(c1.selectbox("Plane", planes, key="mri_axis",
                                format_func=lambda a: AXIS_NAMES[a]))
    else:
        axis = vol.default_axis
        c1.caption(f"{AXIS_NAMES[axis].capitalize()} plane (a single slice).")
    n = vol.n_slices(axis)
    if st.session_state.get("_mri_slice_scan") != scan.digest:  # a new scan: the middle
        st.session_state["_mri_slice_scan"] = scan.digest
        for a in range(3):
            st.session_state.pop(f"mri_slice_{a}", None)
    key = f"mri_slice_{axis}"  # its value lives in session state (the strip plot jumps)
    if not 0 <= int(st.session_state.get(key, -1)) < n:
        st.session_state[key] = n // 2
    index = c2.slider("Slice", 0, max(n - 1, 1), key=key, disabled=n == 1,
                      help="Scroll through the volume.")
    neuro = st.toggle("Neurological convention (the patient's left on the image's left)",
                      value=False, key="mri_neurological", disabled=not vol.oriented,
                      help="Off: the radiological convention clinicians read with (the "
                           "patient's right on the image's left, as if facing the patient).")
    return SliceSettings(axis, min(int(index), n - 1),
                         "neurological" if neuro else "radiological")


def slice_view(scan: ScanChoice, s: SliceSettings) -> SliceView:
    """The slice on screen (display convention) with its markers and pixel spacing."""
    return view(scan.volume, s.axis, s.index, s.convention)


def mask_slice(scan: ScanChoice, s: SliceSettings, convention: Convention) -> np.ndarray | None:
    """The demo's lesion mask on the slice (bool [rows, cols]) in ``convention``."""
    if scan.mask is None:
        return None
    return slice_array(scan.mask, s.axis, s.index, convention)


# -- display window ------------------------------------------------------------------------

@st.cache_data(max_entries=8, show_spinner=False)
def _window_facts(_volume: Volume, digest: str
                  ) -> tuple[dict[str, tuple[float, float]], float, float]:
    """(window presets, min, max) of the volume: once per scan, not on every rerun."""
    from lrp_engine.scans.windowing import window_presets

    a = _volume.data
    return window_presets(_volume), float(a.min()), float(a.max())


def window_controls(scan: ScanChoice) -> tuple[float, float]:
    """A preset (the file's windows first, then the modality's, auto, full range) and the
    window centre (level) and width sliders in the scan's units (display only)."""
    presets, lo, hi = _window_facts(scan.volume, scan.digest)
    if not hi > lo:
        hi = lo + 1.0
    span = hi - lo
    tag = scan.digest[:24]
    kc, kw = f"mri_wc_{tag}", f"mri_ww_{tag}"

    def clipped(c: float, w: float) -> tuple[float, float]:
        return float(np.clip(c, lo, hi)), float(np.clip(w, span / 1000, 2 * span))

    def apply() -> None:
        name = st.session_state.get(f"mri_wpreset_{tag}")
        if name in presets:
            st.session_state[kc], st.session_state[kw] = clipped(*presets[name])

    names = list(presets)
    if names:
        st.selectbox("Window preset", names, key=f"mri_wpreset_{tag}", on_change=apply,
                     help="The file's own windows first, then named presets for the "
                          "modality; the sliders fine-tune it.")
    if kc not in st.session_state or kw not in st.session_state:  # the first preset
        st.session_state[kc], st.session_state[kw] = clipped(
            *(presets[names[0]] if names else ((lo + hi) / 2, span)))
    fmt = "%.3f" if span < 10 else "%.1f"
    c1, c2 = st.columns(2)
    centre = c1.slider("Window centre (level)", lo, hi, step=span / 1000, format=fmt,
                       key=kc, help="Display only: the model's input is not windowed.")
    width = c2.slider("Window width", span / 1000, 2 * span, step=span / 1000,
                      format=fmt, key=kw, help="Values centre ± width/2 span black…white.")
    return float(centre), float(width)


# -- figures -------------------------------------------------------------------------------

def _png_uri(grey: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(grey, dtype=np.uint8)).save(buf, "PNG",
                                                                    compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def scale_bar_mm(width_mm: float) -> float:
    """A round scale-bar length (1, 2, 5 × 10^k mm) of about a fifth of ``width_mm``."""
    if not width_mm > 0:
        return 0.0
    target = width_mm / 5
    k = 10.0 ** np.floor(np.log10(target))
    return float(max((m * k for m in (1, 2, 5) if m * k <= target), default=k))


def orient_figure(fig: go.Figure, shape: tuple[int, int], markers: dict[str, str],
                  aspect: float = 1.0, mm_per_column: float | None = None) -> go.Figure:
    """Add the edge markers (R/L, A/P, S/I), the pixel aspect (height ÷ width of a pixel on
    screen) and, given ``mm_per_column``, a scale bar to an image figure of ``shape``
    [rows, cols] drawn with pixel coordinates (x = column, y = row, row 0 on top)."""
    rows, cols = shape
    spots = {"left": (-0.5 + 0.03 * cols, (rows - 1) / 2, "left", "middle"),
             "right": (cols - 0.5 - 0.03 * cols, (rows - 1) / 2, "right", "middle"),
             "top": ((cols - 1) / 2, -0.5 + 0.03 * rows, "center", "top"),
             "bottom": ((cols - 1) / 2, rows - 0.5 - 0.03 * rows, "center", "bottom")}
    for edge, letter in markers.items():
        x, y, xa, ya = spots[edge]
        fig.add_annotation(x=x, y=y, text=f"<b>{letter}</b>", showarrow=False, xanchor=xa,
                           yanchor=ya, font={"color": "#ffd400", "size": 15},
                           name=f"marker-{edge}")
    fig.update_yaxes(scaleanchor="x", scaleratio=float(aspect) if aspect > 0 else 1.0)
    if mm_per_column and mm_per_column > 0:
        length = scale_bar_mm(cols * mm_per_column)
        px = length / mm_per_column
        x0, y0 = 0.05 * cols, rows - 0.5 - 0.09 * rows
        fig.add_shape(type="line", x0=x0, x1=x0 + px, y0=y0, y1=y0,
                      line={"color": "#ffffff", "width": 3}, name="scale bar")
        fig.add_annotation(x=x0 + px / 2, y=y0, text=f"{length:g} mm", showarrow=False,
                           yanchor="bottom", font={"color": "#ffffff", "size": 11},
                           name="scale-bar-label")
    return fig


def scan_figure(windowed: np.ndarray, sv: SliceView, title: str, height: int = 380
                ) -> go.Figure:
    """The windowed slice (uint8 [rows, cols]) as an image with markers, aspect from the
    pixel spacing and a scale bar."""
    rows, cols = windowed.shape
    fig = go.Figure(go.Image(source=_png_uri(windowed), hoverinfo="skip"),
                    layout={"title": {"text": title, "font": {"size": 13}}, "height": height,
                            "margin": {"l": 5, "r": 5, "t": 30, "b": 5},
                            "xaxis": {"visible": False, "constrain": "domain"},
                            "yaxis": {"visible": False, "constrain": "domain"},
                            "plot_bgcolor": "black"})
    return orient_figure(fig, (rows, cols), sv.markers, sv.aspect, sv.spacing[1])


__all__ = ["CONVENTION_TEXT", "DEMO_SOURCES", "ScanChoice", "SliceSettings", "mask_slice",
           "orient_figure", "read_uploads", "scale_bar_mm", "scan_figure", "scan_source",
           "slice_controls", "slice_view", "window_controls"]
