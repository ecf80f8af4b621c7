"""A scan as a volume in RAS+ voxel order, and how its slices are shown.

Every scan the MRI inspector reads (a DICOM slice, series or multi-frame file, a NIfTI
volume, a PNG, a demo slice) becomes one :class:`Volume`: float32 ``data`` [X, Y, Z] whose
index grows toward the subject's Right, Anterior and Superior (RAS+, as nibabel's closest
canonical orientation), with the voxel ``spacing`` in mm.

A slice is cut along one axis (0 sagittal, 1 coronal, 2 axial) and laid out for a screen in
one of two conventions:

* **radiological** (the default, how clinicians read): axial and coronal slices show the
  subject's right on the image's left, as if facing the patient;
* **neurological**: the subject's left on the image's left.

Axial slices have anterior at the top, coronal and sagittal superior at the top; sagittal
slices show anterior on the image's left in both conventions. :func:`edge_markers` names the
direction each image edge points to (``{"left": "R", "right": "L", "top": "A", "bottom":
"P"}`` for a radiological axial slice); a volume whose orientation is unknown has none.

The 2-D demo model was trained on neurological axial slices, so a model's input slice and the
slice on screen may differ by a left-right flip: :func:`convert` maps a 2-D array (a slice or
its heatmap) from one convention to the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Convention = Literal["radiological", "neurological"]
CONVENTIONS: tuple[Convention, ...] = ("radiological", "neurological")
#: what a volume was read from: a DICOM series or file, a NIfTI file, a picture, the demo
ScanKind = Literal["DICOM", "NIfTI", "image", "demo"]
AXIS_NAMES = ("sagittal", "coronal", "axial")
#: the letters of +x, +y, +z and of the opposite directions
_POSITIVE, _NEGATIVE = "RAS", "LPI"


@dataclass
class Volume:
    """One scan in RAS+ voxel order.

    ``data`` float32 [X, Y, Z] (finite, in the file's units after any rescale); ``spacing``
    (x, y, z) mm per voxel; ``kind`` ("DICOM", "NIfTI", "image", "demo"); ``description``
    (what was read, in words, never a patient identifier or a file name); ``oriented``:
    whether the axes' anatomical directions are known (False for PNG/JPEG, or DICOM without
    ImageOrientationPatient: no markers are shown); ``windows`` named display windows
    (name → (centre, width)) stored in the file; ``meta`` de-identified facts (modality,
    series description, transfer syntax, …); ``notes`` what was done while reading;
    ``study_date`` (YYYY-MM-DD or None), kept apart so that a report shows it only on
    request.
    """

    data: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    kind: ScanKind = "image"
    description: str = ""
    oriented: bool = True
    windows: dict[str, tuple[float, float]] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    study_date: str | None = None

    def __post_init__(self) -> None:
        if self.data.ndim != 3:
            raise ValueError(f"a volume is 3-D [X, Y, Z], got shape {list(self.data.shape)}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """(X, Y, Z) voxels."""
        x, y, z = self.data.shape
        return int(x), int(y), int(z)

    def n_slices(self, axis: int) -> int:
        """How many slices there are along ``axis``."""
        return int(self.data.shape[_check_axis(axis)])

    @property
    def default_axis(self) -> int:
        """The axis to slice first: axial for a volume, the only plane for a single slice."""
        thin = [a for a in range(3) if self.data.shape[a] == 1]
        return thin[0] if thin else 2

    @classmethod
    def from_display_slice(cls, image: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0),
                           convention: Convention = "neurological", oriented: bool = True,
                           **kw: Any) -> Volume:
        """A one-slice axial volume from a 2-D image [rows, cols] laid out in ``convention``
        (anterior at the top). ``spacing``: mm per (row, column)."""
        a = np.asarray(image, dtype=np.float32)
        if a.ndim != 2:
            raise ValueError(f"expected a 2-D image, got shape {list(a.shape)}")
        return cls.from_axial_stack(a[None], (*spacing, 1.0), convention, oriented, **kw)

    @classmethod
    def from_axial_stack(cls, slices: np.ndarray,
                         spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
                         convention: Convention = "neurological", oriented: bool = True,
                         **kw: Any) -> Volume:
        """A volume from axial display slices [Z, rows, cols] (slice 0 the most inferior,
        anterior at the top, laid out in ``convention``). ``spacing``: mm per (row, column,
        slice)."""
        return cls(data=axial_stack_to_ras(slices, convention),
                   spacing=(float(spacing[1]), float(spacing[0]), float(spacing[2])),
                   oriented=oriented, **kw)


def _check_axis(axis: int) -> int:
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0 (sagittal), 1 (coronal) or 2 (axial), got {axis}")
    return axis


def _check_convention(convention: str) -> Convention:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    return convention


def slice_array(data: np.ndarray, axis: int, index: int | None = None,
                convention: Convention = "radiological") -> np.ndarray:
    """A display-oriented 2-D slice [rows, cols] of a RAS+ array [X, Y, Z] (or [X, Y, Z, …]:
    trailing axes, e.g. colour, are kept). ``index`` None: the middle slice."""
    _check_axis(axis)
    _check_convention(convention)
    n = data.shape[axis]
    k = n // 2 if index is None else int(index)
    if not 0 <= k < n:
        raise ValueError(f"slice {k} does not exist: {n} slices along the {AXIS_NAMES[axis]} "
                         "axis")
    sl = np.take(data, k, axis=axis)  # the two remaining axes, in order
    shown = np.rot90(sl)  # rows: the second axis, top = its + end; columns: the first, + right
    if axis == 0 or convention == "radiological":  # sagittal: anterior on the left
        shown = shown[:, ::-1]
    return np.ascontiguousarray(shown)


def axial_stack_to_ras(slices: np.ndarray, convention: Convention = "neurological"
                       ) -> np.ndarray:
    """Axial display slices [Z, rows, cols, …] in ``convention`` → a RAS+ array [X, Y, Z, …]
    (the inverse of :func:`stack` along the axial axis)."""
    a = np.asarray(slices)
    if a.ndim < 3:
        raise ValueError(f"expected slices [Z, rows, cols], got shape {list(a.shape)}")
    if _check_convention(convention) == "radiological":
        a = a[:, :, ::-1]
    ras = np.moveaxis(a, (0, 1, 2), (2, 1, 0))[:, ::-1]  # rows: anterior at the top → +y
    return np.ascontiguousarray(ras)


def convert(image: np.ndarray, axis: int, src: Convention, dst: Convention) -> np.ndarray:
    """A display-oriented 2-D array (a slice or its heatmap, [rows, cols, …]) laid out in
    ``src`` → the same in ``dst``: a left-right flip for axial and coronal slices when the
    conventions differ; sagittal slices look the same in both."""
    _check_axis(axis)
    if _check_convention(src) == _check_convention(dst) or axis == 0:
        return image
    return np.ascontiguousarray(image[:, ::-1])


def edge_markers(axis: int, convention: Convention = "radiological") -> dict[str, str]:
    """The anatomical direction each edge of a display slice points to: keys "left",
    "right", "top", "bottom", values among R/L, A/P, S/I."""
    _check_axis(axis)
    _check_convention(convention)
    rows_axis, cols_axis = [a for a in range(3) if a != axis][::-1]  # rot90: rows ← 2nd axis
    cols_positive_right = not (axis == 0 or convention == "radiological")
    right = _POSITIVE[cols_axis] if cols_positive_right else _NEGATIVE[cols_axis]
    left = _NEGATIVE[cols_axis] if cols_positive_right else _POSITIVE[cols_axis]
    return {"left": left, "right": right, "top": _POSITIVE[rows_axis],
            "bottom": _NEGATIVE[rows_axis]}


def pixel_spacing(volume: Volume, axis: int) -> tuple[float, float]:
    """(mm per row, mm per column) of a display slice along ``axis``."""
    rows_axis, cols_axis = [a for a in range(3) if a != _check_axis(axis)][::-1]
    return float(volume.spacing[rows_axis]), float(volume.spacing[cols_axis])


@dataclass(frozen=True)
class SliceView:
    """One slice as shown: ``array`` float32 [rows, cols] in the volume's units,
    ``markers`` (edge → letter; empty when the orientation is unknown), ``spacing`` (mm per
    row, mm per column), the ``axis``, ``index`` and ``convention``."""

    array: np.ndarray
    markers: dict[str, str]
    spacing: tuple[float, float]
    axis: int
    index: int
    convention: Convention

    @property
    def aspect(self) -> float:
        """Height ÷ width of one pixel on screen (mm per row ÷ mm per column)."""
        return self.spacing[0] / self.spacing[1] if self.spacing[1] > 0 else 1.0


def view(volume: Volume, axis: int, index: int | None = None,
         convention: Convention = "radiological") -> SliceView:
    """Slice ``index`` (default: the middle) of ``volume`` along ``axis``, laid out in
    ``convention``, with its edge markers and pixel spacing."""
    n = volume.n_slices(axis)
    k = n // 2 if index is None else int(index)
    arr = slice_array(volume.data, axis, k, convention)
    markers = edge_markers(axis, convention) if volume.oriented else {}
    return SliceView(array=arr, markers=markers, spacing=pixel_spacing(volume, axis),
                     axis=axis, index=k, convention=convention)


def stack(volume: Volume, axis: int, convention: Convention = "neurological",
          indices: range | list[int] | None = None) -> np.ndarray:
    """Display-oriented slices along ``axis`` as float32 [S, rows, cols] (``indices``
    default: all), e.g. a 2-D classifier's batch for a volume explanation."""
    idx = range(volume.n_slices(axis)) if indices is None else indices
    return np.stack([slice_array(volume.data, axis, k, convention) for k in idx]).astype(
        np.float32, copy=False)


__all__ = ["AXIS_NAMES", "CONVENTIONS", "Convention", "ScanKind", "SliceView", "Volume",
           "axial_stack_to_ras", "convert",
           "edge_markers", "pixel_spacing", "slice_array", "stack", "view"]
