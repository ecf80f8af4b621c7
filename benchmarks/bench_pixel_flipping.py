"""Cost of batched pixel flipping, and of the whole B-LRP pixel-flipping experiment.

(a) One LeNet heatmap, 64 evaluations × 4 pixels: ``pixel_flipping`` vs one batched forward
    of the 64 perturbed images through the same model (as given, and as a channels-last
    copy, which is what ``pixel_flipping`` runs on the CPU). Interleaved repeats, medians.
    Target: ≤ 1.2× the plain batched forward.
(b) The full experiment (1000 digits, N_MC = 100, 8 curves per digit), once, set up as the
    command line runs it (glibc malloc keeps freed memory). Target ≤ 60 s.
(c) For comparison, the notebook's per-image ``pixelflipping`` loop (64 single-image forwards,
    one argmax per flipped pixel) on a few digits × 8 heatmaps, extrapolated to 1000 digits.

Uses the bundled LeNet and MNIST digits when present, else a random-weight LeNet of the same
architecture and random inputs (said in the output).

    python benchmarks/bench_pixel_flipping.py             # everything (~1.5–2 min on 2 cores)
    python benchmarks/bench_pixel_flipping.py --quick     # (a) and (c) only
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import lrp_engine as le  # noqa: E402
from benchmarks.timing import interleaved  # noqa: E402
from lrp_engine.cli import keep_freed_memory  # noqa: E402
from lrp_engine.evaluation import (  # noqa: E402
    channels_last_copy,
    fill_values,
    pixel_flipping,
    pixel_ranks,
    to_channels_last,
)
from lrp_engine.experiment import (  # noqa: E402
    MNIST_NORMALISE,
    PixelFlippingConfig,
    format_summary,
    load_lenet,
    load_mnist_inputs,
    run_pixel_flipping_experiment,
)

STEPS, PPS = 64, 4


def seed_architecture_lenet() -> nn.Module:
    """The notebook's LeNet (conv 24, conv 48, dense 240) with random weights."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 24, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(24, 48, 5), nn.ReLU(),
        nn.Dropout2d(0.5), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(48 * 5 * 5, 240),
        nn.ReLU(), nn.Dropout(0.5), nn.Linear(240, 10)).eval()


def model_and_data(n: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor, str]:
    try:
        x, y = load_mnist_inputs(n)
        return load_lenet(), x, y, "bundled LeNet, bundled MNIST test digits"
    except (ImportError, FileNotFoundError, OSError, KeyError) as e:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, 1, 32, 32, generator=g)
        return (seed_architecture_lenet(), x, torch.randint(0, 10, (n,), generator=g),
                f"random-weight LeNet and random inputs (bundle unavailable: {e!r})")


def bench_one_heatmap(model: nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int
                      ) -> dict[str, float]:
    """(a): median ms of pixel_flipping on one heatmap vs the forward of its 64 images."""
    x1, y1 = x[:1], y[:1]
    rel = le.explain(model, x1, y1)
    ranks, _ = pixel_ranks(rel, x1.shape)
    fill = fill_values(x1, "uniform", normalise=MNIST_NORMALISE)
    s = torch.arange(STEPS).view(-1, 1, 1, 1)
    perturbed = torch.where(ranks < s * PPS, fill, x1)  # the 64 images [64, 1, 32, 32]
    twin, perturbed_cl = channels_last_copy(model), to_channels_last(perturbed)

    def flip() -> None:
        pixel_flipping(model, x1, y1, rel, steps=STEPS, pixels_per_step=PPS,
                       normalise=MNIST_NORMALISE)

    def forward() -> None:
        with torch.no_grad():
            model(perturbed)

    def forward_cl() -> None:
        with torch.no_grad():
            twin(perturbed_cl)

    fns = {"pixel_flipping": flip, "forward": forward, "forward_channels_last": forward_cl}
    return {k: 1e3 * v for k, v in interleaved(fns, repeats).items()}


def seed_pixelflipping(image: torch.Tensor, class_ind: int, relevance: torch.Tensor,
                       model: nn.Module, inner_steps: int, step_size: int) -> torch.Tensor:
    """The notebook's ``pixelflipping`` (one image [1, 32, 32], relevance [32, 32])."""
    img = image.clone()
    relevances = relevance.clone()
    scores = torch.zeros(inner_steps)
    for i in range(inner_steps):
        with torch.no_grad():
            scores[i] = model(img.view([1, 1, 32, 32]))[0][class_ind].data
        for _ in range(step_size):
            ind = np.unravel_index(int(torch.argmax(relevances)), relevances.shape)
            img[0][ind[0]][ind[1]] = (np.random.uniform(0, 1, 1)[0] - .1307) / 0.3081
            relevances[ind] = -np.inf
    return scores


def bench_seed_loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n_images: int,
                    n_maps: int = 8) -> float:
    """(c): seconds of the notebook's loop for ``n_images`` × ``n_maps`` heatmaps."""
    rel = le.explain(model, x[:n_images], y[:n_images])
    np.random.seed(0)
    t0 = time.perf_counter()
    for i in range(n_images):
        for _ in range(n_maps):
            seed_pixelflipping(x[i], int(y[i]), rel[i, 0], model, STEPS, PPS)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip the full experiment (b)")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--seed-images", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    model, x, y, what = model_and_data(args.images)
    print(f"{what}; torch {torch.__version__}, {torch.get_num_threads()} threads")

    a = bench_one_heatmap(model, x, y, args.repeats)
    print(f"\n(a) one heatmap, {STEPS} evaluations × {PPS} pixels (median of {args.repeats}):")
    print(f"    pixel_flipping                      {a['pixel_flipping']:7.2f} ms")
    print(f"    batched forward of the 64 images    {a['forward']:7.2f} ms   "
          f"ratio {a['pixel_flipping'] / a['forward']:.2f}× (target ≤ 1.2×)")
    print(f"    same, channels-last model copy      {a['forward_channels_last']:7.2f} ms   "
          f"ratio {a['pixel_flipping'] / a['forward_channels_last']:.2f}×")

    seed_s = bench_seed_loop(model, x, y, args.seed_images)
    per_image = seed_s / args.seed_images
    print(f"\n(c) notebook loop: {args.seed_images} digits × 8 heatmaps in {seed_s:.1f} s → "
          f"{per_image * 1000:.0f} s for 1000 digits (pixel flipping only)")

    if args.quick:
        return
    kept = keep_freed_memory()  # as the command line does
    cfg = PixelFlippingConfig(n_images=args.images, n_samples=args.samples)
    t0 = time.perf_counter()
    res = run_pixel_flipping_experiment(cfg, model=model, inputs=(x, y))
    wall = time.perf_counter() - t0
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in res.timings.items())
    print(f"\n(b) full experiment, {res.n_images} digits, N_MC = {cfg.n_samples}, "
          f"8 curves each: {wall:.1f} s (target ≤ 60 s)\n    {phases}; glibc malloc keeps "
          f"freed memory: {kept}")
    print(f"    pixel flipping vs the notebook loop: {per_image * res.n_images:.0f} s → "
          f"{res.timings['pixel_flipping']:.1f} s "
          f"({per_image * res.n_images / res.timings['pixel_flipping']:.0f}× faster)\n")
    print(format_summary(res))


if __name__ == "__main__":
    main()
