"""DICOM files → series → one RAS+ :class:`~.volume.Volume` per series.

:func:`group` puts decoded files (:class:`~.dicom.DicomFrames`) into series by
SeriesInstanceUID, then by frame size and orientation when a series mixes them; a multi-frame
file is a series of its own. :func:`build` stacks a series' frames into a volume:

* order: ImagePositionPatient projected on the slice normal (row × column direction
  cosines); without positions, InstanceNumber (noted), else the upload order (noted);
* spacing: the median step between positions (SpacingBetweenSlices or SliceThickness without
  positions, noted); duplicated positions are kept once, gaps larger than
  :data:`GAP_FACTOR` × the median and uneven steps are said in ``notes`` (the volume is not
  resampled: it is displayed with the median step);
* orientation: the voxel → patient affine (LPS → RAS) reorders the array to the closest
  RAS+ axes (:mod:`.orientation`); an oblique acquisition (> :data:`OBLIQUE_DEG`) is shown
  on the nearest axes, with a note; without ImageOrientationPatient the array is kept as
  stored (:data:`STORED_LAYOUT`), ``oriented=False``;
* MONOCHROME1 is inverted over the whole series, so its slices stay comparable.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from . import orientation as orient
from .dicom import MONOCHROME1_NOTE, DicomFrames, invert_monochrome1
from .errors import ScanLoadError
from .volume import Convention, Volume

#: a step larger than this × the median step between slices is a gap (missing slices)
GAP_FACTOR = 1.5
#: steps differing from the median by more than this fraction are "uneven"
UNEVEN_FRACTION = 0.05
#: direction cosines further than this from the nearest axis: oblique (degrees)
OBLIQUE_DEG = 1.0
#: how an array without orientation is laid out: its stored rows and columns appear as they
#: are in this display convention (a DICOM image is stored as a radiologist reads it)
STORED_LAYOUT: Convention = "radiological"


@dataclass(frozen=True)
class VolumeLimits:
    """Memory caps on one built volume: at most ``max_slices`` slices and ``max_voxels``
    voxels (float32: 4 bytes each; the default 2**28 is 1 GiB)."""

    max_slices: int = 5000
    max_voxels: int = 1 << 28


def _orientation_key(f: DicomFrames) -> tuple | None:
    return None if f.orientation is None else tuple(np.round(f.orientation, 3).tolist())


def group(files: list[DicomFrames]) -> list[list[DicomFrames]]:
    """Series in upload order: multi-frame files alone; single frames by SeriesInstanceUID,
    frame size, orientation (rounded to 0.001) and echo time (a multi-echo series gives one
    volume per echo, ``meta["echo_split"]``)."""
    groups: dict[tuple, list[DicomFrames]] = {}
    echoes: dict[str, set] = {}
    for i, f in enumerate(files):
        echo = f.meta.get("echo_time_ms")
        key = ("multi", i) if f.multi_frame else (
            "series", f.series_uid, f.pixels.shape[1:], _orientation_key(f), echo)
        groups.setdefault(key, []).append(f)
        if not f.multi_frame:
            echoes.setdefault(f.series_uid, set()).add(echo)
    for f in files:  # a multi-echo series: each echo is a volume, named by its echo time
        if not f.multi_frame and len(echoes[f.series_uid]) > 1:
            f.meta["echo_split"] = True
    return list(groups.values())


def split_notes(series: list[list[DicomFrames]]) -> list[str]:
    """A note for each SeriesInstanceUID that :func:`group` split into several volumes."""
    by_uid = Counter(s[0].series_uid for s in series if not s[0].multi_frame)
    return [f"one series holds {n} different frame sizes, orientations or echo times: read "
            f"as {n} volumes" for uid, n in by_uid.items() if n > 1]


def _merge_notes(files: list[DicomFrames]) -> list[str]:
    """Each file's notes once; many different rescale notes become one."""
    seen: list[str] = []
    for f in files:
        for n in f.notes:
            if n not in seen:
                seen.append(n)
    rescale = [n for n in seen if n.startswith("rescaled")]
    if len(rescale) > 1:
        first = seen.index(rescale[0])
        seen = [n for n in seen if not n.startswith("rescaled")]
        seen.insert(first, f"rescaled per slice ({len(rescale)} different slopes/intercepts)")
    return seen


def _fmt(v: float) -> str:
    return f"{v:.1f}".replace("-", "−")


