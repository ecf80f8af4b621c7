"""The batch command's Ray backend (:mod:`lrp_engine.batch.ray_backend`).

* Ray stays out of the engine and the app: importing them (the Ray backend's module too)
  leaves ``ray`` unimported, and no other source file imports it.
* On a real local Ray of 2 workers (``num_cpus=2``): a small job (24 bundled digits, LeNet,
  ε + Gradient×Input + random + B-LRP with 4 samples, pixel flipping with 8 steps, batches
  of 8) gives the local backend's numbers: metrics to 1e-6, every array of every
  ``items/<key>.npz`` bit for bit; ``config.json`` says ``"ray"``; a resume skips the
  finished batches; a worker that cannot load its model stops the run with one line.

The Ray tests are marked ``ray`` and skipped when Ray is not installed, except under
``LRP_REQUIRE_RAY=1`` (CI, which installs it from requirements-dev.txt): then they fail.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from lrp_engine.batch import BatchConfig, ResultsFolder, run_local
from lrp_engine.batch import ray_backend as rb

ROOT = Path(__file__).resolve().parents[1]
HAVE_RAY = importlib.util.find_spec("ray") is not None


def _require_ray() -> None:
    if HAVE_RAY:
        return
    msg = "Ray is not installed (pip install 'lrp-explorer[ray]')"
    if os.environ.get("LRP_REQUIRE_RAY") == "1":
        pytest.fail(f"{msg}; LRP_REQUIRE_RAY=1, so this is an error", pytrace=False)
    pytest.skip(msg)


# -- Ray stays out of the engine and the app -------------------------------------------------

def _modules(package: str) -> list[str]:
    folder = ROOT.joinpath(*package.split("."))
    return [f"{package}.{p.stem}" for p in sorted(folder.glob("*.py")) if p.stem != "__init__"]


def test_engine_and_app_do_not_import_ray() -> None:
    mods = ["lrp_engine", "lrp_engine.batch", *_modules("lrp_engine.batch"), "lrp_engine.cli",
            "lrp_explorer", "lrp_explorer.cli", *_modules("lrp_explorer.ui")]
    code = ("import importlib, sys\n"
            f"for m in {mods!r}:\n"
            "    importlib.import_module(m)\n"
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]", r.stdout


def test_only_the_ray_backend_imports_ray() -> None:
    found = []
    for path in sorted([*ROOT.glob("lrp_engine/**/*.py"), *ROOT.glob("lrp_explorer/**/*.py")]):
        if path.name == "ray_backend.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                     else [])
            if any(n == "ray" or n.startswith("ray.") for n in names):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, found


# -- without a cluster ---------------------------------------------------------------------

def test_plan_resources() -> None:
    cpu = BatchConfig(workers=2)
    assert rb.plan_resources(cpu, {"CPU": 2.0}, [2.0]) == rb.Resources(2, 1, 0, "cpu")
    # default: one actor per CPU; CPUs shared, at most one node's worth each
    assert rb.plan_resources(BatchConfig(), {"CPU": 32.0}, [16.0, 16.0]) == rb.Resources(
        32, 1, 0, "cpu")
    assert rb.plan_resources(BatchConfig(workers=1), {"CPU": 32.0}, [16.0, 16.0]
                             ) == rb.Resources(1, 16, 0, "cpu")
    # GPUs: one per actor, one actor per GPU by default; --device cpu keeps them out
    assert rb.plan_resources(BatchConfig(device="auto"), {"CPU": 16.0, "GPU": 4.0},
                             [8.0, 8.0]) == rb.Resources(4, 4, 1, "cuda")
    assert rb.plan_resources(BatchConfig(device="cpu"), {"CPU": 16.0, "GPU": 4.0},
                             [16.0]).gpus == 0
    with pytest.raises(rb.RayError, match="no GPUs"):
        rb.plan_resources(BatchConfig(device="cuda"), {"CPU": 4.0}, [4.0])
    with pytest.raises(rb.RayError, match="--workers 3 needs a CPU each"):
        rb.plan_resources(BatchConfig(workers=3), {"CPU": 2.0}, [2.0])


def test_unreachable_address_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert rb._host_port(f"ray://10.0.0.1:{port}") == ("10.0.0.1", port)
    t0 = time.perf_counter()
    with pytest.raises(rb.RayError, match=f"cannot reach a Ray cluster at 127.0.0.1:{port}"):
        rb.probe(f"127.0.0.1:{port}")
    assert time.perf_counter() - t0 < 10


class _Failing:
    timings: ClassVar[dict[str, float]] = {}

    def __call__(self, batch):
        raise RuntimeError("out of memory\n  (details on the next line)")


def test_worker_errors_name_the_items() -> None:
    """A batch that raises comes back as error rows; the driver's message names its items."""
    actor = rb.RayBatchWorker.__new__(rb.RayBatchWorker)
    actor.worker, actor.error = _Failing(), ""
    row = {c: np.array([np.array(v, dtype=object)], dtype=object) for c, v in {
        "key": ["a" * 24, "b" * 24], "name": ["x/1.png", "x/2.png"], "label": [0, 1],
        "index": [0, 1], "payload": [b"1", b"2"], "mask": [b"", b""]}.items()}
    out = actor(row)
    assert list(out["error"]) == ["RuntimeError: out of memory"] * 2
    e = rb._failure(list(out["name"]), list(out["key"]), out["error"][0])
    assert str(e) == (f"a Ray worker failed on item x/1.png ({'a' * 24}) and the 1 other "
                      "item(s) of its batch: RuntimeError: out of memory")
    assert str(rb._failure(["x"], ["k"], f"{rb.LOAD_FAILED}: checkpoint not found: /a.pt")
               ) == "a Ray worker could not load the model: checkpoint not found: /a.pt"


