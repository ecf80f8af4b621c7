"""Compressed transfer syntaxes through ``read_scans``: every syntax the installed plugins
decode is read back equal (or within its lossy bound); the ones that do not decode get a
message naming the syntax, its UID and what would decode it.

Files are encoded here with pydicom's ``Dataset.compress`` (RLE: pydicom; JPEG-LS: pyjpegls;
JPEG 2000: pylibjpeg-openjpeg) or, where pydicom has no encoder (JPEG baseline, JPEG Lossless
SV1, 12-bit JPEG Extended), are pydicom's own test files shipped inside its wheel
(``pydicom.data.get_testdata_file``: offline, nothing is downloaded).
"""

from __future__ import annotations

import io

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.uid import (  # noqa: E402
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from lrp_engine.scans import ScanLoadError, read_scans  # noqa: E402
from lrp_engine.scans import transfer_syntax as ts  # noqa: E402
from tests.hostile_files import dicom_bytes, mr_slice  # noqa: E402

PX = mr_slice(48, 64)  # uint16, values 20 000 … 60 000


def _stored(vol) -> np.ndarray:
    """The one axial slice of an unoriented volume as the file stores it [rows, cols]."""
    from lrp_engine.scans import view

    return view(vol, 2).array


def _compressed(uid: str, **kw: object) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(PX)))
    if uid == DeflatedExplicitVRLittleEndian:  # deflate is a dataset encoding, not a codec
        ds.file_meta.TransferSyntaxUID = UID(uid)
    else:
        ds.compress(uid, **kw)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.mark.parametrize("uid,kw,bound", [
    (RLELossless, {}, 0),
    (JPEGLSLossless, {}, 0),
    (JPEGLSNearLossless, {"jls_error": 3}, 3),  # near-lossless: |error| ≤ NEAR
    (JPEG2000Lossless, {}, 0),
    (DeflatedExplicitVRLittleEndian, {}, 0),
])
def test_encoded_syntax_reads_back(uid, kw, bound) -> None:
    data = _compressed(uid, **kw)
    assert pydicom.dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID == uid
    (vol,) = read_scans([("x.dcm", data)]).volumes
    got = _stored(vol)
    assert got.shape == PX.shape
    assert np.abs(got.astype(np.int64) - PX).max() <= bound
    assert vol.meta["transfer_syntax"] == UID(uid).name


def test_jpeg2000_lossy_reads_back_close() -> None:
    (vol,) = read_scans([("x.dcm", _compressed(JPEG2000, j2k_cr=[10]))]).volumes
    err = np.abs(_stored(vol).astype(np.float64) - PX)
    assert 0 < err.mean() < 0.02 * (float(PX.max()) - float(PX.min()))  # lossy: close
    assert vol.meta["transfer_syntax"] == "JPEG 2000 Image Compression"


@pytest.mark.parametrize("name,reference", [
    ("SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_rle.dcm"),  # JPEG Baseline (Process 1), lossy
    ("SC_rgb_jpeg_gdcm.dcm", "SC_rgb_rle.dcm"),  # JPEG Lossless SV1 (Process 14)
    ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"),
    ("MR_small_jp2klossless.dcm", "MR_small.dcm"),
    ("MR_small_RLE.dcm", "MR_small.dcm"),
    ("image_dfl.dcm", None),  # deflated
    ("JPEGLSNearLossless_16.dcm", None),
    ("JPEG2000.dcm", None),
])
def test_wheel_sample_files_are_read(name, reference) -> None:
    path = get_testdata_file(name)
    data = open(path, "rb").read()
    (vol,) = read_scans([(name, data)]).volumes
    assert np.isfinite(vol.data).all() and vol.data.std() > 0
    if reference is not None:
        ref = pydicom.dcmread(get_testdata_file(reference))
        arr = ref.pixel_array.astype(np.float64)
        if arr.ndim == 3:
            arr = arr @ np.array([0.299, 0.587, 0.114])
        arr = arr * float(getattr(ref, "RescaleSlope", 1)) + float(
            getattr(ref, "RescaleIntercept", 0))
        tol = 8.0 if "dcmtk" in name else 1e-3  # baseline JPEG is lossy
        assert np.abs(_stored_or_axial(vol) - arr).max() <= tol


def _stored_or_axial(vol) -> np.ndarray:
    from lrp_engine.scans import view

    if vol.oriented:  # MR_small: axial LPS, stored rows/cols = the radiological axial view
        return view(vol, 2).array
    return _stored(vol)


def test_jpeg_extended_12_bit_that_libjpeg_refuses_names_gdcm() -> None:
    data = open(get_testdata_file("JPEG-lossy.dcm"), "rb").read()
    with pytest.raises(ScanLoadError) as info:
        read_scans([("JPEG-lossy.dcm", data)])
    msg = str(info.value)
    assert msg.startswith("JPEG-lossy.dcm: ")
    assert "'JPEG Extended (Process 2 and 4)' (1.2.840.10008.1.2.4.51)" in msg
    assert "GDCM" in msg and "python-gdcm" in msg and "Explicit VR Little Endian" in msg
    assert "Traceback" not in msg


@pytest.mark.parametrize("uid,words", [
    ("1.2.840.10008.1.2.4.102", ["MPEG-4 AVC/H.264", "video", "export the frames"]),
    ("1.2.840.10008.1.2.4.107", ["HEVC/H.265", "video"]),
    ("1.2.840.10008.1.2.4.100", ["MPEG2", "video"]),
    ("1.2.3.4.5.6", ["1.2.3.4.5.6 (unknown to pydicom)", "private"]),
])
def test_undecodable_syntax_is_named(uid, words) -> None:
    with pytest.raises(ScanLoadError) as info:
        read_scans([("clip.dcm", dicom_bytes(PX[:16, :16], syntax=uid))])
    msg = str(info.value)
    assert uid in msg and "cannot be decoded here" in msg
    assert all(w in msg for w in words), msg
    assert "Explicit VR Little Endian" in msg


def test_syntaxes_newer_than_pydicom_are_named() -> None:
    msg = ts.decode_error_message("1.2.840.10008.1.2.4.110", "no decoder")
    assert "'JPEG XL Lossless' (1.2.840.10008.1.2.4.110)" in msg and "cannot be decoded" in msg


def test_damaged_data_in_a_decodable_syntax_says_damaged() -> None:
    with pytest.raises(ScanLoadError, match=r"JPEG-LS Lossless Image Compression.*"
                                            r"could not be decoded.*damaged"):
        read_scans([("jls.dcm", dicom_bytes(PX[:16, :16], syntax=JPEGLSLossless))])


def test_decoders_cover_the_promised_syntaxes() -> None:
    for uid in ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
                JPEGLSLossless, JPEGLSNearLossless, JPEG2000Lossless, JPEG2000, RLELossless,
                DeflatedExplicitVRLittleEndian, "1.2.840.10008.1.2.4.201",
                "1.2.840.10008.1.2.4.203"):
        assert ts.can_decode(uid), UID(uid).name
    assert not ts.can_decode("1.2.840.10008.1.2.4.102")


def test_deflated_dataset_is_inflated_within_a_cap() -> None:
    from lrp_engine.scans import dicom

    data = _compressed(DeflatedExplicitVRLittleEndian)  # 6 KiB of pixels, deflated
    assert dicom.parse(data, max_inflated=1 << 20) is not None
    with pytest.raises(ScanLoadError, match=r"inflates to more than 0\.0 MiB"):
        dicom.parse(data, max_inflated=1000)
