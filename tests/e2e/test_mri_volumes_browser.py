"""A DICOM series on the MRI inspector, in a real browser.

A study's .zip of :func:`tests.scan_series.axial_series` (12 axial slices, the files
shuffled, their names and tags holding the patient's identifiers) goes through the real
uploader. Then:

- the scan view (the page's first plotly chart) draws the radiological markers as SVG text
  where they belong: R on the left, L on the right, A on top, P at the bottom; no patient
  identifier is anywhere on the page;
- the Slice slider (keyboard arrows) scrolls: the scan view's title follows; the
  neurological switch puts L on the left;
- "Explain these slices" explains all 12: the success message, a strip of 12 bars, and the
  button to the most relevant slice moves the view there;
- "Stop", clicked once the first batch of a new "Explain" is done (the sagittal plane: 224
  slices, 32 a batch for these small slices), stops between batches with the slices done
  so far kept, or the run was over first (the test prints which); "Explain" then carries on and
  completes the strip;
- "Report (PDF)" downloads; ``pdftotext`` finds "De-identified" and "T1 AXIAL" in it and
  none of the patient's identifiers.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.scan_series import PATIENT, STUDY_DATE, axial_series, head, study_zip

from .harness import (
    PLOTLY_CHART,
    arm_rerun,
    assert_no_exception,
    choose_radio,
    choose_select,
    download,
    error_texts,
    page_exists,
    shot,
    upload_file,
    wait_chart_changed,
    wait_idle,
    wait_rerun,
    widget,
)

pytestmark = pytest.mark.skipif(not page_exists("mri_inspector.py"),
                                reason="the MRI inspector page does not exist")

SCAN_LABEL = "Scans: DICOM files or a study's .zip (a series), NIfTI (.nii, .nii.gz), PNG/JPEG"
NEURO_LABEL = "Neurological convention (the patient's left on the image's left)"
SUCCESS = '[data-testid="stAlertContentSuccess"]'
#: columns of the generated slices: the sagittal plane's slice count (several batches)
SAGITTAL = 224
INFO = '[data-testid="stAlertContentInfo"]'
#: what must never reach the screen or the report (the study date: only when asked)
IDENTIFIERS = [*PATIENT.values(), "DOE", "JANE", "Doe", "Jane", "778899", "ACC-4455",
               "1951-02-03", "DOE_JANE"]

#: the scan view's title (chart 0) as drawn, or null
TITLE_JS = """() => {
  const c = document.querySelectorAll('[data-testid="stPlotlyChart"]')[0];
  const t = c && c.querySelector('.gtitle');
  return t ? t.textContent : null;
}"""

#: the letters drawn as SVG annotation text in chart 0 and where they sit in the image,
#: as fractions of its drawn box (0, 0: top left)
MARKERS_JS = """() => {
  const c = document.querySelectorAll('[data-testid="stPlotlyChart"]')[0];
  if (!c) return null;
  const img = c.querySelector('.imagelayer image') || c.querySelector('.nsewdrag');
  if (!img) return null;
  const b = img.getBoundingClientRect();
  const out = {};
  for (const t of c.querySelectorAll('svg .annotation-text')) {
    const r = t.getBoundingClientRect();
    out[t.textContent.trim()] = [((r.left + r.right) / 2 - b.left) / b.width,
                                 ((r.top + r.bottom) / 2 - b.top) / b.height];
  }
  return out;
}"""

#: the strip chart's bar trace as plotted: its x, y and colours (null when there is none)
STRIP_JS = """() => {
  for (const c of document.querySelectorAll('[data-testid="stPlotlyChart"]')) {
    const gd = c.querySelector('.js-plotly-plot');
    if (!gd || !gd._fullData || !gd._fullData.length) continue;
    const t = gd._fullData[0];  // decoded: gd.data may hold plotly.py's base64 arrays
    if (t.type !== 'bar') continue;
    const arr = (v) => Array.from(v);
    return {x: arr(t.x), y: arr(t.y), colours: arr(t.marker.color)};
  }
  return null;
}"""
NOT_EXPLAINED = "#d0d0d0"


def scan_title(page: Any) -> str:
    return str(page.evaluate(TITLE_JS) or "")


def wait_title(page: Any, text: str, timeout_ms: float = 60_000) -> None:
    """Wait until the scan view's title is ``text``, and the app is idle."""
    page.wait_for_function(f"() => ({TITLE_JS})() === {text!r}", timeout=timeout_ms,
                           polling=100)
    wait_idle(page)


