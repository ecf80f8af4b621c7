"""NIfTI-1/-2 bytes (``.nii`` or gzipped ``.nii.gz``) → a RAS+ volume, in memory.

:func:`load` gunzips (bounded by :data:`MAX_NIFTI_BYTES`: a gzip-bomb guard), reads the
header, keeps the first volume of a 4-D series, reorders to the closest canonical RAS+ axes
(``nibabel.as_closest_canonical``: no resampling) and replaces NaN/±Inf (noted).
:func:`to_volume` wraps that as a :class:`~.volume.Volume`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .errors import ScanLoadError
from .volume import Volume

if TYPE_CHECKING:  # nibabel is imported where a NIfTI file is read (the medical extra)
    from nibabel.nifti1 import Nifti1Header, Nifti1Image

#: the largest decompressed NIfTI accepted (a gzip bomb guard), bytes
MAX_NIFTI_BYTES = 1 << 30


@dataclass
class NiftiData:
    """``volume`` float32 [X, Y, Z] RAS+ (finite), ``zooms`` mm, ``meta``, ``notes``,
    ``oriented`` (False when the header has no orientation: qform and sform codes 0, or a
    degenerate affine), ``windows`` (cal_min/cal_max when set)."""

    volume: np.ndarray
    zooms: tuple[float, float, float]
    meta: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    oriented: bool = True
    windows: dict[str, tuple[float, float]] = field(default_factory=dict)


def gunzip(data: bytes, limit: int | None = None) -> bytes:
    """Decompress a gzip stream in memory, refusing more than ``limit`` bytes of output
    (default :data:`MAX_NIFTI_BYTES`)."""
    limit = MAX_NIFTI_BYTES if limit is None else limit
    d = zlib.decompressobj(wbits=31)  # gzip container
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as e:
        raise ScanLoadError(f"this .gz file is damaged ({e})") from None
    if len(out) > limit or d.unconsumed_tail:
        raise ScanLoadError(f"the decompressed file is larger than {limit >> 20} MiB")
    return out


def looks_like_nifti(data: bytes) -> bool:
    """Whether ``data`` starts with a NIfTI-1/-2 header size (348 or 540, either endian)."""
    if len(data) < 4:
        return False
    return {int.from_bytes(data[:4], "little"), int.from_bytes(data[:4], "big")} & {348, 540} \
        != set()


def image(raw: bytes) -> Nifti1Image:
    """Uncompressed NIfTI bytes → a nibabel image. Raises :class:`ScanLoadError`."""
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


def _first_volume(img: Nifti1Image, max_voxels: int | None, notes: list[str]) -> Nifti1Image:
    """The image's first 3-D volume (a 2-D image: one slice); refuses more than
    ``max_voxels``."""
    import nibabel as nib

    shape = img.shape
    if len(shape) < 2:
        raise ScanLoadError(f"expected a 3-D image, got shape {list(shape)}")
    if max_voxels is not None and int(np.prod(shape[:3])) > max_voxels:
        raise ScanLoadError(f"the volume is too large: {' × '.join(map(str, shape[:3]))} "
                            f"voxels, more than the {max_voxels:,} accepted")
    if len(shape) > 3:
        extra = shape[3:]
        if int(np.prod(extra)) > 1:
            notes.append(f"{len(shape)}-D image with {int(np.prod(extra))} volumes: showing "
                         "the first volume")
        return img.slicer[(slice(None),) * 3 + (0,) * len(extra)]
    if len(shape) == 2:
        notes.append("2-D image: treated as a single slice")
        return nib.Nifti1Image(np.asarray(img.dataobj)[..., None], img.affine, img.header)
    return img


def _header_oriented(header: Nifti1Header, notes: list[str]) -> bool:
    """Whether the header gives an orientation (a qform or sform code)."""
    try:
        if int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0:
            notes.append("the header gives no orientation (qform and sform codes are 0): "
                         "axes assumed RAS, shown without markers")
            return False
    except (KeyError, ValueError, TypeError):
        pass
    return True


def _canonical(img: Nifti1Image, notes: list[str]) -> tuple[Nifti1Image, bool]:
    """The image in RAS+ order, and False when its orientation could not be determined
    (then as stored)."""
    import nibabel as nib

    try:
        canonical = nib.as_closest_canonical(img)
    except Exception:  # noqa: BLE001 - a degenerate affine: keep the stored order
        notes.append("the orientation could not be determined: axes shown as stored")
        return img, False
    codes = "".join(nib.aff2axcodes(img.affine)) if canonical is not img else "?"
    if codes not in ("RAS", "?"):
        notes.append(f"reoriented from {codes} to RAS")
    return canonical, True


def _finite_data(img: Nifti1Image, notes: list[str]) -> np.ndarray:
    """The image's voxels, float32; NaN → 0, ±Inf → the finite max/min."""
    try:
        vol = np.asarray(img.get_fdata(dtype=np.float32))
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
    return vol


def _windows(header: Nifti1Header) -> dict[str, tuple[float, float]]:
    """The display window the header stores (cal_min…cal_max), if a valid one."""
    try:
        lo, hi = float(header["cal_min"]), float(header["cal_max"])
    except (KeyError, ValueError, TypeError):
        return {}
    if np.isfinite([lo, hi]).all() and hi > lo:
        return {"from the file (cal_min…cal_max)": ((lo + hi) / 2, hi - lo)}
    return {}


def load(data: bytes, max_voxels: int | None = None) -> NiftiData:
    """Bytes of a ``.nii`` / ``.nii.gz`` → :class:`NiftiData` (RAS+). ``max_voxels``: refuse
    a larger first volume (memory). Raises :class:`ScanLoadError`."""
    if not data:
        raise ScanLoadError("the file is empty")
    notes: list[str] = []
    raw = gunzip(data) if data[:2] == b"\x1f\x8b" else data
    img = _first_volume(image(raw), max_voxels, notes)
    header = img.header
    oriented = _header_oriented(header, notes)
    canonical, determined = _canonical(img, notes)
    oriented = oriented and determined
    vol = _finite_data(canonical, notes)
    z = [float(v) for v in canonical.header.get_zooms()[:3]]
    z += [1.0] * (3 - len(z))
    zooms = (z[0], z[1], z[2])
    descrip = header.get("descrip", b"").item().decode("latin-1", "replace").strip("\x00 ") \
        if "descrip" in header else ""
    meta = {"shape": list(vol.shape), "zooms_mm": list(zooms), "orientation": "RAS",
            "datatype": str(img.get_data_dtype()), "description": descrip}
    return NiftiData(volume=vol, zooms=zooms, meta=meta, notes=notes,
                     oriented=oriented, windows=_windows(header))


def to_volume(data: bytes, max_voxels: int | None = None) -> Volume:
    """Bytes of a NIfTI file → :class:`Volume` (kind "NIfTI"; description: "NIfTI" and the
    voxel counts). The header's free-text ``descrip`` stays in ``meta`` (on
    screen, under the scan's details) and out of the description that reports carry: any
    tool, or a person, may have written a name there."""
    n = load(data, max_voxels)
    parts = ["NIfTI", " × ".join(str(s) for s in n.volume.shape) + " voxels"]
    return Volume(data=n.volume, spacing=n.zooms, kind="NIfTI", description=" · ".join(parts),
                  oriented=n.oriented, windows=n.windows, meta=n.meta, notes=n.notes)


__all__ = ["MAX_NIFTI_BYTES", "NiftiData", "gunzip", "image", "load", "looks_like_nifti",
           "to_volume"]
