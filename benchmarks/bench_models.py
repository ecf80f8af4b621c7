"""Cost of LRP on the real-image models, measured side by side in one run.

1. ``lite0`` — EfficientNet-Lite0 (bundled ImageNet weights), one 224×224 photo (the bundled
   cat): ``explain`` with the presets "epsilon", "epsilon-gamma-box" and "epsilon-plus-flat"
   (the Image explorer's default for this model) vs Gradient×Input, interleaved round by
   round, median of the repeats. Target: ≤ 1.5× Gradient×Input. (γ, z⁺ and zB evaluate each
   convolution a second time with modified weights: with the native forward and the input
   gradient that is three convolutions against Gradient×Input's two, ≥ 1.5× by itself.)
2. ``vgg-blrp`` — VGG-16 (random weights), one 224×224 image: B-LRP with 32 posterior
   samples (one call; the convolutional trunk runs once and its backward is batched over
   samples) vs 32 single eval-mode ``explain`` calls (a naive loop of one relevance pass per
   sample).
3. torchvision's ``resnet50``, ``densenet121``, ``efficientnet_b0``, ``convnext_tiny`` and
   ``vit_b_16`` (random weights, frozen: parameters do not require grad), 224×224 images in
   ImageNet units, batch 1 and 8, the predicted class: ``explain`` with "epsilon" and with
   "epsilon-gamma-box" (ImageNet pixel bounds) as a ratio to Gradient×Input, and zennit
   0.5.1 with the same composite (its ``LayerMapComposite`` of ε with zennit's base map, and
   its ``EpsilonGammaBox`` with the preset's ε = γ = 0.25; canonizers: ``ResNetCanonizer``
   for ResNet, ``NamedMergeBatchNorm`` with DenseNet's conv → BatchNorm pairs,
   ``SequentialMergeBatchNorm`` elsewhere; on its own copy of the model), all five
   interleaved round by round,
   medians. Targets: ε ≤ 1.5× G×I, epsilon-gamma-box ≤ 2.0× G×I, zennit ≥ 3× slower than
   the engine (engine ÷ zennit ≤ 0.33). zennit has no canonizer for the residual sums,
   gates and attention of the last three families: there its figure is a time, not the same
   explanation. A family the engine cannot explain prints its ``UnsupportedLayerError`` in
   one line and the run goes on.

    python benchmarks/bench_models.py                         # all of it: ≈ 15 min idle
    python benchmarks/bench_models.py --quick                 # fewer repeats: ≈ 8 min
    python benchmarks/bench_models.py --families resnet50,vit_b_16 --batches 1 --repeats 5

The machine is shared and noisy: compare ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lrp_engine.torchvision_compat import import_torchvision  # noqa: E402

tv = import_torchvision()  # before zennit, which imports torchvision itself

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch import Tensor, nn  # noqa: E402

import lrp_engine as le  # noqa: E402
from benchmarks.timing import interleaved  # noqa: E402
from lrp_engine.models.vgg import VGG16  # noqa: E402
from lrp_engine.models.zoo import load_efficientnet_lite0, prepare_image  # noqa: E402

CAT = ROOT / "lrp_engine" / "assets" / "images" / "cat_chelsea.jpg"
TORCHVISION = ("resnet50", "densenet121", "efficientnet_b0", "convnext_tiny", "vit_b_16")
FAMILIES = ("lite0", "vgg-blrp", *TORCHVISION)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: targets: engine ÷ Gradient×Input per preset, and engine ÷ zennit
TARGET_GXI = {"epsilon": 1.5, "epsilon-gamma-box": 2.0}
TARGET_ZENNIT = 1 / 3


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


# -- torchvision families against Gradient×Input and zennit ---------------------------------

def _bounds() -> tuple[Tensor, Tensor]:
    """ImageNet black and white pixels per channel in normalised units (the zB bounds)."""
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    return (0.0 - mean) / std, (1.0 - mean) / std


def _densenet_merges(model: nn.Module) -> list[tuple[tuple[str, ...], str]]:
    """The BatchNorms of a torchvision DenseNet that directly follow a conv, as zennit's
    ``NamedMergeBatchNorm`` wants them: ``conv0 → norm0`` and each dense layer's
    ``conv1 → norm2``. (``SequentialMergeBatchNorm`` goes by the order of the leaves and
    would also merge a dense layer's ``conv2`` into the next layer's ``norm1``, which reads
    the concatenation: its bias then has the wrong size and the forward fails.)"""
    tvd = sys.modules[type(model).__module__]
    pairs = [(("features.conv0",), "features.norm0")]
    pairs += [((f"{n}.conv1",), f"{n}.norm2") for n, m in model.named_modules()
              if isinstance(m, tvd._DenseLayer)]
    return pairs


def _zennit_methods(family: str, model: nn.Module, x: Tensor, target: Tensor
                    ) -> dict[str, Callable[[], object]]:
    """zennit with the engine's two composites (a function each: one attribution)."""
    from zennit.attribution import Gradient
    from zennit.canonizers import NamedMergeBatchNorm, SequentialMergeBatchNorm
    from zennit.composites import EpsilonGammaBox, LayerMapComposite, layer_map_base
    from zennit.rules import Epsilon
    from zennit.torchvision import ResNetCanonizer
    from zennit.types import Convolution

    eps_preset = le.get_composite("epsilon")
    egb_preset = le.get_composite("epsilon-gamma-box")
    eps, egb_eps = eps_preset.default.epsilon, egb_preset.default.epsilon
    gamma = next(r for _, r in egb_preset.assignments if isinstance(r, le.Gamma)).gamma
    low, high = _bounds()
    shape = (1, 3, 1, 1)
    grad_out = nn.functional.one_hot(target, 1000).to(x.dtype)

    def canonizers() -> list:
        if family.startswith("resnet"):
            return [ResNetCanonizer()]
        if family.startswith("densenet"):  # see _densenet_merges
            return [NamedMergeBatchNorm(_densenet_merges(model))]
        return [SequentialMergeBatchNorm()]

    # zennit counts MultiheadAttention among the activations, whose Pass rule returns one
    # gradient for its three inputs (query, key, value) and fails: leave it without a rule
    no_rule = [(nn.MultiheadAttention, None)]

    def epsilon() -> LayerMapComposite:
        return LayerMapComposite(no_rule + layer_map_base() + [(Convolution, Epsilon(eps)),
                                                               (nn.Linear, Epsilon(eps))],
                                 canonizers=canonizers())

    def gamma_box() -> EpsilonGammaBox:
        return EpsilonGammaBox(low=low.view(shape).expand_as(x).clone(),
                               high=high.view(shape).expand_as(x).clone(),
                               epsilon=egb_eps, gamma=gamma, layer_map=no_rule,
                               canonizers=canonizers())

    zmodel = copy.deepcopy(model)  # a failing canonizer may leave its changes behind

    def run(make: Callable[[], object]) -> Callable[[], object]:
        def attribute() -> Tensor:
            with Gradient(zmodel, make()) as attributor:
                _, rel = attributor(x.detach().clone(), grad_out)
            return rel
        return attribute

    return {"zennit epsilon": run(epsilon), "zennit epsilon-gamma-box": run(gamma_box)}


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def _usable(fns: dict[str, Callable[[], object]]) -> dict[str, Callable[[], object]]:
    """Call each function once, as a trial; one that raises prints its error in one line
    and is left out (zennit on a family it cannot canonise)."""
    ok = {}
    for k, f in fns.items():
        try:
            f()
        except Exception as e:  # noqa: BLE001 - a benchmark reports the error and goes on
            print(f"  {k}: {_one_line(e)}", flush=True)
            continue
        ok[k] = f
    return ok


