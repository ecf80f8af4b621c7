"""Reading medical scans from memory: DICOM slices and NIfTI volumes, plus display windows.

Uploads are parsed from bytes in memory and never written to disk. ``pydicom`` and
``nibabel`` are imported inside the functions, so the rest of the engine works without them.

* :func:`read_dicom`: one DICOM image → :class:`ScanImage` (float32 [H, W] in the modality's
  units, e.g. Hounsfield units for CT), after the rescale slope/intercept (computed in
  float64: no 16-bit overflow), with MONOCHROME1 inverted so that brighter = higher.
* :func:`read_nifti`: a ``.nii`` or ``.nii.gz`` volume → :class:`ScanVolume`, reoriented to
  RAS+ (x: left → right, y: posterior → anterior, z: inferior → superior), 4-D → first volume,
  NaN/Inf replaced (never propagated), with one 2-D slice picked along an axis.
* :func:`window`: a display window (centre/width) → uint8.
* :func:`scan_to_tensor`: a 2-D slice → the MRI demo model's input [1, 1, size, size] in
  [0, 1].

Every problem is one :class:`ScanLoadError` with a message meant for the user. Patient
identifiers are never copied into ``meta``.

The readers themselves live in :mod:`lrp_engine.scans` (``scans.dicom``, ``scans.nifti``,
``scans.windowing``; :func:`lrp_engine.scans.read_scans` reads whole series, zips and mixed
uploads into RAS+ volumes); this module keeps the one-slice API for its callers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .scans import dicom as _dicom
from .scans import nifti as _nifti
from .scans.errors import ScanLoadError
from .scans.nifti import MAX_NIFTI_BYTES
from .scans.windowing import auto_window, window

_gunzip = _nifti.gunzip
_nifti_image = _nifti.image
#: a non-square slice longer than this is shrunk before it is padded square (memory)
MAX_PAD_SIDE = 2048
AXIS_NAMES = ("sagittal", "coronal", "axial")


@dataclass
class ScanImage:
    """One 2-D image: ``array`` float32 [H, W] (modality units after rescale; MONOCHROME1
    already inverted), ``meta`` (modality, window_center/width, pixel_spacing [row, col] mm,
    …, whatever is present) and ``notes`` (what was done to it)."""

    array: np.ndarray
    meta: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class ScanVolume:
    """A 3-D volume in RAS+ order: ``volume`` float32 [X, Y, Z] (finite), ``zooms`` voxel
    sizes in mm, and the selected 2-D ``slice`` (float32, display orientation: anterior or
    superior at the top, the subject's left on the image's left) at ``index`` along
    ``axis`` (0 sagittal, 1 coronal, 2 axial)."""

    volume: np.ndarray
    zooms: tuple[float, float, float]
    axis: int
    index: int
    slice: np.ndarray
    meta: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def n_slices(self) -> int:
        """How many slices there are along :attr:`axis`."""
        return int(self.volume.shape[self.axis])

    def get_slice(self, axis: int | None = None, index: int | None = None) -> np.ndarray:
        """A display-oriented 2-D slice (default: the middle one along ``axis``)."""
        return volume_slice(self.volume, self.axis if axis is None else axis, index)[0]


# -- DICOM ---------------------------------------------------------------------------------

def read_dicom(data: bytes, frame: int | None = None) -> ScanImage:
    """Bytes of a DICOM file → :class:`ScanImage` (one 2-D image).

    ``frame``: which frame of a multi-frame image (default: the first, with a note).
    Raises :class:`ScanLoadError` for non-DICOM data, missing pixel data, or pixel data in a
    transfer syntax that cannot be decoded here (the message names it, its UID and what
    would decode it).
    """
    ds = _dicom.parse(data)
    f = _dicom.frames(ds)
    notes: list[str] = []
    k = 0
    if f.n_frames > 1:
        k = 0 if frame is None else int(frame)
        if not 0 <= k < f.n_frames:
            raise ScanLoadError(f"frame {k} does not exist: the image has {f.n_frames} frames")
        notes.append(f"multi-frame image ({f.n_frames} frames): showing frame {k + 1}")
    values = f.pixels[k].astype(np.float64)
    notes += [n for n in f.notes if not n.startswith("rescaled with")]
    windows = f.windows
    if f.monochrome1:
        values, windows = _dicom.invert_monochrome1(values, windows)
        notes.append(_dicom.MONOCHROME1_NOTE)
    meta: dict = {"modality": f.meta.get("modality"), "rows": int(values.shape[0]),
                  "columns": int(values.shape[1]),
                  "photometric_interpretation": f.meta.get("photometric_interpretation",
                                                           "MONOCHROME2"),
                  "bits_stored": f.meta.get("bits_stored"),
                  "transfer_syntax": f.meta.get("transfer_syntax", "unknown transfer syntax")}
    if windows:
        meta["window_center"], meta["window_width"] = next(iter(windows.values()))
    if f.pixel_spacing is not None:
        meta["pixel_spacing"] = list(f.pixel_spacing)
    for tag, key in (("RescaleSlope", "rescale_slope"), ("RescaleIntercept",
                                                          "rescale_intercept")):
        v = _dicom._first(getattr(ds, tag, None))
        if v is not None:
            meta[key] = v
    if f.meta.get("series_description"):
        meta["series_description"] = str(f.meta["series_description"])
    if f.slice_thickness is not None:
        meta["slice_thickness"] = f.slice_thickness
    return ScanImage(array=values.astype(np.float32), meta=meta, notes=notes)


# -- NIfTI ---------------------------------------------------------------------------------

def volume_slice(volume: np.ndarray, axis: int = 2, index: int | None = None
                 ) -> tuple[np.ndarray, int]:
    """(display-oriented 2-D slice, index) of a RAS+ volume [X, Y, Z] along ``axis``.

    Axial (2) and coronal (1) slices show the subject's left on the image's left and
    anterior/superior at the top; sagittal (0) shows anterior on the right.
    """
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0 (sagittal), 1 (coronal) or 2 (axial), got {axis}")
    n = volume.shape[axis]
    k = n // 2 if index is None else int(index)
    if not 0 <= k < n:
        raise ValueError(f"slice {k} does not exist: {n} slices along axis {axis} "
                         f"({AXIS_NAMES[axis]})")
    sl = np.take(volume, k, axis=axis)  # 2-D with the remaining axes in order
    return np.ascontiguousarray(np.rot90(sl)), k


def read_nifti(data: bytes, axis: int = 2, index: int | None = None) -> ScanVolume:
    """Bytes of a ``.nii`` or ``.nii.gz`` file → :class:`ScanVolume` (gunzipped in memory).

    The volume is reoriented to RAS+; a 4-D series keeps its first volume (noted); NaN and
    ±Inf voxels are replaced (NaN → 0, ±Inf → the finite max/min; noted). ``index``: slice
    along ``axis`` (default: the middle).
    """
    n = _nifti.load(data)
    vol, zooms, meta, notes = n.volume, n.zooms, n.meta, n.notes
    sl, k = volume_slice(vol, axis, index)
    return ScanVolume(volume=vol, zooms=zooms, axis=axis, index=k, slice=sl, meta=meta,
                      notes=notes)


# -- display and model input -----------------------------------------------------------------

def scan_to_tensor(array: np.ndarray, size: int = 96, low_pct: float = 0.5,
                   high_pct: float = 99.5, pad_square: bool = True) -> Tensor:
    """A 2-D slice (any units) → float32 [1, 1, size, size] in [0, 1] for the MRI demo model.

    Intensities are scaled so that the ``low_pct``…``high_pct`` percentiles map to 0…1
    (clipped); a non-square slice is zero-padded to a square (``pad_square``) before the
    bilinear, antialiased resize, so anatomy keeps its proportions.
    """
    a = np.asarray(array, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D slice, got shape {list(a.shape)}")
    a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = np.percentile(a, [low_pct, high_pct])
    a = np.clip((a - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0).astype(np.float32)
    if pad_square and a.shape[0] != a.shape[1]:
        if max(a.shape) > MAX_PAD_SIDE:  # shrink first: 1 000 × 25 000 padded is 2.5 GB
            f = MAX_PAD_SIDE / max(a.shape)
            small = (max(1, round(a.shape[0] * f)), max(1, round(a.shape[1] * f)))
            a = F.interpolate(torch.from_numpy(np.ascontiguousarray(a))[None, None], size=small,
                              mode="bilinear", align_corners=False, antialias=True)[0, 0].numpy()
        n = max(a.shape)
        top, left = (n - a.shape[0]) // 2, (n - a.shape[1]) // 2
        a = np.pad(a, ((top, n - a.shape[0] - top), (left, n - a.shape[1] - left)))
    x = torch.from_numpy(np.ascontiguousarray(a))[None, None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                      antialias=True)
    return x.clamp(0.0, 1.0)


__all__ = ["MAX_NIFTI_BYTES", "ScanImage", "ScanLoadError", "ScanVolume", "auto_window",
           "read_dicom", "read_nifti", "scan_to_tensor", "volume_slice", "window"]
