"""One DICOM dataset → its pixel frames, their geometry and de-identified facts.

:func:`parse` reads bytes (with or without the 128-byte preamble and "DICM" marker);
:func:`frames` decodes the pixel data (any transfer syntax the installed plugins decode, see
:mod:`.transfer_syntax`) into :class:`DicomFrames`: float32 values [F, H, W] after each
frame's rescale slope/intercept, colour converted to luminance, with each frame's position,
the orientation and the pixel spacing read from the enhanced (multi-frame) functional groups
when present, else from the top-level attributes. Nothing here inverts MONOCHROME1: a series
is inverted as a whole (:func:`invert_monochrome1`), so that its slices stay comparable.

Only an allow-list of attributes is copied into ``meta`` (:data:`META_TAGS`): never a
patient's name, ID, birth date, accession number or any other identifier.
"""

from __future__ import annotations

import datetime as _dt
import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import transfer_syntax
from .errors import ScanLoadError

if TYPE_CHECKING:  # pydicom is imported where a DICOM file is read (the medical extra)
    from pydicom.dataset import Dataset

#: DICOM keyword → meta key: the only attributes ever copied (none identifies a patient)
META_TAGS: dict[str, str] = {
    "Modality": "modality", "SeriesDescription": "series_description",
    "SeriesNumber": "series_number", "BodyPartExamined": "body_part",
    "Manufacturer": "manufacturer", "ManufacturerModelName": "manufacturer_model",
    "MagneticFieldStrength": "field_strength_T", "SliceThickness": "slice_thickness_mm",
    "SpacingBetweenSlices": "spacing_between_slices_mm", "RepetitionTime": "repetition_time_ms",
    "EchoTime": "echo_time_ms", "KVP": "kvp", "ConvolutionKernel": "convolution_kernel",
    "ImageType": "image_type", "BitsStored": "bits_stored",
    "PhotometricInterpretation": "photometric_interpretation",
}
#: exceptions never turned into a ScanLoadError
_FATAL = (KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError)
#: the pixel-data elements that hold an image
_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


@dataclass
class DicomFrames:
    """The decoded frames of one DICOM file.

    ``pixels`` float32 [F, H, W] (modality units after a float64 rescale: exact for 16-bit
    stored values; MONOCHROME1 not yet
    inverted: ``monochrome1``); ``positions`` [F, 3] ImagePositionPatient of each frame (LPS,
    mm) or None; ``orientation`` [6] ImageOrientationPatient (row then column direction
    cosines, LPS) or None; ``pixel_spacing`` (between rows, between columns) mm or None;
    ``slice_thickness`` / ``spacing_between_slices`` mm or None; ``instance_number``;
    ``series_uid`` ("" if absent); ``windows`` name → (centre, width) from the file;
    ``meta`` the allow-listed facts; ``notes``; ``study_date`` YYYY-MM-DD or None.
    """

    pixels: np.ndarray
    monochrome1: bool = False
    positions: np.ndarray | None = None
    orientation: np.ndarray | None = None
    pixel_spacing: tuple[float, float] | None = None
    slice_thickness: float | None = None
    spacing_between_slices: float | None = None
    instance_number: int | None = None
    series_uid: str = ""
    multi_frame: bool = False
    windows: dict[str, tuple[float, float]] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    study_date: str | None = None

    @property
    def n_frames(self) -> int:
        """F, the number of frames."""
        return int(self.pixels.shape[0])


def _floats(value: Any) -> list[float] | None:
    """A DICOM numeric value or multi-value as a list of floats (None if absent or bad).
    ``value``: what pydicom gives (a number, a string, a MultiValue …)."""
    if value is None or value == "":
        return None
    try:
        items = list(value) if isinstance(value, (list, tuple)) or type(
            value).__name__ == "MultiValue" else [value]
        out = [float(v) for v in items]
    except (TypeError, ValueError):
        return None
    return out if out and all(np.isfinite(out)) else None


def _first(value: Any) -> float | None:
    """The first of a DICOM numeric multi-value as float (None if absent or bad)."""
    v = _floats(value)
    return v[0] if v else None


#: the Deflated Explicit VR Little Endian UID: pydicom inflates such a dataset unbounded
_DEFLATED = b"1.2.840.10008.1.2.1.99"
#: the largest inflated dataset accepted for a deflated file (a deflate-bomb guard), bytes
MAX_INFLATED_BYTES = 512 << 20


