"""Throughput of the batch command: the batched floor, the local backend and ``--ray``.

Side by side in one run (rounds interleaved, medians over ``--repeats``; the machine is
shared, so read the ratios), on

* the 1000 bundled digits with LeNet, and
* 64 photos with EfficientNet-Lite0 (bundled weights): random crops, flips and sizes of the
  four bundled photos written as JPEGs into a temporary flat folder (labels unknown: the
  predicted class is explained), unless ``--photos DIR`` names a folder of your own;

each with the methods ε, Gradient×Input and random and pixel-flipping curves, timed as:

(a) the floor: the engine's own calls on inputs decoded beforehand, in the job's batches,
    no I/O — per batch one forward for the targets, ``explain`` / ``gradient_x_input`` /
    the random maps, ``fill_values`` and one ``pixel_flipping`` per method (the worker's
    settings); the first batch's curves are checked against the local run's item files;
(b) local: ``run_local`` end to end into a fresh folder (listing, model load, decoding,
    compute, one ``.npz`` per item, ``finalise`` without plots);
(c) Ray: ``run_ray`` with 2 workers on a local Ray of 2 CPUs (started once; its
    ``ray.init`` time is printed apart), end to end likewise: each run starts its own actor
    pool (two processes importing torch and loading the model) and streams the batches
    through the object store.

Targets (issue 16): local ≥ 0.9× the floor's throughput, Ray ≥ 0.7× local. Ray's overhead is
broken down: ``ray.init``, the actor pool's start (a one-batch job's wall time minus its
compute), putting the inputs into the object store, and the actors' busy fraction.

``--vgg``: VGG-16 (random weights) per-image costs on this CPU for the README's scaling
plan: ε, ε-γ-box and ε+flat ``explain`` (batch 8), B-LRP with 32 samples (one image), and
one forward (batch 32: the unit of a perturbation curve's cost).

    python benchmarks/bench_batch.py                 # digits and photos (~10 min on 2 cores)
    python benchmarks/bench_batch.py --only digits --repeats 3
    python benchmarks/bench_batch.py --vgg --only none
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import lrp_engine as le  # noqa: E402
from lrp_engine.batch import BatchConfig, BatchWorker, run_local  # noqa: E402
from lrp_engine.batch.config import GRADIENT_X_INPUT, RANDOM  # noqa: E402
from lrp_engine.batch.local import columnar, prepare  # noqa: E402
from lrp_engine.batch.sources import list_items  # noqa: E402
from lrp_engine.cli import keep_freed_memory  # noqa: E402
from lrp_engine.evaluation import fill_values, pixel_flipping  # noqa: E402

ASSETS = ROOT / "lrp_engine" / "assets" / "images"
METHODS = ("epsilon", GRADIENT_X_INPUT, RANDOM)


def make_photos(folder: Path, n: int = 64, seed: int = 0) -> Path:
    """``n`` JPEGs (random crop, flip, size 256–400 px) of the bundled photos in ``folder``."""
    from PIL import Image, ImageOps

    rng = np.random.default_rng(seed)
    sources = sorted(ASSETS.glob("*.jpg"))
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        im = Image.open(sources[i % len(sources)]).convert("RGB")
        w, h = im.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        im = im.crop((x0, y0, x0 + cw, y0 + ch))
        if rng.random() < 0.5:
            im = ImageOps.mirror(im)
        side = int(rng.integers(256, 401))
        im = im.resize((side, int(side * ch / cw)))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=90)
        (folder / f"photo_{i:03d}.jpg").write_bytes(buf.getvalue())
    return folder


# -- (a) the floor ------------------------------------------------------------------------

class Floor:
    """The job's engine calls on decoded inputs (decoded here, untimed)."""

    def __init__(self, cfg: BatchConfig, tmp: Path) -> None:
        self.cfg = cfg
        self.w = BatchWorker(cfg, str(tmp / "floor_scratch"))  # its model, card, decoding
        rows = list_items(cfg).rows
        size = cfg.batch_size
        self.batches = []
        for i in range(0, len(rows), size):
            chunk = rows[i:i + size]
            d, bad = self.w._decode(chunk)
            assert d is not None and not bad, bad
            self.batches.append((d.x, torch.tensor([int(r["label"]) for r in d.rows]),
                                 d.rows, self.w._seed_ids(d.rows)))
        self.n = len(rows)

    def run(self, warm_up: bool = False) -> dict[str, torch.Tensor]:
        cfg, w, model = self.cfg, self.w, self.w.m.model
        first: dict[str, torch.Tensor] = {}
        for b, (x, labels, rows, ids) in enumerate(self.batches[:1] if warm_up else
                                                   self.batches):
            with torch.no_grad():
                pred = model(x).argmax(1)
            t = torch.where(labels >= 0, labels, pred)
            maps = {"epsilon": le.explain(model, x, t, w._composite("epsilon")),
                    GRADIENT_X_INPUT: le.gradient_x_input(model, x, t),
                    RANDOM: w._random_maps(rows, x.shape[-2], x.shape[-1])}
            values = fill_values(x, cfg.fill, w.data_range, w.normalise, cfg.seed, ids)
            for key, rel in maps.items():
                c = pixel_flipping(model, x, t, rel, steps=cfg.steps,
                                   pixels_per_step=cfg.pixels_per_step, fill=values,
                                   order="random" if key == RANDOM else "most",
                                   score=cfg.score, seed=cfg.seed, batch_size=cfg.eval_batch,
                                   image_ids=ids)
                if b == 0:
                    first[key] = c
        return first


