"""Cost of one ``explain`` relative to plain Gradient×Input, measured side by side.

For the LeNet (batch 1 and 100) and a random-weight VGG-16 (batch 1 and 8) this prints the
median time of Gradient×Input, ``explain(composite="epsilon")`` and
``explain(composite="epsilon-gamma-box")``, interleaved in the same run (the machine is
shared and noisy, so only ratios mean much), and each method's peak extra memory, measured
in a fresh subprocess per method (growth of the resident set's high-water mark during
one call; Linux only).

    python benchmarks/bench_explain.py            # everything (a few minutes on 2 cores)
    python benchmarks/bench_explain.py --quick    # fewer repeats, VGG batch 1 only

Target (issue 2): time ≤ 1.5× and peak memory ≤ 1.3× Gradient×Input for every preset.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import lrp_engine as le  # noqa: E402
from benchmarks.timing import interleaved  # noqa: E402
from lrp_engine.models import VGG16, LeNet  # noqa: E402

METHODS = ("gradient_x_input", "epsilon", "epsilon-gamma-box")


def make(model_name: str, batch: int) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    if model_name == "lenet":
        return LeNet().eval(), torch.randn(batch, 1, 32, 32)
    return VGG16().eval(), torch.randn(batch, 3, 224, 224)


def runner(method: str, model: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
    if method == "gradient_x_input":
        return lambda: le.gradient_x_input(model, x)
    return lambda: le.explain(model, x, composite=method)


def time_methods(model_name: str, batch: int, repeats: int) -> dict[str, float]:
    """Median seconds per method; methods interleaved round by round."""
    model, x = make(model_name, batch)
    return interleaved({m: runner(m, model, x) for m in METHODS}, repeats)


#: glibc serves every block over 128 KiB (all but the smallest tensors) from its own mmap and
#: unmaps it when freed, so the resident set follows the live tensors: otherwise memory
#: freed by the probe or the model's set-up is reused and hides part of a call's peak
CHILD_ENV = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _peak_child(model_name: str, batch: int, method: str) -> None:
    """Peak RSS growth of one call: the kernel's high-water mark (VmHWM) is reset to the
    current RSS just before the call (``/proc/self/clear_refs`` ← 5), so the memory of
    start-up and loading does not hide the call's own peak."""
    model, x = make(model_name, batch)
    le.layer_table(model, x)  # the cached probe is not part of a call's cost
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kib("VmRSS")
    runner(method, model, x)()
    print(json.dumps({"peak_kib": _status_kib("VmHWM") - before}))


def peak_memory(model_name: str, batch: int) -> dict[str, float]:
    """Extra peak resident memory (MiB) of one call of each method, fresh process each."""
    out = {}
    for m in METHODS:
        res = subprocess.run(
            [sys.executable, __file__, "--child", model_name, str(batch), m],
            capture_output=True, text=True, check=True, env=CHILD_ENV)
        out[m] = json.loads(res.stdout.strip().splitlines()[-1])["peak_kib"] / 1024
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        _peak_child(args.child[0], int(args.child[1]), args.child[2])
        return
    cases = [("lenet", 1, 30), ("lenet", 100, 15), ("vgg16", 1, 5), ("vgg16", 8, 3)]
    if args.quick:
        cases = [("lenet", 1, 10), ("lenet", 100, 5), ("vgg16", 1, 2)]
    print(f"torch {torch.__version__}, {args.threads} threads, device cpu")
    header = (f"{'model':8} {'batch':>5} {'method':18} {'time ms':>9} {'× GxI':>6} "
              f"{'peak MiB':>9} {'× GxI':>6}")
    print(header)
    print("-" * len(header))
    for model_name, batch, repeats in cases:
        t = time_methods(model_name, batch, repeats)
        mem = peak_memory(model_name, batch)
        for m in METHODS:
            mem_ratio = mem[m] / mem["gradient_x_input"] if mem["gradient_x_input"] > 0 else 0
            print(f"{model_name:8} {batch:5d} {m:18} {1000 * t[m]:9.1f} "
                  f"{t[m] / t['gradient_x_input']:6.2f} {mem[m]:9.1f} {mem_ratio:6.2f}")


if __name__ == "__main__":
    main()
