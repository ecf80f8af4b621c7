"""Two commits' benchmarks side by side: is the newer one slower by more than noise?

Issue 15 asks that the reshape (the app moved into ``lrp_explorer``, the assets into
``lrp_engine/assets``) makes nothing slower. Figures from separate runs of the benchmarks on
this shared, noisy machine (2 cores) cannot show that, so this script measures both commits
in one run, interleaved:

1. each commit is checked out as a detached git worktree in a temporary folder
   (``git worktree add --detach``; removed at the end);
2. one persistent child process per commit (this venv's Python, with its working folder and
   ``sys.path[0]`` at that worktree, so that it imports *that* commit's ``lrp_engine``, app
   and benchmarks; torch pinned to ``--threads`` threads) builds every workload below and
   calls each once as a warm-up;
3. the parent then asks, round by round and workload by workload, one child and then the
   other to run the workload once (the order of the two alternates from round to round) and
   collects the seconds each reply carries. Both commits thus see the same load.

The workloads are what the benchmarks measure, with their set-up: ``bench_explain`` (LeNet
batch 1 and 100, random-weight VGG-16 batch 1: Gradient×Input, LRP-ε, ε-γ-box),
``bench_blrp`` (B-LRP on the bundled LeNet, one digit, 100 samples, and its floor: one
batched Gradient×Input over 100 copies with dropout on), ``bench_models`` (EfficientNet-Lite0
on the bundled cat with its four methods, VGG-16 B-LRP with 32 samples, and torchvision's
five families with random weights at batch 1: Gradient×Input, ε, ε-γ-box) and
``bench_ui_latency`` (the Digits page through the app's entry point, in Streamlit's AppTest
rather than a browser: a preset switch served from the cache, a γ step that computes a new
explanation, and "Run B-LRP" on a digit not seen before). The benchmarks' own helpers
(``make``/``runner``, ``floor``, ``_bounds``, ``CAT``) are imported from each worktree; the
rest of their set-up is repeated here. Left out: VGG-16 at batch 8, the torchvision families
at batch 8, zennit and the naive loops (the same code in both commits, or too slow for the
budget). ``--quick`` runs fewer rounds, only resnet50 and vit_b_16 of the families and no
VGG-16 B-LRP: a smoke test, not figures to quote.

The table gives, per workload, the median time of each commit, after ÷ before and a
verdict. Every round gives one paired ratio (after ÷ before, the two calls back to back);
after ÷ before is the median of those ratios (a burst of load in one round slows both calls
of that round, so it cancels in the pair, whereas it can move one commit's median alone).
The run's noise for the workload is the interquartile range of the ratios (the spread of
the middle half of the rounds), at least ``--floor`` (2 %). The verdict is "same" when
after ÷ before is within that noise of 1, else "faster" or "SLOWER". ``--before X --after X``
(one commit against itself) shows how often noise alone reads as a difference.

    python benchmarks/compare_commits.py --before 98f8280               # ≈ 7 min on 2 idle cores
    python benchmarks/compare_commits.py --before 98f8280 --quick       # ≈ 2–3 min
    python benchmarks/compare_commits.py --before 98f8280 --after HEAD --json out.json
    python benchmarks/compare_commits.py --before HEAD --after HEAD --quick  # noise check
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]

Fn = Callable[[], object]
#: a workload in the child: the timed call and an optional untimed preparation before it
Prepared = tuple[Fn, Fn | None]


@dataclass(frozen=True)
class Workload:
    """One timed call; ``full``/``quick``: rounds in the default and the --quick run."""

    name: str
    bench: str
    full: int
    quick: int


_EXPLAIN_NAMES = {"gradient_x_input": "G×I", "epsilon": "ε", "epsilon-gamma-box": "ε-γ-box"}
_TV_FAMILIES = ("resnet50", "densenet121", "efficientnet_b0", "convnext_tiny", "vit_b_16")
_TV_QUICK = ("resnet50", "vit_b_16")

WORKLOADS: tuple[Workload, ...] = (
    *(Workload(f"LeNet b1 {m}", "bench_explain", 40, 10) for m in _EXPLAIN_NAMES.values()),
    *(Workload(f"LeNet b100 {m}", "bench_explain", 30, 5) for m in _EXPLAIN_NAMES.values()),
    *(Workload(f"VGG-16 b1 {m}", "bench_explain", 8, 3) for m in _EXPLAIN_NAMES.values()),
    Workload("LeNet B-LRP 100 samples", "bench_blrp", 30, 5),
    Workload("LeNet B-LRP floor (G×I ×100)", "bench_blrp", 30, 5),
    *(Workload(f"Lite0 {m}", "bench_models", 15, 3)
      for m in ("G×I", "ε", "ε-γ-box", "ε-plus-flat")),
    Workload("VGG-16 B-LRP 32 samples", "bench_models", 3, 0),  # ≈ 8 s a call
    # --quick: two of the five families (set-up and warm-up dominate a short run)
    *(Workload(f"{f} b1 {m}", "bench_models", 6, 3 if f in _TV_QUICK else 0)
      for f in _TV_FAMILIES for m in _EXPLAIN_NAMES.values()),
    Workload("UI Digits preset switch (cached)", "bench_ui_latency", 20, 5),
    Workload("UI Digits γ step (computed)", "bench_ui_latency", 20, 5),
    Workload("UI Digits Run B-LRP (new digit)", "bench_ui_latency", 15, 3),
)


# -- the child: one commit's workloads ------------------------------------------------------

def _explain_workloads(prepared: dict[str, Prepared], shared: dict[str, Any]) -> None:
    from benchmarks import bench_explain as be

    for model_name, batch, label in (("lenet", 1, "LeNet b1"), ("lenet", 100, "LeNet b100"),
                                     ("vgg16", 1, "VGG-16 b1")):
        model, x = be.make(model_name, batch)
        for method in be.METHODS:
            prepared[f"{label} {_EXPLAIN_NAMES[method]}"] = (be.runner(method, model, x), None)
        if model_name == "vgg16":  # bench_models' VGG-16: the same seed, model and input
            shared["vgg"] = model, x


def _blrp_workloads(prepared: dict[str, Prepared], shared: dict[str, Any]) -> None:
    import lrp_engine as le
    from benchmarks import bench_blrp as bb
    from lrp_engine.data import load_bundled_mnist, mnist_to_tensor
    from lrp_engine.models import load_bundled

    model = load_bundled("lenet")
    x = mnist_to_tensor(load_bundled_mnist("test")[0][:1], size=32)
    prepared["LeNet B-LRP 100 samples"] = (
        lambda: le.blrp(model, x, composite="epsilon", n_samples=100, alphas=bb.ALPHAS), None)
    prepared["LeNet B-LRP floor (G×I ×100)"] = (lambda: bb.floor(model, x, 100), None)


def _models_workloads(prepared: dict[str, Prepared], shared: dict[str, Any]) -> None:
    import torch
    from PIL import Image

    import lrp_engine as le
    from benchmarks import bench_models as bm
    from lrp_engine.models.zoo import load_efficientnet_lite0, prepare_image

    lite = load_efficientnet_lite0()
    xc = prepare_image(Image.open(bm.CAT), "efficientnet_lite0")
    egb_lite = le.get_composite("epsilon-gamma-box", low=-1.0, high=1.0)
    prepared["Lite0 G×I"] = (lambda: le.gradient_x_input(lite, xc), None)
    prepared["Lite0 ε"] = (lambda: le.explain(lite, xc, composite="epsilon"), None)
    prepared["Lite0 ε-γ-box"] = (lambda: le.explain(lite, xc, composite=egb_lite), None)
    prepared["Lite0 ε-plus-flat"] = (
        lambda: le.explain(lite, xc, composite="epsilon-plus-flat"), None)

    if "vgg" not in shared:
        from benchmarks import bench_explain as be

        shared["vgg"] = be.make("vgg16", 1)
    vgg, xv = shared["vgg"]
    prepared["VGG-16 B-LRP 32 samples"] = (
        lambda: le.blrp(vgg, xv, composite="epsilon", n_samples=32), None)

    low, high = bm._bounds()
    egb = le.get_composite("epsilon-gamma-box", low=low, high=high)
    mean = torch.tensor(bm.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(bm.IMAGENET_STD).view(1, 3, 1, 1)
    families = [f for f in _TV_FAMILIES if any(n.startswith(f"{f} ") for n in shared["names"])]
    for family in families:  # as bench_models.bench_torchvision, batch 1
        torch.manual_seed(0)
        model = getattr(bm.tv.models, family)(weights=None).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        x = (torch.rand(1, 3, 224, 224) - mean) / std
        with torch.no_grad():
            target = model(x).argmax(1)
        prepared.update(_family_calls(family, model, x, target, egb))


def _family_calls(family: str, model: Any, x: Any, target: Any, egb: Any
                  ) -> dict[str, Prepared]:
    """bench_models' three engine calls on one torchvision family (its model and input)."""
    import lrp_engine as le

    return {f"{family} b1 G×I": (lambda: le.gradient_x_input(model, x, target), None),
            f"{family} b1 ε": (lambda: le.explain(model, x, target, "epsilon"), None),
            f"{family} b1 ε-γ-box": (lambda: le.explain(model, x, target, egb), None)}


