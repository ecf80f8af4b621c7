"""The home page renders, with a sidebar link for every page that exists in
``lrp_explorer/app_pages/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .harness import assert_no_exception, page_exists, shot, wait_idle

#: page file → its title in the navigation
PAGES = {
    "digits.py": "Digits",
    "pixel_flipping.py": "Pixel flipping",
    "results.py": "Results",
    "filters.py": "Filters",
    "image_explorer.py": "Image explorer",
    "mri_inspector.py": "MRI inspector",
}

#: the texts and hrefs of the sidebar navigation's links
NAV_LINKS_JS = """() => Array.from(
  document.querySelectorAll('[data-testid="stSidebarNav"] [data-testid="stSidebarNavLink"]'))
  .map(a => [a.innerText.trim(), a.getAttribute('href') || ''])"""


def test_home_renders_with_navigation(page: Any, base_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page.goto(base_url)
    title = page.locator('[data-testid="stMain"] h1').first
    expect(title).to_contain_text("LRP Explorer", timeout=60_000)
    wait_idle(page)
    assert "LRP Explorer" in page.title()

    present = {f: t for f, t in PAGES.items() if page_exists(f)}
    if present:
        # the navigation arrives with the first script run; until then the sidebar can
        # still show Streamlit's default (file-name) page list
        try:
            page.wait_for_function(
                f"""(titles) => {{
                  const texts = ({NAV_LINKS_JS})().map(l => l[0]);
                  return titles.every(t => texts.some(x => x.endsWith(t)));
                }}""", arg=list(present.values()), timeout=30_000)
        except Exception:  # noqa: BLE001 - playwright TimeoutError: the assertions below say what is missing
            pass
        links = page.evaluate(NAV_LINKS_JS)
        for file, name in present.items():
            hrefs = [href for text, href in links if text.endswith(name)]
            assert hrefs, f"no sidebar link for {name!r} ({file}); links: {links}"
            assert hrefs[0].rstrip("/").endswith(Path(file).stem), (name, hrefs)

    assert_no_exception(page)
    shot(page, tmp_path, "home")
