"""AppTest of the MRI inspector on volumes: a DICOM series in a .zip (sorted, scrolled, with
radiological markers and a scale bar), a mixed upload and its series chooser, CT window
presets, the per-slice volume explanation with its strip plot, the 3-D demo model, and a
report that carries no patient identifier."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from lrp_explorer.ui.scan_input import SCAN_UPLOAD
from tests.plotly_arrays import values
from tests.scan_series import PATIENT, axial_series, head, study_zip

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "lrp_explorer" / "app_pages" / "mri_inspector.py")


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _spec(at: AppTest, key: str) -> dict:
    for chart in at.get("plotly_chart"):
        if chart.proto.id and key in chart.proto.id:
            return json.loads(chart.proto.spec)
    raise AssertionError(f"no plotly chart {key!r}")


def _markers(spec: dict) -> dict[str, str]:
    return {a["name"].removeprefix("marker-"): a["text"].strip("<b>/")
            for a in spec["layout"].get("annotations", []) if a.get("name", "").startswith(
                "marker-")}


def _scan_pixels(spec: dict) -> np.ndarray:
    uri = next(d for d in spec["data"] if d["type"] == "image")["source"]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


def _upload(files: list[tuple[str, bytes]], **state: object) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=180)
    at.session_state[SCAN_UPLOAD] = files
    at.session_state["mri_source"] = "Upload"
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    _ok(at)
    return at


def _shuffled_zip() -> bytes:
    order = list(np.random.default_rng(3).permutation(12))
    return study_zip(axial_series(order=order))


def test_series_zip_scrolls_with_radiological_markers_and_scale_bar() -> None:
    at = _upload([("DOE_JANE_study.zip", _shuffled_zip())])
    slider = at.slider(key="mri_slice_2")
    assert slider.proto.max == 11 and slider.value == 6
    spec = _spec(at, "mri_scan")
    assert _markers(spec) == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    assert any(s.get("name") == "scale bar" for s in spec["layout"]["shapes"])
    assert any(a["text"].endswith(" mm") for a in spec["layout"]["annotations"])
    next(s for s in at.slider if s.key.startswith("mri_wc_")).set_value(1400.0)
    next(s for s in at.slider if s.key.startswith("mri_ww_")).set_value(400.0).run()
    img = _scan_pixels(_spec(at, "mri_scan")).astype(float)
    img = img[..., 0] if img.ndim == 3 else img  # window 1200…1600: only the blob is white
    # the blob lies in the patient's left hemisphere: the image's right, radiologically
    assert img[:, 36:].max() == 255 and img[:, :28].max() == 0
    text = json.dumps([c.value for c in at.caption] + [m.value for m in at.markdown])
    assert "DOE" not in text and "PID-778899" not in text
    # slices come back sorted: intensity grows with z, so slice 11 is brighter than slice 0
    at.slider(key="mri_slice_2").set_value(0).run()
    low = _scan_pixels(_spec(at, "mri_scan"))
    at.slider(key="mri_slice_2").set_value(11).run()
    _ok(at)
    assert _scan_pixels(_spec(at, "mri_scan")).mean() >= low.mean()

    at.toggle(key="mri_neurological").set_value(True).run()
    _ok(at)
    assert _markers(_spec(at, "mri_scan"))["left"] == "L"
    assert _markers(_spec(at, "mri_overlay"))["left"] == "L"
    at.selectbox(key="mri_axis").set_value(1).run()  # coronal
    _ok(at)
    assert _markers(_spec(at, "mri_scan"))["top"] == "S"
    assert at.slider(key="mri_slice_1").proto.max == 63


def test_demo_left_hemisphere_lesion_is_on_the_screens_right_beside_the_l_marker() -> None:
    """Radiological display: the subject's left lies on the image's right, where the "L"
    marker is; the neurological switch puts both on the left. The model's input (and so its
    prediction) does not change."""
    at = AppTest.from_file(PAGE, default_timeout=180)
    at.session_state["mri_demo_index"] = 12  # held-out slice 12: class 1, left hemisphere
    at.run()
    _ok(at)
    pred = next(m for m in at.metric if m.label == "Prediction").value
    for neuro, side in ((False, "right"), (True, "left")):
        at.toggle(key="mri_neurological").set_value(neuro).run()
        _ok(at)
        overlay = _spec(at, "mri_overlay")
        assert _markers(overlay)[side] == "L"
        outline = values(next(d for d in overlay["data"] if d["type"] == "contour")["z"])
        cols = np.nonzero(outline.any(0))[0]
        assert (cols.min() > 48) if side == "right" else (cols.max() < 48), cols
        assert next(m for m in at.metric if m.label == "Prediction").value == pred
    assert "left-hemisphere" in pred.replace("\\", "")


def test_mixed_upload_offers_its_series() -> None:
    t1 = axial_series(description="T1 AXIAL")
    flair = axial_series(head(6), description="FLAIR", series_uid="1.2.826.0.1.3680043.8.498.2")
    at = _upload([*t1, *flair])
    box = at.selectbox(key="mri_series")
    labels = [o.replace("\\", "") for o in box.options]
    assert len(labels) == 2
    assert any("T1 AXIAL" in o and "12" in o and "MR" in o for o in labels), labels
    assert any("FLAIR" in o and "6" in o for o in labels), labels
    box.set_value(next(i for i, o in enumerate(labels) if "FLAIR" in o)).run()
    _ok(at)
    assert at.slider(key="mri_slice_2").proto.max == 5


def test_ct_series_offers_named_window_presets() -> None:
    at = _upload(axial_series(head(4).astype(np.int16) - 1000, modality="CT",
                              description="HEAD CT"))
    boxes = [b for b in at.selectbox if b.key and b.key.startswith("mri_wpreset_")]
    assert boxes, "no window preset chooser"
    presets = [o.replace("\\", "") for o in boxes[0].options]
    assert any("brain" in p.lower() for p in presets), presets
    brain = next(p for p in boxes[0].options if "brain" in p.replace("\\", "").lower())
    boxes[0].set_value(brain).run()
    _ok(at)
    centre = next(s for s in at.slider if s.key and s.key.startswith("mri_wc_"))
    width = next(s for s in at.slider if s.key and s.key.startswith("mri_ww_"))
    assert (centre.value, width.value) == pytest.approx((40, 80), abs=2)


def test_volume_explanation_strip_and_jump_to_the_most_relevant_slice() -> None:
    at = _upload([("study.zip", _shuffled_zip())])
    at.button(key="mri_vol_run").click().run()
    _ok(at)
    assert any("12 slices explained" in s.value for s in at.success)
    bars = next(d for d in _spec(at, "mri_strip")["data"] if d["type"] == "bar")
    y = values(bars["y"])
    assert y.shape == (12,) and np.isfinite(y).all() and np.abs(y).max() > 0
    best = int(np.argmax(y))
    at.button(key="mri_strip_best").click().run()
    _ok(at)
    assert at.slider(key="mri_slice_2").value == best
    report = at.session_state["mri_report_png"]
    assert Image.open(io.BytesIO(report)).format == "PNG"


def _pdftotext(pdf: bytes) -> str:
    exe = shutil.which("pdftotext")
    if exe is None:
        if os.environ.get("LRP_REQUIRE_BROWSER") == "1":
            pytest.fail("pdftotext (poppler-utils) is required here: .ci/run installs it")
        pytest.skip("pdftotext (poppler-utils) is not installed")
    out = subprocess.run([exe, "-layout", "-", "-"], input=pdf, capture_output=True,
                         check=True, timeout=60)
    return out.stdout.decode("utf-8", "replace")


def test_report_is_deidentified_and_has_the_study_date_only_on_request() -> None:
    at = _upload([("DOE_JANE_study.zip", _shuffled_zip())])
    text = _pdftotext(at.session_state["mri_report_pdf"])
    assert "De-identified" in text and "T1 AXIAL" in text and "axial slice" in text
    for word in (*PATIENT.values(), "DOE", "JANE", "2024-09-17", "20240917", ".zip"):
        assert word not in text, word
    at.checkbox(key="mri_report_study_date").check().run()
    _ok(at)
    text = _pdftotext(at.session_state["mri_report_pdf"])
    assert "2024-09-17" in text
    assert "DOE" not in text and "PID-778899" not in text


def test_3d_demo_model_explains_the_demo_volume_slice_by_slice() -> None:
    from lrp_engine.mri_demo import CLASS_NAMES

    at = AppTest.from_file(PAGE, default_timeout=180)
    at.session_state["mri_model"] = "mri_demo3d"
    at.session_state["mri_source"] = "Demo volume"
    at.session_state["mri_demo_volume_index"] = 1  # class 1: a lesion in the left hemisphere
    at.run()
    _ok(at)
    pred = next(m for m in at.metric if m.label == "Prediction").value.replace("\\", "")
    assert pred in CLASS_NAMES
    bars = next(d for d in _spec(at, "mri_strip")["data"] if d["type"] == "bar")
    assert values(bars["y"]).shape == (32,)
    rel = values(next(d for d in _spec(at, "mri_overlay")["data"][::-1]
                      if d["type"] == "heatmap")["z"])
    assert rel.shape == (96, 96) and np.isfinite(rel).all()
    at.selectbox(key="mri_axis").set_value(1).run()  # coronal: the same 3-D relevance
    _ok(at)
    bars = next(d for d in _spec(at, "mri_strip")["data"] if d["type"] == "bar")
    assert values(bars["y"]).shape == (96,)
