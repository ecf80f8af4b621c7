"""Concurrent load on the Digits page (issue 6): many browser sessions at once against one
``streamlit run lrp_explorer/app.py``, with the figures the issue asks for.

Each session is its own Playwright browser context (one headless Debian Chromium, driven
through ``playwright.async_api`` so that one event loop runs all of them). The sessions open
``/digits`` and switch the input to "Held-out digit" (a few at a time: that is CPU-bound
browser work), then all of them together, until the time is up, repeat three actions:

- **digit**: types its next held-out index into "Held-out digit #" (session ``s`` of ``n``
  uses ``s + n, s + 2n, …``: after its first digit action no other session shows its digit);
- **rule**: steps the "Global γ" slider under epsilon-gamma-box, or switches the Preset;
- **blrp**: clicks "Run B-LRP" (turning B-LRP off first when it is on; it stays on, so
  every later digit and rule action computes B-LRP as well).

Session ``s`` starts its first round at action ``s % 3``, so that all three kinds of
request reach the server together from the first second.

An action counts as *served* when the app ran its script, is idle again and the heatmap it
should change is rendered anew (the LRP heatmap; the α-percentile panels for "blrp").
Its *latency* is measured inside the page, from the triggering input event (the click or
key press the page sees) to the moment the new heatmap is found (50 ms polling); the
wall time around the Playwright call is kept too.

An *error* is an ``stException`` or an error message (``st.error``) on the page, an
action not done within :data:`ACTION_TIMEOUT_S`, a heatmap that is gone, a crashed page or
a session that cannot start; the session then starts over in a fresh context. *Isolation*
is checked after every served action: the page must show the session's own digit index,
"held-out #i" caption, true label and prediction (the bundled LeNet's, computed here), its
own preset and γ, and B-LRP for its own class.

The server's memory is the RSS summed over the streamlit process and its descendants,
read from ``/proc`` every :data:`RSS_INTERVAL_S` by a thread. The CPU seconds of the server
and of the load generator (this process, Playwright, the browsers) are recorded too: on a
small machine the browsers take most of it, which is what the latencies then measure.

Used by ``benchmarks/load_test.py`` (by hand, 120 s) and ``tests/e2e/test_load.py`` (CI,
20 s). Nothing here imports Playwright at module level.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import math
import os
import re
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .harness import (
    CHROMIUM_ARGS,
    FINGERPRINT_JS,
    REPO_ROOT,
    chromium_path,
    start_server,
    stop_server,
    widget,
)

#: the issue's targets
TARGET_P95_S = 3.0
TARGET_PEAK_RSS_GB = 3.0
#: an action (or a session's start) not done in this time is an error; generous, because the
#: browsers and the server share the machine's cores (20 sessions on 2 shared cores: ~30 s)
ACTION_TIMEOUT_S = 90.0
SETUP_TIMEOUT_S = 180.0
#: sessions opened at once: a burst of first visits on the cold server (a class opening the
#: app together), small enough that each opening (CPU-bound, ~5 CPU s of browser work) stays
#: well inside SETUP_TIMEOUT_S on a small shared machine
OPEN_CONCURRENCY = 5
RSS_INTERVAL_S = 0.2
#: the preset whose "Global γ" the rule action steps, and the ones it switches to in between
GAMMA_PRESET = "epsilon-gamma-box"
OTHER_PRESETS = ("epsilon", "zero", "epsilon-plus-flat", "deep-taylor")
#: B-LRP samples the page defaults to (its caption starts with "<n> samples, class <k>")
BLRP_SAMPLES = 100
#: each session's window; the browsers' work (layout, painting the charts) grows with it
VIEWPORT = {"width": 1400, "height": 1000}
#: run in every page before the app: no CSS animations or transitions. The load generator's
#: browsers share the server's cores, and 20 pages animating spinners while they wait would
#: take CPU from the server (a real visitor's browser animates on their own machine)
CALM_JS = """(() => {
  const add = () => {
    const s = document.createElement('style');
    s.textContent = '*, *::before, *::after { animation: none !important; ' +
                    'transition: none !important; }';
    document.head.appendChild(s);
  };
  if (document.head) add(); else document.addEventListener('DOMContentLoaded', add);
})()"""
#: run in every page before the app: counts the websocket's opens, closes and incoming
#: messages (window.__lrpWs). The page's script-state attribute can miss a fast rerun (the
#: frontend may apply "running" and "not running" in one render); a message from the server
#: after an action cannot be missed. Reconnections show in the error details.
WS_WATCH_JS = """(() => {
  const Native = window.WebSocket;
  if (!Native || Native.__lrpWrapped) return;
  const ws = window.__lrpWs = {opens: 0, closes: 0, msgs: 0, last: 0};
  class Watched extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('open', () => { ws.opens++; });
      this.addEventListener('close', () => { ws.closes++; });
      this.addEventListener('message', () => { ws.msgs++; ws.last = performance.now(); });
    }
  }
  Watched.__lrpWrapped = true;
  window.WebSocket = Watched;
})()"""
#: ms without a message from the server after which its answer to an action counts as
#: complete, when the script-state attribute did not show the run
QUIET_MS = 250
KINDS = ("digit", "rule", "blrp")
GB = 1e9


# -- the server's memory ----------------------------------------------------------------------

def _proc_table() -> dict[int, tuple[int, int]]:
    """pid → (parent pid, CPU clock ticks incl. reaped children) of every process in
    ``/proc`` (this kernel has no ``children`` files, so the tree is built from here)."""
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # the process ended meanwhile
            continue
        # "pid (comm) state ppid … utime stime cutime cstime …"; comm may hold spaces
        f = stat[stat.rindex(")") + 2:].split()
        out[int(entry.name)] = (int(f[1]), sum(int(v) for v in f[11:15]))
    return out


def _tree(pid: int, table: dict[int, tuple[int, int]]) -> set[int]:
    """``pid`` and all its descendants in ``table``."""
    tree, todo = {pid}, [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, (pp, _) in table.items() if pp == p and c not in tree]
        tree.update(kids)
        todo.extend(kids)
    return tree


def _rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGESIZE")
    except (OSError, IndexError, ValueError):
        return 0


def process_tree_rss(pid: int) -> int:
    """RSS in bytes of ``pid`` plus all its descendants (shared pages count once per
    process, so this errs on the high side)."""
    return sum(_rss_bytes(p) for p in _tree(pid, _proc_table()))


def cpu_seconds(server_pid: int) -> tuple[float, float]:
    """CPU seconds used so far by the server's process tree and by the rest of this
    process' tree (this driver, Playwright and the browsers: the load generator)."""
    table = _proc_table()
    hz = os.sysconf("SC_CLK_TCK")
    server = sum(table[p][1] for p in _tree(server_pid, table) if p in table)
    everything = sum(table[p][1] for p in _tree(os.getpid(), table) if p in table)
    return server / hz, (everything - server) / hz