def _digits_app(worktree: Path) -> tuple[Path, str]:
    """The app's entry point in this commit and the Digits page relative to it
    (``lrp_explorer/app.py`` after the reshape, ``app.py`` before)."""
    for app in (worktree / "lrp_explorer" / "app.py", worktree / "app.py"):
        if (app.parent / "app_pages" / "digits.py").exists():
            return app, "app_pages/digits.py"
    raise FileNotFoundError(f"no app.py next to app_pages/digits.py in {worktree}")


def _ui_workloads(prepared: dict[str, Prepared], shared: dict[str, Any]) -> None:
    from streamlit.testing.v1 import AppTest

    app, page = _digits_app(shared["worktree"])

    def check(at: AppTest) -> AppTest:
        if at.exception:
            raise RuntimeError(f"the Digits page raised: {at.exception[0].message}")
        return at

    def session() -> AppTest:
        """A fresh session on the Digits page, on held-out digit #0."""
        at = AppTest.from_file(str(app), default_timeout=120)
        check(at.run())
        check(at.switch_page(page).run())
        check(at.radio(key="digit_source").set_value("Held-out digit").run())
        return at

    presets = ("epsilon", "epsilon-gamma-box")
    at_preset = session()

    def preset_switch() -> None:
        box = at_preset.selectbox(key="rules_preset")
        check(box.set_value(presets[box.value == presets[0]]).run())

    at_gamma = session()
    check(at_gamma.selectbox(key="rules_preset").set_value("epsilon-gamma-box").run())
    steps = iter(range(1, 10_000))

    def prep_gamma() -> None:
        if at_gamma.selectbox(key="rules_preset").value != "epsilon-gamma-box":
            check(at_gamma.selectbox(key="rules_preset").set_value("epsilon-gamma-box").run())

    def gamma_step() -> None:  # a γ not used before (0.005 steps from 0.25, up to 2)
        gamma = round(0.25 + 0.005 * (next(steps) % 350), 3)
        check(at_gamma.slider(key="rules_gamma_epsilon-gamma-box").set_value(gamma).run())

    at_blrp = session()
    digits = iter(range(1, 1000))

    def prep_blrp() -> None:  # a digit B-LRP has not seen (nothing cached)
        check(at_blrp.number_input(key="heldout_index").set_value(next(digits)).run())

    def run_blrp() -> None:
        check(next(b for b in at_blrp.button if b.label == "Run B-LRP").click().run())
        if not any("blrp_panels" in (c.proto.id or "") for c in at_blrp.get("plotly_chart")):
            raise RuntimeError("Run B-LRP drew no percentile panels")

    prepared["UI Digits preset switch (cached)"] = (preset_switch, None)
    prepared["UI Digits γ step (computed)"] = (gamma_step, prep_gamma)
    prepared["UI Digits Run B-LRP (new digit)"] = (run_blrp, prep_blrp)