def markers(page: Any) -> dict[str, list[float]]:
    """Letter → (x, y) of its centre as a fraction of the scan's drawn box."""
    found = page.evaluate(MARKERS_JS)
    assert found, "no image or no annotation text in the scan view"
    return found


def assert_markers(page: Any, left: str, right: str) -> None:
    """``left`` on the image's left edge, ``right`` on its right, A on top, P at the bottom:
    drawn as SVG text, each within the outer fifth of the image on its side."""
    m = markers(page)
    for letter in (left, right, "A", "P"):
        assert letter in m, f"no {letter!r} drawn in the scan view: {m}"
    (lx, ly), (rx, ry), (ax, ay), (px, py) = m[left], m[right], m["A"], m["P"]
    assert lx < 0.2 and 0.3 < ly < 0.7, f"{left} is not on the left edge: {m}"
    assert rx > 0.8 and 0.3 < ry < 0.7, f"{right} is not on the right edge: {m}"
    assert ay < 0.2 and 0.3 < ax < 0.7, f"A is not at the top: {m}"
    assert py > 0.8 and 0.3 < px < 0.7, f"P is not at the bottom: {m}"


def strip(page: Any) -> dict[str, list[Any]]:
    s = page.evaluate(STRIP_JS)
    assert s is not None, "no strip chart (bar trace) on the page"
    return s


def main_button(page: Any, name: str) -> Any:
    """The button ``name`` in the main area (not the toolbar's own "Stop")."""
    return page.locator('[data-testid="stMain"]').get_by_role("button", name=name, exact=True)


def click_button(page: Any, name: str, wait: bool = True) -> None:
    arm_rerun(page)
    main_button(page, name).click()
    if wait:
        wait_rerun(page, timeout_ms=120_000)


def pdf_text(path: Path) -> str:
    out = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True,
                         timeout=60, check=True)
    return " ".join(out.stdout.split())


