"""The local backend: :func:`prepare` a results folder, :func:`run_local` the job in-process.

:func:`prepare` is shared with the Ray backend: it checks the config, lists the items, opens
(or refuses) the results folder and says which batches are left. Batches are fixed slices
of the listing (items ``b·batch_size … (b+1)·batch_size − 1``), so every item is computed
with the same neighbours whichever run, resume or worker does it; a batch is left out when
all its items are finished, and done whole otherwise.

:func:`run_local` calls one :class:`~lrp_engine.batch.worker.BatchWorker` on those batches,
draws a progress bar with ETA on stderr, and ends with :func:`~lrp_engine.batch.results.
finalise`. Ctrl-C: the batch in flight is dropped (item files are only ever renamed into
place whole), the finished items are finalised, and :class:`Interrupted` is raised.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .config import BatchConfig, config_hash, method_keys, metric_names, validate
from .results import CONFIG_FILE, FORMAT, OWNED, Finalised, finalise
from .sources import Listing, list_items
from .worker import ITEMS, SKIPPED, BatchError, BatchWorker, _write_atomic

Row = dict[str, Any]
ProgressFn = Callable[[int, int], None]


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_local`; ``report``: what was finished (and finalised)."""

    def __init__(self, report: RunReport) -> None:
        super().__init__("interrupted")
        self.report = report


@dataclass
class Plan:
    """A prepared job: ``out`` (the folder), ``listing``, ``batches`` (each a list of rows;
    only those with an unfinished item), ``n_done`` items already finished."""

    cfg: BatchConfig
    out: Path
    listing: Listing
    batches: list[list[Row]]
    n_done: int

    @property
    def n_items(self) -> int:
        return len(self.listing.rows)

    @property
    def n_todo(self) -> int:
        return sum(len(b) for b in self.batches)


@dataclass
class RunReport:
    """The end of a run: items in the job, finished before, computed now, skipped,
    seconds, the worker's timings and calls, what :func:`finalise` wrote and notes."""

    out: Path
    n_items: int
    n_done_before: int
    n_computed: int
    n_skipped: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    calls: int = 0
    finalised: Finalised | None = None
    notes: list[str] = field(default_factory=list)


def engine_version() -> str:
    """The installed lrp-explorer version, or ``"source"`` when run from a checkout."""
    from importlib import metadata

    try:
        return metadata.version("lrp-explorer")
    except metadata.PackageNotFoundError:
        return "source"


def columnar(rows: list[Row]) -> dict[str, list[Any]]:
    """Rows → the columnar batch a worker takes (``key, name, label, index, payload,
    mask``: lists)."""
    cols = ("key", "name", "label", "index", "payload", "mask")
    return {c: [r[c] for r in rows] for c in cols}


# -- the folder ------------------------------------------------------------------------------

def _clear(out: Path) -> None:
    """Remove what a results folder holds (only the names it owns)."""
    for name in OWNED:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _existing_hash(out: Path) -> str | None:
    """The config hash of a results folder at ``out``; None for an empty or new folder.
    Raises :class:`BatchError` for a folder holding something else."""
    cfg_file = out / CONFIG_FILE
    if cfg_file.is_file():
        try:
            info = json.loads(cfg_file.read_text())
        except (OSError, ValueError):
            info = None
        if isinstance(info, dict) and info.get("format") == FORMAT:
            return str(info.get("config_hash", ""))
    foreign = [p for p in out.iterdir() if p.name not in OWNED] if out.is_dir() else []
    orphans = list((out / ITEMS).glob("*.npz")) if (out / ITEMS).is_dir() else []
    if foreign or orphans:  # another program's files, or items of an unknown config
        raise BatchError(f"{out} is not empty and holds no batch results: choose another "
                         "--out, or --overwrite (which removes only a results folder's own "
                         "files)")
    return None


def open_folder(cfg: BatchConfig, backend: str, extra: dict[str, Any] | None = None,
                replace_other: bool = False) -> Path:
    """Create or reopen the results folder ``cfg.out`` and write its ``config.json``.

    ``cfg.overwrite``: empty it first. Otherwise a folder of the same config is resumed, and
    one of another config (or a non-empty folder without results) is refused with
    :class:`BatchError`, or emptied with ``replace_other`` (the old commands' way: each run
    replaced their outputs)."""
    out = Path(cfg.out).expanduser()
    if out.exists() and not out.is_dir():
        raise BatchError(f"--out {out} is a file, not a folder")
    digest = config_hash(cfg)
    replace = cfg.overwrite or replace_other
    try:
        old = _existing_hash(out)
    except BatchError:
        if not replace:
            raise
        old = ""
    if old is not None and old != digest and not replace:
        raise BatchError(f"{out} holds the results of another configuration: choose another "
                         "--out, or --overwrite to replace them")
    if cfg.overwrite or (replace_other and old is not None and old != digest):
        _clear(out)
    (out / ITEMS).mkdir(parents=True, exist_ok=True)
    for tmp in (out / ITEMS).glob(".*.tmp"):  # left by a process killed mid-write
        tmp.unlink(missing_ok=True)
    info = {"format": FORMAT, "config": cfg.to_dict(), "config_hash": digest,
            "engine": engine_version(), "methods": method_keys(cfg),
            "metrics": metric_names(cfg),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "backend": backend, **(extra or {})}
    text = (json.dumps(info, indent=2, ensure_ascii=False) + "\n").encode()
    _write_atomic(out / CONFIG_FILE, lambda f: f.write(text))
    return out