def _check_inflated_size(data: bytes, limit: int) -> None:
    """Refuse a deflated file whose dataset inflates beyond ``limit`` bytes, measured by a
    bounded inflate before pydicom inflates it whole."""
    import zlib

    import pydicom.filereader as reader

    fp = io.BytesIO(data)
    try:
        reader.read_preamble(fp, False)
        reader._read_file_meta_info(fp)  # stops where the deflated dataset starts
    except Exception:  # noqa: BLE001 - no valid file meta: pydicom will say so
        return
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        out = d.decompress(data[fp.tell():], limit + 1)
    except zlib.error:
        return  # damaged: pydicom's own message follows
    if len(out) > limit or d.unconsumed_tail:
        raise ScanLoadError(f"the deflated DICOM dataset inflates to more than "
                            f"{limit / (1 << 20):,.1f} MiB: refused (a deflate bomb?)")


def parse(data: bytes, max_inflated: int = MAX_INFLATED_BYTES) -> Dataset:
    """Bytes → a pydicom ``Dataset`` (pixel data not yet decoded). A file without the
    preamble is read if it has image attributes; a deflated dataset may inflate to at most
    ``max_inflated`` bytes. Raises :class:`ScanLoadError`."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not data:
        raise ScanLoadError("the file is empty")
    if _DEFLATED in data[:4096]:
        _check_inflated_size(data, max_inflated)
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError:
        try:  # a file without the 128-byte preamble and "DICM" marker
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
            ok = any(t in ds for t in ("SOPClassUID", "Rows", "PixelData", "Modality"))
        except Exception as e:  # noqa: BLE001 - anything pydicom raises on junk
            raise ScanLoadError(f"this is not a DICOM file ({type(e).__name__})") from None
        if not ok:
            raise ScanLoadError("this is not a DICOM file") from None
    except Exception as e:  # noqa: BLE001
        raise ScanLoadError(f"this DICOM file could not be read: {e}") from None
    return ds


def transfer_syntax_uid(ds: Dataset) -> str | None:
    """The dataset's transfer syntax UID (None if its file meta has none)."""
    meta = getattr(ds, "file_meta", None)
    uid = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    return None if uid is None else str(uid)


def is_image(ds: Dataset) -> bool:
    """Whether the dataset holds pixel data."""
    return any(t in ds for t in _PIXEL_TAGS)


def _group_value(ds: Dataset, frame: int, sequence: str, keyword: str) -> Any:
    """``keyword`` inside ``sequence`` of frame ``frame``'s per-frame functional group, else
    of the shared group (enhanced multi-frame objects), else None."""
    for groups, i in (("PerFrameFunctionalGroupsSequence", frame),
                      ("SharedFunctionalGroupsSequence", 0)):
        seq = getattr(ds, groups, None)
        if seq is None or len(seq) <= i:
            continue
        inner = getattr(seq[i], sequence, None)
        if inner and keyword in inner[0]:
            return getattr(inner[0], keyword)
    return None


def _attr(ds: Dataset, frame: int, sequence: str, keyword: str) -> Any:
    """A functional-group value (:func:`_group_value`) or the top-level attribute."""
    v = _group_value(ds, frame, sequence, keyword)
    return getattr(ds, keyword, None) if v is None else v


def study_date(ds: Dataset) -> str | None:
    """StudyDate as YYYY-MM-DD (None if absent or not a real date)."""
    raw = str(getattr(ds, "StudyDate", "") or "").strip()
    try:
        return _dt.datetime.strptime(raw[:8], "%Y%m%d").date().isoformat() if len(raw) >= 8 \
            else None
    except ValueError:
        return None


def _windows(ds: Dataset) -> dict[str, tuple[float, float]]:
    """The file's window pairs: name (WindowCenterWidthExplanation, else "from the file
    1/2/…") → (centre, width); pairs with a width ≤ 0 are dropped."""
    centres = _floats(_attr(ds, 0, "FrameVOILUTSequence", "WindowCenter"))
    widths = _floats(_attr(ds, 0, "FrameVOILUTSequence", "WindowWidth"))
    if not centres or not widths:
        return {}
    names = _attr(ds, 0, "FrameVOILUTSequence", "WindowCenterWidthExplanation")
    names = [] if names in (None, "") else ([str(names)] if isinstance(names, str)
                                            else [str(n) for n in names])
    out: dict[str, tuple[float, float]] = {}
    for i, (c, w) in enumerate(zip(centres, widths, strict=False)):
        if w > 0:
            name = names[i].strip() if i < len(names) and names[i].strip() else \
                f"from the file {i + 1}"
            out.setdefault(name, (c, w))
    return out