def _order(pos: np.ndarray | None, inst: list[int | None], normal: np.ndarray | None,
           notes: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """(slice order, each ordered slice's distance along the normal or None)."""
    n = len(inst)
    if pos is not None and normal is not None:
        d = pos @ normal
        idx = np.argsort(d, kind="stable")
        return idx, d[idx]
    if n > 1 and all(i is not None for i in inst):
        notes.append("slice order taken from InstanceNumber (no slice positions in the files)")
        return np.argsort(np.array(inst, dtype=np.int64), kind="stable"), None
    if n > 1:
        notes.append("slices kept in the upload order (no slice positions or instance numbers)")
    return np.arange(n), None


def _dedupe(idx: np.ndarray, d: np.ndarray, planes: list[np.ndarray], notes: list[str]
            ) -> tuple[np.ndarray, np.ndarray]:
    """Keep the first slice at each position (within 1 % of the median step); say how many
    were dropped, and whether they differed from the one kept (time points, echoes …)."""
    steps = np.diff(d)
    pos_steps = steps[steps > 1e-6]
    tol = max(1e-3, 0.01 * float(np.median(pos_steps))) if pos_steps.size else 1e-3
    keep = np.concatenate([[True], steps > tol])
    dup = int((~keep).sum())
    if dup:
        where = sorted({_fmt(float(v)) for v in d[~keep]})
        shown = ", ".join(where[:5]) + (" …" if len(where) > 5 else "")
        kept_at = np.maximum.accumulate(np.where(keep, np.arange(len(keep)), 0))
        differ = sum(not np.array_equal(planes[idx[i]], planes[idx[kept_at[i]]])
                     for i in np.flatnonzero(~keep))
        what = (f"; {differ} of them differ from the slice kept (several time points or "
                "acquisitions at one position?): only the first is shown") if differ else ""
        notes.append(f"{dup} duplicated slice position(s) kept once (at {shown} mm along the "
                     f"slice normal){what}")
    return idx[keep], d[keep]


def _spacing_notes(d: np.ndarray, notes: list[str]) -> float:
    """The median step between ordered positions ``d``, with notes on gaps and unevenness."""
    steps = np.diff(d)
    med = float(np.median(steps))
    gaps = np.flatnonzero(steps > GAP_FACTOR * med)
    for g in gaps:
        missing = max(1, round(float(steps[g]) / med) - 1)
        notes.append(f"about {missing} slice(s) missing between positions {_fmt(d[g])} and "
                     f"{_fmt(d[g + 1])} mm along the slice normal (a {steps[g]:.1f} mm gap; "
                     f"the usual step is {med:.2f} mm)")
    regular = np.delete(steps, gaps)
    if regular.size and (abs(regular.max() - med) > UNEVEN_FRACTION * med or
                         abs(med - regular.min()) > UNEVEN_FRACTION * med):
        notes.append(f"uneven slice spacing: steps from {regular.min():.2f} to "
                     f"{regular.max():.2f} mm; shown with the median, {med:.2f} mm")
    return med


def _fallback_step(f: DicomFrames, notes: list[str]) -> float:
    if f.spacing_between_slices:
        notes.append(f"slice step from SpacingBetweenSlices: {f.spacing_between_slices:g} mm")
        return f.spacing_between_slices
    if f.slice_thickness:
        notes.append(f"slice step from SliceThickness: {f.slice_thickness:g} mm")
        return f.slice_thickness
    notes.append("slice step unknown: 1 mm assumed")
    return 1.0


def _check_limits(files: list[DicomFrames], limits: VolumeLimits) -> int:
    """The series' slice count; raises :class:`ScanLoadError` above ``limits``."""
    h, w = files[0].pixels.shape[1:]
    n_total = sum(f.n_frames for f in files)
    if n_total > limits.max_slices:
        raise ScanLoadError(f"the series has {n_total} slices, more than the "
                            f"{limits.max_slices} accepted")
    if n_total * h * w > limits.max_voxels:
        raise ScanLoadError(f"the series is too large: {n_total} slices of {h} × {w} pixels, "
                            f"more than the {limits.max_voxels:,} voxels accepted")
    return n_total


def _slice_normal(iop: np.ndarray | None) -> np.ndarray | None:
    """The unit normal of the slices' plane (row × column direction)."""
    if iop is None:
        return None
    normal = np.cross(iop[:3], iop[3:])
    return normal / np.linalg.norm(normal)


def _stack_order(files: list[DicomFrames], planes: list[np.ndarray], pos: np.ndarray | None,
                 normal: np.ndarray | None, notes: list[str]) -> tuple[np.ndarray, float]:
    """The order of the planes along the normal (duplicates dropped) and the slice step
    (mm)."""
    first = files[0]
    inst: list[int | None] = []
    for f in files:
        inst += [f.instance_number if f.n_frames == 1 else k + 1 for k in range(f.n_frames)]
    if pos is None and first.multi_frame:
        notes.append(f"multi-frame image without per-frame positions: {len(planes)} frames "
                     "stacked in their stored order")
        idx, d = np.arange(len(planes)), None
    else:
        idx, d = _order(pos, inst, normal, notes)
    if d is not None and len(d) > 1:
        idx, d = _dedupe(idx, d, planes, notes)
    if d is not None and len(d) > 1:
        return idx, _spacing_notes(d, notes)
    step = _fallback_step(first, notes) if len(idx) > 1 else (
        first.slice_thickness or first.spacing_between_slices or 1.0)
    return idx, step


def _oriented(arr: np.ndarray, first: DicomFrames, pos: np.ndarray | None, idx: np.ndarray,
              normal: np.ndarray, spacing: tuple[float, float, float], meta: dict,
              notes: list[str]) -> tuple[np.ndarray, tuple[float, ...]]:
    """``arr`` ([column, row, slice]) in RAS+ order by the patient geometry, and its
    spacing; the acquisition plane and obliquity go into ``meta``."""
    iop = first.orientation
    assert iop is not None
    origin = pos[idx[0]] if pos is not None else (
        first.positions[0] if first.positions is not None else np.zeros(3))
    aff = orient.lps_to_ras(orient.dicom_affine(iop[:3], iop[3:], normal, spacing, origin))
    if pos is not None and len(idx) > 1:
        _shear_note(pos[idx[-1]] - pos[idx[0]], normal, notes)
    data, ras_spacing, codes = orient.to_ras(arr, aff)
    tilt = orient.obliquity(aff)
    plane = orient.slice_plane(aff)
    meta["acquisition_plane"] = plane
    meta["stored_axes"] = codes
    if tilt > OBLIQUE_DEG:
        notes.append(f"oblique acquisition: the slices are tilted {tilt:.0f}° from the "
                     f"nearest axes; shown as {plane} slices without resampling, so the "
                     "edge markers are approximate")
    meta["obliquity_deg"] = round(tilt, 2)
    return data, tuple(ras_spacing)


def _as_stored(arr: np.ndarray, notes: list[str]) -> np.ndarray:
    """``arr`` ([column, row, slice]) without a patient geometry: shown as stored."""
    notes.append("no ImageOrientationPatient: the anatomical directions are unknown; the "
                 "images are shown as stored, without markers")
    data = arr[:, ::-1, :] if STORED_LAYOUT == "neurological" else arr[::-1, ::-1, :]
    return np.ascontiguousarray(data)


def build(files: list[DicomFrames], limits: VolumeLimits = VolumeLimits()) -> Volume:
    """One series (a :func:`group`) → :class:`Volume` (RAS+ float32 [X, Y, Z], spacing mm).
    Raises :class:`ScanLoadError` above ``limits``."""
    first = files[0]
    _check_limits(files, limits)
    notes = _merge_notes(files)
    planes = [f.pixels[k] for f in files for k in range(f.n_frames)]
    positions = [f.positions for f in files if f.positions is not None]
    pos = np.concatenate(positions) if len(positions) == len(files) else None
    normal = _slice_normal(first.orientation)
    idx, step = _stack_order(files, planes, pos, normal, notes)
    ps = first.pixel_spacing
    if ps is None:
        notes.append("pixel spacing unknown: 1 mm assumed")
        ps = (1.0, 1.0)
    stack = np.stack([planes[i] for i in idx])  # [K, H, W]
    windows = dict(first.windows)
    if any(f.monochrome1 for f in files):
        stack, windows = invert_monochrome1(stack, windows)
        notes.append(MONOCHROME1_NOTE)
    arr = stack.transpose(2, 1, 0).astype(np.float32)  # [column, row, slice]
    meta = dict(first.meta)
    meta["slices"] = int(arr.shape[2])
    stored_spacing = (ps[1], ps[0], step)
    if normal is not None:
        data, spacing = _oriented(arr, first, pos, idx, normal, stored_spacing, meta, notes)
    else:
        data, spacing = _as_stored(arr, notes), stored_spacing
    meta["spacing_mm"] = [round(float(s), 4) for s in spacing]
    sx, sy, sz = spacing
    return Volume(data=data, spacing=(float(sx), float(sy), float(sz)),
                  kind="DICOM", description=describe(meta, int(arr.shape[2]),
                                                     first.multi_frame),
                  oriented=normal is not None, windows=windows, meta=meta, notes=notes,
                  study_date=next((f.study_date for f in files if f.study_date), None))


def _shear_note(span: np.ndarray, normal: np.ndarray, notes: list[str]) -> None:
    length = float(np.linalg.norm(span))
    if length > 0:
        angle = float(np.degrees(np.arccos(min(1.0, abs(float(span @ normal)) / length))))
        if angle > OBLIQUE_DEG:
            notes.append(f"the slices are sheared (gantry tilt about {angle:.0f}°): not "
                         "corrected")


def describe(meta: dict, n: int, multi_frame: bool = False) -> str:
    """"MR · T1 AXIAL · 24 slices": modality, series description (else the series number),
    the echo time of one echo of a multi-echo series, and the slice count — never a patient
    identifier or a file name."""
    parts = [str(meta.get("modality") or "DICOM")]
    if meta.get("series_description"):
        parts.append(str(meta["series_description"]))
    elif meta.get("series_number") is not None:
        parts.append(f"series {meta['series_number']}")
    if meta.get("echo_split") and meta.get("echo_time_ms") is not None:
        parts.append(f"TE {meta['echo_time_ms']:g} ms")
    unit = "frame" if multi_frame else "slice"
    parts.append(f"{n} {unit}{'' if n == 1 else 's'}")
    return " · ".join(parts)


__all__ = ["GAP_FACTOR", "OBLIQUE_DEG", "STORED_LAYOUT", "UNEVEN_FRACTION", "VolumeLimits",
           "build", "describe", "group", "split_notes"]
