"""Start/stop the Streamlit app and drive Debian's Chromium: shared by the browser tests
(``tests/e2e``) and the UI latency benchmark (``benchmarks/bench_ui_latency.py``).

Nothing here imports Playwright at module level, so the module loads without it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

#: the repository root (``lrp_explorer/app.py`` lives below it)
REPO_ROOT = Path(__file__).resolve().parents[2]
#: where the page scripts live: ``app_pages/``, not ``pages/``, so that Streamlit's legacy
#: ``pages/`` mode (which would serve a deep link without running app.py) cannot apply
PAGE_DIRS = ("lrp_explorer/app_pages",)
#: Debian's Chromium; Playwright's own browser downloads cannot work here
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
#: the app has finished its script run (every widget action triggers a rerun)
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
EXCEPTION = '[data-testid="stException"]'
PLOTLY_CHART = '[data-testid="stPlotlyChart"]'


def chromium_path() -> str | None:
    """Path of Debian's Chromium, or None when it is not installed."""
    if Path(CHROMIUM).is_file():
        return CHROMIUM
    return shutil.which("chromium")


def page_exists(file: str) -> bool:
    """Whether the page script ``file`` (e.g. "digits.py") exists in the repository."""
    return any((REPO_ROOT / d / file).is_file() for d in PAGE_DIRS)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class StreamlitServer:
    """A running ``streamlit run lrp_explorer/app.py``: its base URL, process and log file."""

    url: str
    proc: subprocess.Popen
    log_path: Path
    _log: IO[bytes] | None = field(default=None, repr=False)

    def log_tail(self, n_chars: int = 4000) -> str:
        """The last ``n_chars`` of the server's combined stdout/stderr."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return text[-n_chars:]


def _health_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.status == 200 and r.read().decode(errors="replace").strip() == "ok"
    except (urllib.error.URLError, OSError, TimeoutError):
        return False


def start_server(root: Path = REPO_ROOT, timeout: float = 60.0) -> StreamlitServer:
    """Start ``streamlit run lrp_explorer/app.py`` in ``root`` on a free port and wait until
    its health endpoint says "ok". Raises RuntimeError (with the server's output) when it does not
    come up within ``timeout`` seconds or exits early; the process is stopped then."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    fd, log_name = tempfile.mkstemp(prefix="streamlit-e2e-", suffix=".log")
    os.close(fd)
    log = open(log_name, "wb")  # closed in stop_server
    cmd = [
        sys.executable, "-m", "streamlit", "run", "lrp_explorer/app.py",
        "--server.headless", "true", "--server.address", "127.0.0.1",
        "--server.port", str(port), "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
    ]
    proc = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    server = StreamlitServer(url, proc, Path(log_name), log)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if _health_ok(url):
                return server
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with code {proc.returncode} before it "
                                   f"was healthy; its output:\n{server.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"streamlit was not healthy at {url}/_stcore/health after "
                                   f"{timeout:.0f} s; its output:\n{server.log_tail()}")
            time.sleep(0.25)
    except BaseException:
        stop_server(server)
        raise


def stop_server(server: StreamlitServer, keep_log: bool = False) -> None:
    """Stop the server by its PID: terminate, wait, then kill if it does not exit; delete
    its log file unless ``keep_log``."""
    proc = server.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    if server._log is not None and not server._log.closed:
        server._log.close()
    if not keep_log:
        server.log_path.unlink(missing_ok=True)


@contextmanager
def running_server(root: Path = REPO_ROOT, timeout: float = 60.0) -> Iterator[StreamlitServer]:
    """``start_server`` as a context manager that always stops the server."""
    server = start_server(root, timeout)
    try:
        yield server
    finally:
        stop_server(server)


def launch_chromium(playwright: Any, executable: str | None = None) -> Any:
    """Headless Debian Chromium through Playwright (``playwright.chromium.launch``)."""
    return playwright.chromium.launch(executable_path=executable or chromium_path() or CHROMIUM,
                                      headless=True, args=CHROMIUM_ARGS)


# --- page helpers (``page`` is a playwright.sync_api.Page) -------------------------------

#: installed before an action: records that the app started a script run after it
_ARM_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  window.__lrpRan = false;
  if (window.__lrpObs) window.__lrpObs.disconnect();
  if (!app) return;
  window.__lrpObs = new MutationObserver(() => {
    if (app.getAttribute('data-test-script-state') === 'running') window.__lrpRan = true;
  });
  window.__lrpObs.observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}"""


def wait_idle(page: Any, timeout_ms: float = 60_000) -> None:
    """Wait until the app's script is not running (``IDLE`` is in the page)."""
    page.wait_for_selector(IDLE, state="attached", timeout=timeout_ms)


def arm_rerun(page: Any) -> None:
    """Start watching for a script run; call before an action, then :func:`wait_rerun`."""
    page.evaluate(_ARM_JS)


