"""Fuzzing the upload paths: random bytes and mutated valid files either load or raise the
path's own plain-words error (never another exception), within a bounded number of cases."""

from __future__ import annotations

import io

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from lrp_engine.checkpoints import CheckpointError, load_checkpoint
from lrp_engine.io import ImageLoadError, image_to_digit, load_image
from lrp_engine.medical import ScanLoadError, read_dicom, read_nifti
from lrp_engine.models import build_model
from lrp_engine.scans import read_scans
from tests.hostile_files import dicom_bytes, digit_bar, mr_slice, nifti_bytes

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def _valid_images() -> list[bytes]:
    out = []
    for fmt in ("PNG", "JPEG", "GIF", "BMP", "WEBP"):
        buf = io.BytesIO()
        Image.fromarray(digit_bar(48)).save(buf, fmt)
        out.append(buf.getvalue())
    return out


def _valid_checkpoint() -> bytes:
    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save(build_model("mlp").state_dict(), buf)
    return buf.getvalue()


VALID_IMAGES = _valid_images()
VALID_CHECKPOINT = _valid_checkpoint()


@st.composite
def mutated(draw: st.DrawFn, sources: list[bytes]) -> bytes:
    """A valid file with a few bytes overwritten, a slice cut out, or cut short."""
    data = bytearray(draw(st.sampled_from(sources)))
    for _ in range(draw(st.integers(1, 8))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    kind = draw(st.sampled_from(["flip", "cut", "truncate"]))
    if kind == "cut":
        a = draw(st.integers(0, len(data) - 1))
        del data[a:a + draw(st.integers(1, 64))]
    elif kind == "truncate":
        data = data[:draw(st.integers(0, len(data)))]
    return bytes(data)


def _image_path(data: bytes) -> None:
    try:
        digit = image_to_digit(load_image(data))
    except ImageLoadError as e:
        assert str(e) and "Traceback" not in str(e)
        return
    assert digit.shape == (28, 28) and digit.dtype == np.uint8


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_as_image(data: bytes) -> None:
    _image_path(data)


@FUZZ
@given(mutated(VALID_IMAGES))
def test_mutated_images(data: bytes) -> None:
    _image_path(data)


@FUZZ
@given(st.one_of(st.binary(max_size=2048), mutated([VALID_CHECKPOINT])))
def test_random_and_mutated_checkpoints(data: bytes) -> None:
    try:
        loaded = load_checkpoint(data, "mlp")
    except CheckpointError as e:
        assert str(e)
        return
    assert isinstance(loaded.model, torch.nn.Module)


@FUZZ
@given(st.binary(max_size=1024))
def test_random_bytes_as_scans(data: bytes) -> None:
    for reader in (read_dicom, read_nifti):
        try:
            reader(data)
        except ScanLoadError as e:
            assert str(e)


def _valid_scans() -> list[bytes]:
    """A DICOM slice, an RLE-compressed one, a NIfTI and a zip of two slices (small)."""
    import zipfile

    import pydicom

    plain = dicom_bytes(mr_slice(16, 16), ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
                        ImagePositionPatient=[0, 0, 0], PixelSpacing=[1, 1])
    ds = pydicom.dcmread(io.BytesIO(plain))
    ds.compress("1.2.840.10008.1.2.5")  # RLE Lossless
    rle = io.BytesIO()
    ds.save_as(rle, enforce_file_format=True)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/IM1", plain)
        zf.writestr("a/IM2", rle.getvalue())
    return [plain, rle.getvalue(), nifti_bytes(np.ones((4, 4, 3), np.float32)),
            archive.getvalue()]


VALID_SCANS = _valid_scans()


@FUZZ
@given(st.one_of(st.binary(max_size=1024), mutated(VALID_SCANS)),
       st.sampled_from(["upload", "scan.dcm", "scan.nii", "study.zip", "scan.png"]))
def test_random_and_mutated_uploads_through_read_scans(data: bytes, name: str) -> None:
    try:
        scan = read_scans([(name, data)])
    except ScanLoadError as e:
        assert str(e) and "Traceback" not in str(e)
        return
    assert scan.volumes and all(np.isfinite(v.data).all() for v in scan.volumes)
    assert all(v.data.ndim == 3 for v in scan.volumes)
