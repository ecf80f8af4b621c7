"""Generated DICOM series for the MRI inspector's page and browser tests (bytes, no disk).

:func:`axial_series`: a head-like volume with a bright blob in the patient's left
hemisphere, as one DICOM file per axial slice (LPS patient axes, ImageOrientationPatient
[1, 0, 0, 0, 1, 0]: columns run toward the patient's left, rows toward posterior), with
patient identifiers that must never reach a screen or a report. :func:`study_zip`: files
into a .zip, in memory.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np

from tests.hostile_files import dicom_bytes

#: the identifiers written into every generated slice (none may appear in a report)
PATIENT = {"PatientName": "DOE^JANE", "PatientID": "PID-778899",
           "PatientBirthDate": "19510203", "AccessionNumber": "ACC-4455"}
STUDY_DATE = "20240917"


def head(n: int = 12, rows: int = 64, cols: int = 64) -> np.ndarray:
    """uint16 [n, rows, cols] (slice, row, column): an ellipse of 'brain' at ~800 with a
    bright blob (~2000) on the patient's left, i.e. high column indices in LPS storage."""
    zz, yy, xx = np.mgrid[:n, :rows, :cols].astype(np.float64)
    v = np.where(((yy - rows / 2) / (rows * 0.42)) ** 2 + ((xx - cols / 2) / (cols * 0.36)) ** 2
                 < 1, 800.0, 20.0)
    v += 4 * zz
    blob = (yy - rows / 2) ** 2 + (xx - cols * 0.7) ** 2 + (4 * (zz - n / 2)) ** 2 < 36
    v[blob] = 2000.0
    return v.astype(np.uint16)


def axial_series(volume: np.ndarray | None = None, description: str = "T1 AXIAL",
                 series_uid: str = "1.2.826.0.1.3680043.8.498.1", spacing: float = 3.0,
                 order: list[int] | None = None, modality: str = "MR") -> list[tuple[str, bytes]]:
    """One (name, bytes) per slice of ``volume`` [n, rows, cols] (default :func:`head`),
    slice k at z = k × ``spacing`` mm, in file ``order`` (default: as sliced). File names
    carry the patient's name, as PACS exports often do."""
    vol = head() if volume is None else volume
    n = vol.shape[0]
    out = []
    for k in (range(n) if order is None else order):
        data = dicom_bytes(vol[k], Modality=modality, SeriesInstanceUID=series_uid,
                           SeriesDescription=description, InstanceNumber=k + 1,
                           ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
                           ImagePositionPatient=[-96.0, -96.0, k * spacing],
                           PixelSpacing=[3.0, 3.0], SliceThickness=spacing,
                           StudyDate=STUDY_DATE, **PATIENT)
        out.append((f"DOE_JANE_{series_uid[-1]}_{k:03d}.dcm", data))
    return out


def study_zip(files: list[tuple[str, bytes]], stored: bool = False) -> bytes:
    """``files`` in a .zip (deflated, or stored so that their bytes appear verbatim)."""
    buf = io.BytesIO()
    method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in files:
            z.writestr(f"study/{name}", data)
    return buf.getvalue()
