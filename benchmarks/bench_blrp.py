"""B-LRP on the LeNet, one image, 100 posterior samples + 5 percentiles, side by side with

* the floor: one batched Gradient×Input over 100 copies of the image with dropout active
  (one forward + one backward of a batch of 100 — what any batched method must pay);
* the seed notebook's way: a loop over the 100 samples, each a forward pass with a frozen
  dropout seed and a layer-by-layer LRP-ε pass with deep-copied layers (``tests/
  seed_reference.py``'s re-implementation, dropout kept in train mode with the seed reset
  before the forward and the relevance pass), then ``numpy.percentile``.

Rounds are interleaved and medians reported (the machine is shared: compare the ratios).
Targets (issue 3): B-LRP ≤ 1.3× the floor and ≥ 15× faster than the seed loop.

    python benchmarks/bench_blrp.py [--repeats 15] [--samples 100]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import lrp_engine as le  # noqa: E402
from lrp_engine.data import load_bundled_mnist, mnist_to_tensor  # noqa: E402
from lrp_engine.models import load_bundled  # noqa: E402

ALPHAS = (5, 25, 50, 75, 95)


def seed_loop(model: nn.Module, x: torch.Tensor, class_id: int, n: int) -> np.ndarray:
    """The notebook's B-LRP: one sample at a time, layer by layer (see module docstring)."""
    maps = []
    layers = list(model.modules())[2:]
    for s in range(n):
        torch.manual_seed(s)
        acts = [x.detach().clone()]
        with torch.no_grad():
            for layer in layers:
                layer.train(isinstance(layer, (nn.Dropout, nn.Dropout2d)))
                acts.append(layer(acts[-1]))
        out = acts[-1]
        rel = out * torch.nn.functional.one_hot(torch.tensor([class_id]), out.shape[1])
        for i in range(len(layers))[::-1]:
            layer = layers[i]
            if isinstance(layer, nn.MaxPool2d):
                layer = nn.AvgPool2d(2)
            if isinstance(layer, (nn.Conv2d, nn.AvgPool2d, nn.Linear, nn.Flatten)):
                a = acts[i].detach().requires_grad_(True)
                z = copy.deepcopy(layer)(a) + 1e-9
                sr = (rel / z).detach()
                (z * sr).sum().backward()
                rel = (a * a.grad).detach()
        maps.append(rel[0].numpy())
    model.eval()
    return np.percentile(np.stack(maps), ALPHAS, axis=0)


def floor(model: nn.Module, x: torch.Tensor, n: int) -> torch.Tensor:
    """Gradient×Input of n copies with dropout active: one batched forward and backward."""
    model.train()
    try:
        return le.gradient_x_input(model, x.expand(n, *x.shape[1:]).contiguous(), target=None)
    finally:
        model.eval()


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--seed-repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = load_bundled("lenet")
    x = mnist_to_tensor(load_bundled_mnist("test")[0][:1], size=32)
    cls = int(model(x).argmax())
    n = args.samples

    def run_blrp() -> object:
        return le.blrp(model, x, composite="epsilon", n_samples=n, alphas=ALPHAS)

    def run_floor() -> object:
        return floor(model, x, n)

    for fn in (run_blrp, run_floor):  # warm-up
        fn()
    times: dict[str, list[float]] = {"B-LRP (le.blrp)": [], "floor: batched G×I": []}
    seed_times: list[float] = []
    for r in range(args.repeats):
        times["B-LRP (le.blrp)"].append(timed(run_blrp))
        times["floor: batched G×I"].append(timed(run_floor))
        if r < args.seed_repeats:
            seed_times.append(timed(lambda: seed_loop(model, x, cls, n)))
    med = {k: statistics.median(v) for k, v in times.items()}
    med["seed loop (notebook)"] = statistics.median(seed_times)
    base = med["B-LRP (le.blrp)"]
    print(f"LeNet, one 32×32 digit, {n} samples, α = {ALPHAS}; torch threads "
          f"{torch.get_num_threads()}; {args.repeats} interleaved rounds "
          f"({args.seed_repeats} for the seed loop)")
    print(f"{'method':28s} {'median ms':>10s} {'÷ B-LRP':>9s}")
    for k, v in med.items():
        print(f"{k:28s} {1000 * v:10.1f} {v / base:9.2f}")
    print(f"B-LRP / floor = {base / med['floor: batched G×I']:.2f} (target ≤ 1.3); "
          f"seed loop / B-LRP = {med['seed loop (notebook)'] / base:.1f} (target ≥ 15)")


if __name__ == "__main__":
    main()
