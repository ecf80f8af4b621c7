"""Cost of explaining a volume, measured side by side in one run.

1. ``slices`` — a 150-slice series [150, 1, 96, 96] (the MRI demo's held-out slices) through
   the bundled 2-D demo model (``mri_demo.load_mri_demo_model()``), preset
   "epsilon-gamma-box" with zB bounds 0…1 (the demo's intensity range): ``explain_slices``
   at batch sizes 1, 8, 16 and 32 (one relevance pass per batch), and Gradient×Input on the
   same slices in batches of 32 as the floor (one plain backward per batch), interleaved
   round by round, median of the repeats. Printed: the time for the series, per slice, and
   as a ratio to Gradient×Input.
2. ``volume`` — one demo volume through the bundled 3-D model (``mri_demo3d``):
   ``explain_volume`` with "epsilon-gamma-box" (bounds 0…1) and with "epsilon", vs
   Gradient×Input on the same [1, 1, 16, 48, 48] input.

    python benchmarks/bench_volume.py                  # ≈ 2–4 min on 2 idle cores
    python benchmarks/bench_volume.py --repeats 1 --slices 48

Threads: torch's default (all cores). The machine is shared and noisy: compare ratios, not
absolute times.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import lrp_engine as le  # noqa: E402
from benchmarks.timing import interleaved  # noqa: E402
from lrp_engine import mri_demo, mri_demo3d  # noqa: E402
from lrp_engine.volume_explain import explain_slices, explain_volume  # noqa: E402

BATCH_SIZES = (1, 8, 16, 32)
PRESET = "epsilon-gamma-box"
BOUNDS = {"low": 0.0, "high": 1.0}


def _gxi_in_batches(model: torch.nn.Module, x: torch.Tensor, batch: int) -> None:
    for i in range(0, len(x), batch):
        le.gradient_x_input(model, x[i:i + batch])


def bench_slices(n: int, repeats: int) -> None:
    model = mri_demo.load_mri_demo_model()
    x = mri_demo.held_out_set(n).images
    fns = {f"explain_slices b={b}": (lambda b=b: explain_slices(
        model, x, PRESET, batch_size=b, **BOUNDS)) for b in BATCH_SIZES}
    fns["gradient×input b=32"] = lambda: _gxi_in_batches(model, x, 32)
    t = interleaved(fns, repeats)
    base = t["gradient×input b=32"]
    print(f"\n2-D demo model, {n}-slice series [{n}, 1, 96, 96], {PRESET} (zB 0…1), "
          f"median of {repeats} interleaved repeats, {torch.get_num_threads()} threads")
    print(f"{'method':24} {'series s':>9} {'ms/slice':>9} {'× G×I':>7}")
    for k, v in t.items():
        print(f"{k:24} {v:9.2f} {1000 * v / n:9.2f} {v / base:7.2f}")


def bench_volume(repeats: int) -> None:
    model = mri_demo3d.load_mri_demo3d_model()
    vol, _, label = mri_demo3d.demo_volume(1)
    x = mri_demo3d.volume_to_input(vol)
    t = interleaved({
        "gradient×input": lambda: le.gradient_x_input(model, x),
        f"explain_volume {PRESET}": lambda: explain_volume(model, x, PRESET, **BOUNDS),
        "explain_volume epsilon": lambda: explain_volume(model, x, "epsilon"),
    }, repeats)
    base = t["gradient×input"]
    print(f"\n3-D demo model, one volume {list(x.shape)} (demo volume 1, class {label}), "
          f"median of {repeats} interleaved repeats")
    print(f"{'method':34} {'time ms':>9} {'× G×I':>7}")
    for k, v in t.items():
        print(f"{k:34} {1000 * v:9.1f} {v / base:7.2f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--slices", type=int, default=150)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--volume-repeats", type=int, default=10)
    args = p.parse_args(argv)
    bench_slices(args.slices, args.repeats)
    bench_volume(args.volume_repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