class RssSampler:
    """Samples the RSS of a pid and its descendants every ``interval`` s in a daemon thread;
    use as a context manager. ``peak``, ``first`` and ``last`` are in bytes; ``timeline``
    holds (seconds since the start, bytes) of every sample (growth vs. spikes). The process
    tree is looked up every ``tree_every`` s only: scanning all of ``/proc`` each time would
    make the samples late on a busy machine."""

    def __init__(self, pid: int, interval: float = RSS_INTERVAL_S,
                 tree_every: float = 2.0) -> None:
        self.pid, self.interval, self.tree_every = pid, interval, tree_every
        self._pids: set[int] = set()
        self._tree_at = -math.inf
        self.peak = self.first = self.last = 0
        self.samples = 0
        self.timeline: list[tuple[float, int]] = []
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> int:
        """Take one sample now; returns it."""
        if time.monotonic() - self._tree_at >= self.tree_every:
            self._pids, self._tree_at = _tree(self.pid, _proc_table()), time.monotonic()
        rss = sum(_rss_bytes(p) for p in self._pids)
        if rss:
            self.first = self.first or rss
            self.last, self.peak = rss, max(self.peak, rss)
            self.samples += 1
            self.timeline.append((time.monotonic() - self._t0, rss))
        return rss

    def every(self, seconds: float) -> list[tuple[float, float]]:
        """The timeline thinned to one (s, GB) sample per ``seconds`` (the highest in it)."""
        buckets: dict[int, tuple[float, int]] = {}
        for t, rss in self.timeline:
            b = int(t // seconds)
            if b not in buckets or rss > buckets[b][1]:
                buckets[b] = (t, rss)
        return [(round(t, 1), round(rss / GB, 3)) for t, rss in buckets.values()]

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# -- what each digit must show ------------------------------------------------------------------

@dataclass(frozen=True)
class Expected:
    """True labels and the bundled LeNet's predictions of the 1 000 held-out digits."""

    labels: np.ndarray
    predictions: np.ndarray


@functools.lru_cache(maxsize=1)
def expected_digits(model_id: str = "lenet") -> Expected:
    """Labels and predictions of the held-out digits, one digit per forward pass, as the
    page computes them (``mnist_to_tensor`` of one digit, the model in eval mode)."""
    import torch

    from lrp_engine.data import load_bundled_mnist, mnist_to_tensor
    from lrp_engine.models import BUNDLED, load_bundled

    images, labels = load_bundled_mnist("test")
    model = load_bundled(model_id).eval()
    size = BUNDLED[model_id]["input_size"]
    with torch.no_grad():
        preds = [int(model(mnist_to_tensor(images[i:i + 1], size=size)).argmax())
                 for i in range(len(images))]
    return Expected(np.asarray(labels), np.asarray(preds))


# -- in-page JavaScript ---------------------------------------------------------------------------

#: before an action: watch for the script run it triggers (and time it) and time its input
#: event
ARM_JS = """() => {
  window.__lrpRan = false; window.__lrpT0 = null; window.__lrpRun0 = null;
  window.__lrpRun1 = null; window.__lrpMsgs0 = (window.__lrpWs || {msgs: 0}).msgs;
  if (window.__lrpObs) window.__lrpObs.disconnect();
  // the whole body, not one stApp element: one re-rendered in its place must not go unseen
  // a fast run can flip running -> notRunning before the callback runs: the records' old
  // values still show it
  window.__lrpObs = new MutationObserver((records) => {
    const key = 'data-test-script-state';
    const ran = records.some(r => r.oldValue === 'running'
                                  || r.target.getAttribute(key) === 'running');
    if (ran && window.__lrpRun0 === null) window.__lrpRun0 = performance.now();
    window.__lrpRan = window.__lrpRan || ran;
    const app = document.querySelector('[data-testid="stApp"]');
    if (window.__lrpRan && app && app.getAttribute(key) === 'notRunning') {
      window.__lrpRun1 = performance.now();
    }
  });
  window.__lrpObs.observe(document.body, {attributes: true, subtree: true,
                                          attributeOldValue: true,
                                          attributeFilter: ['data-test-script-state']});
  if (!window.__lrpListening) {
    window.__lrpListening = true;
    for (const type of ['keydown', 'click']) {
      window.addEventListener(type, () => { window.__lrpT0 = performance.now(); }, true);
    }
  }
}"""

#: {failed: "exception" | "error message", text} when the page shows one, else null
_FAILED_JS = """() => {
  for (const [kind, sel] of [['exception', '[data-testid="stException"]'],
                             ['error message', '[data-testid="stAlertContentError"]']]) {
    const box = document.querySelector(sel);
    if (box) return {failed: kind, text: box.innerText.trim()};
  }
  return null;
}"""

#: index of the plotly chart with "α = …" panel titles (B-LRP), or -1
_ALPHA_INDEX_JS = """() => {
  const charts = document.querySelectorAll('[data-testid="stPlotlyChart"]');
  for (let i = 0; i < charts.length; i++) {
    const gd = charts[i].querySelector('.js-plotly-plot');
    const notes = (gd && gd.layout && gd.layout.annotations) || [];
    if (notes.some(a => /α\\s*=/.test(String(a.text || '')))) return i;
  }
  return -1;
}"""

#: once a run was seen, the app is idle and the watched chart (index ``pick`` or "alpha") is
#: rendered with data other than ``before``: {ms: input event → now (null when no input
#: event was seen), run: ms the page saw the script running}; {failed, text} at once when the
#: run ended in an exception or an error message (no waiting for a heatmap that will not
#: come); else false
DONE_JS = """([pick, before]) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  const ws = window.__lrpWs || {msgs: 0, last: 0};
  const answered = ws.msgs > window.__lrpMsgs0 && performance.now() - ws.last > """ + str(
    QUIET_MS) + """;
  if (!window.__lrpRan && !answered) return false;
  const failed = (""" + _FAILED_JS + """)();
  if (failed) return failed;
  const idx = pick === 'alpha' ? (""" + _ALPHA_INDEX_JS + """)() : pick;
  if (idx < 0) return false;
  const fp = (""" + FINGERPRINT_JS + """)(idx);
  if (fp === null || fp === before) return false;
  const now = performance.now();
  return {ms: window.__lrpT0 === null ? null : now - window.__lrpT0,
          run: window.__lrpRun0 === null ? null : (window.__lrpRun1 || now) - window.__lrpRun0};
}"""

#: a session is open: the app is idle and shows the LRP heatmap (there is none before a
#: digit): true; {failed, text} as soon as the idle page shows an exception or an error
SETUP_DONE_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  return (""" + _FAILED_JS + """)() || (""" + FINGERPRINT_JS + """)(0) !== null;
}"""

#: what the page shows: the session's inputs and results, read in one round trip
SNAPSHOT_JS = r"""() => {
  const byLabel = (tid, label) => Array.from(document.querySelectorAll(`[data-testid="${tid}"]`))
    .find(w => { const l = w.querySelector('[data-testid="stWidgetLabel"]');
                 return l && l.innerText.trim() === label; });
  const texts = sel => Array.from(document.querySelectorAll(sel)).map(e => e.innerText.trim());
  const inner = (root, sel) => { const e = root && root.querySelector(sel);
                                 return e ? e.innerText.trim() : null; };
  const num = byLabel('stNumberInput', 'Held-out digit #');
  const preset = byLabel('stSelectbox', 'Preset');
  const gamma = byLabel('stSlider', 'Global γ');
  const metric = Array.from(document.querySelectorAll('[data-testid="stMetric"]'))
    .find(m => inner(m, '[data-testid="stMetricLabel"]') === 'Prediction');
  const gd = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
  const t = gd && gd.layout && gd.layout.title;
  const title = t ? String(typeof t === 'string' ? t : (t.text || '')) : null;
  return {
    index: num ? num.querySelector('input').value : null,
    caption: texts('[data-testid="stImageCaption"]').join(' | '),
    prediction: inner(metric, '[data-testid="stMetricValue"]'),
    delta: inner(metric, '[data-testid="stMetricDelta"]'),
    preset: preset ? preset.querySelector('input').value : null,
    gamma: gamma ? gamma.querySelector('input[type="range"]').getAttribute('aria-valuetext')
                 : null,
    title: title === null ? null : title.replace(/<[^>]*>/g, '').trim(),
    blrp: texts('[data-testid="stCaptionContainer"]').find(s => /^\d+ samples, class/.test(s))
          || null,
    exceptions: texts('[data-testid="stException"]'),
    errors: texts('[data-testid="stAlertContentError"]'),
    charts: document.querySelectorAll('[data-testid="stPlotlyChart"]').length,
  };
}"""


# -- results ---------------------------------------------------------------------------------

@dataclass
class Served:
    """One served action: its kind, session, in-page latency, wall time and the time the
    page saw the script running (s; the server's part of the latency, roughly)."""

    kind: str
    session: int
    latency_s: float
    wall_s: float
    run_s: float = float("nan")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank ``q``-th percentile (NaN for no values)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclass
class LoadResult:
    """Everything one load run measured; :meth:`checks` compares it with the targets."""

    sessions: int
    duration_s: float
    url: str = ""
    think_s: float = 0.0  # mean pause of a session between its actions
    served: list[Served] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    isolation: list[str] = field(default_factory=list)
    peak_rss: int = 0
    start_rss: int = 0
    end_rss: int = 0
    rss_samples: int = 0
    rss_timeline: list[tuple[float, float]] = field(default_factory=list)  # (s, GB) peaks
    setup_s: float = float("nan")
    server_tracebacks: int = 0
    server_cpu_s: float = float("nan")  # during the load phase
    client_cpu_s: float = float("nan")  # browsers + driver, during the load phase
    loadavg: float = float("nan")  # the machine's 1-min load average at the end

    def per_session(self) -> list[int]:
        """Served actions of each session."""
        counts = [0] * self.sessions
        for s in self.served:
            counts[s.session] += 1
        return counts

    def latencies(self, kind: str | None = None, what: str = "latency_s") -> list[float]:
        """In-page latencies in s (or ``what``: "wall_s", "run_s") of one kind of action or
        all; unknown values left out."""
        values = (getattr(s, what) for s in self.served if kind is None or s.kind == kind)
        return [v for v in values if v == v]

    def median(self) -> float:
        lat = self.latencies()
        return statistics.median(lat) if lat else float("nan")

    def p95(self) -> float:
        return percentile(self.latencies(), 95)

    def checks(self, latency: bool = True) -> dict[str, bool]:
        """Target → met? ``latency=False`` leaves out p95 (CI, where the machine is shared)."""
        out = {
            "errors == 0": not self.errors,
            "isolation held": not self.isolation,
            f"peak RSS <= {TARGET_PEAK_RSS_GB:g} GB": 0 < self.peak_rss <= TARGET_PEAK_RSS_GB * GB,
            "every session served": min(self.per_session(), default=0) >= 1,
        }
        if latency:
            out[f"p95 <= {TARGET_P95_S:g} s"] = self.p95() <= TARGET_P95_S
        return out

    def passed(self, latency: bool = True) -> bool:
        return all(self.checks(latency).values())

    def as_dict(self) -> dict[str, Any]:
        """The figures as plain JSON-able values (NaN, e.g. no action of a kind: None)."""
        per = self.per_session()
        return _no_nan({
            "sessions": self.sessions, "duration_s": self.duration_s, "url": self.url,
            "think_s": self.think_s,
            "cpu_cores": os.cpu_count(), "setup_s": round(self.setup_s, 2),
            "served": len(self.served), "served_per_session": per,
            "errors": len(self.errors), "error_details": self.errors,
            "isolation_violations": len(self.isolation), "isolation_details": self.isolation,
            "latency_median_s": self.median(), "latency_p95_s": self.p95(),
            "by_kind": {k: {"n": len(self.latencies(k)),
                            "median_s": _median(self.latencies(k)),
                            "p95_s": percentile(self.latencies(k), 95),
                            "wall_median_s": _median(self.latencies(k, "wall_s")),
                            "wall_p95_s": percentile(self.latencies(k, "wall_s"), 95),
                            "script_run_median_s": _median(self.latencies(k, "run_s"))}
                        for k in KINDS},
            "server_cpu_s": self.server_cpu_s, "client_cpu_s": self.client_cpu_s,
            "loadavg_1min": self.loadavg,
            "peak_rss_gb": self.peak_rss / GB, "start_rss_gb": self.start_rss / GB,
            "end_rss_gb": self.end_rss / GB, "rss_samples": self.rss_samples,
            "rss_timeline_s_gb": self.rss_timeline,
            "server_tracebacks": self.server_tracebacks,
            "targets": {"p95_s": TARGET_P95_S, "peak_rss_gb": TARGET_PEAK_RSS_GB},
            "checks": self.checks(),
        })

    def table(self, latency_target: bool = True) -> str:
        """A short table of the figures and PASS/FAIL against the targets."""
        per = self.per_session()

        def verdict(ok: bool) -> str:
            return "PASS" if ok else "FAIL"

        rows = [
            ("requests served", f"{len(self.served)}", "", ""),
            ("  per session min/med/max",
             f"{min(per, default=0)}/{_median(per):.0f}/{max(per, default=0)}", ">= 1",
             verdict(min(per, default=0) >= 1)),
            ("errors", f"{len(self.errors)}", "0", verdict(not self.errors)),
            ("isolation violations", f"{len(self.isolation)}", "0", verdict(not self.isolation)),
            ("latency median (s)", f"{self.median():.2f}", "", ""),
            ("latency p95 (s)", f"{self.p95():.2f}", f"<= {TARGET_P95_S:g}",
             verdict(self.p95() <= TARGET_P95_S) if latency_target else "(not checked)"),
            ("peak server RSS (GB)", f"{self.peak_rss / GB:.2f}", f"<= {TARGET_PEAK_RSS_GB:g}",
             verdict(0 < self.peak_rss <= TARGET_PEAK_RSS_GB * GB)),
            ("  RSS start -> end (GB)", f"{self.start_rss / GB:.2f} -> {self.end_rss / GB:.2f}",
             "", ""),
            ("server tracebacks in log", f"{self.server_tracebacks}", "", ""),
            ("CPU s, load: server/browsers",
             f"{self.server_cpu_s:.0f} / {self.client_cpu_s:.0f}", "", ""),
        ]
        pace = (f"a pause of ~{self.think_s:g} s between a session's actions"
                if self.think_s > 0 else "no pause between a session's actions")
        head = (f"{self.sessions} sessions x {self.duration_s:g} s on {self.url}, {pace} "
                f"({os.cpu_count()} CPU cores, load average {self.loadavg:.1f} at the end; "
                f"sessions ready after {self.setup_s:.1f} s)")
        lines = [head, f"{'figure':<28} {'value':>14} {'target':>8}  verdict"]
        lines += [f"{a:<28} {b:>14} {c:>8}  {d}".rstrip() for a, b, c, d in rows]
        lines.append(f"\n{'by action (s)':<14} {'n':>5} {'median':>7} {'p95':>7} "
                     f"{'wall med':>9} {'wall p95':>9} {'run med':>8}")
        for k in KINDS:
            lat, wall = self.latencies(k), self.latencies(k, "wall_s")
            lines.append(f"{k:<14} {len(lat):>5} {_median(lat):>7.2f} {percentile(lat, 95):>7.2f}"
                         f" {_median(wall):>9.2f} {percentile(wall, 95):>9.2f}"
                         f" {_median(self.latencies(k, 'run_s')):>8.2f}")
        lines.append("(median/p95: input event -> new heatmap drawn, in the page; wall: around "
                     "the Playwright call; run: the script running, as the page saw it)")
        for title, items in (("errors", self.errors), ("isolation", self.isolation)):
            if items:
                lines.append(f"\nfirst {min(5, len(items))} of {len(items)} {title}:")
                lines += [f"  {e}" for e in items[:5]]
        return "\n".join(lines)


def _no_nan(obj: Any) -> Any:
    """``obj`` with every NaN float (in dicts, lists, tuples) replaced by None."""
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_no_nan(v) for v in obj]
    return obj


