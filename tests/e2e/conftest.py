"""Browser tests: a Streamlit server for the session, Debian's Chromium through Playwright,
a fresh page per test. Everything here is marked ``browser``.

Without Chromium (or the playwright package) the tests are skipped, unless
``LRP_REQUIRE_BROWSER=1`` (set by CI in ``.ci/run``): then they fail with how to fix it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import (
    REPO_ROOT,
    StreamlitServer,
    chromium_path,
    launch_chromium,
    start_server,
    stop_server,
    wait_idle,
)

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/e2e with ``browser``."""
    for item in items:
        if Path(str(item.path)).resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.browser)


def _unavailable(reason: str) -> None:
    """Fail when CI requires the browser, else skip."""
    if os.environ.get("LRP_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (LRP_REQUIRE_BROWSER=1, so this is an error)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """Path of Debian's Chromium; skips (or fails under LRP_REQUIRE_BROWSER=1) without it."""
    path = chromium_path()
    if path is None:
        _unavailable("Debian's chromium is not installed: apt-get install chromium "
                     "(CI installs it)")
    return str(path)


@pytest.fixture(scope="session")
def sync_playwright_cls() -> Any:
    """``playwright.sync_api.sync_playwright``; skips (or fails) without the package."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright Python package is not installed: "
                     "pip install -r requirements-dev.txt")
    return sync_playwright


@pytest.fixture(scope="session")
def app_server(chromium_executable: str) -> Iterator[StreamlitServer]:
    """``streamlit run lrp_explorer/app.py`` from the repository root on a free port, for
    the session. Depends on the browser check so that a missing browser skips before the
    server starts."""
    try:
        server = start_server(REPO_ROOT, timeout=60)
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture(scope="session")
def base_url(app_server: StreamlitServer) -> str:
    """``http://127.0.0.1:<port>`` of the session's app server."""
    return app_server.url


@pytest.fixture(scope="session")
def browser(sync_playwright_cls: Any, chromium_executable: str) -> Iterator[Any]:
    """One headless Chromium for the session."""
    with sync_playwright_cls() as p:
        b = launch_chromium(p, chromium_executable)
        try:
            yield b
        finally:
            b.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """Keep each phase's report on the item, so fixtures can see whether the test failed."""
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


@pytest.fixture()
def page(browser: Any, app_server: StreamlitServer, tmp_path: Path,
         request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page in a new browser context (1400×1000). When the test fails, a full-page
    ``failure.png`` goes to its ``tmp_path`` and the server's log tail is printed."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    pg = context.new_page()
    try:
        yield pg
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            try:
                pg.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
                print(f"screenshot: {tmp_path / 'failure.png'}")
            except Exception:  # noqa: BLE001 - the page may be gone already
                pass
            print(f"server log (tail):\n{app_server.log_tail()}")
        context.close()


@pytest.fixture()
def idle() -> Any:
    """The ``wait_idle(page)`` helper: wait (≤ 60 s) until the app's script is not running."""
    return wait_idle

