"""Conservation per model family × preset: Σ input relevance ÷ the explained logit.

For every preset in ``le.PRESETS`` (and Gradient×Input, for reference) on

* torchvision classifiers with random weights (torchvision's initialisation; a layer it
  initialises to zero, ViT's head, is drawn at random, else every logit is 0) and
  randomised BatchNorm statistics and affine parameters, one 224×224 image of uniform
  pixels in ImageNet units, the predicted class: resnet18, resnet50, densenet121,
  vgg16_bn, mobilenet_v2, efficientnet_b0, convnext_tiny, vit_b_16, swin_t,
  regnet_y_400mf, googlenet, shufflenet_v2_x1_0, squeezenet1_1, alexnet;
* the bundled trained models: EfficientNet-Lite0 on the four photos in ``lrp_engine/assets/images``,
  LeNet on 12 held-out digits, the MRI demo on 8 held-out slices (two per class).

BatchNorm statistics: by default each BatchNorm's running mean and variance are first
measured on 8 such images (train-mode forward) and then randomised around them (mean +
0.2·σ·N(0, 1), variance × U(0.5, 1.5)), affine weight U(0.5, 1.5), bias 0.2·N(0, 1).
``--uncalibrated`` draws them from nothing (mean 0.2·N(0, 1), variance U(0.5, 1.5)): then
the signal of MobileNet, EfficientNet, GoogLeNet and ShuffleNet fades with depth (their
initialisation assumes BatchNorm normalises), the logit is made by the biases alone and
every ratio is ~0.

zB presets get the model's pixel bounds per channel in normalised units, as the app passes
them (black and white pixels: ``(0 − mean) / std`` and ``(1 − mean) / std``). A cell is the
ratio (min–max over a model's inputs); ``*`` marks a cell outside [0, 2], ``!`` one outside
[−0.5, 2] as well. A family the engine cannot explain prints its ``UnsupportedLayerError``
in one line and the run goes on. Run by hand, not in CI:

    python benchmarks/bench_conservation.py                        # ≈ 5 min on 2 cores
    python benchmarks/bench_conservation.py --families resnet50,lenet --presets epsilon
"""

from __future__ import annotations

import argparse
import inspect
import math
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lrp_engine.torchvision_compat import import_torchvision  # noqa: E402

tv = import_torchvision()

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch import Tensor, nn  # noqa: E402

import lrp_engine as le  # noqa: E402
from lrp_engine.data import load_bundled_mnist, mnist_to_tensor  # noqa: E402
from lrp_engine.models import load_bundled, zoo  # noqa: E402

TORCHVISION = ("resnet18", "resnet50", "densenet121", "vgg16_bn", "mobilenet_v2",
               "efficientnet_b0", "convnext_tiny", "vit_b_16", "swin_t", "regnet_y_400mf",
               "googlenet", "shufflenet_v2_x1_0", "squeezenet1_1", "alexnet")
BUNDLED = ("efficientnet_lite0", "lenet", "mri_demo")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
GXI = "gradient×input"
#: column headings (the table is wide enough as it is)
SHORT = {"epsilon": "ε", "zero": "0", "epsilon-plus-flat": "ε+flat", "epsilon-gamma-box": "ε-γ-box",
         "deep-taylor": "deep-taylor", "w2-alpha-beta": "w²-αβ",
         "vgg-gamma-blocks": "vgg-γ-blocks", "depth-gamma-epsilon-zero": "depth-γ-ε-0",
         GXI: "G×I"}
#: the two ranges a cell is checked against
WIDE, NARROW = (-0.5, 2.0), (0.0, 2.0)

Bounds = tuple[tuple[float, ...], tuple[float, ...]]


def _batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None]


def calibrate_batchnorm(model: nn.Module, x: Tensor) -> None:
    """Running statistics measured on ``x`` (one train-mode forward, cumulative average);
    the model is left in eval mode."""
    bns = _batchnorms(model)
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()
    for m in bns:
        m.momentum = 0.1