def _median(values: list[float] | list[int]) -> float:
    return float(statistics.median(values)) if values else float("nan")


# -- one browser session --------------------------------------------------------------------------

class ActionError(Exception):
    """An action that failed: ``kind`` is exception, error message, timeout, missing heatmap
    or crash."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


class Session:
    """One visitor of the Digits page in its own browser context: session ``sid`` of
    ``n_sessions``, recording into ``result``. It remembers what it typed and chose
    (digit index, preset, γ, B-LRP on) so that it can check what its page shows."""

    def __init__(self, sid: int, n_sessions: int, browser: Any, url: str,
                 expected: Expected, result: LoadResult, think_s: float = 0.0) -> None:
        self.sid, self.n, self.browser, self.url = sid, n_sessions, browser, url
        self.expected, self.result = expected, result
        self.think_s = think_s
        # pauses uniform in [0.5, 1.5] x think_s, reproducible per session, so that the
        # sessions do not fall into step
        self._pauses = np.random.default_rng(1000 + sid)
        self.context: Any = None
        self.page: Any = None
        self.crashed = False
        self.step = 0  # actions of each kind so far: picks the next digit and rule
        self.index, self.preset, self.gamma, self.blrp = 0, "epsilon", None, False

    # -- start / stop -------------------------------------------------------------------

    async def open(self) -> None:
        """A fresh context on ``/digits`` with a held-out digit explained. Raises
        RuntimeError naming the step that failed and what the page showed then."""
        await self.close()
        self.context = await self.browser.new_context(viewport=VIEWPORT,
                                                      reduced_motion="reduce")
        await self.context.add_init_script(CALM_JS)
        await self.context.add_init_script(WS_WATCH_JS)
        self.context.set_default_timeout(ACTION_TIMEOUT_S * 1000)
        self.page = await self.context.new_page()
        self.crashed = False
        self.page.on("crash", self._on_crash)
        t0, step = time.monotonic(), "loading /digits"
        try:
            await self.page.goto(f"{self.url}/digits", timeout=SETUP_TIMEOUT_S * 1000)
            step = "switching to 'Held-out digit'"
            await self._choose_heldout(t0 + SETUP_TIMEOUT_S)
            step = "waiting for the first heatmap"
            left = max(1.0, t0 + SETUP_TIMEOUT_S - time.monotonic())
            done = await (await self.page.wait_for_function(
                SETUP_DONE_JS, polling=100, timeout=left * 1000)).json_value()
            if isinstance(done, dict):
                raise RuntimeError(f"{done['failed']}: {done['text'][:300]}")
        except Exception as e:  # say where it stuck
            raise RuntimeError(f"{step} ({time.monotonic() - t0:.0f} s): {type(e).__name__}: "
                               f"{(str(e).splitlines() or [''])[0][:160]}; page: "
                               f"{await self._describe()}") from e
        self.index, self.preset, self.gamma, self.blrp = 0, "epsilon", None, False

    async def _choose_heldout(self, deadline: float) -> None:
        """Click "Held-out digit" in the Input radio until it is checked (a click while the
        page is still starting can be lost)."""
        radio = widget(self.page, "stRadio", "Input")
        option = radio.get_by_role("radio", name="Held-out digit")
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("'Held-out digit' did not stay checked")
            await radio.get_by_text("Held-out digit", exact=True).click(timeout=left * 1000)
            try:
                await self.page.wait_for_function("(el) => el.checked", polling=100,
                                                  arg=await option.element_handle(),
                                                  timeout=min(10.0, left) * 1000)
                return
            except Exception:  # noqa: BLE001 - playwright's TimeoutError: click again
                continue

    async def _describe(self) -> str:
        """A short account of the page for error messages (never raises)."""
        try:
            snap = await asyncio.wait_for(self.page.evaluate(SNAPSHOT_JS), 10)
            state, ran, ws, since = await asyncio.wait_for(self.page.evaluate(
                "() => [(document.querySelector('[data-testid=\"stApp\"]') || {})"
                ".getAttribute?.('data-test-script-state') || null, !!window.__lrpRan, "
                "window.__lrpWs || {}, (window.__lrpWs || {}).msgs - window.__lrpMsgs0]"), 10)
        except Exception as e:  # noqa: BLE001 - the page is not answering
            return f"not answering ({type(e).__name__})"
        return (f"script {state} (a run seen: {ran}; {since} messages from the server since "
                f"the action; websocket opened {ws.get('opens')}x, closed "
                f"{ws.get('closes')}x), {snap['charts']} charts, caption "
                f"{snap['caption']!r}, exceptions {len(snap['exceptions'])}, crashed "
                f"{self.crashed}")

    def _on_crash(self, _page: Any) -> None:
        self.crashed = True

    async def close(self) -> None:
        if self.context is not None:
            try:
                await self.context.close()
            except Exception:  # noqa: BLE001 - the browser may be gone already
                pass
            self.context = self.page = None

    # -- actions --------------------------------------------------------------------------

    def next_index(self) -> int:
        """The session's next held-out digit: ``sid + n·k`` (mod 1 000), never the current."""
        i = (self.sid + self.n * (self.step + 1)) % len(self.expected.labels)
        return i if i != self.index else (i + 1) % len(self.expected.labels)

    async def pick_digit(self) -> None:
        self.index = self.next_index()
        box = widget(self.page, "stNumberInput", "Held-out digit #").locator("input")
        await box.fill(str(self.index))
        await box.press("Enter")

    async def change_rule(self) -> None:
        """Step γ up under :data:`GAMMA_PRESET`; every fourth time (and whenever another
        preset is on) switch the preset instead."""
        if self.preset == GAMMA_PRESET and self.step % 4 != 3:
            thumb = widget(self.page, "stSlider", "Global γ").locator('input[type="range"]')
            now = await thumb.get_attribute("aria-valuetext")
            self.gamma = f"{float(now or 'nan') + 0.005:.3f}"
            await thumb.focus()
            await self.page.keyboard.press("ArrowRight")
            return
        target = (GAMMA_PRESET if self.preset != GAMMA_PRESET
                  else OTHER_PRESETS[(self.sid + self.step) % len(OTHER_PRESETS)])
        await self._choose_preset(target)
        self.preset, self.gamma = target, None  # γ starts at the preset's value

    async def _choose_preset(self, option: str) -> None:
        """Open the Preset selectbox (click again while it stays closed) and pick ``option``."""
        box = widget(self.page, "stSelectbox", "Preset")
        combo = box.get_by_role("combobox")
        for _ in range(5):
            if await combo.get_attribute("aria-expanded") == "true":
                break
            await combo.click()
            try:
                await self.page.wait_for_function(
                    "(el) => el.getAttribute('aria-expanded') === 'true'",
                    arg=await combo.element_handle(), timeout=5_000)
            except Exception:  # noqa: BLE001 - playwright's TimeoutError: click again
                continue
        await self.page.get_by_role("option", name=option, exact=True).click()

    async def _press(self, name: str) -> None:
        """Press a button with the keyboard (focus, Enter): a mouse click goes to where
        the button was, and on a loaded machine the plotly charts above it may still move
        it (a click then lands on nothing and the app never hears of it)."""
        button = self.page.get_by_role("button", name=name)
        await button.focus()
        await self.page.keyboard.press("Enter")

    async def run_blrp(self) -> None:
        """Press "Run B-LRP"; B-LRP is a switch, so when it is on already it is turned off
        first (the action then draws the α panels anew)."""
        if self.blrp:
            await self._press("Turn B-LRP off")
            await self.page.get_by_role("button", name="Run B-LRP").wait_for(
                timeout=ACTION_TIMEOUT_S * 1000)
        await self._press("Run B-LRP")
        self.blrp = True

    # -- timing and checks -------------------------------------------------------------------

    async def _wait_done(self, pick: int | str, before: str | None, timeout_s: float
                         ) -> dict[str, float | None]:
        """Wait for :data:`DONE_JS`; returns its {ms, run}."""
        handle = await self.page.wait_for_function(DONE_JS, arg=[pick, before], polling=50,
                                                   timeout=timeout_s * 1000)
        return dict(await handle.json_value())

    async def _act_and_wait(self, action: Callable[[], Any], pick: int | str,
                            before: str | None) -> dict[str, float | None]:
        await action()
        return await self._wait_done(pick, before, ACTION_TIMEOUT_S)

    async def act(self, kind: str) -> None:
        """Do one action of ``kind``, time it and check what the page shows; records the
        result and raises :class:`ActionError` when it failed."""
        action: Callable[[], Any] = {"digit": self.pick_digit, "rule": self.change_rule,
                                     "blrp": self.run_blrp}[kind]
        pick = "alpha" if kind == "blrp" else 0
        before = None if kind == "blrp" else await self.page.evaluate(FINGERPRINT_JS, 0)
        await self.page.evaluate(ARM_JS)
        t0 = time.perf_counter()
        try:
            done = await asyncio.wait_for(self._act_and_wait(action, pick, before),
                                          ACTION_TIMEOUT_S)
        except Exception as e:  # playwright's errors and TimeoutError alike
            raise await self._failure(kind, e) from e
        wall = time.perf_counter() - t0
        if done.get("failed"):
            raise ActionError(done["failed"], f"after {kind}: {done.get('text', '')[:300]}")
        snap = await self.page.evaluate(SNAPSHOT_JS)
        for failed, texts in (("exception", snap["exceptions"]),
                              ("error message", snap["errors"])):
            if texts:
                raise ActionError(failed, f"after {kind}: {texts[0][:300]}")
        problems = self.mismatches(snap)
        if problems:
            self.result.isolation.append(f"session {self.sid} after {kind}: "
                                         + "; ".join(problems))
            return
        self.gamma = snap["gamma"] if self.preset == GAMMA_PRESET else None
        ms, run = done.get("ms"), done.get("run")
        self.result.served.append(Served(kind, self.sid, wall if ms is None else ms / 1000,
                                         wall, float("nan") if run is None else run / 1000))

    async def _failure(self, kind: str, e: BaseException) -> ActionError:
        """Classify a failed action: crash, exception, error message, missing heatmap or
        timeout."""
        first_line = (str(e).splitlines() or [""])[0][:200]
        detail = f"after {kind}: {type(e).__name__}: {first_line}"
        if self.crashed:
            return ActionError("crash", detail)
        try:
            snap = await asyncio.wait_for(self.page.evaluate(SNAPSHOT_JS), 10)
        except Exception:  # noqa: BLE001 - the page is not answering
            return ActionError("timeout", detail + " (page not answering)")
        for failed, texts in (("exception", snap["exceptions"]),
                              ("error message", snap["errors"])):
            if texts:
                return ActionError(failed, f"{detail}; page shows: {texts[0][:300]}")
        if not snap["charts"]:
            return ActionError("missing heatmap", detail)
        return ActionError("timeout", f"{detail}; page: {await self._describe()}")

    def mismatches(self, snap: dict[str, Any]) -> list[str]:
        """What the page shows that is not this session's digit, rules or results."""
        label = int(self.expected.labels[self.index])
        pred = int(self.expected.predictions[self.index])
        want = {
            "index": str(self.index),
            "delta": f"true class {label}",
            "prediction": str(pred),
            "preset": self.preset,
        }
        out = [f"{k} {snap.get(k)!r} != {v!r}" for k, v in want.items() if snap.get(k) != v]
        titles = {f"LRP ({self.preset}{e}) for class {pred}" for e in ("", " (edited)")}
        if snap.get("title") not in titles:  # a γ step makes the preset "(edited)"
            out.append(f"heatmap title {snap.get('title')!r} is not one of {sorted(titles)}")
        if f"(held-out #{self.index})" not in (snap.get("caption") or ""):
            out.append(f"caption {snap.get('caption')!r} lacks 'held-out #{self.index}'")
        if self.gamma is not None and snap.get("gamma") != self.gamma:
            out.append(f"gamma {snap.get('gamma')!r} != {self.gamma!r}")
        blrp_head = f"{BLRP_SAMPLES} samples, class {pred};"
        if self.blrp and not (snap.get("blrp") or "").startswith(blrp_head):
            out.append(f"B-LRP caption {snap.get('blrp')!r} does not start {blrp_head!r}")
        return out

    # -- the loop ----------------------------------------------------------------------------------

    async def run(self, deadline: float) -> None:
        """Repeat digit → rule → B-LRP until ``deadline`` (``time.monotonic``), the first
        round starting at kind ``sid % 3`` so that all three kinds of request arrive
        together from the start; after an error, record it and start over in a fresh
        context."""
        first = self.sid % len(KINDS)
        while time.monotonic() < deadline:
            for kind in KINDS[first:]:
                if time.monotonic() >= deadline:
                    break
                try:
                    await self.act(kind)
                except ActionError as e:
                    self.result.errors.append(f"session {self.sid}: {e}")
                    if not await self._reopen(deadline):
                        return
                    break
                await self.think(deadline)
            self.step, first = self.step + 1, 0

    async def think(self, deadline: float) -> None:
        """The visitor's pause before the next action (looking at the heatmap, reaching for
        the next control): ``think_s`` x uniform(0.5, 1.5); none when ``think_s`` is 0."""
        if self.think_s > 0:
            pause = self.think_s * float(self._pauses.uniform(0.5, 1.5))
            await asyncio.sleep(max(0.0, min(pause, deadline - time.monotonic())))

    async def _reopen(self, deadline: float) -> bool:
        """Start over after an error; False (recorded) when even that fails or time is up."""
        if time.monotonic() >= deadline:
            return False
        try:
            await self.open()
            return True
        except Exception as e:  # noqa: BLE001
            self.result.errors.append(f"session {self.sid}: restart failed: "
                                      f"{type(e).__name__}: {str(e)[:200]}")
            return False


