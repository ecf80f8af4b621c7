"""The Results page (``/results``) in a real browser, on a folder written by the real
``python -m lrp_engine batch`` (12 bundled digits, LeNet, LRP-ε / Gradient×Input / random,
pixel flipping with 8 steps: a few seconds):

- the folder's path is typed into "Results folder": the summary table shows one row per
  method with the mean ± s.e.m. of summary.csv, and the mean curves are drawn;
- the worst item (highest pixel-flipping AUC of LRP-ε) is selected: its heatmaps are drawn
  (input and one panel per method, the maps of its ``.npz``), visible on the screen;
- a path that is not a results folder then gives one error box, no exception.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lrp_engine.batch.results import ResultsFolder
from tests.plotly_arrays import values

from .harness import (
    PLOTLY_CHART,
    REPO_ROOT,
    arm_rerun,
    assert_no_exception,
    error_texts,
    page_exists,
    shot,
    wait_idle,
    wait_rerun,
    widget,
)

pytestmark = pytest.mark.skipif(not page_exists("results.py"), reason="no Results page")

METHODS = ["LRP epsilon", "Gradient×Input", "Random"]
ARGS = ["--input", "mnist", "--limit", "12", "--methods", "epsilon", "gradient_x_input",
        "random", "--metrics", "pf", "--steps", "8", "--quiet"]

#: the st.dataframe whose header holds "method" and "items" (the summary): headers, cells
SUMMARY_JS = """() => {
  for (const df of document.querySelectorAll('[data-testid="stDataFrame"]')) {
    const headers = Array.from(df.querySelectorAll('[role="columnheader"]'))
      .map(h => h.textContent.trim());
    if (!headers.includes('method') || !headers.includes('items')) continue;
    const rows = [];
    for (const td of df.querySelectorAll('[data-testid^="glide-cell-"]')) {
      const m = td.getAttribute('data-testid').match(/^glide-cell-(\\d+)-(\\d+)$/);
      if (!m) continue;
      (rows[+m[2]] = rows[+m[2]] || [])[+m[1]] = td.textContent.trim();
    }
    return {headers: headers, rows: rows};
  }
  return null;
}"""

#: the plotly chart whose first trace is the input image: trace names, the first map's z
#: and the chart's size on screen
MAPS_JS = """() => {
  for (const el of document.querySelectorAll('[data-testid="stPlotlyChart"]')) {
    const gd = el.querySelector('.js-plotly-plot');
    if (!gd || !gd.data || !gd.data.length || gd.data[0].name !== 'input') continue;
    const z = gd.data[1].z;  // a base64 typed array spec, or nested arrays
    const rows = (z && z.bdata) ? {bdata: z.bdata, dtype: z.dtype, shape: String(z.shape)}
      : Array.from(z, r => Array.from(r));
    const box = gd.getBoundingClientRect();
    return {names: gd.data.map(t => String(t.name)), z: rows, width: box.width,
            height: box.height, heatmaps: gd.querySelectorAll('.hm, image').length};
  }
  return null;
}"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("results") / "digits"
    proc = subprocess.run([sys.executable, "-m", "lrp_engine", "batch", *ARGS, "--out",
                           str(out)], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def open_folder(page: Any, base_url: str, path: str) -> None:
    """Open /results, type ``path`` into "Results folder" and wait for the run."""
    page.goto(f"{base_url}/results")
    box = widget(page, "stTextInput", "Results folder")
    box.wait_for(state="visible", timeout=60_000)
    wait_idle(page)
    field = box.locator("input")
    arm_rerun(page)
    field.fill(path)
    field.press("Enter")
    wait_rerun(page)


def test_summary_table_and_the_worst_items_heatmaps(page: Any, base_url: str, folder: Path,
                                                     tmp_path: Path) -> None:
    open_folder(page, base_url, str(folder))
    assert_no_exception(page)
    assert not error_texts(page), error_texts(page)

    # the summary table: one row per method, mean ± s.e.m. as in summary.csv
    page.locator('[data-testid="stDataFrame"]').first.scroll_into_view_if_needed()
    page.wait_for_function(
        f"""() => {{
          const t = ({SUMMARY_JS})();
          return t !== null && t.rows.length === 3
            && t.rows.every(r => r && r.filter(c => c !== undefined).length
                                      === t.headers.length);
        }}""", timeout=30_000)
    table = page.evaluate(SUMMARY_JS)
    rows = [dict(zip(table["headers"], r, strict=True)) for r in table["rows"]]
    assert [r["method"] for r in rows] == METHODS
    assert all(r["items"] == "12" for r in rows), rows
    summary = pd.read_csv(folder / "summary.csv")
    auc = "PF AUC ↓"
    for r, mean, sem in zip(rows, summary["pf_auc_mean"], summary["pf_auc_sem"], strict=True):
        assert r[auc] == f"{mean:.4f} ± {sem:.4f}", (r, mean, sem)

    # the worst item is selected: its heatmaps are drawn, one panel per method
    page.wait_for_function(f"() => ({MAPS_JS})() !== null", timeout=30_000)
    page.locator(PLOTLY_CHART).last.scroll_into_view_if_needed()
    maps = page.evaluate(MAPS_JS)
    assert maps["names"][:4] == ["input", *METHODS], maps["names"]
    assert maps["width"] > 300 and maps["height"] > 100, maps
    worst = ResultsFolder(folder).item(ResultsFolder(folder).ranked("epsilon.pf_auc")[0])
    z = values(maps["z"])
    assert z.shape == worst.maps["epsilon"].shape == (32, 32)
    np.testing.assert_allclose(z, worst.maps["epsilon"], rtol=1e-5, atol=1e-6)
    assert np.abs(z).max() > 0
    assert page.get_by_text(worst.row["name"]).count() >= 1
    shot(page, tmp_path, "results")

    # a folder that is not a results folder: one clear error, no exception
    field = widget(page, "stTextInput", "Results folder").locator("input")
    arm_rerun(page)
    field.fill(str(tmp_path))
    field.press("Enter")
    wait_rerun(page)
    errors = error_texts(page)
    assert len(errors) == 1 and "is not a results folder" in errors[0], errors
    assert_no_exception(page)
    assert page.locator(PLOTLY_CHART).count() == 0