def _meta(ds: Dataset, uid: str | None) -> dict:
    out: dict = {}
    for keyword, key in META_TAGS.items():
        v = getattr(ds, keyword, None)
        if v in (None, ""):
            continue
        if type(v).__name__ == "MultiValue":
            v = "\\".join(str(x) for x in v)
        elif isinstance(v, float):  # DS
            v = float(v)
        elif isinstance(v, int):  # IS, US
            v = int(v)
        else:
            v = str(v).strip()
        if v != "":
            out[key] = v
    if uid:
        out["transfer_syntax"] = transfer_syntax.syntax_name(uid)
    return out


def _decode(ds: Dataset, uid: str | None, max_voxels: int) -> np.ndarray:
    """The pixel array, after a size check against ``max_voxels`` (a header can claim more
    frames than memory holds)."""
    rows, cols = int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)
    n = int(_first(getattr(ds, "NumberOfFrames", 1)) or 1)
    spp = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    if rows <= 0 or cols <= 0:
        raise ScanLoadError("this DICOM file has no image size (Rows/Columns)")
    if rows * cols * n * spp > max_voxels:
        raise ScanLoadError(f"the image is too large: {n} frame(s) of {rows} × {cols} "
                            f"pixels, more than the {max_voxels:,} voxels accepted")
    try:
        return np.asarray(ds.pixel_array)
    except _FATAL:
        raise
    except BaseException as e:  # noqa: BLE001 - missing plugins, corrupt data; a Rust
        # decoder's panic (pyo3 PanicException) derives from BaseException, not Exception
        raise ScanLoadError(transfer_syntax.decode_error_message(
            uid, str(e) or type(e).__name__)) from None


def frames(ds: Dataset, max_voxels: int = 1 << 28) -> DicomFrames:
    """Decode a parsed dataset (:func:`parse`) into :class:`DicomFrames`.

    Raises :class:`ScanLoadError` without pixel data, for a syntax that does not decode here
    (the message names it and what would decode it), above ``max_voxels``, or for a
    damaged file (pydicom parses elements lazily: a damaged one fails when first read).
    """
    try:
        return _frames(ds, max_voxels)
    except (ScanLoadError, *_FATAL):
        raise
    except BaseException as e:  # noqa: BLE001 - a damaged element, a decoder's panic …
        raise ScanLoadError(f"this DICOM file is damaged ({damage(e)})") from None