_GROUPS: dict[str, Callable[[dict[str, Prepared], dict[str, Any]], None]] = {
    "bench_explain": _explain_workloads, "bench_blrp": _blrp_workloads,
    "bench_models": _models_workloads, "bench_ui_latency": _ui_workloads}


def _set_up(wanted: set[str], prepared: dict[str, Prepared], shared: dict[str, Any],
            errors: dict[str, str]) -> dict[str, float]:
    """Build the workloads of each wanted benchmark into ``prepared``; a group whose set-up
    fails names its missing workloads in ``errors``. Returns each group's set-up seconds."""
    setup_s: dict[str, float] = {}
    for bench, setup in _GROUPS.items():
        if bench not in wanted:
            continue
        t0 = time.perf_counter()
        try:
            setup(prepared, shared)
        except Exception as e:  # noqa: BLE001 - an old commit may fail any way; reported
            for w in WORKLOADS:
                if w.bench == bench and w.name not in prepared:
                    errors[w.name] = _one_line(e)
            print(f"set-up of {bench} failed:", file=sys.stderr)
            traceback.print_exc()
        setup_s[bench] = time.perf_counter() - t0
    return setup_s


def _warm_up(names: list[str], prepared: dict[str, Prepared],
             errors: dict[str, str]) -> dict[str, float]:
    """Call each prepared workload once (the cached preset switch twice); one that fails is
    dropped from ``prepared`` and named in ``errors``. Returns the warm-up seconds."""
    warm = {"UI Digits preset switch (cached)": 2}  # both presets in the cache
    warmup_s: dict[str, float] = {}
    for name in names:
        if name not in prepared:
            errors.setdefault(name, "not prepared")
            continue
        fn, prep = prepared[name]
        t0 = time.perf_counter()
        try:
            for _ in range(warm.get(name, 1)):
                if prep is not None:
                    prep()
                fn()
        except Exception as e:  # noqa: BLE001 - an old commit's workload may fail any way
            errors[name] = _one_line(e)
            del prepared[name]
        warmup_s[name] = round(time.perf_counter() - t0, 2)
    return warmup_s


