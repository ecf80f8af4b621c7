"""The one entry point for uploads: :func:`read_scans` (file name, bytes)… → :class:`ScanSet`.

Each file is recognised by its content first (zip, gzip, NIfTI header, DICOM "DICM" marker,
PNG/JPEG signature), then by its name; anything else is tried as a DICOM file without the
preamble. Zip archives are expanded in memory (:mod:`.archive`); DICOM files are decoded
(:mod:`.dicom`), grouped into series and built into volumes (:mod:`.series`); NIfTI files
(:mod:`.nifti`) and pictures (``lrp_engine.io.load_image``, grey) become one volume each.
A file that cannot be read is a ``problems`` line (its name and the reason); only when nothing
at all is readable is :class:`ScanLoadError` raised.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from . import dicom, nifti, series
from .archive import DEFAULT_LIMITS, ArchiveLimits, expand_zip, is_zip
from .errors import ScanLoadError
from .volume import Volume

if TYPE_CHECKING:  # pydicom is imported where a DICOM file is read (the medical extra)
    from pydicom.dataset import Dataset

_PICTURE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM",
                  b"II*\x00", b"MM\x00*")
_PICTURE_EXT = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp")
_NIFTI_EXT = (".nii", ".nii.gz", ".gz")
#: what the app reads, for a file that is none of it
READABLE = "DICOM, NIfTI (.nii, .nii.gz), a .zip of those, PNG or JPEG"


@dataclass
class ScanSet:
    """What an upload held: ``volumes`` (one per DICOM series, multi-frame file, NIfTI file
    or picture, in upload order), ``problems`` (one line per file or series not read:
    "name: reason") and ``notes`` (what was skipped on purpose, e.g. a DICOMDIR index)."""

    volumes: list[Volume] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _kind(name: str, data: bytes) -> str:
    low = name.lower()
    if is_zip(data) or low.endswith(".zip"):
        return "zip"
    if data[:2] == b"\x1f\x8b" or nifti.looks_like_nifti(data) or low.endswith(_NIFTI_EXT):
        return "nifti"
    if data[128:132] == b"DICM":
        return "dicom"
    if data.startswith(_PICTURE_MAGIC) or low.endswith(_PICTURE_EXT):
        return "picture"
    return "dicom"


def _picture(data: bytes, limits: ArchiveLimits) -> Volume:
    from ..io import ImageLoadError, load_image

    try:
        img = load_image(data, max_pixels=min(limits.max_voxels, 25_000_000))
    except ImageLoadError as e:
        raise ScanLoadError(str(e)) from None
    grey = np.asarray(img.convert("L"), dtype=np.float32)  # PIL's integer luminance
    h, w = grey.shape
    return Volume.from_display_slice(
        grey, convention=series.STORED_LAYOUT, oriented=False, kind="image",
        description=f"picture · {w} × {h} pixels", meta={"rows": h, "columns": w},
        notes=["a picture (PNG/JPEG): grey levels 0…255, no anatomical directions or pixel "
               "spacing; shown as stored"])


def _unique_descriptions(volumes: list[Volume]) -> None:
    """Make equal descriptions distinct: add the series number, then the matrix size, then
    a running number — each only where descriptions still collide."""
    def series_number(v: Volume) -> str:
        n = v.meta.get("series_number")
        return "" if n is None else f"series {n}"

    def matrix(v: Volume) -> str:
        return " × ".join(str(n) for n in v.shape)

    for extra in (series_number, matrix, None):
        counts = Counter(v.description for v in volumes)
        if all(c == 1 for c in counts.values()):
            return
        seen: Counter = Counter()
        for v in volumes:
            if counts[v.description] > 1:
                if extra is None:
                    seen[v.description] += 1
                    v.description += f" ({seen[v.description]})"
                elif extra(v):
                    v.description += f" · {extra(v)}"


def _expand_zips(files: Sequence[tuple[str, bytes]], limits: ArchiveLimits, out: ScanSet
                 ) -> list[tuple[str, bytes]]:
    """The files with each zip replaced by its entries ("archive › entry"); what an archive
    skipped goes into ``out``."""
    entries: list[tuple[str, bytes]] = []
    for name, data in files:
        if _kind(name, data) != "zip":
            entries.append((name, data))
            continue
        try:
            expanded = expand_zip(data, limits)
        except ScanLoadError as e:
            out.problems.append(f"{name}: {e}")
            continue
        except Exception as e:  # noqa: BLE001 - zipfile's unforeseen errors on a damaged zip
            out.problems.append(f"{name}: this zip archive is damaged ({dicom.damage(e)})")
            continue
        entries += [(f"{name} › {inner}", raw) for inner, raw in expanded.files]
        out.problems += [f"{name} › {inner}: {why}" for inner, why in expanded.skipped]
        out.notes += [f"{name}: {n}" for n in expanded.notes]
        if not expanded.files and not expanded.skipped:
            out.problems.append(f"{name}: the archive holds no files")
    return entries


def _read_one(name: str, data: bytes, limits: ArchiveLimits, voxels: int
              ) -> Volume | dicom.DicomFrames:
    """One file: a NIfTI file or a picture → its Volume; a DICOM file → its frames (built
    into volumes with its series later). ``voxels``: how many the upload holds so far."""
    kind = _kind(name, data)
    if kind == "zip":
        raise ScanLoadError("a zip inside the zip is not opened: unzip it and upload "
                            "its contents")
    if kind == "nifti":
        return nifti.to_volume(data, max_voxels=limits.max_voxels - voxels)
    if kind == "picture":
        return _picture(data, limits)
    return _frames(_parse_dicom(name, data), limits, voxels)


def _read_files(entries: list[tuple[str, bytes]], limits: ArchiveLimits, out: ScanSet
                ) -> tuple[list[Volume | None], list[dicom.DicomFrames]]:
    """Read every file: (the volumes in upload order, None where the DICOM series go; the
    decoded DICOM files). A file that cannot be read is a line in ``out.problems``."""
    decoded: list[dicom.DicomFrames] = []
    voxels = 0
    slots: list[Volume | None] = []
    for name, data in entries:
        try:
            v = _read_one(name, data, limits, voxels)
        except ScanLoadError as e:
            out.problems.append(f"{name}: {e}")
            continue
        except Exception as e:  # noqa: BLE001 - a reader's unforeseen error: said, not raised
            out.problems.append(f"{name}: this file could not be read ({dicom.damage(e)})")
            continue
        if isinstance(v, Volume):
            voxels += v.data.size
            slots.append(v)
            continue
        decoded.append(v)
        voxels += v.pixels.size
        if all(s is not None for s in slots):
            slots.append(None)
    return slots, decoded


def _build_series(decoded: list[dicom.DicomFrames], limits: ArchiveLimits, out: ScanSet
                  ) -> list[Volume]:
    """The DICOM files grouped into series, one volume each; a series that cannot be built
    is a line in ``out.problems``."""
    vlimits = series.VolumeLimits(max_slices=limits.max_slices, max_voxels=limits.max_voxels)
    groups = series.group(decoded)
    out.notes += series.split_notes(groups)
    built: list[Volume] = []
    for g in groups:
        try:
            built.append(series.build(g, vlimits))
        except Exception as e:  # noqa: BLE001 - ScanLoadError, or an unforeseen error
            label = series.describe(g[0].meta, sum(f.n_frames for f in g), g[0].multi_frame)
            why = str(e) if isinstance(e, ScanLoadError) else (
                f"this series could not be built ({dicom.damage(e)})")
            out.problems.append(f"{label}: {why}")
    return built


def read_scans(files: Sequence[tuple[str, bytes]], limits: ArchiveLimits = DEFAULT_LIMITS
               ) -> ScanSet:
    """Uploaded files (name, bytes) → :class:`ScanSet`.

    Any mix of DICOM files (with or without the preamble), zip archives of them (expanded in
    memory within ``limits``; nested zips, folders and DICOMDIR skipped with a note), NIfTI
    (``.nii``/``.nii.gz``) and PNG/JPEG pictures. Each Volume is RAS+ float32 [X, Y, Z] with
    its spacing in mm and a description such as "MR · T1 AXIAL · 24 slices". Raises
    :class:`ScanLoadError` with every reason when nothing at all is readable.
    """
    out = ScanSet()
    slots, decoded = _read_files(_expand_zips(files, limits, out), limits, out)
    built = _build_series(decoded, limits, out)
    for v in slots:
        out.volumes += built if v is None else [v]
    _unique_descriptions(out.volumes)
    if not out.volumes:
        if len(out.problems) == 1:
            raise ScanLoadError(out.problems[0])
        raise ScanLoadError("nothing could be read: " + "; ".join(out.problems or
                                                                    ["no files"]))
    return out


def _frames(ds: Dataset, limits: ArchiveLimits, used: int) -> dicom.DicomFrames:
    """Decode within what is left of the upload's voxel cap (``used`` voxels so far)."""
    try:
        return dicom.frames(ds, max_voxels=limits.max_voxels - used)
    except ScanLoadError as e:
        if used and "too large" in str(e):
            raise ScanLoadError(f"not read: with the files before it, the upload would hold "
                                f"more than the {limits.max_voxels:,} voxels accepted") from None
        raise


def _parse_dicom(name: str, data: bytes) -> Dataset:
    try:
        return dicom.parse(data)
    except ScanLoadError as e:
        low = name.lower()
        if "." in low.rsplit("/", 1)[-1] and not low.endswith((".dcm", ".dicom", ".ima")):
            raise ScanLoadError(f"not a file this app reads ({READABLE})") from None
        raise e


__all__ = ["READABLE", "ArchiveLimits", "ScanSet", "read_scans"]