def test_dicom_series_scroll_explain_stop_report(page: Any, base_url: str,
                                                 tmp_path: Path) -> None:
    have_pdftotext = shutil.which("pdftotext") is not None
    if not have_pdftotext and os.environ.get("LRP_REQUIRE_BROWSER") == "1":
        pytest.fail("pdftotext is not installed (apt-get install poppler-utils); "
                    "LRP_REQUIRE_BROWSER=1 needs it to read the report", pytrace=False)

    page.goto(f"{base_url}/mri_inspector")
    widget(page, "stRadio", "Scan").wait_for(state="visible", timeout=120_000)
    page.locator(PLOTLY_CHART).first.wait_for(state="visible", timeout=120_000)
    wait_idle(page, 120_000)
    assert_no_exception(page)
    demo = wait_chart_changed(page, 0, None)

    arm_rerun(page)
    choose_radio(page, "Scan", "Upload")
    wait_rerun(page)
    files = axial_series(head(12, 64, SAGITTAL))  # 12 axial slices of 64 × 224 pixels
    random.Random(7).shuffle(files)
    assert [n for n, _ in files] != sorted(n for n, _ in files), "not shuffled"
    upload_file(page, SCAN_LABEL, "study.zip", study_zip(files), "application/zip")
    wait_chart_changed(page, 0, demo, timeout_ms=60_000)
    wait_title(page, "axial slice 7 of 12")
    assert_no_exception(page)
    assert not error_texts(page), error_texts(page)
    shot(page, tmp_path, "series-radiological")

    # the scan view: an image with the radiological markers where they belong
    types = page.evaluate("""() => { const gd = document.querySelector(
        '[data-testid="stPlotlyChart"] .js-plotly-plot'); return gd.data.map(t => t.type); }""")
    assert types == ["image"], types
    assert_markers(page, "R", "L")
    main = page.locator('[data-testid="stMain"]')
    caps = main.locator('[data-testid="stCaptionContainer"]').all_inner_texts()
    assert any(c.startswith("MR · T1 AXIAL · 12 slices. Radiological: the patient's right on "
                            "the image's left") for c in caps), caps
    text = str(main.text_content())
    leaked = [s for s in IDENTIFIERS if s in text]
    assert not leaked, f"patient identifiers on the page: {leaked}"

    # scroll with the keyboard: the title follows
    slider = widget(page, "stSlider", "Slice").get_by_role("slider")
    arm_rerun(page)
    slider.focus()
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    wait_rerun(page)
    wait_title(page, "axial slice 5 of 12")
    assert_no_exception(page)

    # the neurological convention: L on the image's left
    before = wait_chart_changed(page, 0, None)
    arm_rerun(page)
    page.get_by_text(NEURO_LABEL, exact=True).click()
    wait_rerun(page)
    wait_chart_changed(page, 0, before)
    assert_markers(page, "L", "R")
    caps = main.locator('[data-testid="stCaptionContainer"]').all_inner_texts()
    assert any("Neurological: the patient's left on the image's left" in c for c in caps), caps
    assert scan_title(page) == "axial slice 5 of 12"
    shot(page, tmp_path, "series-neurological")

    # explain every axial slice: a strip of 12 bars, all explained
    click_button(page, "Explain these slices")
    ok = page.locator(SUCCESS).filter(has_text="slices explained in")
    ok.first.wait_for(state="visible", timeout=120_000)
    assert re.match(r"12 slices explained in \d+\.\d s\.", ok.first.inner_text().strip()), \
        ok.first.inner_text()
    print(f"\nExplain (axial): {ok.first.inner_text().strip()!r}")
    s = strip(page)
    assert s["x"] == list(range(1, 13)), s["x"]
    assert NOT_EXPLAINED not in s["colours"], s["colours"]
    assert any(abs(v) > 0 for v in s["y"]), s["y"]
    best = max(range(12), key=lambda k: s["y"][k]) + 1
    shot(page, tmp_path, "series-explained")
    click_button(page, f"Go to the most relevant slice ({best})")
    wait_title(page, f"axial slice {best} of 12")
    assert_no_exception(page)

    # Stop: the sagittal plane has 224 slices (7 batches of 32)
    arm_rerun(page)
    choose_select(page, "Plane", "sagittal")
    wait_rerun(page)
    page.wait_for_function(f"() => ({TITLE_JS})().startsWith('sagittal slice ')",
                           timeout=60_000)
    wait_idle(page)
    assert scan_title(page).endswith(f" of {SAGITTAL}"), scan_title(page)
    assert page.locator(SUCCESS).count() == 0
    click_button(page, "Explain these slices", wait=False)
    # as soon as the first batch is done (the progress bar counts it), so that some slices
    # are explained when the stop lands; the run may be over before the click arrives
    # (or the end of the run, should it come first)
    progress = page.locator('[data-testid="stProgress"]').filter(
        has_text=f"of {SAGITTAL} slices explained")
    finished = page.locator(SUCCESS).filter(has_text=f"{SAGITTAL} slices explained in")
    progress.or_(finished).first.wait_for(state="attached", timeout=120_000)
    main_button(page, "Stop").click()
    page.wait_for_timeout(300)
    wait_idle(page, 120_000)
    assert_no_exception(page)
    stopped = page.locator(INFO).filter(has_text="Stopped after")
    s = strip(page)
    assert len(s["x"]) == SAGITTAL, len(s["x"])
    done = sum(c != NOT_EXPLAINED for c in s["colours"])
    if stopped.count():  # stopped between batches: the slices done so far stay
        msg = stopped.first.inner_text().strip()
        m = re.match(rf"Stopped after (\d+) of {SAGITTAL} slices", msg)
        assert m, msg
        assert 16 <= int(m.group(1)) == done < SAGITTAL, (msg, done)
        print(f"\nStop: {msg!r}; {done} of {SAGITTAL} bars explained")
        shot(page, tmp_path, "series-stopped")
        click_button(page, "Explain these slices")  # carries on with the rest
        ok = page.locator(SUCCESS).filter(has_text=f"{SAGITTAL} slices explained in").first
        ok.wait_for(state="visible", timeout=120_000)
        print(f"carried on: {ok.inner_text().strip()!r}")
        s = strip(page)
        assert NOT_EXPLAINED not in s["colours"], s["colours"]
    else:  # the run was over before "Stop" reached the server: nothing to stop
        assert done == SAGITTAL, f"no 'Stopped after' message, yet {done} slices explained"
        print("\nStop: the run had finished before the click (no 'Stopped after' message)")
    assert_no_exception(page)

    # the report: de-identified, and says what was read
    pdf = download(page, "Report (PDF)", tmp_path)
    assert pdf.startswith(b"%PDF"), pdf[:16]
    shot(page, tmp_path, "series-report")
    if not have_pdftotext:
        pytest.skip("pdftotext is not installed: the report's text was not checked")
    text = pdf_text(tmp_path / "lrp_report.pdf")
    assert "De-identified" in text, text[:2000]
    assert "T1 AXIAL" in text, text[:2000]
    leaked = [v for v in IDENTIFIERS if v in text]
    assert not leaked, f"patient identifiers in the report: {leaked}\n{text[:2000]}"
    assert STUDY_DATE not in text and "2024-09-17" not in text, "the study date, unasked"
