"""Screenshots for the README: the home page, the Digits page with a drawn "7", its B-LRP.

Starts the app on a free loopback port, drives Debian's Chromium with Playwright (the same
harness as the browser tests) and writes PNGs to ``docs/``.

    .venv/bin/python scripts/take_screenshots.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.e2e.harness import launch_chromium, running_server, wait_idle  # noqa: E402
from tests.e2e.test_digits_browser import draw_seven  # noqa: E402

OUT = ROOT / "docs"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    with running_server(ROOT) as server, sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1100}).new_page()
            page.goto(server.url)
            page.locator('[data-testid="stMain"] h1').first.wait_for(timeout=60_000)
            wait_idle(page)
            page.screenshot(path=str(OUT / "home.png"))
            page.goto(f"{server.url}/digits")
            wait_idle(page)
            draw_seven(page)
            wait_idle(page)
            page.screenshot(path=str(OUT / "digits.png"))
            page.get_by_role("button", name="Run B-LRP").click()
            page.wait_for_timeout(500)
            wait_idle(page)
            page.get_by_text("B-LRP: how certain").scroll_into_view_if_needed()
            page.screenshot(path=str(OUT / "blrp.png"))
        finally:
            browser.close()
    print(f"wrote home.png, digits.png and blrp.png in {OUT}")


if __name__ == "__main__":
    main()
