"""The Ray backend of the batch command (``--ray [ADDRESS]``): the local job's batches on Ray Data.

    report = run_ray(BatchConfig(input="mnist", backend="ray", workers=2, out="results/x"))

``cfg.ray_address``: ``None`` starts a local Ray for the job (``num_cpus = cfg.workers``,
no dashboard) and shuts it down at the end; ``"auto"`` joins the cluster this machine
belongs to; ``"ray://host:10001"`` connects through Ray Client (which also needs
``ray[client]``). When this process has Ray running already (a test's, a notebook's), that
one is used and left running.

What runs where:

* the driver (this process) does what :func:`~lrp_engine.batch.local.run_local` does
  first, with the same function: :func:`~lrp_engine.batch.local.prepare` checks the
  config, lists the items, opens the results folder (``config.json`` says
  ``"backend": "ray"``) and plans the batches left;
* one Ray Data row per planned batch (its items' key, name, label, index, payload and mask
  as list columns) is put in the object store; ``map_batches`` streams the rows one at a
  time (``batch_size=1``) to a pool of ``workers`` actors (:class:`RayBatchWorker`), each
  holding one :class:`~lrp_engine.batch.worker.BatchWorker` (the model loaded once per
  actor, ``num_gpus=1`` per actor when the cluster has GPUs and the device is not
  ``cpu``, torch threads = the actor's CPUs);
* each actor writes its items' ``items/<key>.npz`` itself (atomically) into the results
  folder, which must therefore be on storage every node sees, and hands back a small
  row per item (key, skipped, error), which the driver counts for the progress bar;
* the driver ends as locally: :func:`~lrp_engine.batch.results.finalise` rebuilds every
  table from ``items/``.

**The same numbers as locally.** A batch is the unit of computation, and its items are
computed together (one batched forward, relevance and perturbation pass), so float rounding
can depend on which items share a batch. Both backends use ``prepare``'s batches: fixed
slices ``b·batch_size … (b+1)·batch_size − 1`` of the listing. Here each slice is *one row*
of the Dataset, and ``map_batches(batch_size=1)`` hands every call exactly one row, so an
actor computes exactly the local batch, whatever Ray does with blocks (splitting, bundling,
coalescing rows only ever moves whole rows). Random draws are seeded by the item
(:mod:`lrp_engine.batch.worker`), never by the worker or the order. Threads: each actor
runs torch with its own CPU count (1 on a local 2-worker Ray, 2 locally); on the CPU the
engine's results do not depend on the thread count (the tests check maps bit for bit).

Errors are one line (:class:`RayError`): Ray not installed, the address unreachable, an
actor that cannot load the model, a batch that fails (its items named, with the reason),
an actor that dies. Items that cannot be decoded are skipped as locally, not failures.
Actors are not restarted after a crash (``max_restarts=0``): the run stops with the reason,
and the same command resumes it (finished items are kept).

Ray is imported here only, inside the functions: ``lrp_engine`` and the app never import it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import socket
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .config import BatchConfig
from .local import Interrupted, ProgressFn, RunReport, columnar, prepare, progress_bar
from .results import finalise

#: the Ray this backend is written and tested against (the ``ray`` extra)
RAY_REQUIREMENT = "ray[data]==2.60.0"
#: the columns of a batch row (each a list over the batch's items)
COLUMNS = ("key", "name", "label", "index", "payload", "mask")
#: how an actor's error begins when it could not build its worker (model, version)
LOAD_FAILED = "could not load the model"
#: seconds a cluster's port may take to answer before the address counts as unreachable
PROBE_TIMEOUT_S = 5.0


class RayError(RuntimeError):
    """The Ray backend cannot run or a worker failed, said in one line (the command prints
    it and exits with status 1)."""


def import_ray() -> Any:
    """``ray`` with Ray Data, or :class:`RayError` saying how to install it."""
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise RayError(f"--ray needs Ray Data ({e.name or e} is missing): pip install "
                       f"'lrp-explorer[ray]' (or '{RAY_REQUIREMENT}')") from None
    return ray


def _first_line(e: BaseException) -> str:
    """An exception as one short line (Ray's errors carry tracebacks and banners)."""
    text = str(e).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:  # the user's exception, when Ray wraps it in a traceback
        if not ln.startswith(("Traceback", "File ", "ray::", "^", "During handling")):
            return ln[:300]
    return type(e).__name__


def _quiet(ray: Any) -> None:
    """No progress bars, execution banners or stats from Ray Data; Ray's loggers at ERROR."""
    with _ray_warnings_off():  # creating the context sets deprecated fields, which warn
        ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    # one batch at a time per actor: a batch is seconds of work and its input small, so
    # queueing more gains nothing, while an actor that starts first would take batches that
    # an actor still starting then waits for (seen: two batches run one after the other)
    ctx.max_tasks_in_flight_per_actor = 1
    for name in ("ray", "ray.data", "ray.serve", "ray.tune"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _package_parent() -> str:
    """The folder holding the ``lrp_engine`` package (for a local Ray's workers)."""
    return str(Path(__file__).resolve().parents[2])


def start_local(num_cpus: int, num_gpus: int | None = None) -> float:
    """Start a local Ray in this process for a batch job: ``num_cpus`` CPUs, no dashboard,
    quiet; its workers find ``lrp_engine`` where this process does. Returns the seconds
    ``ray.init`` took."""
    ray = import_ray()
    env_path = os.environ.get("PYTHONPATH")
    env_address = os.environ.pop("RAY_ADDRESS", None)  # a local Ray, whatever it says
    parent = _package_parent()
    # workers are started by the raylet, which inherits this environment at ray.init
    os.environ["PYTHONPATH"] = parent + (os.pathsep + env_path if env_path else "")
    t0 = time.perf_counter()
    try:
        ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                 log_to_driver=False, logging_level=logging.ERROR,
                 configure_logging=True)
    except Exception as e:  # noqa: BLE001 - Ray raises many kinds on start-up: one line
        raise RayError(f"could not start a local Ray: {_first_line(e)}") from None
    finally:
        if env_path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = env_path
        if env_address is not None:
            os.environ["RAY_ADDRESS"] = env_address
    _quiet(ray)
    return time.perf_counter() - t0


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``host:port`` or ``ray://host:port``; None when it has no port."""
    rest = address.removeprefix("ray://").rsplit("/", 1)[0]
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def resolve_address(address: str) -> str:
    """``address`` as ``ray.init`` will reach it: ``auto`` becomes the running cluster's
    ``host:port`` (``RAY_ADDRESS``, or the last ``ray start`` on this machine)."""
    if address != "auto":
        return address
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:  # a Ray without it: let ray.init find the cluster
        return address
    try:
        found = canonicalize_bootstrap_address("auto")
    except (ConnectionError, ValueError):
        found = None
    if not found:
        raise RayError("--ray auto: no running Ray cluster found on this machine (start one "
                       "with `ray start --head`, set RAY_ADDRESS, or give --ray without an "
                       "address to run a local Ray for this job)")
    return found


def probe(address: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """:class:`RayError` unless something listens at ``address``'s host and port (Ray
    itself would retry an unreachable address for minutes, logging each attempt)."""
    hp = _host_port(address)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=timeout):
            pass
    except OSError as e:
        raise RayError(f"cannot reach a Ray cluster at {address} ({e.strerror or e}): is "
                       "`ray start --head` running there, and the port open?") from None


def _connect(ray: Any, address: str) -> float:
    """Join the cluster at ``address`` (``auto``, ``ray://host:port`` or ``host:port``)."""
    if address.startswith("ray://"):
        try:
            import grpc  # noqa: F401
        except ImportError:
            raise RayError(f"a ray:// address needs Ray Client: pip install "
                           f"'ray[client]=={ray.__version__}' (or run on the cluster's "
                           "head node with --ray auto)") from None
    t0 = time.perf_counter()
    probe(resolve_address(address))
    try:  # "auto" as given: Ray then also picks up this machine's cluster token, if any
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR,
                 configure_logging=True)
    except Exception as e:  # noqa: BLE001 - any join failure becomes one line
        raise RayError(f"cannot join the Ray cluster at {address}: {_first_line(e)} (a "
                       "cluster with token authentication also needs RAY_AUTH_MODE=token and "
                       "its token here: see Ray's token-auth docs)") from None
    _quiet(ray)
    return time.perf_counter() - t0