def check_floor(first: dict[str, torch.Tensor], floor: Floor, out: Path) -> str:
    """Whether the floor's first-batch curves are the local run's (the same work)."""
    worst = 0.0
    for i, row in enumerate(floor.batches[0][2]):
        with np.load(out / "items" / f"{row['key']}.npz") as z:
            for key, c in first.items():
                worst = max(worst, float(np.abs(z[f"curve/{key}/pf"] - c[i].numpy()).max()))
    return "the same curves as the local run" if worst == 0 else \
        f"curves differ from the local run by up to {worst:.2g}"


# -- the runs -------------------------------------------------------------------------------

def fresh(path: Path) -> str:
    shutil.rmtree(path, ignore_errors=True)
    return str(path)


def bench_set(name: str, cfg: BatchConfig, tmp: Path, repeats: int, ray_ok: bool) -> None:
    n = len(list_items(cfg).rows)
    print(f"\n== {name}: {n} items, methods {', '.join(METHODS)}, pixel flipping "
          f"{cfg.steps} steps × {cfg.pixels_per_step} px, batches of {cfg.batch_size}")
    floor = Floor(cfg, tmp)
    times: dict[str, list[float]] = {"floor": [], "local": [], "ray": []}
    ray_reports = []
    local_out = tmp / f"{name}_local"
    floor_check = ""
    floor.run(warm_up=True)  # layer-table probes, allocator: once, on one batch
    for r in range(1, repeats + 1):
        t0 = time.perf_counter()
        first = floor.run()
        t_floor = time.perf_counter() - t0
        t0 = time.perf_counter()
        run_local(cfg.replace(out=fresh(local_out)), plots=False)
        t_local = time.perf_counter() - t0
        if not floor_check:
            floor_check = check_floor(first, floor, local_out)
        t_ray = float("nan")
        if ray_ok:
            from lrp_engine.batch.ray_backend import run_ray

            t0 = time.perf_counter()
            rep = run_ray(cfg.replace(out=fresh(tmp / f"{name}_ray"), workers=2), plots=False)
            t_ray = time.perf_counter() - t0
            ray_reports.append(rep)
        times["floor"].append(t_floor)
        times["local"].append(t_local)
        times["ray"].append(t_ray)
        print(f"   round {r}: floor {t_floor:.1f} s, local {t_local:.1f} s, ray {t_ray:.1f} s")
    med = {k: statistics.median(v) for k, v in times.items()}
    thr = {k: n / v for k, v in med.items()}
    print(f"   floor check: {floor_check}")
    print(f"   {'':6} {'wall s':>8} {'items/s':>8}")
    for k in ("floor", "local", "ray"):
        print(f"   {k:6} {med[k]:8.1f} {thr[k]:8.2f}")
    print(f"   local / floor throughput: {thr['local'] / thr['floor']:.2f}  (target ≥ 0.9)")
    if ray_ok:
        print(f"   ray / local throughput:   {thr['ray'] / thr['local']:.2f}  (target ≥ 0.7)")
        ray_overhead(cfg, tmp, name, ray_reports[-1], med["ray"])