def wait_rerun(page: Any, start_ms: float = 3_000, timeout_ms: float = 60_000) -> bool:
    """After :func:`arm_rerun` and an action: wait up to ``start_ms`` for the rerun it
    triggers to start (a very fast run can be missed, hence not an error), then until the
    app is idle. Returns whether the start of a run was seen."""
    try:
        page.wait_for_function("() => window.__lrpRan === true", timeout=start_ms, polling=20)
        seen = True
    except Exception:  # noqa: BLE001 - playwright TimeoutError: the run may be over already
        seen = False
    wait_idle(page, timeout_ms)
    return seen


#: a hash of the data (and layout images) of the idx-th plotly chart, or null when absent
FINGERPRINT_JS = """(idx) => {
  const charts = document.querySelectorAll('[data-testid="stPlotlyChart"]');
  if (idx >= charts.length) return null;
  const gd = charts[idx].querySelector('.js-plotly-plot');
  if (!gd || !gd.data) return null;
  const rep = (k, v) => {
    if (k === 'uid') return undefined;
    if (ArrayBuffer.isView(v)) return Array.from(v);
    return v;
  };
  const s = JSON.stringify([gd.data, (gd.layout || {}).images || null], rep);
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 16777619); }
  return (h >>> 0).toString(16) + ':' + s.length;
}"""


def chart_count(page: Any) -> int:
    """Number of plotly charts on the page."""
    return int(page.locator(PLOTLY_CHART).count())


def chart_fingerprint(page: Any, idx: int = 0) -> str | None:
    """Fingerprint of the ``idx``-th plotly chart's data (None when there is no such chart)."""
    return page.evaluate(FINGERPRINT_JS, idx)


def wait_chart_changed(page: Any, idx: int, before: str | None,
                       timeout_ms: float = 30_000) -> str:
    """Wait until chart ``idx`` exists, is not stale and its fingerprint differs from
    ``before``; returns the new fingerprint."""
    page.wait_for_function(
        f"""([idx, before]) => {{
          const charts = document.querySelectorAll('[data-testid="stPlotlyChart"]');
          if (idx >= charts.length) return false;
          const fp = ({FINGERPRINT_JS})(idx);
          return fp !== null && fp !== before;
        }}""",
        arg=[idx, before], timeout=timeout_ms, polling="raf")
    return str(chart_fingerprint(page, idx))


def exceptions_text(page: Any) -> list[str]:
    """Texts of the Streamlit exception boxes on the page (empty when there are none)."""
    loc = page.locator(EXCEPTION)
    return [loc.nth(i).inner_text() for i in range(loc.count())]


def find_canvas(page: Any, timeout_ms: float = 30_000) -> Any:
    """Locator of the drawable canvas' ``canvas.upper-canvas`` (fabric.js' event layer):
    in the page itself (CSS locators pierce open shadow roots) or inside the component's
    iframe."""
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        loc = page.locator("canvas.upper-canvas")
        if loc.count():
            return loc.first
        for frame in page.frames[1:]:
            try:
                loc = frame.locator("canvas.upper-canvas")
                if loc.count():
                    return loc.first
            except Exception:  # noqa: BLE001 - a frame detached while we looked: try the next
                continue
        if time.monotonic() > deadline:
            raise AssertionError("no canvas.upper-canvas (streamlit-drawable-canvas) found")
        page.wait_for_timeout(100)


#: a clear "7" on a 280×280 canvas: a bar at the top, then a long stroke down-left
SEVEN = [[(60, 55), (220, 55), (215, 70), (130, 245)]]


def draw_strokes(page: Any, canvas: Any, strokes: list[list[tuple[float, float]]],
                 steps: int = 12, size: float = 280.0) -> None:
    """Draw polylines with the mouse; points are in canvas coordinates for a canvas of
    ``size`` px (scaled to the canvas' real on-screen box)."""
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    if box is None:
        raise AssertionError("the drawing canvas is not visible")
    sx, sy = box["width"] / size, box["height"] / size

    def at(p: tuple[float, float]) -> tuple[float, float]:
        return box["x"] + p[0] * sx, box["y"] + p[1] * sy

    for stroke in strokes:
        page.mouse.move(*at(stroke[0]))
        page.mouse.down()
        for p in stroke[1:]:
            page.mouse.move(*at(p), steps=steps)
        page.mouse.up()


def widget(page: Any, testid: str, label: str) -> Any:
    """The widget ``[data-testid=testid]`` whose label is exactly ``label``."""
    lab = page.locator('[data-testid="stWidgetLabel"]').get_by_text(label, exact=True)
    return page.locator(f'[data-testid="{testid}"]').filter(has=lab).first


def choose_radio(page: Any, label: str, option: str) -> None:
    """Click ``option`` of the radio labelled ``label``."""
    widget(page, "stRadio", label).get_by_text(option, exact=True).click()


