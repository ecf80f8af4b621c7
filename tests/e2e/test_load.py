"""The concurrent-load test of issue 6, CI version: 20 browser sessions on the Digits page
for 20 s against a server of its own (so that its memory is this test's alone).

Asserts no error (exception box, error message, timeout, missing heatmap, crashed page,
a session that cannot start), isolation between the sessions (each page shows its own
digit, label, prediction, rules and B-LRP), peak server RSS ≤ 3 GB and at least one served
action per session. The latency (target p95 ≤
3 s) is printed, not asserted: the CI machine is shared, and the browsers run on it too.
See ``tests/e2e/load.py`` for what is measured, ``benchmarks/load_test.py`` for the 120-s
run by hand. ``LRP_LOAD_SESSIONS`` / ``LRP_LOAD_SECONDS`` override 20 / 20.

Marked ``load`` (and ``browser``); ``-m "not load"`` leaves it out. On a 2-core machine it
takes about 2.5 min, most of it opening the 20 sessions: each costs its browser ~5–7 CPU s
(the Streamlit frontend and the page's first plotly charts), and the browsers share the
cores with the server.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .harness import page_exists
from .load import TARGET_P95_S, run_load_test

pytestmark = [
    pytest.mark.load,
    pytest.mark.skipif(not page_exists("digits.py"),
                       reason="the Digits page (lrp_explorer/app_pages/digits.py) "
                       "does not exist yet"),
]

SESSIONS = int(os.environ.get("LRP_LOAD_SESSIONS", "20"))
SECONDS = float(os.environ.get("LRP_LOAD_SECONDS", "20"))


@pytest.mark.usefixtures("sync_playwright_cls")  # skips (or fails in CI) without playwright
def test_load_20_sessions_digits_page(chromium_executable: str, tmp_path: Path) -> None:
    """20 concurrent sessions: no error, isolation, memory ≤ 3 GB, each served (p95 shown)."""
    print(f"\n[load] {SESSIONS} browser sessions x {SECONDS:g} s on the Digits page")
    result = run_load_test(SESSIONS, SECONDS, chromium_executable,
                           log=lambda s: print(f"[load] {s}", flush=True))
    figures = json.dumps(result.as_dict(), indent=2, allow_nan=False)
    (tmp_path / "load.json").write_text(figures + "\n")
    table = result.table(latency_target=False)
    print(f"{table}\n[load] p95 {result.p95():.2f} s (target {TARGET_P95_S:g} s): printed, "
          f"not asserted; figures in {tmp_path / 'load.json'}")
    missed = [name for name, ok in result.checks(latency=False).items() if not ok]
    assert not missed, f"load test: {', '.join(missed)} NOT met\n{table}"
