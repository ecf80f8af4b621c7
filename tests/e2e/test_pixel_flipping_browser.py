"""The Pixel-flipping page (``/pixel_flipping``) in a real browser:

- a small live job: the settings are typed into the number inputs, B-LRP is removed from
  the methods, Run is pressed; while the job runs (in the page's script run, batches of
  ``ui.flipping.BATCH`` = 25 images) a recorder in the page logs the progress bar's text and
  the curves chart after every DOM change, so the test sees the chart redrawn with new data
  after each batch, before the job is done; then the AUC table (one row per method, finite,
  the random order above LRP) and no exception. A one-image run goes first: Streamlit loads
  plotly's JavaScript when the page's first chart arrives, and on a fast machine that can
  take longer than a few batches (the live redraws would then be drawn after the fact);
- the CSV download of that job's mean curves: one column per method, one row per step, and
  the trapezoidal area under each mean curve equals the table's mean AUC;
- Stop: a 1000-image job stopped after its first batches keeps (and says) what it finished,
  does not go on computing, and a new Run afterwards works.

The jobs are small (LeNet, ≤ 100 images, 16 or 32 steps, no B-LRP): a few seconds on two
idle cores, but the waits allow minutes for a busy CI machine.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import re
from pathlib import Path
from typing import Any

import pytest

from .harness import (
    FINGERPRINT_JS,
    PLOTLY_CHART,
    arm_rerun,
    assert_no_exception,
    download,
    error_texts,
    page_exists,
    shot,
    wait_idle,
    wait_rerun,
    widget,
)

pytestmark = pytest.mark.skipif(not page_exists("pixel_flipping.py"),
                                reason="the Pixel-flipping page does not exist")

#: a whole job (or the first batch of one) on a loaded 2-core machine
JOB_MS = 180_000
BLRP = "B-LRP (percentile maps)"
GXI = "Gradient×Input"
#: the small job of the first two tests: 100 images are 4 batches of 25, so the chart is
#: redrawn live 3 times before the last batch (and once more with all 100 before "Done")
SMALL = {"Held-out images": 100, "Steps": 16}
SMALL_ROWS = ["Standard LRP-ε", "Gradient×Input", "Random"]
SMALL_KEYS = ["lrp", "gradient_x_input", "random"]
AUC = "AUC (lower = more faithful)"
SUCCESS = '[data-testid="stAlertContentSuccess"]'
WARNING = '[data-testid="stAlertContentWarning"]'
PROGRESS = '[data-testid="stProgress"]'

#: installed before Run: after every DOM change (and every 25 ms) logs the script state,
#: the progress bar's text and the first chart's title, trace names and data fingerprint
#: whenever one of them changed
RECORDER_JS = """() => {
  window.__pfLog = [];
  const app = document.querySelector('[data-testid="stApp"]');
  const fingerprint = (__FINGERPRINT_JS__);
  const rec = () => {
    const prog = document.querySelector('[data-testid="stProgress"]');
    const gd = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
    const ok = gd && gd.data && gd.layout;
    const e = {
      state: app ? app.getAttribute('data-test-script-state') : null,
      progress: prog ? prog.innerText.trim() : null,
      title: ok ? String(((gd.layout.title || {}).text) || '') : null,
      names: ok ? gd.data.map(t => String(t.name)) : null,
      fp: ok ? fingerprint(0) : null,
    };
    const last = window.__pfLog[window.__pfLog.length - 1];
    if (!last || ['state', 'progress', 'title', 'fp'].some(k => last[k] !== e[k])) {
      window.__pfLog.push(e);
    }
  };
  if (window.__pfObs) window.__pfObs.disconnect();
  if (window.__pfTimer) clearInterval(window.__pfTimer);
  window.__pfObs = new MutationObserver(rec);
  window.__pfObs.observe(document.body, {subtree: true, childList: true, attributes: true,
                                          characterData: true});
  window.__pfTimer = setInterval(rec, 25);
  rec();
}""".replace("__FINGERPRINT_JS__", FINGERPRINT_JS)

#: the first st.dataframe's header and cells, read from glide-data-grid's accessible table
TABLE_JS = """() => {
  const df = document.querySelector('[data-testid="stDataFrame"]');
  if (!df) return null;
  const headers = Array.from(df.querySelectorAll('[role="columnheader"]'))
    .map(h => h.textContent.trim());
  const rows = [];
  for (const td of df.querySelectorAll('[data-testid^="glide-cell-"]')) {
    const m = td.getAttribute('data-testid').match(/^glide-cell-(\\d+)-(\\d+)$/);
    if (!m) continue;
    const c = +m[1], r = +m[2];
    (rows[r] = rows[r] || [])[c] = td.textContent.trim();
  }
  return {headers: headers, rows: rows};
}"""

#: traces of the first plotly chart: name, x, y (typed arrays as plain arrays)
TRACES_JS = """() => {
  const gd = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
  if (!gd || !gd.data) return null;
  return gd.data.map(t => ({name: String(t.name), x: Array.from(t.x), y: Array.from(t.y)}));
}"""


def open_pixel_flipping(page: Any, base_url: str) -> None:
    """Open the page by its deep link and wait for its first (idle) run."""
    page.goto(f"{base_url}/pixel_flipping")
    widget(page, "stNumberInput", "Held-out images").wait_for(state="visible", timeout=60_000)
    wait_idle(page)
    assert_no_exception(page)


def set_number(page: Any, label: str, value: int) -> None:
    """Type ``value`` into the number input ``label``, press Enter and wait for the rerun."""
    field = widget(page, "stNumberInput", label).locator("input")
    arm_rerun(page)
    field.fill(str(value))
    field.press("Enter")
    wait_rerun(page)
    assert field.input_value() == str(value), f"{label!r} shows {field.input_value()!r}"


def remove_method(page: Any, name: str) -> None:
    """Remove ``name`` from the "Methods" multiselect (its tag's × button)."""
    box = widget(page, "stMultiSelect", "Methods")
    arm_rerun(page)
    box.get_by_role("button", name=f"Remove {name}", exact=True).click()
    wait_rerun(page)
    assert box.get_by_role("button", name=f"Remove {name}", exact=True).count() == 0


def click_button(page: Any, name: str) -> None:
    """Click the ``st.button`` labelled ``name`` (without waiting for its run)."""
    page.locator('[data-testid="stButton"]').get_by_role("button", name=name,
                                                         exact=True).click()


def set_up(page: Any, base_url: str, numbers: dict[str, int], drop: tuple[str, ...]) -> None:
    """Open the page, set the number inputs and remove the methods in ``drop``."""
    open_pixel_flipping(page, base_url)
    for name in drop:
        remove_method(page, name)
    for label, value in numbers.items():
        set_number(page, label, value)
    assert_no_exception(page)


def wait_done(page: Any, n_images: int) -> str:
    """Wait until the job says "Done: <n_images> image(s)" and the app is idle; its text."""
    box = page.locator(SUCCESS).filter(has_text=re.compile(rf"^\s*Done: {n_images} images?\b"))
    box.first.wait_for(state="visible", timeout=JOB_MS)
    wait_idle(page, JOB_MS)
    return str(box.first.inner_text()).strip()


def read_table(page: Any, n_rows: int, images: int) -> list[dict[str, str]]:
    """The summary table's rows as {column: cell text}, once ``n_rows`` rows are filled and
    their "images" column (the second) says ``images``."""
    page.locator('[data-testid="stDataFrame"]').first.scroll_into_view_if_needed()
    page.wait_for_function(
        """([n, images]) => {
          const t = (__TABLE_JS__)();
          return t !== null && t.headers.length > 0 && t.rows.length === n
            && t.rows.every(r => r && r.filter(c => c !== undefined).length
                                      === t.headers.length && r[1] === images);
        }""".replace("__TABLE_JS__", TABLE_JS), arg=[n_rows, str(images)], timeout=30_000)
    table = page.evaluate(TABLE_JS)
    return [dict(zip(table["headers"], row, strict=True)) for row in table["rows"]]


def chart_traces(page: Any) -> list[dict]:
    """Name, x and y of each trace of the first plotly chart."""
    traces = page.evaluate(TRACES_JS)
    assert traces, "no plotly chart with data"
    return traces


def run_small_job(page: Any, base_url: str) -> str:
    """The first two tests' job (100 images, 16 steps, LRP / Gradient×Input / random); the
    success message. (The second time on the same server it replays from the cache.)"""
    set_up(page, base_url, SMALL, drop=(BLRP,))
    click_button(page, "Run")
    return wait_done(page, SMALL["Held-out images"])


def test_small_job_draws_curves_live_then_auc_table(page: Any, base_url: str,
                                                    tmp_path: Path) -> None:
    total = SMALL["Held-out images"]
    set_up(page, base_url, {**SMALL, "Held-out images": 1}, drop=(BLRP,))
    assert page.locator(PLOTLY_CHART).count() == 0, "a chart before Run"
    click_button(page, "Run")  # the warm-up: one image, and plotly's JavaScript is loaded
    wait_done(page, 1)
    page.locator(PLOTLY_CHART).first.wait_for(state="visible")
    set_number(page, "Held-out images", total)
    page.evaluate(RECORDER_JS)
    click_button(page, "Run")
    done_text = wait_done(page, total)
    log: list[dict] = page.evaluate("window.__pfLog")
    page.evaluate("() => { window.__pfObs.disconnect(); clearInterval(window.__pfTimer); }")

    # -- live: while the script still ran, the chart was redrawn with the batches done so far
    final = next((i for i, e in enumerate(log)
                  if e["title"] and f"Mean over {total} held-out" in e["title"]), len(log))
    live: dict[int, str] = {}  # images done (from the chart title) → data fingerprint
    progress: set[int] = set()  # images done (from the progress bar)
    for e in log[:final]:
        if e["state"] != "running":
            continue
        m = re.search(rf"(\d+) of {total} images", e["progress"] or "")
        if m:
            progress.add(int(m.group(1)))
        m = re.search(rf"Running… mean over (\d+) of {total} images", e["title"] or "")
        if m and e["fp"]:
            assert e["names"] == SMALL_ROWS, e["names"]
            live.setdefault(int(m.group(1)), e["fp"])
    summary = [(e["state"], e["progress"], e["title"]) for e in log]
    batches = set(range(25, total + 1, 25))
    assert set(live) <= batches and len(live) >= 2, f"too few live redraws: {summary}"
    assert len(set(live.values())) == len(live), f"a redraw kept the same data: {live}"
    assert min(live) < total, f"no redraw before the last batch: {summary}"
    assert len(progress & batches) >= 2, f"the progress bar did not move: {summary}"
    assert final < len(log), "no final chart"
    assert all(e["state"] == "notRunning" for e in log[-1:]), summary[-3:]

    # -- finished: success message, no progress bar, final chart, table
    assert done_text.startswith(f"Done: {total} images"), done_text
    assert page.locator(PROGRESS).count() == 0, "the progress bar is still shown"
    assert_no_exception(page)
    assert not error_texts(page), error_texts(page)
    traces = chart_traces(page)
    assert [t["name"] for t in traces] == SMALL_ROWS
    for t in traces:
        assert len(t["x"]) == len(t["y"]) == SMALL["Steps"]
        assert all(math.isfinite(v) for v in t["x"] + t["y"]), t["name"]
    starts = [t["y"][0] for t in traces]
    assert max(starts) - min(starts) < 1e-3, f"the unperturbed scores differ: {starts}"
    title = page.locator(PLOTLY_CHART).first.locator(".gtitle").text_content() or ""
    assert f"Mean over {total} held-out digits" in title, title

    rows = read_table(page, len(SMALL_ROWS), total)
    assert [r["method"] for r in rows] == SMALL_ROWS
    auc = {}
    for r in rows:
        assert int(r["images"]) == total, r
        for column in list(r)[2:]:
            assert math.isfinite(float(r[column])), r
        auc[r["method"]] = float(r[AUC])
    # LeNet, seed 0, 100 images: LRP ≈ 8.7, random ≈ 11.1 (the AppTest and the engine agree;
    # the gap is ~2, far above the run-to-run noise, which is none: everything is seeded)
    assert auc["Random"] > auc["Standard LRP-ε"], auc
    shot(page, tmp_path, "pixel-flipping-done")


def test_csv_download_has_one_column_per_method_and_one_row_per_step(
        page: Any, base_url: str, tmp_path: Path) -> None:
    run_small_job(page, base_url)
    assert_no_exception(page)
    data = download(page, "Download the curves (CSV)", tmp_path)
    assert (tmp_path / "pixel_flipping_curves.csv").is_file()
    reader = csv.reader(io.StringIO(data.decode("utf-8")))
    header, *body = list(reader)
    assert header == ["fraction_flipped", *SMALL_KEYS], header
    steps = SMALL["Steps"]
    assert len(body) == steps, f"{len(body)} rows for {steps} steps"
    values = [[float(v) for v in row] for row in body]
    assert all(math.isfinite(v) for row in values for v in row)
    fraction = [row[0] for row in values]
    # LeNet sees 32×32 = 1024 pixels; 4 per step (the page's default)
    assert fraction[0] == 0 and fraction[-1] == pytest.approx((steps - 1) * 4 / 1024, rel=1e-4)
    assert fraction == sorted(fraction)
    # the mean curves are the chart's traces; their trapezoidal areas (x scaled to 0…1) are
    # the table's mean AUCs (the area is linear in the curve)
    rows = {r["method"]: r for r in read_table(page, len(SMALL_ROWS),
                                                         SMALL["Held-out images"])}
    for j, label in enumerate(SMALL_ROWS, start=1):
        curve = [row[j] for row in values]
        area = sum((a + b) / 2 for a, b in itertools.pairwise(curve)) / (steps - 1)
        assert area == pytest.approx(float(rows[label][AUC]), rel=1e-4, abs=1e-4), label
    assert sum(row[1] for row in values) < sum(row[3] for row in values), "LRP ≥ random"


def test_stop_keeps_the_finished_batches_and_a_new_run_works(page: Any, base_url: str,
                                                            tmp_path: Path) -> None:
    total = 1000
    set_up(page, base_url, {"Held-out images": total, "Steps": 32}, drop=(BLRP, GXI))
    click_button(page, "Run")
    # wait until the first batch is drawn, then stop (40 batches: far from the end)
    page.wait_for_function(
        f"""() => {{
          const p = document.querySelector('{PROGRESS}');
          const m = p && p.innerText.match(/(\\d+) of {total} images/);
          return m !== null && +m[1] >= 25;
        }}""", timeout=JOB_MS, polling=50)
    click_button(page, "Stop")
    box = page.locator(WARNING).filter(has_text="Stopped after")
    box.first.wait_for(state="visible", timeout=JOB_MS)
    wait_idle(page, JOB_MS)
    text = str(box.first.inner_text()).strip()
    m = re.match(rf"Stopped after (\d+) of {total} images", text)
    assert m, text
    done = int(m.group(1))
    assert 25 <= done < total and done % 25 == 0, text
    assert_no_exception(page)
    assert page.locator(PROGRESS).count() == 0, "the progress bar is still shown"
    assert page.locator(SUCCESS).count() == 0, "a stopped job says it is done"
    rows = read_table(page, 2, done)
    assert [r["method"] for r in rows] == ["Standard LRP-ε", "Random"]
    assert all(int(r["images"]) == done for r in rows), rows
    title = page.locator(PLOTLY_CHART).first.locator(".gtitle").text_content() or ""
    assert f"Mean over {done} held-out digits" in title, title
    # stopped means stopped: nothing runs on and the numbers stay
    page.wait_for_timeout(1_000)
    wait_idle(page)
    assert box.first.inner_text().strip() == text
    shot(page, tmp_path, "pixel-flipping-stopped")

    # a new, small run afterwards
    set_number(page, "Held-out images", 25)
    assert page.get_by_text("These results are from the previous settings").count() == 1
    click_button(page, "Run")
    wait_done(page, 25)
    assert_no_exception(page)
    assert page.locator(WARNING).count() == 0, "the old 'Stopped' message is still shown"
    rows = read_table(page, 2, 25)
    assert all(int(r["images"]) == 25 for r in rows), rows