@dataclass
class Session:
    """Where the job runs: ``started`` (a local Ray of this job, shut down at the end),
    ``address`` as given, ``init_s`` (seconds to start or join)."""

    started: bool
    address: str | None
    init_s: float


@contextlib.contextmanager
def session(cfg: BatchConfig) -> Iterator[Session]:
    """Ray for ``cfg``: the running one, a cluster at ``cfg.ray_address``, or a local Ray
    of ``cfg.workers`` CPUs (all of this machine's by default) started for the job."""
    ray = import_ray()
    if ray.is_initialized():
        _quiet(ray)
        yield Session(False, cfg.ray_address, 0.0)
        return
    if cfg.ray_address:
        s = Session(True, cfg.ray_address, _connect(ray, cfg.ray_address))
    else:
        s = Session(True, None, start_local(cfg.workers or _cpu_count()))
    try:
        yield s
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Resources:
    """The actor pool: ``workers`` actors, each with ``cpus`` CPUs (its torch threads) and
    ``gpus`` GPUs (0 or 1), running on ``device``."""

    workers: int
    cpus: int
    gpus: int
    device: str

    def describe(self) -> str:
        each = f"{self.cpus} CPU" + (" + 1 GPU" if self.gpus else "")
        return f"{self.workers} Ray worker{'s' * (self.workers != 1)} ({each} each)"


