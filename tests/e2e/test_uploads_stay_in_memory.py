"""Uploads never reach the disk: a real browser uploads a DICOM series (.zip), a NIfTI
volume and a safetensors checkpoint to the MRI inspector, then no file anywhere the server
could write holds their bytes.

The server runs with a fresh TMPDIR and HOME made for this test (its working directory is
the repository), Chromium with its own profile, TMPDIR and HOME (skipped by the scan, as
is the folder the source files are written to). Each uploaded file carries a random
32-byte marker stored verbatim: in a private DICOM tag of every slice (the zip is
ZIP_STORED), in the NIfTI's voxel data, in the safetensors header's metadata. After the
page has reacted to each upload, every file modified since the test started under the
server's TMPDIR and HOME, the repository, /tmp and /dev/shm is read in chunks and must hold
no marker (unreadable files and files over 512 MB are skipped with a note). A self-check
first plants a marker in the watched TMPDIR and requires the scanner to find it.

The scan uploader reads them, so the bytes go the whole way through the readers: the
.zip must show as its series ("T1 AX · 3 slices", a scan view, no error); the NIfTI joins
it in the multiple-file uploader, so the page then offers a "Series" choice of the two.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import stat
import tempfile
import time
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .harness import (
    CHROMIUM_ARGS,
    IDLE,
    PLOTLY_CHART,
    REPO_ROOT,
    StreamlitServer,
    arm_rerun,
    choose_radio,
    exceptions_text,
    page_exists,
    start_server,
    stop_server,
    wait_idle,
    wait_rerun,
    widget,
)

pytestmark = pytest.mark.skipif(not page_exists("mri_inspector.py"),
                                reason="the MRI inspector page does not exist")

CHECKPOINT_LABEL = "Checkpoint (.pt, .pth, .safetensors)"
#: files larger than this are not read (noted)
MAX_SCAN_BYTES = 512 << 20
CHUNK = 1 << 20
#: anything the page says: alerts, exceptions, charts, images
REACTION = ('[data-testid="stAlert"], [data-testid="stException"], '
            '[data-testid="stPlotlyChart"], [data-testid="stImage"]')


# -- the marked files ------------------------------------------------------------------------

def _marker() -> bytes:
    """32 random bytes, letters and digits (printable ASCII, so that the safetensors
    header's JSON holds them verbatim)."""
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return bytes(alphabet[b % len(alphabet)] for b in secrets.token_bytes(32))


def dicom_slice(k: int, marker: bytes, series_uid: str) -> bytes:
    """Slice ``k`` of a 3-slice MR series (32×32, uint16) with ``marker`` in a private tag."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesDescription = "MR", "T1 AX"
    ds.SeriesInstanceUID, ds.InstanceNumber = series_uid, k + 1
    ds.ImagePositionPatient = [0.0, 0.0, float(k)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], 1.0
    yy, xx = np.mgrid[:32, :32]
    px = (1000 + 20 * xx + 10 * yy + 300 * k).astype(np.uint16)
    ds.Rows, ds.Columns = px.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 0
    ds.PixelData = px.tobytes()
    ds.private_block(0x0009, "LRP UPLOAD TEST", create=True).add_new(0x10, "OB", marker)
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def series_zip(marker: bytes) -> bytes:
    """Three DICOM slices in a ZIP_STORED archive (their bytes verbatim in the zip)."""
    from pydicom.uid import generate_uid

    uid = generate_uid()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        for k in range(3):
            z.writestr(f"series/slice{k + 1:03d}.dcm", dicom_slice(k, marker, uid))
    return buf.getvalue()


def nifti(marker: bytes) -> bytes:
    """An uncompressed uint8 NIfTI-1 volume (24×24×8): a ramp with ``marker`` as its first
    32 voxels in file (Fortran) order."""
    import nibabel as nib

    x, y, z = np.meshgrid(np.arange(24), np.arange(24), np.arange(8), indexing="ij")
    vol = (40 + 4 * x + 2 * y + 5 * z).astype(np.uint8)
    flat = vol.reshape(-1, order="F")
    flat[:len(marker)] = np.frombuffer(marker, np.uint8)
    vol = flat.reshape(vol.shape, order="F")
    return nib.Nifti1Image(vol, np.eye(4)).to_bytes()


def checkpoint(marker: bytes) -> bytes:
    """The demo CNN's state dict as safetensors, with its model card and ``marker`` in the
    header's metadata."""
    import torch
    from safetensors.torch import save

    from lrp_engine.models import zoo
    from lrp_engine.models.card import MODEL_CARD_KEY, ModelCard

    torch.manual_seed(0)
    model = zoo.build("mri_demo", 4)
    card = ModelCard("mri_demo", 4, zoo.preprocessing("mri_demo"),
                     class_names=("glioma", "meningioma", "pituitary", "no tumour"))
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    return save(tensors, metadata={MODEL_CARD_KEY: card.to_json(indent=None),
                                   "upload_test_marker": marker.decode()})


# -- the scanner -----------------------------------------------------------------------------

@dataclass
class ScanResult:
    """Files holding a marker (path, marker), how many files were read, and notes on what
    was skipped."""

    hits: list[tuple[str, bytes]] = field(default_factory=list)
    read: int = 0
    notes: list[str] = field(default_factory=list)


def _holds(path: str, markers: Sequence[bytes]) -> list[bytes]:
    """The markers found in the file at ``path`` (read in 1 MiB chunks, overlapping by a
    marker's length so none is missed at a boundary)."""
    keep = max(len(m) for m in markers) - 1
    found: set[bytes] = set()
    tail = b""
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            buf = tail + chunk
            found.update(m for m in markers if m in buf)
            tail = buf[-keep:] if keep else b""
    return [m for m in markers if m in found]


def scan_for_markers(roots: Iterable[Path], markers: Sequence[bytes], since: float,
                     skip: Iterable[Path]) -> ScanResult:
    """Every regular file under ``roots`` changed (mtime or ctime) at or after ``since``,
    outside the ``skip`` folders, searched for ``markers``. Symbolic links, sockets and pipes
    are not followed or opened."""
    skipped = {os.path.realpath(p) for p in skip}
    res = ScanResult()
    seen: set[tuple[int, int]] = set()
    for root in roots:
        if not root.is_dir():
            res.notes.append(f"{root}: not a folder")
            continue
        for dirpath, dirnames, filenames in os.walk(root, onerror=None):
            dirnames[:] = [d for d in dirnames
                           if os.path.realpath(os.path.join(dirpath, d)) not in skipped]
            for name in filenames:
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue  # gone already
                if not stat.S_ISREG(st.st_mode) or max(st.st_mtime, st.st_ctime) < since:
                    continue
                if (st.st_dev, st.st_ino) in seen:
                    continue  # e.g. the repository inside /tmp
                seen.add((st.st_dev, st.st_ino))
                if st.st_size > MAX_SCAN_BYTES:
                    res.notes.append(f"{path}: {st.st_size >> 20} MiB, not read")
                    continue
                try:
                    found = _holds(path, markers)
                except OSError as e:
                    res.notes.append(f"{path}: unreadable ({e.strerror or e})")
                    continue
                res.read += 1
                res.hits.extend((path, m) for m in found)
    return res


# -- the browser -----------------------------------------------------------------------------

def _upload(page: Any, box: Any, name: str, data: bytes, mime: str) -> None:
    """Choose ``name`` in the uploader ``box``, wait until the server has it (the uploader
    lists the file) and the run it triggers is over, and the page shows something."""
    box.wait_for(state="visible", timeout=60_000)
    arm_rerun(page)
    box.locator('input[type="file"]').set_input_files(
        {"name": name, "mimeType": mime, "buffer": data})
    wait_rerun(page, 10_000, 120_000)
    box.get_by_text(name, exact=False).first.wait_for(state="visible", timeout=30_000)
    page.locator(REACTION).first.wait_for(state="visible", timeout=60_000)
    wait_idle(page, 120_000)


def _main_uploader(page: Any) -> Any:
    """The first file uploader in the main area: the scan's (whatever its label says)."""
    return page.locator('[data-testid="stMain"] [data-testid="stFileUploader"]').first


def _read_as_scan(page: Any, caption: str | None) -> None:
    """The upload was read: a scan view, no error, no exception, and a caption starting
    with ``caption`` (unless None)."""
    page.locator(PLOTLY_CHART).first.wait_for(state="visible", timeout=120_000)
    errors = page.locator('[data-testid="stAlertContentError"]').all_inner_texts()
    assert not errors, errors
    assert not exceptions_text(page), exceptions_text(page)
    if caption is not None:
        caps = page.locator('[data-testid="stMain"] [data-testid="stCaptionContainer"]')
        texts = caps.all_inner_texts()
        assert any(t.startswith(caption) for t in texts), texts


def _messages(page: Any) -> list[str]:
    loc = page.locator('[data-testid="stAlert"]')
    return [" ".join(str(loc.nth(i).inner_text()).split())[:160] for i in range(loc.count())]


def test_uploads_never_reach_the_disk(browser: Any, chromium_executable: str,
                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t0 = time.monotonic()
    since = time.time() - 1.0  # file times may be rounded down
    sources = tmp_path / "sources"
    # Chromium's singleton socket path must be short: its folder is not under tmp_path
    chrome = Path(tempfile.mkdtemp(prefix="lrpc-"))
    srv_tmp, srv_home = tmp_path / "server-tmp", tmp_path / "server-home"
    for d in (sources, chrome / "tmp", chrome / "home", srv_tmp, srv_home):
        d.mkdir(parents=True)

    markers = {"zip": _marker(), "nii": _marker(), "ckpt": _marker()}
    files = {"zip": series_zip(markers["zip"]), "nii": nifti(markers["nii"]),
             "ckpt": checkpoint(markers["ckpt"])}
    for kind, data in files.items():
        assert data.count(markers[kind]) >= 1, f"the {kind} marker is not verbatim in its file"
        (sources / f"upload.{kind}").write_bytes(data)  # for a person to look at on failure
    assert files["zip"].count(markers["zip"]) == 3  # one per slice: ZIP_STORED

    with monkeypatch.context() as mp:  # the server inherits these; the test does not keep them
        mp.setenv("TMPDIR", str(srv_tmp))
        mp.setenv("HOME", str(srv_home))
        mp.delenv("XDG_CACHE_HOME", raising=False)
        mp.delenv("XDG_CONFIG_HOME", raising=False)
        try:
            server: StreamlitServer = start_server(REPO_ROOT, timeout=60)
        except RuntimeError as e:
            pytest.fail(str(e), pytrace=False)
    roots = [srv_tmp, srv_home, REPO_ROOT, Path("/tmp"), Path("/dev/shm")]
    skip = [sources, chrome]
    ctx = page = None
    failed = True
    try:
        env = {**os.environ, "TMPDIR": str(chrome / "tmp"), "HOME": str(chrome / "home"),
               "XDG_CACHE_HOME": str(chrome / "home" / ".cache"),
               "XDG_CONFIG_HOME": str(chrome / "home" / ".config")}
        ctx = browser.browser_type.launch_persistent_context(
            str(chrome / "profile"), executable_path=chromium_executable, headless=True,
            args=CHROMIUM_ARGS, env=env, viewport={"width": 1400, "height": 1000},
            accept_downloads=False)
        ctx.set_default_timeout(30_000)
        page = ctx.new_page()
        page.goto(f"{server.url}/mri_inspector")
        widget(page, "stRadio", "Scan").wait_for(state="visible", timeout=120_000)
        page.wait_for_selector(IDLE, state="attached", timeout=120_000)
        page.locator(PLOTLY_CHART).first.wait_for(state="visible", timeout=120_000)
        wait_idle(page, 120_000)

        arm_rerun(page)
        choose_radio(page, "Scan", "Upload")
        wait_rerun(page)
        seen: dict[str, list[str]] = {}
        _upload(page, _main_uploader(page), "series.zip", files["zip"], "application/zip")
        seen["zip"] = _messages(page)
        _read_as_scan(page, "MR · T1 AX · 3 slices")
        _upload(page, _main_uploader(page), "volume.nii", files["nii"],
                "application/octet-stream")
        seen["nii"] = _messages(page)
        _read_as_scan(page, None)
        widget(page, "stSelectbox", "Series").wait_for(state="visible", timeout=30_000)
        arm_rerun(page)
        choose_radio(page, "Model", "Your own checkpoint")
        wait_rerun(page, timeout_ms=120_000)
        ckpt_box = widget(page, "stFileUploader", CHECKPOINT_LABEL)
        _upload(page, ckpt_box, "model.safetensors", files["ckpt"], "application/octet-stream")
        seen["ckpt"] = _messages(page)
        print(f"page after each upload: {json.dumps(seen, indent=1)}")
        print(f"exceptions shown: {exceptions_text(page)}")
        t_up = time.monotonic()

        # self-check: a marker planted in the watched TMPDIR (across a chunk boundary) is found
        plant = srv_tmp / "planted-marker.bin"
        plant.write_bytes(secrets.token_bytes(CHUNK - 10) + markers["nii"] + bytes(100))
        probe = scan_for_markers([srv_tmp], list(markers.values()), since, skip)
        plant.unlink()
        assert probe.hits == [(str(plant), markers["nii"])], probe.hits

        res = scan_for_markers(roots, list(markers.values()), since, skip)
        t_end = time.monotonic()
        print(f"scanned {res.read} files changed since the test started in "
              f"{t_end - t_up:.1f} s; uploads took {t_up - t0:.1f} s")
        for note in res.notes:
            print(f"note: {note}")
        names = {v: k for k, v in markers.items()}
        assert not res.hits, "uploaded bytes were written to disk:\n" + "\n".join(
            f"{p}: the {names[m]} upload's marker" for p, m in res.hits)
        failed = False
    finally:
        if ctx is not None:
            if failed and page is not None:
                try:
                    page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
                    print(f"screenshot: {tmp_path / 'failure.png'}")
                except Exception:  # noqa: BLE001 - the page may be gone already
                    pass
            ctx.close()
        if failed:
            print(f"server log (tail):\n{server.log_tail()}")
        stop_server(server)
        shutil.rmtree(chrome, ignore_errors=True)
