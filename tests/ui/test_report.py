"""The de-identified MRI report (ui.report.report_png / report_pdf): every field is real text
in the PDF (pdftotext finds it), the study date only when given, the PNG decodes, the
orientation markers and the per-slice strip are drawn, and a DICOM's patient identifiers
never reach either file.

pdftotext comes with poppler-utils: without it the PDF tests are skipped, unless
``LRP_REQUIRE_BROWSER=1`` (CI, ``.ci/run``, which installs it): then they fail.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lrp_engine import medical, viz
from lrp_engine.scans import read_scans, view
from lrp_explorer.ui import report
from tests.hostile_files import dicom_bytes, mr_slice

MARKERS = {"left": "R", "right": "L", "top": "A", "bottom": "P"}
IDENTIFIERS = ("DOE^JANE", "DOE", "JANE", "PID-778899", "778899", "19510203", "1951-02-03",
               "ACC-4455", "4455")


def _pdftotext(pdf: bytes, tmp_path: Path) -> str:
    """pdftotext's output of ``pdf``, whitespace collapsed to single spaces."""
    exe = shutil.which("pdftotext")
    if exe is None:
        msg = ("pdftotext is not installed: apt-get install poppler-utils (CI installs it)")
        if os.environ.get("LRP_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{msg} (LRP_REQUIRE_BROWSER=1, so this is an error)", pytrace=False)
        pytest.skip(msg)
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    out = subprocess.run([exe, "-enc", "UTF-8", str(path), "-"], capture_output=True,
                         check=True, timeout=60)
    return _flat(out.stdout.decode("utf-8"))


def _flat(s: str) -> str:
    return " ".join(s.split())


def _report(**kw: object) -> report.ScanReport:
    """A report on a grey ramp with text in every field (Greek letters, dashes, ×)."""
    scan = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1))
    rel = np.zeros((64, 64))
    rel[20:30, 30:40] = 1.0
    fields: dict = dict(
        scan=scan, overlay=viz.overlay(scan, rel), prediction="glioma (91.0 %)",
        probabilities=[("glioma", 0.91), ("meningioma", 0.06), ("no tumour", 0.03)],
        model="VGG-16 (your checkpoint)",
        card="input 3×224×224; stretch to 224×224 · RGB · pixels 0…1 · ImageNet normalisation",
        scan_source="DICOM series 'T1 AX' (MR), 150 slices",
        slices="axial slice 52 of 150 shown; volume explanation of slices 1–150",
        orientation="radiological: the patient's right on the image's left",
        window="centre 612, width 1210 (display only)",
        rules="preset vgg-gamma-blocks; features.0 (Conv2d): LRP-γ γ=0.25; classifier: LRP-ε",
        blrp="16 MC-dropout samples, alphas 5, 50, 95, explained class glioma",
        disclaimer="Research and teaching tool: not a medical device, not for diagnosis.",
        when=datetime(2026, 3, 4, 5, 6, tzinfo=timezone.utc))
    fields.update(kw)
    return report.ScanReport(**fields)


def _texts(r: report.ScanReport) -> list[str]:
    """Every text the report must print (probabilities as "name: 91.0 %")."""
    return [r.prediction, *(f"{n}: {100 * p:.1f} %" for n, p in r.probabilities), r.model,
            r.card, r.scan_source, r.slices, r.orientation, r.window, r.rules, r.blrp,
            r.disclaimer, report.DEIDENTIFIED, "2026-03-04 05:06 UTC"]


