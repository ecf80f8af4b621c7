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
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

#: the largest decompressed NIfTI accepted (a gzip bomb guard), bytes
MAX_NIFTI_BYTES = 1 << 30
#: a non-square slice longer than this is shrunk before it is padded square (memory)
MAX_PAD_SIDE = 2048
AXIS_NAMES = ("sagittal", "coronal", "axial")


class ScanLoadError(ValueError):
    """A scan that cannot be read, with a message meant for the user."""


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

def _first(value: object) -> float | None:
    """A DICOM numeric value or the first of a multi-value, as float (None if absent)."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            value = list(value)[0]
        return float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _transfer_syntax(ds: object) -> tuple[str, str]:
    meta = getattr(ds, "file_meta", None)
    uid = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    if uid is None:
        return "unknown", "unknown transfer syntax"
    return str(uid), getattr(uid, "name", str(uid)) or str(uid)


def read_dicom(data: bytes, frame: int | None = None) -> ScanImage:
    """Bytes of a DICOM file → :class:`ScanImage`.

    ``frame``: which frame of a multi-frame image (default: the first, with a note).
    Raises :class:`ScanLoadError` for non-DICOM data, missing pixel data, or pixel data in a
    transfer syntax that cannot be decoded here (the message names it).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not data:
        raise ScanLoadError("the file is empty")
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError:
        try:  # a file without the 128-byte preamble and "DICM" marker
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
        except Exception as e:  # noqa: BLE001 - anything pydicom raises on junk
            raise ScanLoadError(f"this is not a DICOM file ({type(e).__name__})") from None
        if not any(t in ds for t in ("SOPClassUID", "Rows", "PixelData", "Modality")):
            raise ScanLoadError("this is not a DICOM file") from None
    except Exception as e:  # noqa: BLE001
        raise ScanLoadError(f"this DICOM file could not be read: {e}") from None

    if not any(t in ds for t in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ScanLoadError("this DICOM file has no pixel data")
    uid, ts_name = _transfer_syntax(ds)
    try:
        pixels = ds.pixel_array
    except Exception as e:  # noqa: BLE001 - missing decoder plugins, corrupt data …
        reason = (str(e).splitlines()[0] if str(e) else type(e).__name__).rstrip(":. ")
        syntax = f"'{ts_name}' ({uid})" if ts_name != uid else f"{uid} (unknown to pydicom)"
        raise ScanLoadError(
            f"the pixel data uses the transfer syntax {syntax}, which cannot be decoded "
            f"here ({reason}). Export the image uncompressed (Explicit VR Little Endian) and "
            f"try again.") from None

    notes: list[str] = []
    spp = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    n_frames = int(_first(getattr(ds, "NumberOfFrames", 1)) or 1)
    arr = np.asarray(pixels)
    if n_frames > 1:
        k = 0 if frame is None else int(frame)
        if not 0 <= k < n_frames:
            raise ScanLoadError(f"frame {k} does not exist: the image has {n_frames} frames")
        arr = arr[k]
        notes.append(f"multi-frame image ({n_frames} frames): showing frame {k + 1}")
    if spp == 3 or (arr.ndim == 3 and arr.shape[-1] in (3, 4)):
        arr = arr[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        notes.append("colour image converted to grey (luminance)")
    if arr.ndim != 2:
        raise ScanLoadError(f"expected a 2-D image, got pixel data of shape {list(arr.shape)}")

    values = arr.astype(np.float64)  # before any arithmetic: no 16-bit overflow
    slope = _first(getattr(ds, "RescaleSlope", None))
    intercept = _first(getattr(ds, "RescaleIntercept", None))
    if slope is not None or intercept is not None:
        s, b = (1.0 if slope is None else slope), (0.0 if intercept is None else intercept)
        values = values * s + b
        if (s, b) != (1.0, 0.0):
            notes.append(f"rescaled: value × {s:g} {'−' if b < 0 else '+'} {abs(b):g}")

    center = _first(getattr(ds, "WindowCenter", None))
    width = _first(getattr(ds, "WindowWidth", None))
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "MONOCHROME1":
        lo, hi = float(values.min()), float(values.max())
        values = lo + hi - values
        if center is not None:
            center = lo + hi - center
        notes.append("MONOCHROME1 (low values shown bright): inverted for display")

    if not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        notes.append(f"{bad} non-finite pixel values replaced by 0")

    meta: dict = {"modality": str(getattr(ds, "Modality", "")) or None,
                  "rows": int(arr.shape[0]), "columns": int(arr.shape[1]),
                  "photometric_interpretation": photometric,
                  "bits_stored": int(getattr(ds, "BitsStored", 0) or 0) or None,
                  "transfer_syntax": ts_name}
    if center is not None and width is not None and width > 0:
        meta["window_center"], meta["window_width"] = center, width
    spacing = getattr(ds, "PixelSpacing", None)
    if spacing is not None:
        try:
            meta["pixel_spacing"] = [float(v) for v in spacing]
        except (TypeError, ValueError):
            pass
    if slope is not None:
        meta["rescale_slope"] = slope
    if intercept is not None:
        meta["rescale_intercept"] = intercept
    for tag, key in (("SeriesDescription", "series_description"),
                     ("SliceThickness", "slice_thickness")):
        v = getattr(ds, tag, None)
        if v not in (None, ""):
            meta[key] = float(v) if key == "slice_thickness" else str(v)
    return ScanImage(array=values.astype(np.float32), meta=meta, notes=notes)


# -- NIfTI ---------------------------------------------------------------------------------

def _gunzip(data: bytes, limit: int = MAX_NIFTI_BYTES) -> bytes:
    """Decompress a gzip stream in memory, refusing more than ``limit`` bytes of output."""
    d = zlib.decompressobj(wbits=31)  # gzip container
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as e:
        raise ScanLoadError(f"this .gz file is damaged ({e})") from None
    if len(out) > limit or d.unconsumed_tail:
        raise ScanLoadError(f"the decompressed file is larger than {limit >> 20} MiB")
    return out


def _nifti_image(raw: bytes) -> object:
    import nibabel as nib

    if len(raw) < 348:
        raise ScanLoadError("this is not a NIfTI file (too short for a header)")
    size = int.from_bytes(raw[:4], "little")
    size_be = int.from_bytes(raw[:4], "big")
    cls = nib.Nifti2Image if 540 in (size, size_be) else nib.Nifti1Image
    if 348 not in (size, size_be) and 540 not in (size, size_be):
        raise ScanLoadError("this is not a NIfTI file (unknown header size)")
    try:
        return cls.from_bytes(raw)
    except Exception as e:  # noqa: BLE001 - nibabel raises several types on bad headers
        raise ScanLoadError(f"this NIfTI file could not be read: {e}") from None


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
    import nibabel as nib

    if not data:
        raise ScanLoadError("the file is empty")
    notes: list[str] = []
    raw = _gunzip(data) if data[:2] == b"\x1f\x8b" else data
    img = _nifti_image(raw)
    shape = img.shape
    if len(shape) < 2:
        raise ScanLoadError(f"expected a 3-D image, got shape {list(shape)}")
    if len(shape) > 3:
        extra = shape[3:]
        if int(np.prod(extra)) > 1:
            notes.append(f"{len(shape)}-D image with {int(np.prod(extra))} volumes: showing "
                         "the first volume")
        img = img.slicer[(slice(None),) * 3 + (0,) * len(extra)]
    elif len(shape) == 2:
        img = nib.Nifti1Image(np.asarray(img.dataobj)[..., None], img.affine, img.header)
        notes.append("2-D image: treated as a single slice")
    try:
        canonical = nib.as_closest_canonical(img)
    except Exception:  # noqa: BLE001 - a degenerate affine: keep the stored order
        canonical = img
        notes.append("the orientation could not be determined: axes shown as stored")
    codes = "".join(nib.aff2axcodes(img.affine)) if canonical is not img else "?"
    if codes not in ("RAS", "?"):
        notes.append(f"reoriented from {codes} to RAS")
    try:
        vol = np.asarray(canonical.get_fdata(dtype=np.float32))
    except Exception as e:  # noqa: BLE001 - truncated data, unsupported dtype …
        raise ScanLoadError(f"the image data could not be read: {e}") from None
    finite = np.isfinite(vol)
    if not finite.all():
        bad = int((~finite).sum())
        good = vol[finite]
        hi, lo = (float(good.max()), float(good.min())) if good.size else (0.0, 0.0)
        vol = np.nan_to_num(vol, nan=0.0, posinf=hi, neginf=lo)
        notes.append(f"{bad} voxels were NaN or infinite: replaced (NaN → 0, ±Inf → the "
                     "finite max/min)")
    zooms = tuple(float(z) for z in canonical.header.get_zooms()[:3])
    zooms = zooms + (1.0,) * (3 - len(zooms))
    sl, k = volume_slice(vol, axis, index)
    meta = {"shape": list(vol.shape), "zooms_mm": list(zooms), "orientation": "RAS",
            "datatype": str(img.get_data_dtype()), "description":
            img.header.get("descrip", b"").item().decode("latin-1", "replace").strip("\x00 ")
            if "descrip" in img.header else ""}
    return ScanVolume(volume=vol, zooms=zooms, axis=axis, index=k, slice=sl, meta=meta,
                      notes=notes)


# -- display and model input -----------------------------------------------------------------

def auto_window(array: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5
                ) -> tuple[float, float]:
    """(centre, width) spanning the ``low_pct``…``high_pct`` percentiles of ``array``."""
    lo, hi = np.percentile(np.asarray(array, dtype=np.float64), [low_pct, high_pct])
    width = float(hi - lo) if hi > lo else 1.0
    return float(lo + hi) / 2, width


def window(array: np.ndarray, center: float | None = None, width: float | None = None
           ) -> np.ndarray:
    """Linear display window: values ``center ± width/2`` → 0…255 (clipped), uint8 like
    ``array``'s shape. ``None`` for either: :func:`auto_window`."""
    a = np.asarray(array, dtype=np.float64)
    if center is None or width is None:
        c, w = auto_window(a)
        center = c if center is None else center
        width = w if width is None else width
    if not width > 0:
        raise ValueError(f"window width must be positive, got {width}")
    lo = center - width / 2
    out = np.clip((np.nan_to_num(a, nan=lo) - lo) / width, 0.0, 1.0)
    return (out * 255.0 + 0.5).astype(np.uint8)


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


__all__ = ["ScanImage", "ScanLoadError", "ScanVolume", "auto_window", "read_dicom",
           "read_nifti", "scan_to_tensor", "volume_slice", "window"]