def plan_resources(cfg: BatchConfig, cluster: dict[str, float],
                   node_cpus: list[float]) -> Resources:
    """Actors for ``cfg`` on a cluster with ``cluster`` resources (``ray.cluster_resources()``)
    whose nodes have ``node_cpus`` CPUs.

    GPUs are used when the cluster has any and ``cfg.device`` is not ``cpu``: one per actor,
    ``cfg.workers`` actors (default: one per GPU). On CPUs: ``cfg.workers`` actors (default:
    one per CPU), the cluster's CPUs shared among them (at most one node's worth each).
    """
    total_cpus = int(cluster.get("CPU", 0))
    total_gpus = int(cluster.get("GPU", 0))
    largest = int(max(node_cpus, default=total_cpus)) or 1
    if cfg.device == "cuda" and total_gpus == 0:
        raise RayError("--device cuda, but the Ray cluster has no GPUs (use --device auto "
                       "or cpu)")
    if total_gpus and cfg.device != "cpu":
        workers = cfg.workers or total_gpus
        if workers > total_gpus:
            raise RayError(f"--workers {workers} asks for one GPU each, but the Ray cluster "
                           f"has {total_gpus}")
        cpus = max(1, min(total_cpus // workers, largest)) if total_cpus else 1
        return Resources(workers, cpus, 1, "cuda")
    if total_cpus < 1:
        raise RayError("the Ray cluster offers no CPUs")
    workers = cfg.workers or total_cpus
    if workers > total_cpus:
        raise RayError(f"--workers {workers} needs a CPU each, but the Ray cluster has "
                       f"{total_cpus}")
    return Resources(workers, max(1, min(total_cpus // workers, largest)), 0, "cpu")


class RayBatchWorker:
    """A Ray Data actor: one :class:`~lrp_engine.batch.worker.BatchWorker` (the model loaded
    once), fed one planned batch per call.

    Built with the job's config as a dict, the results folder, the torch thread count,
    the device and the driver's engine version. A failure to load becomes an error row for
    each batch (the driver stops on the first), not an actor that Ray restarts forever.
    """

    def __init__(self, cfg: dict[str, Any], out_dir: str, threads: int, device: str,
                 version: str) -> None:
        self.worker: Any = None
        self.error = ""
        try:
            import torch

            torch.set_num_threads(threads)
            from ..cli import keep_freed_memory
            from .local import engine_version
            from .worker import BatchWorker

            keep_freed_memory()  # as the command line does: this process is ours
            if engine_version() != version:
                raise RayError(f"this worker runs lrp-explorer {engine_version()}, the "
                               f"driver {version}: install the same version on every node")
            job = BatchConfig.from_dict(cfg).replace(device=device)
            self.worker = BatchWorker(job, out_dir)
        except Exception as e:  # noqa: BLE001 - reported per batch (Ray would retry)
            self.error = f"{LOAD_FAILED}: {_first_line(e)}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``batch``: one row (one planned batch, list columns) → one row per item:
        ``key``, ``name``, ``skipped`` (why, or ""), ``error`` (why the batch failed, or ""),
        ``timings`` (JSON of this call's seconds per phase, on the first item)."""
        cols = {c: [v.item() if isinstance(v, np.generic) else v for v in batch[c][0]]
                for c in COLUMNS}
        keys, names = [str(k) for k in cols["key"]], [str(n) for n in cols["name"]]
        n = len(keys)
        skipped, error, timings = [""] * n, [""] * n, [""] * n
        if self.worker is None:
            error = [self.error] * n
        else:
            before = dict(self.worker.timings)
            try:
                res = self.worker(cols)
                skipped = [str(s) for s in res["skipped"]]
            except Exception as e:  # noqa: BLE001 - a batch's failure is reported with its items
                error = [f"{type(e).__name__}: {_first_line(e)}"] * n
            delta = {k: v - before.get(k, 0.0) for k, v in self.worker.timings.items()}
            timings[0] = json.dumps(delta)
        return {"key": np.array(keys, dtype=object), "name": np.array(names, dtype=object),
                "skipped": np.array(skipped, dtype=object),
                "error": np.array(error, dtype=object),
                "timings": np.array(timings, dtype=object)}


def batch_rows(batches: list[list[dict[str, Any]]]) -> list[dict[str, list[Any]]]:
    """One Dataset row per planned batch: the worker's columns, each a list over its items."""
    return [columnar(b) for b in batches]


def _failure(names: list[str], keys: list[str], reason: str) -> RayError:
    if reason.startswith(LOAD_FAILED):
        return RayError(f"a Ray worker {reason}")
    first = f"{names[0]} ({keys[0]})"
    more = f" and the {len(names) - 1} other item(s) of its batch" if len(names) > 1 else ""
    return RayError(f"a Ray worker failed on item {first}{more}: {reason}")


def run_ray(cfg: BatchConfig, *, plots: bool = True, on_progress: ProgressFn | None = None,
            stream: TextIO | None = None, label: str = "batch (ray)",
            replace_other: bool = False) -> RunReport:
    """Run ``cfg`` on Ray Data and finalise its folder; the same folder as
    :func:`~lrp_engine.batch.local.run_local` writes (``config.json`` says ``"ray"``).

    ``on_progress(done, total)`` as items come back (those of this run); ``stream``: where
    the progress bar (``label``) goes (stderr); ``replace_other``: as for ``run_local``.
    Raises :class:`RayError` (one line) when Ray cannot run or a worker fails, and
    :class:`~lrp_engine.batch.local.Interrupted` on Ctrl-C, after finalising the finished
    items.
    """
    t0 = time.perf_counter()
    ray = import_ray()
    cfg = cfg.replace(backend="ray")
    if cfg.ray_address and not ray.is_initialized():
        probe(resolve_address(cfg.ray_address))  # before the folder is opened
    plan = prepare(cfg, "ray", replace_other)
    report = RunReport(plan.out, plan.n_items, plan.n_done, 0, len(plan.listing.skipped), 0.0,
                       notes=list(plan.listing.notes))
    if not plan.batches:
        return _end(report, t0, plots)
    bar = None

    def progress(done: int) -> None:
        nonlocal bar
        if bar is not None:
            bar.update(done)
        if on_progress is not None:
            on_progress(done, plan.n_todo)

    try:
        with session(cfg) as s:
            # the bar's clock starts once Ray is up (its ETA is the items' pace)
            bar = progress_bar(cfg, plan.n_todo, label,
                               stream if stream is not None else sys.stderr)
            res = _resources(ray, cfg, len(plan.batches))
            where = (f"the Ray cluster at {s.address}" if s.address else
                     "a local Ray started for the job" if s.started else "the running Ray")
            report.notes.append(f"{res.describe()} on {where}"
                                + (f" (ray.init {s.init_s:.1f} s)" if s.started else ""))
            with _ray_warnings_off():
                _consume(_mapped(ray, cfg, plan.out, plan.batches, res), report, progress)
    except KeyboardInterrupt:
        _remove_partial(plan.out)
        _end(report, t0, plots=False)
        raise Interrupted(report) from None
    return _end(report, t0, plots)


def _resources(ray: Any, cfg: BatchConfig, n_batches: int) -> Resources:
    nodes = [float(nd.get("Resources", {}).get("CPU", 0)) for nd in ray.nodes()
             if nd.get("Alive")]
    res = plan_resources(cfg, ray.cluster_resources(), nodes)
    if res.workers > n_batches:  # no actor without a batch to do
        res = dataclasses.replace(res, workers=n_batches)
    return res


def _mapped(ray: Any, cfg: BatchConfig, out: Path, batches: list[list[dict[str, Any]]],
            res: Resources) -> Any:
    """The lazy Dataset of the job: one row per planned batch → :class:`RayBatchWorker`."""
    from .local import engine_version

    ds = ray.data.from_items(batch_rows(batches), override_num_blocks=len(batches))
    return ds.map_batches(
        RayBatchWorker,
        fn_constructor_args=(cfg.to_dict(), str(out.resolve()), res.cpus, res.device,
                             engine_version()),
        batch_size=1, batch_format="numpy", concurrency=res.workers,
        num_cpus=res.cpus, num_gpus=res.gpus or None, max_restarts=0)


@contextlib.contextmanager
def _ray_warnings_off() -> Iterator[None]:
    """Ray's own warnings (deprecations inside Ray Data, tuning hints, the ``max_restarts``
    keyword going through ``ray_remote_args``) are not the user's business."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"ray(\.|$)")
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
        yield


def _consume(out: Any, report: RunReport, progress: Any) -> None:
    """Run the Dataset ``out``, counting the items as they come back into ``report``;
    :class:`RayError` on the first failed batch or a failure of Ray itself."""
    done = 0
    try:
        for cols in out.iter_batches(batch_size=None, batch_format="numpy",
                                     prefetch_batches=0):
            errors = [str(e) for e in cols["error"]]
            if any(errors):
                first = next(e for e in errors if e)
                same = [j for j, e in enumerate(errors) if e == first]
                raise _failure([str(cols["name"][j]) for j in same],
                               [str(cols["key"][j]) for j in same], first)
            skipped = [str(x) for x in cols["skipped"]]
            report.n_skipped += sum(1 for x in skipped if x)
            report.n_computed += sum(1 for x in skipped if not x)
            for t in cols["timings"]:
                if t:
                    report.calls += 1
                    for k, v in json.loads(str(t)).items():
                        report.timings[k] = report.timings.get(k, 0.0) + v
            done += len(skipped)
            progress(done)
    except (RayError, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - a worker's failure surfaces as one line
        if "No module named 'lrp_engine'" in str(e):
            raise RayError("the Ray cluster's workers cannot import lrp_engine: install "
                           "lrp-explorer[ray] (this version) on every node") from None
        raise RayError(f"the Ray job failed: {_first_line(e)}") from None


def _remove_partial(out: Path) -> None:
    """Temporary files of item writes cut short (an actor stopped mid-write)."""
    from .worker import ITEMS, SKIPPED

    for folder in (out / ITEMS, out / SKIPPED):
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


def _end(report: RunReport, t0: float, plots: bool) -> RunReport:
    report.finalised = finalise(report.out, plots=plots)
    report.notes += report.finalised.notes
    report.seconds = time.perf_counter() - t0
    return report


__all__ = ["RAY_REQUIREMENT", "RayBatchWorker", "RayError", "Resources", "Session",
           "batch_rows", "import_ray", "plan_resources", "run_ray", "session", "start_local"]
