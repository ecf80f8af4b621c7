"""AppTest of the MRI inspector: the synthetic demo slice (prediction, overlay, localisation,
comparison, B-LRP, report), a generated 16-bit DICOM, a DICOM without pixels, and a NIfTI
volume with its slice selector."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from lrp_engine.mri_demo import CLASS_NAMES, held_out_set
from lrp_explorer.ui import report
from lrp_explorer.ui.scan_input import SCAN_UPLOAD
from tests.plotly_arrays import values

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "lrp_explorer" / "app_pages" / "mri_inspector.py")
REPORT_KEY = "mri_report_png"


def _spec(at: AppTest, key: str) -> dict:
    for chart in at.get("plotly_chart"):
        if chart.proto.id and key in chart.proto.id:
            return json.loads(chart.proto.spec)
    raise AssertionError(f"no plotly chart {key!r}")


def _relevance(spec: dict) -> np.ndarray:
    """The relevance trace (the second heatmap: the first is the scan)."""
    heat = [d for d in spec["data"] if d["type"] == "heatmap"]
    z = values(heat[-1]["z"])
    assert np.isfinite(z).all()
    return z


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


def _metric(at: AppTest, label: str) -> str:
    for m in at.metric:
        if m.label == label:
            return str(m.value).replace("\\", "")
    raise AssertionError(f"no metric {label!r}: {[m.label for m in at.metric]}")


def _scan_title(at: AppTest) -> str:
    return _spec(at, "mri_scan")["layout"]["title"]["text"]


def _report(at: AppTest) -> Image.Image:
    img = Image.open(io.BytesIO(at.session_state[REPORT_KEY]))
    assert img.format == "PNG"
    img.load()
    return img


@pytest.fixture
def at() -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=120)
    app.run()
    _ok(app)
    return app


def _upload(at: AppTest, data: bytes, name: str) -> None:
    at.session_state[SCAN_UPLOAD] = data
    at.session_state[f"{SCAN_UPLOAD}_name"] = name
    at.radio(key="mri_source").set_value("Upload").run()
    _ok(at)


def _dicom(pixels: bool = True, slope: float = 2.0, intercept: float = -1000.0
           ) -> tuple[bytes, np.ndarray]:
    """A 16-bit MR DICOM (160 × 128) with a bright disc near 60 000, as bytes."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    yy, xx = np.mgrid[:128, :160]
    arr = (20_000 + 100 * xx).astype(np.float64)
    arr[(yy - 60) ** 2 + (xx - 100) ** 2 < 15 ** 2] = 60_000
    arr = arr.astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("scan.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientName = "MR", "Test^Patient"
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelSpacing = [0.9, 0.9]
    if pixels:
        ds.PixelData = arr.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue(), arr


def test_demo_slice_prediction_overlay_localisation_and_report(at: AppTest) -> None:
    assert any("Synthetic demo" in w.value for w in at.warning)  # the disclaimer, up front
    assert any("never written to disk" in c.value for c in at.caption)
    batch = held_out_set(40)
    label = int(batch.labels[0])
    assert _metric(at, "Prediction") == CLASS_NAMES[label]
    overlay = _spec(at, "mri_overlay")
    rel = _relevance(overlay)
    assert rel.shape == (96, 96) and np.abs(rel).max() > 0
    assert overlay["data"][1]["showscale"]  # a colour bar
    assert label > 0  # slice #0 has a lesion: its outline and the localisation numbers
    assert any(d["type"] == "contour" for d in overlay["data"])
    rma = float(_metric(at, "Relevance mass accuracy").rstrip(" %"))
    assert 0.0 <= rma <= 100.0
    assert _metric(at, "Pointing game") in ("hit", "miss")
    img = _report(at)
    assert img.width >= 900 and 600 <= img.height <= 4000

    at.toggle(key="mri_compare").set_value(True).run()
    _ok(at)
    at.selectbox(key="mri_rules_b_preset").set_value("zero").run()
    _ok(at)
    a, b = _relevance(_spec(at, "mri_compare_A")), _relevance(_spec(at, "mri_compare_B"))
    assert a.shape == b.shape == (96, 96) and not np.allclose(a, b)

    at.number_input(key="mri_blrp_samples").set_value(20)
    at.button(key="mri_blrp_run").click().run()
    _ok(at)
    certainty = values(_spec(at, "mri_blrp_certainty")["data"][1]["z"])
    assert certainty.shape == (96, 96) and 0 <= certainty.min() <= certainty.max() <= 1
    assert _report(at).width > img.width  # the certainty map joined the report


def test_16bit_dicom_is_read_windowed_and_explained(at: AppTest) -> None:
    data, arr = _dicom()
    _upload(at, data, "scan.dcm")
    assert not at.error, [e.value for e in at.error]
    values = 2.0 * arr.astype(np.float64) - 1000.0  # beyond uint16: no overflow allowed
    centre = next(s for s in at.slider if s.key and s.key.startswith("mri_wc_"))
    assert values.min() <= centre.value <= values.max()
    assert centre.proto.max == pytest.approx(values.max())  # 119 000, not wrapped
    assert "Test^Patient" not in json.dumps([c.value for c in at.caption])
    assert _relevance(_spec(at, "mri_overlay")).shape == (96, 96)
    assert any("Synthetic demo" in w.value for w in at.warning)  # the demo model is synthetic
    assert _report(at).width >= 900


def test_dicom_without_pixel_data_gives_a_clear_error(at: AppTest) -> None:
    data, _ = _dicom(pixels=False)
    _upload(at, data, "no_pixels.dcm")
    assert any("no pixel data" in e.value for e in at.error)
    assert not at.get("plotly_chart")
    at.radio(key="mri_source").set_value("Demo held-out slice").run()  # still works
    _ok(at)
    assert not at.error and at.get("plotly_chart")


def test_nifti_volume_with_axis_and_slice_selector(at: AppTest) -> None:
    import nibabel as nib

    _, yy, xx = np.meshgrid(np.arange(30), np.arange(48), np.arange(40), indexing="ij")
    vol = (100 + 2 * xx + yy).astype(np.float32).transpose(2, 1, 0)  # [X=40, Y=48, Z=30]
    vol[(np.arange(40)[:, None, None] - 12) ** 2 + (np.arange(48)[None, :, None] - 20) ** 2
        + (np.arange(30)[None, None, :] - 10) ** 2 < 36] = 400
    data = gzip.compress(nib.Nifti1Image(vol, np.diag([2.0, 2.0, 3.0, 1.0])).to_bytes())
    _upload(at, data, "brain.nii.gz")
    assert not at.error, [e.value for e in at.error]
    sl = at.slider(key="mri_slice_2")
    assert sl.value == 15 and sl.proto.max == 29
    first = _relevance(_spec(at, "mri_overlay"))
    sl.set_value(10).run()
    _ok(at)
    assert _scan_title(at) == "axial slice 11 of 30"
    assert not np.allclose(first, _relevance(_spec(at, "mri_overlay")))
    at.selectbox(key="mri_axis").set_value(0).run()
    _ok(at)
    assert at.slider(key="mri_slice_0").proto.max == 39
    assert _relevance(_spec(at, "mri_overlay")).shape == (96, 96)


def test_report_is_a_pure_function() -> None:
    from datetime import datetime, timezone

    scan = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1))
    over = np.stack([scan] * 3, -1)
    r = report.ScanReport(scan=scan, overlay=over, prediction="glioma (91.0 %)",
                          probabilities=[("glioma", 0.91), ("no tumour", 0.09)],
                          model="VGG-16", card="stretch to 64×64", scan_source="picture",
                          slices="a single 2-D slice", orientation="as stored",
                          window="centre 128, width 256",
                          rules="features.0 (Conv2d): LRP-γ γ=0.25", blrp="not run",
                          disclaimer="not diagnostic", when=datetime.now(timezone.utc),
                          certainty=np.full((1, 64, 64), 0.5))
    back = Image.open(io.BytesIO(report.report_png(r)))
    assert back.format == "PNG" and back.width >= 900
    assert report.report_pdf(r).startswith(b"%PDF")


def test_own_checkpoint_with_class_names_on_a_demo_slice(at: AppTest) -> None:
    import torch

    from lrp_engine.models import zoo
    from lrp_explorer.ui.scan_input import CHECKPOINT_UPLOAD, CLASS_NAMES_UPLOAD

    torch.manual_seed(1)
    buf = io.BytesIO()
    torch.save({"model_state_dict": zoo.build("mri_demo", 4).state_dict()}, buf)
    at.session_state[CHECKPOINT_UPLOAD] = buf.getvalue()
    at.session_state[CLASS_NAMES_UPLOAD] = b"glioma, meningioma, pituitary, no tumour\n"
    at.radio(key="mri_model").set_value("checkpoint").run()
    at.selectbox(key="mri_ckpt_arch").set_value("mri_demo").run()
    _ok(at)
    assert not at.error, [e.value for e in at.error]
    assert _metric(at, "Prediction") in ("glioma", "meningioma", "pituitary", "no tumour")
    assert _relevance(_spec(at, "mri_overlay")).shape == (96, 96)
    assert _report(at).width >= 900