# -- a real local Ray of 2 workers ---------------------------------------------------------

JOB = BatchConfig(input="mnist", limit=24, methods=("epsilon", "gradient_x_input", "random",
                                                    "blrp"),
                  metrics=("pf",), steps=8, blrp_samples=4, blrp_alphas=(5, 50, 95),
                  batch_size=8, quiet=True)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray with 2 CPUs for this module; yields ray.init's seconds."""
    _require_ray()
    import ray

    seconds = rb.start_local(2)
    print(f"\nray.init (2 CPUs): {seconds:.1f} s")
    yield seconds
    ray.shutdown()


@pytest.fixture(scope="module")
def folders(local_ray, tmp_path_factory):
    """The job run locally, then on Ray with 2 workers: (local folder, Ray folder, report)."""
    base = tmp_path_factory.mktemp("batch_ray")
    run_local(JOB.replace(out=str(base / "local")), plots=False)
    t0 = time.perf_counter()
    report = rb.run_ray(JOB.replace(out=str(base / "ray"), workers=2), plots=False)
    print(f"Ray run, 24 digits on 2 workers: {time.perf_counter() - t0:.1f} s")
    return base / "local", base / "ray", report


def _npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.ray
def test_ray_gives_the_local_numbers(folders) -> None:
    local, ray_out, report = folders
    assert (report.n_items, report.n_computed, report.n_skipped) == (24, 24, 0)
    assert report.calls == 3 and report.timings["epsilon"] > 0
    assert any("2 Ray workers (1 CPU each)" in n for n in report.notes), report.notes
    a, b = ResultsFolder(local).metrics_columns(), ResultsFolder(ray_out).metrics_columns()
    assert a.keys() == b.keys() and len(a["key"]) == 24
    for col in a:
        if a[col].dtype == object:
            assert list(a[col]) == list(b[col]), col
        else:
            np.testing.assert_allclose(b[col], a[col], rtol=0, atol=1e-6, err_msg=col)
    files = sorted(p.name for p in (local / "items").glob("*.npz"))
    assert files == sorted(p.name for p in (ray_out / "items").glob("*.npz"))
    assert len(files) == 24
    for name in files:
        x, y = _npz(local / "items" / name), _npz(ray_out / "items" / name)
        assert x.keys() == y.keys(), name
        assert any(k.startswith("map/blrp_a") for k in x)
        for k in x:  # maps, curves, input, the row's JSON: bit for bit
            assert x[k].dtype == y[k].dtype and x[k].shape == y[k].shape, (name, k)
            assert x[k].tobytes() == y[k].tobytes(), (name, k)
    assert (local / "summary.md").read_text() == (ray_out / "summary.md").read_text()


@pytest.mark.ray
def test_config_records_the_backend(folders) -> None:
    local, ray_out, _ = folders
    lc, rc = (json.loads((f / "config.json").read_text()) for f in (local, ray_out))
    assert (lc["backend"], rc["backend"]) == ("local", "ray")
    assert (rc["config"]["backend"], rc["config"]["workers"]) == ("ray", 2)
    assert rc["config"]["ray_address"] is None
    assert rc["config_hash"] == lc["config_hash"]  # where it ran does not change results
    assert ResultsFolder(ray_out).backend == "ray"


@pytest.mark.ray
def test_resume_on_ray_skips_finished_batches(folders) -> None:
    local, ray_out, _ = folders
    items = ray_out / "items"
    keys = [r["key"] for r in ResultsFolder(ray_out).metrics_rows()]  # in listing order
    gone = items / f"{keys[9]}.npz"  # one item of the middle batch (items 8…15)
    gone.unlink()
    before = {p.name: p.stat().st_mtime_ns for p in items.glob("*.npz")}
    report = rb.run_ray(JOB.replace(out=str(ray_out), workers=2), plots=False)
    assert (report.n_done_before, report.n_computed, report.calls) == (23, 8, 1)
    assert any("1 Ray worker " in n for n in report.notes), report.notes  # one batch left
    after = {p.name: p.stat().st_mtime_ns for p in items.glob("*.npz")}
    assert len(after) == 24
    redone = {n for n in after if after[n] != before.get(n)}
    assert redone == {f"{k}.npz" for k in keys[8:16]}  # the batch whole, nothing else
    assert _npz(gone)["map/epsilon"].tobytes() == _npz(local / "items" / gone.name)[
        "map/epsilon"].tobytes()
    # all finished: nothing to do, no actor started
    report = rb.run_ray(JOB.replace(out=str(ray_out), workers=2), plots=False)
    assert (report.n_done_before, report.n_computed, report.calls) == (24, 0, 0)


@pytest.mark.ray
def test_a_worker_that_cannot_load_stops_with_one_line(local_ray, tmp_path: Path) -> None:
    cfg = JOB.replace(limit=4, batch_size=4, methods=("epsilon",), model="lenet",
                      checkpoint=str(tmp_path / "missing.pt"), out=str(tmp_path / "out"),
                      workers=1)
    with pytest.raises(rb.RayError) as e:
        rb.run_ray(cfg, plots=False)
    msg = str(e.value)
    assert msg == f"a Ray worker could not load the model: checkpoint not found: " \
                  f"{tmp_path / 'missing.pt'}", msg