def open_select(page: Any, label: str, attempts: int = 4) -> None:
    """Open the option list of the selectbox labelled ``label``. Streamlit's combobox
    ignores the first click after focus was in another frame (e.g. the drawing canvas),
    so this clicks its "Open" button until the list is expanded."""
    box = widget(page, "stSelectbox", label)
    combo = box.get_by_role("combobox")
    opener = box.locator('button[aria-haspopup="listbox"]')
    for _ in range(attempts):
        if combo.get_attribute("aria-expanded") == "true":
            break
        (opener.first if opener.count() else combo).click()
        try:
            page.wait_for_function("(el) => el.getAttribute('aria-expanded') === 'true'",
                                   arg=combo.element_handle(), timeout=1_500)
        except Exception:  # noqa: BLE001 - playwright TimeoutError: click again
            continue
    page.get_by_role("option").first.wait_for(state="visible", timeout=10_000)


def choose_select(page: Any, label: str, option: str) -> None:
    """Pick ``option`` in the selectbox labelled ``label``."""
    open_select(page, label)
    opt = page.get_by_role("option", name=option, exact=True)
    if not opt.count():  # a long list draws only the options in view: filter it by typing
        widget(page, "stSelectbox", label).get_by_role("combobox").fill(option)
    opt.click()


def select_value(page: Any, label: str) -> str:
    """The option shown by the selectbox labelled ``label`` (its combobox input's value)."""
    return str(widget(page, "stSelectbox", label).get_by_role("combobox").input_value()).strip()


def metric_value(page: Any, label: str, timeout_ms: float = 30_000) -> str:
    """The value of ``st.metric(label, …)``."""
    m = page.locator('[data-testid="stMetric"]').filter(
        has=page.locator('[data-testid="stMetricLabel"]').get_by_text(label, exact=True)).first
    v = m.locator('[data-testid="stMetricValue"]')
    v.wait_for(state="visible", timeout=timeout_ms)
    return str(v.inner_text()).strip()


def shot(page: Any, directory: Path, name: str) -> Path:
    """Full-page screenshot ``directory/name.png``; returns its path."""
    path = Path(directory) / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def assert_no_exception(page: Any) -> None:
    """No ``st.exception`` box (an uncaught error in a page) on the page."""
    texts = exceptions_text(page)
    assert not texts, "the app shows an exception:\n" + "\n---\n".join(texts)


# --- uploads, alerts and downloads --------------------------------------------------------

ALERT_ERROR = '[data-testid="stAlertContentError"]'


def upload_file(page: Any, label: str, name: str, data: bytes,
                mime: str = "application/octet-stream", start_ms: float = 15_000,
                timeout_ms: float = 180_000) -> None:
    """Choose the file ``name`` (contents ``data``) in the ``st.file_uploader`` labelled
    ``label`` (main area or sidebar) and wait for the script run the upload triggers.
    ``start_ms`` is generous: the file goes to the server before the run starts."""
    box = widget(page, "stFileUploader", label)
    arm_rerun(page)
    box.locator('input[type="file"]').set_input_files(
        {"name": name, "mimeType": mime, "buffer": data})
    wait_rerun(page, start_ms, timeout_ms)


def error_texts(page: Any) -> list[str]:
    """Texts of the ``st.error`` boxes on the page (empty when there are none)."""
    loc = page.locator(ALERT_ERROR)
    return [str(loc.nth(i).inner_text()).strip() for i in range(loc.count())]


def wait_error(page: Any, text: str, timeout_ms: float = 60_000) -> str:
    """Wait until an ``st.error`` box containing ``text`` shows and the app is idle; returns
    the box's text."""
    box = page.locator(ALERT_ERROR).filter(has_text=text).first
    box.wait_for(state="visible", timeout=timeout_ms)
    wait_idle(page, timeout_ms)
    return str(box.inner_text()).strip()


def download(page: Any, button: str, directory: Path, timeout_ms: float = 60_000) -> bytes:
    """Click the ``st.download_button`` labelled ``button``, save the file it downloads
    into ``directory`` under its suggested name and return its bytes."""
    btn = page.locator('[data-testid="stDownloadButton"]').get_by_role("button", name=button)
    with page.expect_download(timeout=timeout_ms) as info:
        btn.click()
    dl = info.value
    path = Path(directory) / dl.suggested_filename
    dl.save_as(str(path))
    return path.read_bytes()


def remove_uploads(page: Any, label: str, timeout_ms: float = 60_000) -> int:
    """Remove every file listed in the ``st.file_uploader`` labelled ``label`` (a
    multiple-file uploader adds each chosen file to those already there), one click and
    script run each; returns how many were removed."""
    chips = widget(page, "stFileUploader", label).locator(
        '[data-testid="stFileChipDeleteBtn"] button')
    n = chips.count()
    for _ in range(n):
        arm_rerun(page)
        chips.first.click()
        wait_rerun(page, timeout_ms=timeout_ms)
    if chips.count():
        raise AssertionError(f"{chips.count()} file(s) still listed in {label!r}")
    return n
