"""DICOM and NIfTI readers on small files generated in memory, display windows, model input."""

from __future__ import annotations

import gzip
import tempfile

import numpy as np
import pytest
import torch

pydicom = pytest.importorskip("pydicom")
nib = pytest.importorskip("nibabel")

from pydicom.uid import UID, JPEGLSLossless  # noqa: E402

from lrp_engine.medical import (  # noqa: E402
    ScanLoadError,
    read_dicom,
    read_nifti,
    scan_to_tensor,
    volume_slice,
    window,
)
from tests.hostile_files import dicom_bytes  # noqa: E402

make_dicom = dicom_bytes  # the corpus's DICOM writer (tests/hostile_files.py)


def make_nifti(data: np.ndarray, affine: np.ndarray | None = None, gz: bool = False) -> bytes:
    img = nib.Nifti1Image(data, np.eye(4) if affine is None else affine)
    raw = img.to_bytes()
    return gzip.compress(raw) if gz else raw


@pytest.fixture(autouse=True)
def no_disk(monkeypatch):
    """Uploads must never be written to disk: any temporary file fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a temporary file was created")

    for name in ("mkstemp", "mkdtemp", "NamedTemporaryFile", "TemporaryFile",
                 "SpooledTemporaryFile"):
        monkeypatch.setattr(tempfile, name, refuse)


# -- DICOM ---------------------------------------------------------------------------------

def test_dicom_16_bit_with_rescale_has_no_overflow() -> None:
    px = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)
    scan = read_dicom(make_dicom(px, RescaleSlope=2, RescaleIntercept=-1024, WindowCenter=40,
                                 WindowWidth=400, PixelSpacing=[0.5, 0.6]))
    np.testing.assert_array_equal(scan.array, [[-1024, 976], [78976, 130046]])
    assert scan.array.dtype == np.float32
    assert scan.meta["modality"] == "MR"
    assert scan.meta["window_center"] == 40 and scan.meta["window_width"] == 400
    assert scan.meta["pixel_spacing"] == [0.5, 0.6]
    assert scan.meta["rescale_slope"] == 2 and scan.meta["rescale_intercept"] == -1024
    assert scan.notes == ["rescaled: value × 2 − 1024"]
    assert not any("Doe" in str(v) or "12345" in str(v) for v in scan.meta.values())


def test_dicom_signed_16_bit() -> None:
    px = np.array([[-32768, -1], [0, 32767]], dtype=np.int16)
    scan = read_dicom(make_dicom(px, RescaleSlope=1, RescaleIntercept=-1024))
    np.testing.assert_array_equal(scan.array, [[-33792, -1025], [-1024, 31743]])


def test_dicom_monochrome1_is_inverted_with_its_window() -> None:
    px = np.array([[0, 100], [300, 1000]], dtype=np.uint16)
    scan = read_dicom(make_dicom(px, photometric="MONOCHROME1", WindowCenter=300,
                                 WindowWidth=200))
    np.testing.assert_array_equal(scan.array, [[1000, 900], [700, 0]])
    assert scan.meta["window_center"] == 700  # the same tissue window after inversion
    assert any("MONOCHROME1" in n for n in scan.notes)


def test_dicom_multiframe_takes_a_frame() -> None:
    px = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4)
    scan = read_dicom(make_dicom(px, frames=2))
    np.testing.assert_array_equal(scan.array, px[0])
    assert any("2 frames" in n for n in scan.notes)
    np.testing.assert_array_equal(read_dicom(make_dicom(px, frames=2), frame=1).array, px[1])
    with pytest.raises(ScanLoadError, match="frame 5 does not exist"):
        read_dicom(make_dicom(px, frames=2), frame=5)


def test_dicom_without_pixel_data() -> None:
    with pytest.raises(ScanLoadError) as info:
        read_dicom(make_dicom(None))
    assert str(info.value) == "this DICOM file has no pixel data"


def test_dicom_compressed_syntax_without_decoder_is_named() -> None:
    px = np.zeros((4, 4), np.uint16)
    with pytest.raises(ScanLoadError) as info:
        read_dicom(make_dicom(px, syntax=JPEGLSLossless))
    msg = str(info.value)
    assert "JPEG-LS Lossless Image Compression" in msg and "1.2.840.10008.1.2.4.80" in msg
    assert "Explicit VR Little Endian" in msg


def test_dicom_unknown_private_syntax_is_named() -> None:
    px = np.zeros((4, 4), np.uint16)
    with pytest.raises(ScanLoadError, match=r"1\.2\.3\.4\.5\.6 \(unknown to pydicom\)"):
        read_dicom(make_dicom(px, syntax=UID("1.2.3.4.5.6")))


@pytest.mark.parametrize("data", [b"", b"hello" * 50, bytes(range(256)) * 2])
def test_not_dicom(data) -> None:
    with pytest.raises(ScanLoadError):
        read_dicom(data)


# -- NIfTI ---------------------------------------------------------------------------------

def test_nifti_3d_from_bytes_and_gz() -> None:
    vol = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    for gz in (False, True):
        scan = read_nifti(make_nifti(vol, gz=gz))
        np.testing.assert_array_equal(scan.volume, vol)
        assert scan.axis == 2 and scan.index == 3 and scan.n_slices == 6
        np.testing.assert_array_equal(scan.slice, np.rot90(vol[:, :, 3]))
        assert scan.slice.shape == (5, 4) and scan.notes == []


def test_nifti_slice_selection_along_each_axis() -> None:
    vol = np.random.default_rng(0).random((4, 5, 6)).astype(np.float32)
    data = make_nifti(vol)
    assert read_nifti(data, axis=0, index=1).slice.shape == (6, 5)
    np.testing.assert_array_equal(read_nifti(data, axis=1, index=4).slice,
                                  np.rot90(vol[:, 4, :]))
    np.testing.assert_array_equal(read_nifti(data).get_slice(2, 0), np.rot90(vol[:, :, 0]))
    with pytest.raises(ValueError, match="slice 6 does not exist: 6 slices along axis 2"):
        read_nifti(data, index=6)
    with pytest.raises(ValueError, match="axis must be"):
        volume_slice(vol, axis=3)


def test_nifti_is_reoriented_to_ras() -> None:
    vol = np.zeros((4, 5, 6), np.float32)
    vol[0, 1, 2] = 1.0  # LAS: voxel x = 0 is the subject's far right
    scan = read_nifti(make_nifti(vol, affine=np.diag([-2.0, 2.0, 3.0, 1.0])))
    assert scan.volume[3, 1, 2] == 1.0 and scan.volume.sum() == 1.0
    assert scan.zooms == (2.0, 2.0, 3.0)
    assert "reoriented from LAS to RAS" in scan.notes


def test_nifti_4d_takes_the_first_volume() -> None:
    vol = np.random.default_rng(1).random((3, 4, 5, 2)).astype(np.float32)
    scan = read_nifti(make_nifti(vol, gz=True))
    np.testing.assert_allclose(scan.volume, vol[..., 0])
    assert any("2 volumes: showing the first" in n for n in scan.notes)


def test_nifti_nan_and_inf_are_replaced() -> None:
    vol = np.ones((3, 3, 3), np.float32)
    vol[1, 1, 1] = 5.0
    vol[0, 0, 0], vol[0, 0, 1], vol[0, 0, 2] = np.nan, np.inf, -np.inf
    scan = read_nifti(make_nifti(vol))
    assert np.isfinite(scan.volume).all() and np.isfinite(scan.slice).all()
    assert scan.volume[0, 0, 0] == 0 and scan.volume[0, 0, 1] == 5 and scan.volume[0, 0, 2] == 1
    assert any("3 voxels were NaN or infinite" in n for n in scan.notes)


@pytest.mark.parametrize("data,match", [
    (b"", "empty"), (b"x" * 100, "not a NIfTI"), (b"x" * 400, "not a NIfTI"),
    (gzip.compress(b"x" * 400), "not a NIfTI"), (b"\x1f\x8b" + bytes(50), "damaged"),
])
def test_not_nifti(data, match) -> None:
    with pytest.raises(ScanLoadError, match=match):
        read_nifti(data)


def test_nifti_decompression_is_bounded(monkeypatch) -> None:
    import lrp_engine.medical as medical

    monkeypatch.setattr(medical, "MAX_NIFTI_BYTES", 1000)
    data = make_nifti(np.zeros((10, 10, 10), np.float32), gz=True)
    with pytest.raises(ScanLoadError, match="larger than"):
        medical._gunzip(data, limit=1000)


# -- windows and model input ---------------------------------------------------------------

def test_window_maps_center_and_width_to_0_255() -> None:
    a = np.array([[-200.0, -160.0], [40.0, 240.0], [1000.0, np.nan]])
    out = window(a, 40, 400)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[0, 0], [128, 255], [255, 0]])
    with pytest.raises(ValueError, match="positive"):
        window(a, 0, 0)


def test_window_auto_uses_percentiles() -> None:
    a = np.linspace(0, 1000, 1001)
    out = window(a)
    assert out[0] == 0 and out[-1] == 255 and abs(int(out[500]) - 128) <= 1


def test_scan_to_tensor_scales_pads_and_resizes() -> None:
    a = np.full((40, 80), 100.0, np.float32)
    a[10:30, 30:50] = 900.0
    x = scan_to_tensor(a, size=96)
    assert x.shape == (1, 1, 96, 96) and x.dtype == torch.float32
    assert float(x.min()) == 0.0 and float(x.max()) == pytest.approx(1.0, abs=1e-6)
    assert float(x[0, 0, :20].max()) == 0.0  # padding above the 40-row image
    assert float(x[0, 0, 48, 48]) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="2-D"):
        scan_to_tensor(np.zeros((2, 3, 4)))