def _record_listing_skips(out: Path, listing: Listing) -> None:
    from .sources import item_key

    folder = out / SKIPPED
    for name, reason in listing.skipped:
        folder.mkdir(exist_ok=True)
        key = item_key(name.encode())
        text = json.dumps({"key": "", "name": name, "reason": reason},
                          ensure_ascii=False).encode()
        _write_atomic(folder / f"{key}.json", lambda f, t=text: f.write(t))


def prepare(cfg: BatchConfig, backend: str = "local", replace_other: bool = False) -> Plan:
    """Check ``cfg``, list its items, open the results folder, and plan the batches left
    (``replace_other``: see :func:`open_folder`).

    Raises :class:`~lrp_engine.batch.config.ConfigError` (bad settings, nothing to read) or
    :class:`BatchError` (a folder of another config)."""
    validate(cfg)
    cfg.model_name  # noqa: B018 - a folder without --model fails here, before any work
    listing = list_items(cfg)
    extra = {"model": cfg.model_name, "classes": listing.classes,
             "n_items": len(listing.rows), "notes": listing.notes}
    out = open_folder(cfg, backend, extra, replace_other)
    _record_listing_skips(out, listing)
    done = {p.stem for p in (out / ITEMS).glob("*.npz")}
    rows = listing.rows
    size = cfg.batch_size
    chunks = [rows[i:i + size] for i in range(0, len(rows), size)]
    todo = [c for c in chunks if any(r["key"] not in done for r in c)]
    n_done = sum(1 for r in rows if r["key"] in done)
    return Plan(cfg, out, listing, todo, n_done)


# -- the run -------------------------------------------------------------------------------

def progress_bar(cfg: BatchConfig, total: int, label: str, stream: TextIO | None) -> Any:
    """A progress bar with ETA for ``total`` items on ``stream``; None when quiet or empty."""
    if cfg.quiet or total == 0:
        return None
    from ..cli import ProgressBar

    return ProgressBar(total, label, stream=stream)


def run_local(cfg: BatchConfig, *, plots: bool = True, on_progress: ProgressFn | None = None,
              worker: BatchWorker | None = None, stream: TextIO | None = None,
              label: str = "batch", replace_other: bool = False) -> RunReport:
    """Run ``cfg`` in this process and finalise its folder.

    ``on_progress(done, total)`` after each batch (items of this run); ``worker``: one made
    already (tests count its calls); ``stream``: where the progress bar (``label``) goes
    (stderr); ``replace_other``: see :func:`open_folder`. Raises :class:`Interrupted` on
    Ctrl-C, after finalising the finished items.
    """
    t0 = time.perf_counter()
    plan = prepare(cfg, "local", replace_other)
    total = plan.n_todo
    bar = progress_bar(cfg, total, label, stream if stream is not None else sys.stderr)
    report = RunReport(plan.out, plan.n_items, plan.n_done, 0, len(plan.listing.skipped),
                       0.0, notes=list(plan.listing.notes))
    w = worker
    try:
        if plan.batches and w is None:
            w = BatchWorker(cfg, str(plan.out))
        done = 0
        for batch in plan.batches:
            assert w is not None
            cols = w(columnar(batch))
            done += len(batch)
            report.n_computed += sum(1 for s in cols["skipped"] if not s)
            report.n_skipped += sum(1 for s in cols["skipped"] if s)
            if bar is not None:
                bar.update(done)
            if on_progress is not None:
                on_progress(done, total)
    except KeyboardInterrupt:
        _end(report, w, t0, plots=False)
        raise Interrupted(report) from None
    return _end(report, w, t0, plots=plots)


def _end(report: RunReport, worker: BatchWorker | None, t0: float, plots: bool) -> RunReport:
    if worker is not None:
        report.timings = dict(worker.timings)
        report.calls = worker.calls
        report.notes += worker.m.notes
    report.finalised = finalise(report.out, plots=plots)
    report.notes += report.finalised.notes
    report.seconds = time.perf_counter() - t0
    return report


__all__ = ["Interrupted", "Plan", "RunReport", "columnar", "engine_version", "open_folder",
           "prepare", "run_local"]