# -- the whole run ------------------------------------------------------------------------------

async def _open_all(sessions: list[Session], result: LoadResult) -> list[Session]:
    """Open the sessions, :data:`OPEN_CONCURRENCY` at a time; those that fail to start are
    errors. Returns the rest."""
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def open_one(s: Session) -> None:
        async with gate:
            await s.open()

    outcomes = await asyncio.gather(*(open_one(s) for s in sessions), return_exceptions=True)
    ready = []
    for s, out in zip(sessions, outcomes, strict=True):
        if isinstance(out, BaseException):
            result.errors.append(f"session {s.sid}: start failed: "
                                 f"{type(out).__name__}: {str(out)[:200]}")
        else:
            ready.append(s)
    return ready


async def drive(url: str, n_sessions: int, duration_s: float, result: LoadResult,
                server_pid: int, chromium: str | None = None,
                log: Callable[[str], None] = print, think_s: float = 0.0) -> None:
    """Open ``n_sessions`` sessions on ``url`` in one headless Chromium, then let all of them
    act for ``duration_s`` seconds; fills ``result`` (the CPU figures: of the load phase)."""
    from playwright.async_api import async_playwright

    expected = expected_digits()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium or chromium_path(),
                                          headless=True, args=CHROMIUM_ARGS)
        try:
            sessions = [Session(i, n_sessions, browser, url, expected, result, think_s)
                        for i in range(n_sessions)]
            t0, cpu0 = time.monotonic(), cpu_seconds(server_pid)
            ready = await _open_all(sessions, result)
            result.setup_s = time.monotonic() - t0
            cpu1 = cpu_seconds(server_pid)
            log(f"{len(ready)}/{n_sessions} sessions ready after {result.setup_s:.1f} s "
                f"(CPU s: server {cpu1[0] - cpu0[0]:.0f}, browsers {cpu1[1] - cpu0[1]:.0f}); "
                f"load for {duration_s:g} s")
            cpu0 = cpu_seconds(server_pid)
            deadline = time.monotonic() + duration_s
            await asyncio.gather(*(s.run(deadline) for s in ready))
            cpu1 = cpu_seconds(server_pid)
            result.server_cpu_s, result.client_cpu_s = (b - a for a, b in zip(cpu0, cpu1,
                                                                               strict=True))
            result.loadavg = os.getloadavg()[0]
            await asyncio.gather(*(s.close() for s in sessions))
        finally:
            await browser.close()