def _describe(worktree: Path, engine_file: Path, wanted: set[str],
              setup_s: dict[str, float], warmup_s: dict[str, float]) -> dict[str, Any]:
    """The child's ``info``: where lrp_engine came from, torch, the set-up times, the app."""
    import torch

    info: dict[str, Any] = {
        "lrp_engine": str(engine_file.parent), "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "setup_s": {k: round(v, 1) for k, v in setup_s.items()}
        | {"warm-up": round(sum(warmup_s.values()), 1)},
        "warmup_s": warmup_s}
    if "bench_ui_latency" in wanted:
        try:
            app, page = _digits_app(worktree)
            info["app"] = f"{app.relative_to(worktree)} → {page}"
        except FileNotFoundError as e:
            info["app"] = str(e)
    return info


def _serve(prepared: dict[str, Prepared], proto: IO[str]) -> None:
    """Answer the parent's commands (one JSON object a line on stdin) until ``quit``."""
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            break
        fn, prep = prepared[cmd["name"]]
        try:
            if prep is not None:
                prep()
            gc.collect()
            t0 = time.perf_counter()
            fn()
            seconds = time.perf_counter() - t0
        except Exception as e:  # noqa: BLE001 - any failure is the reply
            _send(proto, {"error": _one_line(e)})
            continue
        _send(proto, {"seconds": seconds})


def _child(worktree: Path, threads: int, names: list[str], proto: IO[str]) -> None:
    """Prepare the workloads of the commit checked out at ``worktree``, then answer the
    parent's commands (one JSON object a line) until it says ``quit``."""
    import torch

    torch.set_num_threads(threads)
    import lrp_engine

    engine_file = Path(lrp_engine.__file__).resolve()
    if worktree not in engine_file.parents:
        raise RuntimeError(f"lrp_engine imported from {engine_file}, not from {worktree}")

    prepared: dict[str, Prepared] = {}
    shared: dict[str, Any] = {"worktree": worktree, "names": names}
    errors: dict[str, str] = {}
    wanted = {w.bench for w in WORKLOADS if w.name in names}
    setup_s = _set_up(wanted, prepared, shared, errors)
    warmup_s = _warm_up(names, prepared, errors)
    # what set-up made is never garbage: the collection before each call scans only the
    # objects of the calls since (cheap, and the same in both children)
    gc.collect()
    gc.freeze()
    info = _describe(worktree, engine_file, wanted, setup_s, warmup_s)
    _send(proto, {"ready": sorted(prepared), "errors": errors, "info": info})
    _serve(prepared, proto)


