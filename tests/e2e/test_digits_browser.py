"""The Digits page in a real browser, against its contract:

- radio "Input" with "Draw" (default: a 280×280 streamlit-drawable-canvas), "Held-out digit",
  "Upload"; before anything is drawn an info message asks for a digit and no heatmap shows;
- ``st.metric("Prediction", "<digit>")``; selectbox "Preset" (epsilon, epsilon-gamma-box,
  zero, deep-taylor, …); the LRP heatmap is the page's first plotly chart;
- a B-LRP section: button "Run B-LRP" (100 samples by default) draws α-percentile panels
  in another plotly chart; "Turn B-LRP off" removes them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from .harness import (
    PLOTLY_CHART,
    SEVEN,
    arm_rerun,
    assert_no_exception,
    chart_count,
    chart_fingerprint,
    choose_radio,
    choose_select,
    draw_strokes,
    find_canvas,
    metric_value,
    open_select,
    page_exists,
    running_server,
    select_value,
    shot,
    wait_chart_changed,
    wait_idle,
    wait_rerun,
    widget,
)

pytestmark = pytest.mark.skipif(not page_exists("digits.py"),
                                reason="the Digits page (lrp_explorer/app_pages/digits.py) "
                                "does not exist yet")

PRESETS = ("epsilon", "epsilon-gamma-box", "zero", "deep-taylor")


#: the index, panel titles and trace count of the first plotly chart with "α = …" panels
ALPHA_PANELS_JS = r"""() => {
  const charts = document.querySelectorAll('[data-testid="stPlotlyChart"]');
  for (let i = 0; i < charts.length; i++) {
    const gd = charts[i].querySelector('.js-plotly-plot');
    if (!gd || !gd.data || !gd.layout) continue;
    const titles = (gd.layout.annotations || []).map(a => String(a.text || ''));
    if (titles.some(t => /α\s*=/.test(t))) {
      return {index: i, titles: titles, traces: gd.data.length};
    }
  }
  return null;
}"""


def alpha_panels(page: Any) -> dict | None:
    """Where the B-LRP α-percentile panels are drawn (None when they are not)."""
    return page.evaluate(ALPHA_PANELS_JS)


def open_digits(page: Any, base_url: str) -> None:
    """Open the Digits page and wait until its first run is over."""
    page.goto(f"{base_url}/digits")
    wait_idle(page)
    widget(page, "stRadio", "Input").wait_for(state="visible")
    wait_idle(page)
    assert_no_exception(page)


def wait_prediction(page: Any, expected: str | None = None, timeout_ms: float = 30_000) -> str:
    """Wait until the "Prediction" metric shows a digit (``expected`` if given); return it."""
    from playwright.sync_api import expect

    m = page.locator('[data-testid="stMetric"]').filter(has_text="Prediction").first
    value = m.locator('[data-testid="stMetricValue"]')
    expect(value).to_have_text(re.compile(rf"^\s*{expected or '[0-9]'}\s*$"),
                               timeout=timeout_ms)
    wait_idle(page)
    return metric_value(page, "Prediction")


def draw_seven(page: Any) -> None:
    """Draw a "7" on the canvas with the mouse and wait for the app to explain it."""
    canvas = find_canvas(page)
    arm_rerun(page)
    draw_strokes(page, canvas, SEVEN)
    wait_rerun(page)


def pick_heldout(page: Any) -> str:
    """Switch the input to a held-out digit; returns the prediction shown."""
    arm_rerun(page)
    choose_radio(page, "Input", "Held-out digit")
    wait_rerun(page)
    return wait_prediction(page)


def test_draw_default_and_prompt(page: Any, base_url: str, tmp_path: Path) -> None:
    open_digits(page, base_url)
    radio = widget(page, "stRadio", "Input")
    for option in ("Draw", "Held-out digit", "Upload"):
        assert radio.get_by_text(option, exact=True).count() == 1, f"no input option {option!r}"
    assert radio.get_by_role("radio", name="Draw").is_checked(), "'Draw' is not the default"

    canvas = find_canvas(page)
    box = canvas.bounding_box()
    assert box is not None and abs(box["width"] - 280) <= 2 and abs(box["height"] - 280) <= 2, (
        f"the canvas is not 280×280: {box}")
    info = page.locator('[data-testid="stAlertContentInfo"]').filter(
        has_text=re.compile("draw", re.IGNORECASE))
    assert info.count() >= 1, "no info message asking to draw a digit"
    assert chart_count(page) == 0, "a plotly chart shows before anything is drawn"
    assert page.locator('[data-testid="stMetricValue"]').filter(
        has_text=re.compile(r"^\s*[0-9]\s*$")).count() == 0, "a prediction before any drawing"
    assert_no_exception(page)
    shot(page, tmp_path, "digits-empty")


def test_draw_seven_predicts_seven(page: Any, base_url: str, tmp_path: Path) -> None:
    open_digits(page, base_url)
    draw_seven(page)
    shot(page, tmp_path, "digits-seven")
    assert wait_prediction(page, "7") == "7"
    heading = page.get_by_role("heading", name="LRP heatmap")
    assert heading.count() >= 1, "no subheader 'LRP heatmap'"
    page.locator(PLOTLY_CHART).first.wait_for(state="visible")
    assert chart_fingerprint(page, 0) is not None, "no plotly heatmap after drawing"
    assert_no_exception(page)


def test_preset_changes_heatmap(page: Any, base_url: str, tmp_path: Path) -> None:
    open_digits(page, base_url)
    draw_seven(page)
    wait_prediction(page, "7")
    page.locator(PLOTLY_CHART).first.wait_for(state="visible")
    before = wait_chart_changed(page, 0, None)
    chart = page.locator(PLOTLY_CHART).first
    png_before = chart.screenshot(path=str(tmp_path / "heatmap-before.png"), animations="disabled")

    current = select_value(page, "Preset")
    target = "epsilon-gamma-box" if current != "epsilon-gamma-box" else "epsilon"
    arm_rerun(page)
    choose_select(page, "Preset", target)
    wait_rerun(page)
    assert select_value(page, "Preset") == target
    after = wait_chart_changed(page, 0, before)
    assert after != before
    png_after = chart.screenshot(path=str(tmp_path / "heatmap-after.png"), animations="disabled")
    assert png_after != png_before, "the heatmap's image did not change with the preset"
    assert wait_prediction(page, "7") == "7"  # the rules change the explanation, not the model
    assert_no_exception(page)
    shot(page, tmp_path, "digits-preset")


def test_preset_options(page: Any, base_url: str) -> None:
    open_digits(page, base_url)
    open_select(page, "Preset")
    options = page.get_by_role("option")
    names = {options.nth(i).inner_text().strip() for i in range(options.count())}
    page.keyboard.press("Escape")
    missing = set(PRESETS) - names
    assert not missing, f"Preset lacks {sorted(missing)}; it offers {sorted(names)}"


def test_heldout_digit(page: Any, base_url: str, tmp_path: Path) -> None:
    open_digits(page, base_url)
    prediction = pick_heldout(page)
    assert re.fullmatch(r"[0-9]", prediction)
    page.locator(PLOTLY_CHART).first.wait_for(state="visible")
    assert chart_fingerprint(page, 0) is not None, "no heatmap for the held-out digit"
    assert_no_exception(page)
    shot(page, tmp_path, "digits-heldout")


def test_run_blrp_draws_alpha_panels(page: Any, base_url: str, tmp_path: Path) -> None:
    open_digits(page, base_url)
    pick_heldout(page)
    page.locator(PLOTLY_CHART).first.wait_for(state="visible")
    samples = widget(page, "stNumberInput", "Samples").locator("input")
    assert samples.input_value() == "100", "B-LRP samples do not default to 100"
    assert alpha_panels(page) is None, "α panels before 'Run B-LRP' was clicked"

    arm_rerun(page)
    page.get_by_role("button", name="Run B-LRP").click()
    wait_rerun(page)
    page.wait_for_function(f"() => ({ALPHA_PANELS_JS})() !== null", timeout=30_000)
    found = alpha_panels(page)
    assert found is not None
    missing = [f"α = {a}" for a in (5, 25, 50, 75, 95) if f"α = {a}" not in found["titles"]]
    assert not missing, f"B-LRP panels lack {missing}: {found['titles']}"
    assert found["traces"] >= 5, found
    assert found["index"] > 0, "the B-LRP panels are the first chart, not the LRP heatmap"
    assert_no_exception(page)
    shot(page, tmp_path, "digits-blrp")

    # B-LRP is a switch: off, its panels go and the Run button comes back
    arm_rerun(page)
    page.get_by_role("button", name="Turn B-LRP off").click()
    wait_rerun(page)
    page.get_by_role("button", name="Run B-LRP").wait_for(timeout=30_000)
    assert alpha_panels(page) is None, "α panels still drawn after 'Turn B-LRP off'"
    assert_no_exception(page)


def test_deep_link_on_fresh_server_runs_app_navigation(browser: Any, tmp_path: Path) -> None:
    """Opening ``/digits`` first on a just-started server must go through ``app.py``
    (its ``st.navigation`` and ``set_page_config``), not Streamlit's legacy ``pages/``
    mode, which shows file-name links ("app", "digits", …) and skips ``app.py``."""
    with running_server() as server:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        try:
            page = context.new_page()
            open_digits(page, server.url)
            links = page.evaluate("""() => Array.from(document.querySelectorAll(
                '[data-testid="stSidebarNav"] [data-testid="stSidebarNavLink"]'))
                .map(a => a.innerText.replace(/\\s+/g, ' ').trim())""")
            shot(page, tmp_path, "digits-deep-link")
            assert any(t.endswith("Home") for t in links) and "app" not in links, (
                "a deep link to /digits on a fresh server skipped app.py (Streamlit's legacy "
                f"mode for a 'pages/' folder next to the main script); navigation: {links}")
        finally:
            context.close()


def test_downloads_match_the_heatmap_on_screen(page: Any, base_url: str,
                                               tmp_path: Path) -> None:
    """The download buttons make their files when clicked: the relevance .npy is the map
    the LRP heatmap shows (its colour range is ±max|R|), the PNGs decode."""
    import io

    import numpy as np
    from PIL import Image

    from .harness import download

    open_digits(page, base_url)
    pick_heldout(page)
    page.locator(PLOTLY_CHART).first.wait_for(state="visible")
    zmax = page.evaluate("""() => {
      const gd = document.querySelectorAll('[data-testid="stPlotlyChart"]')[0]
                         .querySelector('.js-plotly-plot');
      return gd.data[gd.data.length - 1].zmax;
    }""")
    rel = np.load(io.BytesIO(download(page, "LRP relevance (.npy)", tmp_path)),
                  allow_pickle=False)
    assert np.isfinite(rel).all() and rel.ndim >= 2 and rel.shape[-1] == rel.shape[-2]
    assert np.abs(rel).max() == pytest.approx(zmax, rel=1e-4)
    gxi = np.load(io.BytesIO(download(page, "Gradient×Input (.npy)", tmp_path)),
                  allow_pickle=False)
    assert gxi.shape == rel.shape and not np.array_equal(gxi, rel)
    for name in ("LRP heatmap (PNG)", "Input (PNG)"):
        img = Image.open(io.BytesIO(download(page, name, tmp_path)))
        assert img.format == "PNG" and img.width == img.height >= 32, (name, img.size)
    assert_no_exception(page)