def ray_overhead(cfg: BatchConfig, tmp: Path, name: str, rep, wall: float) -> None:
    """Where Ray's extra time goes."""
    import ray

    from lrp_engine.batch.ray_backend import batch_rows, run_ray

    busy = sum(rep.timings.values())
    print(f"   Ray: actors computed {busy:.1f} s of {2 * wall:.1f} worker-seconds "
          f"(busy {busy / (2 * wall):.0%}; {rep.calls} batches)")
    one = cfg.replace(limit=cfg.batch_size, out=fresh(tmp / f"{name}_ray1"), workers=1)
    t0 = time.perf_counter()
    r1 = run_ray(one, plots=False)
    w1 = time.perf_counter() - t0
    print(f"   Ray: a one-batch job takes {w1:.1f} s, {sum(r1.timings.values()):.1f} s of it "
          f"computing: the actor's start (process, imports, model load) ≈ "
          f"{w1 - sum(r1.timings.values()):.1f} s")
    plan = prepare(cfg.replace(out=fresh(tmp / f"{name}_plan")), "ray")
    rows = batch_rows(plan.batches)
    nbytes = sum(len(p) + len(m) for b in plan.batches for p, m in
                 zip(columnar(b)["payload"], columnar(b)["mask"], strict=True))
    t0 = time.perf_counter()
    ds = ray.data.from_items(rows, override_num_blocks=len(rows))
    ds.count()
    print(f"   Ray: the inputs ({nbytes / 1e6:.1f} MB in {len(rows)} rows) go into the object "
          f"store in {time.perf_counter() - t0:.2f} s")


# -- VGG-16 costs for the scaling plan ---------------------------------------------------

def bench_vgg() -> None:
    from benchmarks.timing import interleaved
    from lrp_engine.models.vgg import VGG16

    torch.manual_seed(0)
    model = VGG16().eval()
    x8, x1, x32 = torch.randn(8, 3, 224, 224), torch.randn(1, 3, 224, 224), torch.randn(
        32, 3, 224, 224)

    def fwd() -> None:
        with torch.no_grad():
            model(x32)

    fns = {f"explain {c} (batch 8)": (lambda c=c: le.explain(model, x8, composite=c))
           for c in ("epsilon", "epsilon-gamma-box", "epsilon-plus-flat")}
    fns["B-LRP 32 samples (1 image)"] = lambda: le.blrp(model, x1, composite="epsilon",
                                                         n_samples=32)
    fns["forward (batch 32)"] = fwd
    per = {"explain": 8, "B-LRP": 1, "forward": 32}
    t = interleaved(fns, 1)
    print(f"\n== VGG-16 (random weights) on this CPU, {torch.get_num_threads()} threads, "
          "per image (median of 1 after a warm-up)")
    for k, v in t.items():
        n = next(m for p, m in per.items() if k.startswith(p))
        print(f"   {k:34} {v / n * 1000:8.0f} ms / image")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("digits", "photos", "none", "all"), default="all")
    ap.add_argument("--repeats", type=int, default=1, help="timed rounds (medians)")
    ap.add_argument("--photos", default=None, help="a folder of photos instead of the 64 made")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--vgg", action="store_true", help="VGG-16 per-image costs")
    ap.add_argument("--limit", type=int, default=None, help="the first N items (a smoke run)")
    args = ap.parse_args()
    kept = keep_freed_memory()  # as the command line does (and each Ray actor)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; glibc malloc keeps "
          f"freed memory: {kept}")
    ray_ok = not args.no_ray and args.only != "none"
    if ray_ok:
        from lrp_engine.batch.ray_backend import start_local

        print(f"ray.init (local, 2 CPUs, no dashboard): {start_local(2):.1f} s")
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as d:
        tmp = Path(d)
        common = dict(methods=METHODS, metrics=("pf",), quiet=True, limit=args.limit)
        if args.only in ("digits", "all"):
            bench_set("digits", BatchConfig(input="mnist", batch_size=50, **common), tmp,
                      args.repeats, ray_ok)
        if args.only in ("photos", "all"):
            folder = Path(args.photos) if args.photos else make_photos(tmp / "photos")
            # 8 evaluations of 6272 pixels each: the whole 224×224 image flipped
            bench_set("photos", BatchConfig(input=str(folder), model="efficientnet_lite0",
                                            steps=8, pixels_per_step=6272, batch_size=16,
                                            **common), tmp, args.repeats, ray_ok)
    if ray_ok:
        import ray

        ray.shutdown()
    if args.vgg:
        bench_vgg()


if __name__ == "__main__":
    main()