def _send(proto: IO[str], msg: dict[str, Any]) -> None:
    proto.write(json.dumps(msg) + "\n")
    proto.flush()


def _one_line(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}"


def child_main(worktree: str, threads: int, names: list[str]) -> None:
    """Entry point of a child: the protocol keeps the real stdout; anything else printed
    (library messages) goes to stderr, which the parent writes to a log file."""
    tree = Path(worktree).resolve()
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [str(tree)] + [p for p in sys.path if p not in ("", here, str(ROOT))]
    os.chdir(tree)
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _child(tree, threads, names, proto)


# -- the parent -------------------------------------------------------------------------------

def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


class Child:
    """One commit's persistent child process."""

    def __init__(self, label: str, sha: str, tree: Path, log: Path, threads: int,
                 names: list[str]) -> None:
        self.label, self.sha, self.tree, self.log_path = label, sha, tree, log
        self.log = open(log, "w")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": ""}
        self.proc = subprocess.Popen(
            [python_exe(), str(Path(__file__).resolve()), "--child", str(tree),
             "--threads", str(threads), "--names", json.dumps(names)],
            cwd=tree, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
            text=True, env=env)
        self.ready: list[str] = []
        self.errors: dict[str, str] = {}
        self.info: dict[str, Any] = {}

    def _reply(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.log.flush()
            tail = self.log_path.read_text(errors="replace").splitlines()[-25:]
            raise RuntimeError(f"the {self.label} child ({self.sha[:8]}) ended:\n"
                               + "\n".join(tail))
        return json.loads(line)

    def wait_ready(self) -> None:
        msg = self._reply()
        self.ready, self.errors, self.info = msg["ready"], msg["errors"], msg["info"]

    def run(self, name: str) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": "run", "name": name}) + "\n")
        self.proc.stdin.flush()
        msg = self._reply()
        if "error" in msg:
            raise RuntimeError(msg["error"])
        return float(msg["seconds"])

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def python_exe() -> str:
    """The project's venv Python (the children's interpreter), else this one."""
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


@dataclass
class Row:
    """One workload's result."""

    workload: str
    bench: str
    before_s: list[float]
    after_s: list[float]
    error: str = ""

    @property
    def ratios(self) -> list[float]:
        return [a / b for b, a in zip(self.before_s, self.after_s, strict=True) if b > 0]

    def medians_ms(self) -> tuple[float, float]:
        return (1000 * statistics.median(self.before_s), 1000 * statistics.median(self.after_s))

    def ratio(self) -> float:
        """The median of the per-round ratios: each pair ran back to back under the same
        load, so a burst of load that slows one round cancels out (the ratio of the two
        medians does not pair the rounds, and a burst can move one median alone)."""
        return statistics.median(self.ratios)

    def noise(self, floor: float) -> float:
        """Interquartile range of the per-round ratios, at least ``floor``."""
        r = self.ratios
        if len(r) < 2:
            return floor
        q1, _, q3 = statistics.quantiles(r, n=4, method="inclusive")
        return max(floor, q3 - q1)

    def verdict(self, floor: float) -> str:
        if self.error:
            return self.error
        if len(self.ratios) < 3:
            return "too few rounds for a verdict"
        d = self.ratio() - 1
        n = self.noise(floor)
        return "same" if abs(d) <= n else ("SLOWER" if d > 0 else "faster")


def _subject(sha: str) -> str:
    return _git("log", "-1", "--format=%h %s", sha)


def _start(shas: dict[str, str], tmp: Path, threads: int, names: list[str],
           trees: list[Path], children: dict[str, Child], t_start: float,
           progress: IO[str]) -> None:
    """Check out each commit as a worktree under ``tmp`` and start its child, waiting until
    it is ready. ``trees`` and ``children`` are filled as they come, so that the caller
    cleans up whatever was made even when a step fails."""
    for label, sha in shas.items():
        tree = tmp / label
        _git("worktree", "add", "--detach", str(tree), sha)
        trees.append(tree)
    # one after the other: two children warming up at once would run 2 × threads
    # spinning torch threads on the same cores, which slows both many times over
    for label, sha in shas.items():
        children[label] = Child(label, sha, tmp / label, tmp / f"{label}.log", threads,
                                names)
        children[label].wait_ready()
        print(f"{label} ({sha[:8]}) ready after {time.perf_counter() - t_start:.0f} s",
              file=progress, flush=True)


def _rows(workloads: list[Workload], skipped: list[Workload], quick: bool,
          children: dict[str, Child]) -> dict[str, Row]:
    """An empty row per workload in the listed order; the skipped ones and those a child
    could not prepare carry their reason."""
    rows = {w.name: Row(w.name, w.bench, [], []) for w in workloads}
    rows |= {w.name: Row(w.name, w.bench, [], [], "not run with --quick" if quick
                         else "no rounds") for w in skipped}
    rows = {w.name: rows[w.name] for w in WORKLOADS if w.name in rows}  # listed order
    for label, c in children.items():
        for name, err in c.errors.items():
            if name in rows and not rows[name].error:
                rows[name].error = f"{label}: {err}"
    return rows


def _run_rounds(rows: dict[str, Row], workloads: list[Workload], rounds: dict[str, int],
                children: dict[str, Child], t_start: float, progress: IO[str]) -> None:
    """The interleaved rounds: each workload once in each child, back to back, the order of
    the two alternating from round to round; the seconds go into ``rows``."""
    order = [children["before"], children["after"]]
    for r in range(max(rounds.values(), default=0)):
        pair = order if r % 2 == 0 else order[::-1]
        for w in workloads:
            row = rows[w.name]
            if r >= rounds[w.name] or row.error:
                continue
            t: dict[str, float] = {}
            try:
                for c in pair:
                    t[c.label] = c.run(w.name)
            except RuntimeError as e:
                row.error = str(e).splitlines()[0]
                continue
            row.before_s.append(t["before"])
            row.after_s.append(t["after"])
        print(f"round {r + 1} done, {time.perf_counter() - t_start:.0f} s", file=progress,
              flush=True)


def _meta(shas: dict[str, str], children: dict[str, Child], threads: int, quick: bool,
          t_start: float, t_ready: float) -> dict[str, Any]:
    """The run's description: both commits (and what their children report), the machine
    and the times."""
    return {
        "before": {"commit": shas["before"], "subject": _subject(shas["before"]),
                   **children["before"].info},
        "after": {"commit": shas["after"], "subject": _subject(shas["after"]),
                  **children["after"].info},
        "threads": threads, "quick": quick, "cpu_count": os.cpu_count(),
        "load_average_end": os.getloadavg(), "setup_s": t_ready - t_start,
        "total_s": time.perf_counter() - t_start,
    }


def compare(before: str, after: str, quick: bool, threads: int, only: list[str],
            repeats: int | None, progress: IO[str]) -> tuple[list[Row], dict[str, Any]]:
    """Check out both commits, run the interleaved rounds and return the rows and the
    run's description."""
    shas = {"before": _git("rev-parse", "--verify", f"{before}^{{commit}}"),
            "after": _git("rev-parse", "--verify", f"{after}^{{commit}}")}
    workloads = [w for w in WORKLOADS if not only or any(o in w.name for o in only)]
    rounds = {w.name: repeats if repeats is not None else (w.quick if quick else w.full)
              for w in workloads}
    skipped = [w for w in workloads if rounds[w.name] <= 0]
    workloads = [w for w in workloads if rounds[w.name] > 0]
    names = [w.name for w in workloads]
    tmp = Path(tempfile.mkdtemp(prefix="compare_commits_"))
    trees: list[Path] = []
    children: dict[str, Child] = {}
    t_start = time.perf_counter()
    try:
        _start(shas, tmp, threads, names, trees, children, t_start, progress)
        t_ready = time.perf_counter()
        print(f"set-up {t_ready - t_start:.0f} s; {sum(rounds.values())} rounds of "
              f"{len(names)} workloads", file=progress, flush=True)
        rows = _rows(workloads, skipped, quick, children)
        _run_rounds(rows, workloads, rounds, children, t_start, progress)
        return list(rows.values()), _meta(shas, children, threads, quick, t_start, t_ready)
    finally:
        for c in children.values():
            c.close()
        for tree in trees:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(tree)], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], capture_output=True)


