"""Uploads through ``read_scans``: zip archives expanded in memory within their caps (zip
bombs, too many entries, a lying central directory), mixed uploads (series, NIfTI, pictures,
loose files), skipped entries, and the hostile-scan corpus. Everything is built in memory.
"""

from __future__ import annotations

import gzip
import io
import struct
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pydicom")
nib = pytest.importorskip("nibabel")

from lrp_engine import medical  # noqa: E402
from lrp_engine.scans import (  # noqa: E402
    ArchiveLimits,
    ScanLoadError,
    archive,
    read_scans,
    view,
)
from tests.hostile_files import bad_scans, dicom_bytes, odd_scans  # noqa: E402

AXIAL = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
SAGITTAL = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]


def _slice(value: int, t: float, uid: str, iop: list[float], desc: str) -> bytes:
    n = np.cross(iop[:3], iop[3:])
    return dicom_bytes(np.full((8, 10), value, np.uint16), SeriesInstanceUID=uid,
                       SeriesDescription=desc, ImageOrientationPatient=iop,
                       ImagePositionPatient=[float(v) for v in t * n], PixelSpacing=[1, 1])


def _zip(entries: dict[str, bytes], dirs: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for d in dirs:
            zf.writestr(zipfile.ZipInfo(d), b"")
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _zeros_zip(n_bytes: int, name: str = "zeros.dcm") -> bytes:
    """A zip with one entry of ``n_bytes`` zeros, written in 1 MiB chunks (never held)."""
    buf = io.BytesIO()
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf, zf.open(name, "w") as f:
        for _ in range(n_bytes // len(chunk)):
            f.write(chunk)
    return buf.getvalue()


def _png(h: int = 30, w: int = 40) -> bytes:
    a = np.zeros((h, w), np.uint8)
    a[:, : w // 4] = 200  # a bright band on the left
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


# -- a mixed upload ----------------------------------------------------------------------------

def test_mixed_upload_gives_one_volume_per_series_nifti_and_picture() -> None:
    t1 = {f"study/T1/IM{k}": _slice(100 + k, 3.0 * k, "1.1", AXIAL, "T1 AXIAL")
          for k in range(3)}
    t2 = {f"study/T2/IM{k}": _slice(200 + k, 2.0 * k, "2.2", SAGITTAL, "T2 SAG")
          for k in range(4)}
    nii = nib.Nifti1Image(np.ones((6, 7, 5), np.float32), np.eye(4)).to_bytes()
    inner = _zip({"x.dcm": _slice(1, 0, "3.3", AXIAL, "X")})
    study = _zip({**t1, **t2, "study/brain.nii": nii, "DICOMDIR": b"index",
                  "study/old.zip": inner, "__MACOSX/._IM0": b"junk"},
                 dirs=("study/", "study/T1/"))
    files = [("study.zip", study), ("loose_T1.dcm", _slice(103, 9.0, "1.1", AXIAL, "T1 AXIAL")),
             ("photo.png", _png()),
             ("seg.nii.gz", gzip.compress(nib.Nifti1Image(np.zeros((4, 4, 3), np.float32),
                                                           np.eye(4)).to_bytes()))]
    scan = read_scans(files)
    assert [v.description for v in scan.volumes] == [
        "MR · T1 AXIAL · 4 slices", "MR · T2 SAG · 4 slices", "NIfTI · 6 × 7 × 5 voxels",
        "picture · 40 × 30 pixels", "NIfTI · 4 × 4 × 3 voxels"]
    t1v, t2v = scan.volumes[:2]
    assert [float(t1v.data[..., k].mean()) for k in range(4)] == [100, 101, 102, 103]
    assert t2v.shape[0] == 4 and view(t2v, 0).markers["top"] == "S"
    assert scan.problems == ["study.zip › study/old.zip: a zip inside the zip is not opened: "
                             "unzip it and upload its contents"]
    assert any("DICOMDIR" in n for n in scan.notes)
    assert any("2 folder entries" in n for n in scan.notes)
    assert any("system file" in n for n in scan.notes)
    for v in scan.volumes:  # never a file name in a description
        assert not any(s in v.description for s in ("study", "IM", ".dcm", "photo", "seg"))


def test_picture_is_a_one_slice_unoriented_volume_shown_as_stored() -> None:
    (vol,) = read_scans([("p.png", _png())]).volumes
    assert vol.shape == (40, 30, 1) and not vol.oriented and vol.kind == "image"
    v = view(vol, 2)
    assert v.markers == {} and v.array.shape == (30, 40)
    assert (v.array[:, :10] == 200).all() and (v.array[:, 10:] == 0).all()


def test_unreadable_files_are_problems_and_nothing_readable_raises() -> None:
    good = _slice(5, 0, "1", AXIAL, "T1")
    scan = read_scans([("a.dcm", good), ("notes.txt", b"hello " * 100)])
    assert len(scan.volumes) == 1
    assert scan.problems == ["notes.txt: not a file this app reads (DICOM, NIfTI (.nii, "
                             ".nii.gz), a .zip of those, PNG or JPEG)"]
    with pytest.raises(ScanLoadError) as info:
        read_scans([("notes.txt", b"hello " * 100), ("empty.dcm", b"")])
    assert str(info.value).startswith("nothing could be read: notes.txt: ")
    assert "empty.dcm: the file is empty" in str(info.value)


# -- caps --------------------------------------------------------------------------------------

def test_zip_bomb_is_refused_quickly_from_its_directory() -> None:
    bomb = _zeros_zip(200 << 20)  # 200 MiB of zeros → about 0.2 MiB
    assert len(bomb) < 1 << 20
    start = time.perf_counter()
    with pytest.raises(ScanLoadError) as info:
        read_scans([("bomb.zip", bomb)])
    assert time.perf_counter() - start < 1.0
    msg = str(info.value)
    assert msg.startswith("bomb.zip: the entry 'zeros.dcm' is compressed")
    assert "200.0 MiB" in msg and "more than the 100 to 1 accepted" in msg


def test_caps_on_entries_total_and_one_entry() -> None:
    many = _zip({f"f{i}.dcm": b"x" for i in range(11)})
    with pytest.raises(ScanLoadError, match="has 11 entries, more than the 10 accepted"):
        read_scans([("many.zip", many)], ArchiveLimits(max_entries=10))
    two = _zip({"a.dcm": bytes(range(256)) * 4000, "b.dcm": bytes(range(256)) * 4000})
    with pytest.raises(ScanLoadError, match=r"would expand to 2\.0 MiB, more than the 1\.0 MiB"):
        read_scans([("two.zip", two)], ArchiveLimits(max_total_bytes=1 << 20))
    with pytest.raises(ScanLoadError, match=r"'a\.dcm' would expand to 1\.0 MiB, more than the "
                                            r"0\.5 MiB accepted for one file"):
        read_scans([("two.zip", two)], ArchiveLimits(max_entry_bytes=1 << 19))


def test_lying_central_directory_is_caught_while_decompressing() -> None:
    data = bytearray(_zeros_zip(20 << 20))  # 20 MiB of zeros, then declared as 1 000 bytes
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.index(sig) + offset
        data[at: at + 4] = struct.pack("<I", 1000)
    start = time.perf_counter()
    with pytest.raises(ScanLoadError) as info:
        read_scans([("liar.zip", bytes(data))])
    assert time.perf_counter() - start < 1.0
    assert "zeros.dcm: the entry is damaged or its declared size is wrong" in str(info.value)


def test_entry_reader_stops_at_the_cap_whatever_was_declared() -> None:
    data = _zeros_zip(3 << 20)
    limits = ArchiveLimits(max_ratio=1e9)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.infolist()[0]
        with pytest.raises(ScanLoadError, match=r"expands to more than 1\.0 MiB"):
            archive._read_entry(zf, info, budget=1 << 20, limits=limits)
        with pytest.raises(ScanLoadError, match="looks like a zip bomb"):
            archive._read_entry(zf, info, budget=1 << 30, limits=ArchiveLimits())


def test_volume_caps_refuse_a_huge_series() -> None:
    files = [(f"s{k}", _slice(1, float(k), "1", AXIAL, "T1")) for k in range(4)]
    with pytest.raises(ScanLoadError, match="4 slices, more than the 3 accepted"):
        read_scans(files, ArchiveLimits(max_slices=3))
    with pytest.raises(ScanLoadError, match="8 × 10 pixels, more than the 50 voxels accepted"):
        read_scans(files[:1], ArchiveLimits(max_voxels=50))
    scan = read_scans(files[:2], ArchiveLimits(max_voxels=100))
    assert scan.problems == ["s1: not read: with the files before it, the upload would hold "
                             "more than the 100 voxels accepted"]


# -- the hostile corpus ------------------------------------------------------------------------

#: the words each bad scan's message must hold (as on the MRI inspector's page)
SCAN_WORDS = {"no_pixels.dcm": "no pixel data", "jpeg_ls.dcm": "JPEG-LS",
              "private_syntax.dcm": "unknown to pydicom", "letter.dcm": "not a DICOM file",
              "random.nii": "not a NIfTI file", "damaged.nii.gz": "damaged",
              "truncated.nii": "could not be read"}


@pytest.mark.parametrize("name", sorted(SCAN_WORDS))
def test_hostile_scans_give_their_message(name) -> None:
    with pytest.raises(ScanLoadError) as info:
        read_scans([(name, bad_scans()[name])])
    msg = str(info.value)
    assert msg.startswith(f"{name}: ") and SCAN_WORDS[name] in msg and "Traceback" not in msg


def test_odd_scans_are_read() -> None:
    scan = read_scans(list(odd_scans().items()))
    assert scan.problems == [] and len(scan.volumes) == 6
    assert all(np.isfinite(v.data).all() for v in scan.volumes)
    assert medical.ScanLoadError is ScanLoadError


def test_equal_descriptions_are_told_apart() -> None:
    def one(uid: str, number: int | None, shape: tuple[int, int]) -> bytes:
        tags = {} if number is None else {"SeriesNumber": number}
        return dicom_bytes(np.zeros(shape, np.uint16), SeriesInstanceUID=uid,
                           SeriesDescription="T1", **tags)

    scan = read_scans([("a", one("1", 3, (8, 8))), ("b", one("2", 7, (8, 8))),
                       ("c", one("3", None, (8, 8))), ("d", one("4", None, (6, 6))),
                       ("e", one("5", None, (6, 6)))])
    assert [v.description for v in scan.volumes] == [
        "MR · T1 · 1 slice · series 3", "MR · T1 · 1 slice · series 7",
        "MR · T1 · 1 slice · 8 × 8 × 1", "MR · T1 · 1 slice · 6 × 6 × 1 (1)",
        "MR · T1 · 1 slice · 6 × 6 × 1 (2)"]