def randomise_batchnorm(model: nn.Module, g: torch.Generator, calibrated: bool) -> None:
    """Random running statistics (around the calibrated ones, or from nothing) and affine
    parameters in every BatchNorm, so that folding it is not the identity."""
    for m in _batchnorms(model):
        c = m.num_features
        noise = 0.2 * torch.randn(c, generator=g)
        scale = 0.5 + torch.rand(c, generator=g)
        if calibrated:
            m.running_mean.add_(noise * m.running_var.sqrt())
            m.running_var.mul_(scale)
        else:
            m.running_mean.copy_(noise)
            m.running_var.copy_(scale)
        if m.affine:
            m.weight.data.copy_(0.5 + torch.rand(c, generator=g))
            m.bias.data.copy_(0.2 * torch.randn(c, generator=g))


def _draw_zero_weights(model: nn.Module, g: torch.Generator) -> None:
    """Linear layers initialised to zero (ViT's head) drawn at random, N(0, 1/fan_in)."""
    for m in model.modules():
        if isinstance(m, nn.Linear) and not m.weight.detach().any():
            m.weight.data.copy_(torch.randn(m.weight.shape, generator=g)
                                / m.in_features ** 0.5)


def imagenet_images(n: int, g: torch.Generator) -> Tensor:
    """``n`` images of uniform pixels in ImageNet units."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (torch.rand(n, 3, 224, 224, generator=g) - mean) / std


def torchvision_case(name: str, calibrated: bool = True) -> tuple[nn.Module, Tensor, Bounds]:
    """A torchvision classifier with random weights, one image, ImageNet bounds."""
    torch.manual_seed(0)
    kwargs = {"init_weights": True} if name == "googlenet" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = getattr(tv.models, name)(weights=None, **kwargs)
    g = torch.Generator().manual_seed(1)
    _draw_zero_weights(model, g)
    if calibrated and _batchnorms(model):
        calibrate_batchnorm(model, imagenet_images(8, g))
    randomise_batchnorm(model, g, calibrated)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = imagenet_images(1, g)
    low = tuple((0.0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True))
    high = tuple((1.0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True))
    return model, x, (low, high)


def bundled_case(name: str) -> tuple[nn.Module, Tensor, Bounds]:
    """A bundled trained model, its bundled inputs and its bounds (as tests load them)."""
    pre = zoo.preprocessing(name)
    bounds = (tuple(pre.low), tuple(pre.high))
    if name == "efficientnet_lite0":
        photos = sorted((ROOT / "lrp_engine" / "assets" / "images").glob("*.jpg"))
        x = torch.cat([zoo.prepare_image(Image.open(p), name) for p in photos])
        return zoo.load_efficientnet_lite0(), x, bounds
    if name == "mri_demo":
        from lrp_engine.mri_demo import held_out_set, load_mri_demo_model

        batch = held_out_set(200)
        idx = torch.cat([torch.nonzero(batch.labels == k)[:2, 0] for k in range(4)])
        return load_mri_demo_model(), batch.images[idx], bounds
    images, _ = load_bundled_mnist("test")
    return load_bundled(name), mnist_to_tensor(images[:12], size=32), bounds


def composite(preset: str, bounds: Bounds) -> le.Composite:
    """The preset as the app builds it: zB presets get the per-channel bounds."""
    params = inspect.signature(le.PRESETS[preset]).parameters
    kw = {"low": torch.tensor(bounds[0]), "high": torch.tensor(bounds[1])} \
        if "low" in params else {}
    return le.get_composite(preset, **kw)


def ratios(model: nn.Module, x: Tensor, bounds: Bounds, presets: list[str]
           ) -> dict[str, Tensor | str]:
    """Σ relevance ÷ logit per input for each preset (and Gradient×Input); a preset that
    fails gives its error message instead."""
    out: dict[str, Tensor | str] = {}
    logit: Tensor | None = None
    for preset in presets:
        try:
            res = le.analyze(model, x, composite=composite(preset, bounds), record=False)
        except le.UnsupportedLayerError:
            raise
        except Exception as e:  # noqa: BLE001 - a benchmark reports the error and goes on
            out[preset] = f"{type(e).__name__}: {e}".splitlines()[0]
            continue
        logit = res.output_relevance
        out[preset] = res.relevance.flatten(1).sum(1) / logit
    if logit is not None:
        with torch.no_grad():
            target = model(x).argmax(1)
        out[GXI] = le.gradient_x_input(model, x, target).flatten(1).sum(1) / logit
    return out


def cell(r: Tensor | str) -> tuple[str, bool, bool]:
    """The cell's text and whether it leaves [0, 2] and [−0.5, 2]."""
    if isinstance(r, str):
        return "error", True, True
    lo, hi = float(r.min()), float(r.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "non-finite!", True, True

    def fmt(v: float, digits: int) -> str:
        return f"{v:.{digits}g}" if 1e-4 <= abs(v) < 1e4 or v == 0 else f"{v:.1e}"

    single = lo == hi or r.numel() == 1
    text = fmt(lo, 3) if single else f"{fmt(lo, 2)}…{fmt(hi, 2)}"
    narrow = lo < NARROW[0] or hi > NARROW[1]
    wide = lo < WIDE[0] or hi > WIDE[1]
    return text + ("!" if wide else "*" if narrow else ""), narrow, wide


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--families", default=",".join(TORCHVISION + BUNDLED),
                    help="comma-separated (default: all)")
    ap.add_argument("--presets", default=",".join(le.PRESETS),
                    help="comma-separated (default: every preset in le.PRESETS)")
    ap.add_argument("--uncalibrated", action="store_true",
                    help="BatchNorm statistics drawn from nothing, not around measured ones")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    families = [f for f in args.families.split(",") if f]
    presets = [p for p in args.presets.split(",") if p]
    unknown = [p for p in presets if p not in le.PRESETS]
    if unknown:
        ap.error(f"unknown presets {unknown}; known: {', '.join(le.PRESETS)}")
    cols = [*presets, GXI]
    width = max(15, *(len(SHORT.get(c, c)) for c in cols)) + 1
    stats = "drawn from nothing" if args.uncalibrated else "measured, then randomised"
    print(f"torch {torch.__version__}, {args.threads} threads, device cpu; BatchNorm "
          f"statistics {stats}")
    print(f"Σ input relevance ÷ target logit (min…max over a model's inputs); "
          f"* outside [{NARROW[0]:g}, {NARROW[1]:g}], ! outside [{WIDE[0]:g}, {WIDE[1]:g}]")
    print("columns: " + ", ".join(f"{SHORT.get(c, c)} = {c}" for c in cols if SHORT.get(c, c) != c))
    print(f"{'family':20}" + "".join(f"{SHORT.get(c, c):>{width}}" for c in cols) + "      s")
    outside_narrow, outside_wide, errors = [], [], []
    for family in families:
        t0 = time.perf_counter()
        try:
            model, x, bounds = bundled_case(family) if family in BUNDLED else \
                torchvision_case(family, calibrated=not args.uncalibrated)
            res = ratios(model, x, bounds, presets)
        except le.UnsupportedLayerError as e:
            print(f"{family:20}unsupported: {str(e).splitlines()[0]}", flush=True)
            continue
        row = f"{family:20}"
        for c in cols:
            text, narrow, wide = cell(res.get(c, "missing"))
            row += f"{text:>{width}}"
            if isinstance(res.get(c), str):
                errors.append(f"{family} × {c}: {res[c]}")
            elif wide:
                outside_wide.append(f"{family} × {c}")
            elif narrow:
                outside_narrow.append(f"{family} × {c}")
        print(f"{row}{time.perf_counter() - t0:6.1f}", flush=True)
    print(f"\noutside [{WIDE[0]:g}, {WIDE[1]:g}]: {', '.join(outside_wide) or 'none'}")
    print(f"outside [{NARROW[0]:g}, {NARROW[1]:g}] only: {', '.join(outside_narrow) or 'none'}")
    for e in errors:
        print(f"error: {e}")


if __name__ == "__main__":
    main()