def markdown(rows: list[Row], meta: dict[str, Any], floor: float) -> str:
    """The before/after table with a header naming the commits and the noise rule."""
    out = [f"before: `{meta['before']['subject']}`  ",
           f"after: `{meta['after']['subject']}`  ",
           f"torch {meta['after'].get('torch', '?')}, {meta['threads']} threads, "
           f"{meta['cpu_count']} cores, {'--quick, ' if meta['quick'] else ''}"
           f"{meta['total_s']:.0f} s in all (set-up {meta['setup_s']:.0f} s); app: "
           f"{meta['before'].get('app', '-')} | {meta['after'].get('app', '-')}",
           "",
           "| workload | rounds | before median ms | after median ms | after/before "
           "| noise (IQR of round ratios) | verdict |",
           "|---|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        if row.error or not row.before_s:
            out.append(f"| {row.workload} | {len(row.before_s)} | – | – | – | – | "
                       f"{row.error or 'no rounds'} |")
            continue
        b, a = row.medians_ms()
        out.append(f"| {row.workload} | {len(row.before_s)} | {b:.1f} | {a:.1f} | "
                   f"{row.ratio():.3f} | ±{100 * row.noise(floor):.1f} % | "
                   f"{row.verdict(floor)} |")
    out += ["", f"after/before: the median of the per-round ratios (each round times both "
            f"commits back to back, the order alternating from round to round). Noise: the "
            f"interquartile range of those ratios, at least {100 * floor:.0f} %. \"same\": "
            f"after/before is within the noise of 1."]
    if any(0 < len(r.before_s) < 5 for r in rows):
        out.append("With fewer than 5 rounds the noise figure itself is rough (--quick: a "
                   "smoke test; the default run gives the figures to quote).")
    return "\n".join(out)


def to_json(rows: list[Row], meta: dict[str, Any], floor: float) -> dict[str, Any]:
    """Everything measured, per round, with the table's figures."""
    out = []
    for row in rows:
        item: dict[str, Any] = {"workload": row.workload, "bench": row.bench,
                                "before_s": row.before_s, "after_s": row.after_s,
                                "error": row.error or None}
        if row.before_s and not row.error:
            b, a = row.medians_ms()
            item |= {"before_median_ms": b, "after_median_ms": a, "ratio": row.ratio(),
                     "ratio_of_medians": a / b,
                     "round_ratios": row.ratios, "noise": row.noise(floor),
                     "verdict": row.verdict(floor)}
        out.append(item)
    return {**meta, "noise_floor": floor,
            "noise_method": "ratio: median of the per-round after/before ratios; noise: "
                            "their interquartile range, at least noise_floor; 'same' when "
                            "|ratio - 1| <= noise",
            "rows": out}


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the comparison (or a child) and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", help="the older commit (e.g. 98f8280)")
    ap.add_argument("--after", default="HEAD", help="the newer commit (default HEAD)")
    ap.add_argument("--quick", action="store_true",
                    help="few rounds, two torchvision families, no VGG B-LRP: ≈ 2–3 min")
    ap.add_argument("--repeats", type=int, help="rounds for every workload (overrides)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads per child")
    ap.add_argument("--only", default="",
                    help="comma-separated substrings: only the workloads whose name has one")
    ap.add_argument("--floor", type=float, default=0.02, help="least noise (default 0.02)")
    ap.add_argument("--json", type=Path, help="also write everything measured here")
    ap.add_argument("--list", action="store_true", help="list the workloads and exit")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--names", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child_main(args.child, args.threads, json.loads(args.names))
        return 0
    if args.list:
        for w in WORKLOADS:
            print(f"{w.name:36} {w.bench:17} rounds {w.full} (--quick {w.quick})")
        return 0
    if not args.before:
        ap.error("--before is required")
    only = [o.strip() for o in args.only.split(",") if o.strip()]
    rows, meta = compare(args.before, args.after, args.quick, args.threads, only,
                         args.repeats, sys.stderr)
    print(markdown(rows, meta, args.floor))
    if args.json:
        args.json.write_text(json.dumps(to_json(rows, meta, args.floor), indent=1,
                                        ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