def _pixels(png: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG"
    return np.asarray(img.convert("RGB"))


def test_every_field_is_text_in_the_pdf(tmp_path: Path) -> None:
    r = _report()
    pdf = report.report_pdf(r)
    assert pdf.startswith(b"%PDF")
    text = _pdftotext(pdf, tmp_path)
    for field in _texts(r):
        assert _flat(field) in text, (field, text)
    assert text.index(report.DEIDENTIFIED) < text.index(r.prediction)  # at the top
    assert "Study date" not in text


def test_core_font_spells_greek_out_in_ascii(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report, "PDF_FONTS", ())
    r = _report()
    text = _pdftotext(report.report_pdf(r), tmp_path)
    assert "LRP-gamma gamma=0.25" in text and "LRP-eps" in text
    for field in _texts(r):
        assert _flat(report.ascii_text(field)) in text, (field, text)


def test_study_date_only_when_given(tmp_path: Path) -> None:
    without = _report()
    with_date = _report(study_date="2023-05-17")
    t0 = _pdftotext(report.report_pdf(without), tmp_path)
    t1 = _pdftotext(report.report_pdf(with_date), tmp_path)
    assert "2023-05-17" not in t0 and "Study date" not in t0
    assert "Study date: 2023-05-17" in t1
    # the PNG draws a line more with the date
    assert _pixels(report.report_png(with_date)).shape[0] > \
        _pixels(report.report_png(without)).shape[0]


def test_png_decodes_with_certainty_and_strip() -> None:
    plain = _pixels(report.report_png(_report()))
    assert plain.shape[1] >= 900 and plain.shape[2] == 3
    full = _pixels(report.report_png(_report(certainty=np.full((1, 64, 64), 0.5),
                                             strip=np.sin(np.linspace(0, 6, 150)))))
    assert full.shape[1] > plain.shape[1]  # the certainty panel joined
    assert full.shape[0] > plain.shape[0]  # the strip joined
    # the strip's bars: strongly red and strongly blue pixels (relevance for and against)
    red = (full[..., 0] > 150) & (full[..., 2] < 60)
    blue = (full[..., 2] > 150) & (full[..., 0] < 60)
    assert red.sum() > 200 and blue.sum() > 200


def test_markers_are_drawn_at_the_panels_edges() -> None:
    a = _pixels(report.report_png(_report())).astype(int)
    b = _pixels(report.report_png(_report(markers=MARKERS))).astype(int)
    assert a.shape == b.shape
    diff = np.abs(a - b).sum(-1) > 30
    assert diff.any()
    side, pad, gap = 320, 24, 16
    for i in range(2):  # scan and overlay panels
        x0 = pad + i * (side + gap)
        ys, xs = np.nonzero(diff[:, x0:x0 + side])
        assert xs.min() < 30 and xs.max() > side - 30, (i, xs.min(), xs.max())
        assert ys.max() - ys.min() > side - 60, (i, ys.min(), ys.max())


def test_dicom_identifiers_never_reach_the_report(tmp_path: Path) -> None:
    data = dicom_bytes(mr_slice(), PatientName="DOE^JANE", PatientID="PID-778899",
                       PatientBirthDate="19510203", AccessionNumber="ACC-4455",
                       SeriesDescription="T1 AX", StudyDate="20240102")
    assert b"PID-778899" in data and b"DOE^JANE" in data
    # the upload's name may hold identifiers: the report uses the volume's description
    vol = read_scans([("DOE^JANE_PID-778899_ACC-4455.dcm", data)]).volumes[0]
    sv = view(vol, 2)
    shown = medical.window(sv.array, *medical.auto_window(sv.array))
    rel = np.random.default_rng(0).normal(size=shown.shape)
    r = _report(scan=shown, overlay=viz.overlay(shown, rel), scan_source=vol.description,
                slices="axial slice 1 of 1 shown", orientation="as stored",
                markers=sv.markers or None, strip=np.array([0.1, 0.5, -0.2]),
                certainty=np.full(shown.shape, 0.7))
    assert "T1 AX" in r.scan_source and "JANE" not in r.scan_source
    text = _pdftotext(report.report_pdf(r), tmp_path)
    assert "T1 AX" in text and report.DEIDENTIFIED in text
    png = report.report_png(r)
    meta = Image.open(io.BytesIO(png)).text
    assert meta and "De-identified" in meta.get("Description", "")
    for ident in IDENTIFIERS:
        assert ident.lower() not in text.lower(), ident
        assert all(ident.lower() not in f"{k} {v}".lower() for k, v in meta.items()), ident
        assert ident.encode() not in png, ident  # nor anywhere in the file's bytes
    pdfinfo = shutil.which("pdfinfo")
    if pdfinfo is not None:  # the PDF's document information (title, creator, dates)
        (tmp_path / "id.pdf").write_bytes(report.report_pdf(r))
        info = subprocess.run([pdfinfo, str(tmp_path / "id.pdf")], capture_output=True,
                              text=True, check=True, timeout=60).stdout
        assert not any(ident.lower() in info.lower() for ident in IDENTIFIERS), info

def test_report_is_immutable() -> None:
    r = _report()
    with pytest.raises(AttributeError):
        r.model = "other"  # type: ignore[misc]
    assert replace(r, study_date="2020-01-01").study_date == "2020-01-01"