def run_async(coro: Any) -> Any:
    """``asyncio.run(coro)`` in a thread of its own: the calling thread may already run an
    event loop (Playwright's sync API does, e.g. the browser tests' session fixtures)."""
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="load") as pool:
        return pool.submit(asyncio.run, coro).result()


def count_tracebacks(log_text: str) -> int:
    """How many Python tracebacks the server printed."""
    return len(re.findall(r"^Traceback \(most recent call last\)", log_text, re.MULTILINE))


def run_load_test(n_sessions: int = 20, duration_s: float = 120.0, chromium: str | None = None,
                  log: Callable[[str], None] = print, think_s: float = 0.0) -> LoadResult:
    """Start a fresh ``streamlit run lrp_explorer/app.py`` on loopback, measure its memory while
    ``n_sessions`` browser sessions load its Digits page for ``duration_s`` seconds, stop
    it; returns the figures. ``think_s``: each session's mean pause between actions (0: the
    next action as soon as the last is drawn). The server's log is kept (and its path
    logged) on errors."""
    expected_digits()  # before the clock starts: torch import and 1 000 predictions
    server = start_server(REPO_ROOT, timeout=90)
    result = LoadResult(n_sessions, duration_s, server.url, think_s)
    keep_log = False
    try:
        with RssSampler(server.proc.pid) as rss:
            run_async(drive(server.url, n_sessions, duration_s, result, server.proc.pid,
                            chromium, log, think_s))
            rss.sample()
        result.peak_rss, result.start_rss, result.end_rss = rss.peak, rss.first, rss.last
        result.rss_samples, result.rss_timeline = rss.samples, rss.every(5.0)
        result.server_tracebacks = count_tracebacks(server.log_tail(10**8))
        keep_log = bool(result.errors or result.server_tracebacks)
        if keep_log:
            log(f"server log kept: {server.log_path}")
    finally:
        stop_server(server, keep_log=keep_log)
    return result
