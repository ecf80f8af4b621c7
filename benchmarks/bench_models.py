"""Cost of LRP on the real-image models, measured side by side in one run.

1. EfficientNet-Lite0 (bundled ImageNet weights), one 224×224 photo (the bundled cat):
   ``explain`` with the presets "epsilon", "epsilon-gamma-box" and "epsilon-plus-flat" (the
   Image explorer's default for this model) vs Gradient×Input, interleaved round by round,
   median of the repeats. Target: ≤ 1.5× Gradient×Input. (γ, z⁺ and zB evaluate each
   convolution a second time with modified weights: with the native forward and the input
   gradient that is three convolutions against Gradient×Input's two, ≥ 1.5× by itself.)
2. VGG-16 (random weights), one 224×224 image: B-LRP with 32 posterior samples (one call;
   the convolutional trunk runs once and its backward is batched over samples) vs 32 single
   eval-mode ``explain`` calls (what a naive loop of one relevance pass per sample costs).

    python benchmarks/bench_models.py             # ≈ 2–3 min on 2 cores
    python benchmarks/bench_models.py --quick     # fewer repeats

The machine is shared and noisy: compare ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from PIL import Image  # noqa: E402

import lrp_engine as le  # noqa: E402
from benchmarks.timing import interleaved  # noqa: E402
from lrp_engine.models.vgg import VGG16  # noqa: E402
from lrp_engine.models.zoo import load_efficientnet_lite0, prepare_image  # noqa: E402

CAT = ROOT / "assets" / "images" / "cat_chelsea.jpg"


def bench_efficientnet(repeats: int) -> None:
    model = load_efficientnet_lite0()
    x = prepare_image(Image.open(CAT), "efficientnet_lite0")
    t = interleaved({
        "gradient×input": lambda: le.gradient_x_input(model, x),
        "epsilon": lambda: le.explain(model, x, composite="epsilon"),
        "epsilon-gamma-box": lambda: le.explain(
            model, x, composite=le.get_composite("epsilon-gamma-box", low=-1.0, high=1.0)),
        "epsilon-plus-flat": lambda: le.explain(model, x, composite="epsilon-plus-flat"),
    }, repeats)
    base = t["gradient×input"]
    print(f"\nEfficientNet-Lite0, 1×3×224×224, median of {repeats} interleaved repeats")
    print(f"{'method':20} {'time ms':>9} {'× G×I':>7}")
    for k, v in t.items():
        print(f"{k:20} {1000 * v:9.1f} {v / base:7.2f}")


def bench_vgg_blrp(samples: int, repeats: int) -> None:
    torch.manual_seed(0)
    model = VGG16().eval()
    x = torch.randn(1, 3, 224, 224)

    def loop() -> None:
        for _ in range(samples):
            le.explain(model, x, composite="epsilon")

    t = interleaved({
        f"B-LRP, {samples} samples": lambda: le.blrp(model, x, composite="epsilon",
                                                      n_samples=samples),
        f"{samples} × explain": loop,
    }, repeats)
    (k1, v1), (k2, v2) = t.items()
    print(f"\nVGG-16 (random weights), 1×3×224×224, median of {repeats} interleaved repeats")
    print(f"{k1:22} {v1:8.2f} s")
    print(f"{k2:22} {v2:8.2f} s")
    print(f"ratio B-LRP / loop: {v1 / v2:.2f}  (one explain: {1000 * v2 / samples:.0f} ms)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--samples", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, device cpu")
    bench_efficientnet(5 if args.quick else 15)
    bench_vgg_blrp(args.samples, 1 if args.quick else 3)


if __name__ == "__main__":
    main()