def damage(e: BaseException, limit: int = 120) -> str:
    """A short plain description of what a reader raised: its first line, shortened."""
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _grey_frames(ds: Dataset, arr: np.ndarray, notes: list[str]) -> np.ndarray:
    """The decoded pixel array as frames ``[F, rows, cols]``: colour turned into luminance."""
    n = int(_first(getattr(ds, "NumberOfFrames", 1)) or 1)
    spp = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    colour = spp == 3 or (arr.ndim == (4 if n > 1 else 3) and arr.shape[-1] in (3, 4))
    if n == 1 or arr.ndim == (3 if colour else 2):
        arr = arr[None]
    if colour:
        arr = arr[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        notes.append("colour image converted to grey (luminance)")
    if arr.ndim != 3:
        raise ScanLoadError(f"expected 2-D frames, got pixel data of shape {list(arr.shape)}")
    return arr


def _rescaled(ds: Dataset, arr: np.ndarray, notes: list[str]) -> np.ndarray:
    """The frames in float64 (before any arithmetic: no 16-bit overflow), each rescaled by
    its slope and intercept; non-finite values become 0."""
    values = arr.astype(np.float64)
    rescaled = set()
    for k in range(arr.shape[0]):
        s = _first(_attr(ds, k, "PixelValueTransformationSequence", "RescaleSlope"))
        b = _first(_attr(ds, k, "PixelValueTransformationSequence", "RescaleIntercept"))
        s, b = (1.0 if s is None else s), (0.0 if b is None else b)
        if (s, b) != (1.0, 0.0):
            values[k] = values[k] * s + b
            rescaled.add((s, b))
    if len(rescaled) == 1:
        s, b = next(iter(rescaled))
        notes.append(f"rescaled: value × {s:g} {'−' if b < 0 else '+'} {abs(b):g}")
    elif rescaled:
        notes.append(f"rescaled with {len(rescaled)} different slopes/intercepts (per frame)")
    if not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        notes.append(f"{bad} non-finite pixel values replaced by 0")
    return values


def _positions(ds: Dataset, f: int) -> np.ndarray | None:
    """Each frame's ImagePositionPatient ``[F, 3]``; None unless every frame has its own
    (one top-level position for many frames is not theirs)."""
    positions = [_floats(_attr(ds, k, "PlanePositionSequence", "ImagePositionPatient"))
                 for k in range(f)]
    has_positions = all(p is not None and len(p) == 3 for p in positions)
    per_frame = _group_value(ds, 0, "PlanePositionSequence", "ImagePositionPatient") is not None
    if f > 1 and not per_frame:
        has_positions = False
    return np.array(positions, dtype=np.float64) if has_positions else None


def _orientation(ds: Dataset, notes: list[str]) -> np.ndarray | None:
    """ImageOrientationPatient as two unit vectors (row, column); None when absent or
    degenerate."""
    iop = _floats(_attr(ds, 0, "PlaneOrientationSequence", "ImageOrientationPatient"))
    if not iop or len(iop) < 6:
        return None
    r, c = np.array(iop[:3]), np.array(iop[3:6])
    if min(np.linalg.norm(r), np.linalg.norm(c)) < 1e-3 or \
            np.linalg.norm(np.cross(r, c)) < 1e-3:
        notes.append("ImageOrientationPatient is degenerate: ignored")
        return None
    return np.concatenate([r / np.linalg.norm(r), c / np.linalg.norm(c)])


def _pixel_spacing(ds: Dataset) -> tuple[float, float] | None:
    ps = _floats(_attr(ds, 0, "PixelMeasuresSequence", "PixelSpacing"))
    if ps is None:
        ps = _floats(getattr(ds, "ImagerPixelSpacing", None))
    return (ps[0], ps[1]) if ps and len(ps) >= 2 and min(ps[:2]) > 0 else None


def _positive(value: float | None) -> float | None:
    return value if value and value > 0 else None


def _frames(ds: Dataset, max_voxels: int) -> DicomFrames:
    if not is_image(ds):
        raise ScanLoadError("this DICOM file has no pixel data")
    uid = transfer_syntax_uid(ds)
    notes: list[str] = []
    values = _rescaled(ds, _grey_frames(ds, _decode(ds, uid, max_voxels), notes), notes)
    f = values.shape[0]
    positions = _positions(ds, f)
    orientation = _orientation(ds, notes)
    spacing = _pixel_spacing(ds)
    inst = _first(getattr(ds, "InstanceNumber", None))
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2") or "").strip()
    meta = _meta(ds, uid)
    meta["rows"], meta["columns"] = int(values.shape[1]), int(values.shape[2])
    if f > 1:
        meta["frames"] = f
    if spacing is not None:
        meta["pixel_spacing_mm"] = [spacing[0], spacing[1]]
    return DicomFrames(
        pixels=values.astype(np.float32), monochrome1=photometric == "MONOCHROME1",
        positions=positions, orientation=orientation, pixel_spacing=spacing,
        slice_thickness=_positive(_first(_attr(ds, 0, "PixelMeasuresSequence",
                                                "SliceThickness"))),
        spacing_between_slices=_positive(_first(_attr(ds, 0, "PixelMeasuresSequence",
                                                       "SpacingBetweenSlices"))),
        instance_number=None if inst is None else int(inst),
        series_uid=str(getattr(ds, "SeriesInstanceUID", "") or ""), multi_frame=f > 1,
        windows=_windows(ds), meta=meta, notes=notes, study_date=study_date(ds))


def invert_monochrome1(values: np.ndarray, windows: dict[str, tuple[float, float]]
                       ) -> tuple[np.ndarray, dict[str, tuple[float, float]]]:
    """MONOCHROME1 (low values shown bright) → brighter = higher: ``lo + hi − values`` over
    the whole array, with each window's centre mirrored the same way."""
    lo, hi = float(values.min()), float(values.max())
    return lo + hi - values, {k: (lo + hi - c, w) for k, (c, w) in windows.items()}


MONOCHROME1_NOTE = "MONOCHROME1 (low values shown bright): inverted for display"

__all__ = ["MAX_INFLATED_BYTES", "META_TAGS", "MONOCHROME1_NOTE", "DicomFrames", "frames",
           "invert_monochrome1", "is_image", "parse", "study_date", "transfer_syntax_uid"]
