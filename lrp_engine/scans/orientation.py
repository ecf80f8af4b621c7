"""Voxel → patient geometry: reorder an array to the closest canonical RAS+ axes.

DICOM gives positions in the patient's LPS frame (x toward the patient's Left, y Posterior,
z Superior); :func:`lps_to_ras` flips x and y. :func:`to_ras` then permutes and flips the
array's axes (nibabel.orientations) so that index i, j, k grows toward Right, Anterior and
Superior — never resampling: an oblique acquisition keeps its voxels and is shown on the
nearest axes, with :func:`obliquity` saying by how much.
"""

from __future__ import annotations

import numpy as np

#: DICOM LPS → RAS (and back): negate x and y
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
PLANES = ("sagittal", "coronal", "axial")


def lps_to_ras(affine_lps: np.ndarray) -> np.ndarray:
    """A 4 × 4 voxel → LPS (mm) affine → the voxel → RAS (mm) affine."""
    return LPS_TO_RAS @ np.asarray(affine_lps, dtype=np.float64)


def dicom_affine(row_cosines: np.ndarray, col_cosines: np.ndarray, normal: np.ndarray,
                 spacing: tuple[float, float, float], origin: np.ndarray) -> np.ndarray:
    """The voxel → LPS affine of an array indexed [column, row, slice]: ``spacing`` (mm
    between columns, between rows, between slices), ``origin`` the first voxel's centre."""
    a = np.eye(4)
    a[:3, 0] = np.asarray(row_cosines, float) * spacing[0]  # along a row: column index grows
    a[:3, 1] = np.asarray(col_cosines, float) * spacing[1]
    a[:3, 2] = np.asarray(normal, float) * spacing[2]
    a[:3, 3] = origin
    return a


def obliquity(affine: np.ndarray) -> float:
    """The largest angle (degrees) between an array axis and its nearest patient axis."""
    m = np.asarray(affine, float)[:3, :3]
    cos = np.abs(m) / np.linalg.norm(m, axis=0, keepdims=True)
    return float(np.degrees(np.arccos(np.clip(cos.max(axis=0), -1.0, 1.0))).max())


def slice_plane(affine: np.ndarray) -> str:
    """The plane of the array's slices (its third axis): sagittal, coronal or axial."""
    n = np.asarray(affine, float)[:3, 2]
    return PLANES[int(np.argmax(np.abs(n)))]


def to_ras(data: np.ndarray, affine_ras: np.ndarray) -> tuple[np.ndarray, tuple[float, ...],
                                                               str]:
    """(array reordered to RAS+, spacing (x, y, z) mm after reordering, the original axis
    codes such as "LPS"). ``data`` [I, J, K]; ``affine_ras`` its voxel → RAS affine."""
    from nibabel.orientations import apply_orientation, io_orientation, ornt2axcodes

    aff = np.asarray(affine_ras, float)
    ornt = io_orientation(aff)
    zooms = np.linalg.norm(aff[:3, :3], axis=0)
    spacing = [0.0, 0.0, 0.0]
    for i, (axis, _) in enumerate(ornt):
        spacing[int(axis)] = float(zooms[i])
    out = np.ascontiguousarray(apply_orientation(data, ornt))
    return out, tuple(spacing), "".join(ornt2axcodes(ornt))


__all__ = ["LPS_TO_RAS", "PLANES", "dicom_affine", "lps_to_ras", "obliquity", "slice_plane",
           "to_ras"]