def _mark(ratio: float, limit: float) -> str:
    return f"≤ {limit:.2g}: {'met' if ratio <= limit else 'MISSED'}"


def bench_torchvision(family: str, batch: int, repeats: int, zennit: bool) -> None:
    """One family at one batch size: G×I, the engine's two presets, zennit's two."""
    torch.manual_seed(0)
    model = getattr(tv.models, family)(weights=None).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    x = (torch.rand(batch, 3, 224, 224) - mean) / std
    print(f"\n{family} (random weights, frozen), {batch}×3×224×224, median of {repeats} "
          f"interleaved repeats", flush=True)
    with torch.no_grad():
        target = model(x).argmax(1)
    low, high = _bounds()
    egb = le.get_composite("epsilon-gamma-box", low=low, high=high)
    try:  # the engine first: an unsupported family says so in one line
        le.explain(model, x[:1], target[:1], "epsilon")
    except le.UnsupportedLayerError as e:
        print(f"  unsupported: {str(e).splitlines()[0]}")
        return
    fns: dict[str, Callable[[], object]] = {
        "gradient×input": lambda: le.gradient_x_input(model, x, target),
        "epsilon": lambda: le.explain(model, x, target, "epsilon"),
        "epsilon-gamma-box": lambda: le.explain(model, x, target, egb),
    }
    if zennit:
        fns.update(_zennit_methods(family, model, x, target))
    fns = _usable(fns)
    if "gradient×input" not in fns:
        return
    t = interleaved(fns, repeats)
    base = t["gradient×input"]
    print(f"  {'method':26} {'time ms':>9} {'× G×I':>7}  target")
    for k, v in t.items():
        target_text = _mark(v / base, TARGET_GXI[k]) if k in TARGET_GXI else ""
        print(f"  {k:26} {1000 * v:9.1f} {v / base:7.2f}  {target_text}")
    for k in TARGET_GXI:
        z = f"zennit {k}"
        if k in t and z in t:
            r = t[k] / t[z]
            print(f"  engine ÷ zennit, {k}: {r:.2f} (zennit {1 / r:.1f}× slower; "
                  f"{_mark(r, TARGET_ZENNIT)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="fewer repeats (lite0 5, B-LRP 1, torchvision families 2) unless "
                         "--repeats says otherwise")
    ap.add_argument("--repeats", type=int, default=None,
                    help="repeats per method (default: 15 for lite0, 3 for B-LRP, 5 for "
                         "the torchvision families)")
    ap.add_argument("--families", default=",".join(FAMILIES),
                    help=f"comma-separated, of {', '.join(FAMILIES)} (default: all)")
    ap.add_argument("--batches", default="1,8", help="batch sizes of the torchvision families")
    ap.add_argument("--no-zennit", action="store_true", help="leave zennit out")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--samples", type=int, default=32)
    args = ap.parse_args()
    families = [f for f in args.families.split(",") if f]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        ap.error(f"unknown families {unknown}; known: {', '.join(FAMILIES)}")
    batches = [int(b) for b in args.batches.split(",") if b]
    torch.set_num_threads(args.threads)

    def repeats(full: int, quick: int) -> int:
        if args.repeats is not None:
            return args.repeats
        return quick if args.quick else full

    zennit = not args.no_zennit
    if zennit:
        try:
            import zennit as _  # noqa: F401
        except ImportError:
            print("zennit is not installed (requirements-dev.txt): its rows are left out")
            zennit = False
    print(f"torch {torch.__version__}, {args.threads} threads, device cpu")
    if "lite0" in families:
        bench_efficientnet(repeats(15, 5))
    if "vgg-blrp" in families:
        bench_vgg_blrp(args.samples, repeats(3, 1))
    for family in families:
        if family in TORCHVISION:
            for b in batches:
                bench_torchvision(family, b, repeats(5, 2), zennit)


if __name__ == "__main__":
    main()
