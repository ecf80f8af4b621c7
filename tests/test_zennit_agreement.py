"""The engine against zennit 0.5.1 (the oracle) on torchvision's ResNet-50 and VGG-16-BN.

Random weights with randomised BatchNorm statistics and affine parameters (so that folding
is not the identity), float64, one 224×224 image of uniform pixels in ImageNet units, the
predicted class, relevance started at its logit on both sides. Checked: LRP-ε and zennit's
``EpsilonGammaBox``, relevance maps equal to a relative 1e-6 (L2 and elementwise against
the map's largest value), maps not trivially zero, and each differing from Gradient×Input
by far more than that tolerance (so the rules' stabilisers and parameter maps are compared,
not the plain gradient).

Conventions aligned, each by name:

- **BatchNorm merged into the preceding conv.** zennit's ``SequentialMergeBatchNorm`` (in
  ``VGGCanonizer`` and ``ResNetCanonizer``) rewrites the conv to w·s, (b − μ)·s + β with
  s = γ_BN/√(σ² + eps) and the BatchNorm to running stats 0/1, affine 1/0 — but it keeps the
  BatchNorm's ``eps``, so the "identity" left behind is x/√(1 + eps), not x. The engine folds
  exactly (BatchNorm gone). On a random VGG-16-BN that leftover factor of 1 − 5·10⁻⁶ per
  BatchNorm moves Gradient×Input (and zennit's LRP maps) by 1.8 %: random deep ReLU nets are
  that sensitive. The zennit copy therefore carries ``eps`` in ``running_var`` (σ² + eps,
  eps = 0): the same function, and zennit's merge becomes exact. zennit's rule on the
  merged BatchNorm is ``Pass``.
- **Max pooling, winner takes all.** zennit has no rule for MaxPool (its gradient routes
  the relevance to the window's maximum); the engine's ``maxpool="winner"`` does the same.
- **Activations.** zennit's ``Pass`` on ReLU (relevance unchanged); the engine's ReLU keeps
  its plain gradient, which is the same for the gradient-times-input form.
- **Stabilisers.** zennit's ``Stabilizer``: d + ε·sign(d) with sign(0) = +1; the engine's
  ``stabilize`` likewise. Which denominator gets it: ε on the layer's output z (bias
  included) for ``Epsilon``; for ``Gamma`` the stabiliser 1e-6 on z + γ(Σ c⁺ + b⁺) for z > 0
  and z + γ(Σ c⁻ + b⁻) for z < 0, outputs with z = 0 passing nothing; for ``ZBox`` on
  Σ(x w − l w⁺ − h w⁻) (zennit's three terms each carry the bias b, b⁺, b⁻, which cancel).
  zennit's rules default to 1e-6 where the engine's default to 1e-9: the engine's rules are
  given 1e-6 here.
- **Average pooling.** zennit's composites give AvgPool/AdaptiveAvgPool ``Norm(1e-6)``
  (ε = 1e-6 on the pool's output, no parameters); the engine's pools get ``Epsilon(1e-6)``
  on the same ``w · avgpool(a)`` with w = 1.
- **Residual sum.** zennit's ``ResNetCanonizer`` stacks [identity, branch] and sums them in a
  ``zennit.layer.Sum`` module whose rule is ``Norm(1e-6)``: each summand gets
  x_k / (s + 10⁻⁶·sign s) of the sum's relevance, a proportional split with ε = 1e-6 on the
  sum. The engine's sums are rule layers (``Composite.sums``, default LRP-ε with ε = 1e-9):
  they get ``Epsilon(1e-6)`` here. With the engine's default instead, ResNet-50's LRP-ε map
  differs from zennit's by 2.5·10⁻⁴ (relative L2; 9·10⁻⁴ of the largest value): the
  stabiliser's s / (s ± ε) is far from 1 where a summand and the branch nearly cancel.
- **EpsilonGammaBox's parameters** (zennit's defaults): zB on the first convolution
  (``conv1`` / ``features.0``, which both sides find first), γ = 0.25 on every other
  convolution (ResNet's downsampling 1×1 convs included), ε = 1e-6 on the dense layer(s),
  stabiliser 1e-6 for zB, γ and the pools' and sums' ``Norm``.
- **zB bounds**: per channel, in normalised units, black and white pixels:
  low_c = (0 − mean_c)/std_c, high_c = (1 − mean_c)/std_c (ImageNet mean/std), as the app
  passes them; zennit gets them as tensors of the input's shape.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from lrp_engine.torchvision_compat import import_torchvision

tv = import_torchvision()  # before zennit, which imports torchvision itself

import lrp_engine as le  # noqa: E402

zennit = pytest.importorskip("zennit")

from zennit.attribution import Gradient  # noqa: E402
from zennit.canonizers import SequentialMergeBatchNorm  # noqa: E402
from zennit.composites import EpsilonGammaBox, LayerMapComposite  # noqa: E402
from zennit.core import Composite as ZComposite  # noqa: E402
from zennit.layer import Sum  # noqa: E402
from zennit.rules import Epsilon as ZEpsilon  # noqa: E402
from zennit.rules import Norm, Pass  # noqa: E402
from zennit.torchvision import ResNetCanonizer  # noqa: E402
from zennit.types import Activation, AvgPool, BatchNorm, Convolution  # noqa: E402

RTOL = 1e-6
#: zennit's default stabiliser (its rules and composites), and EpsilonGammaBox's ε and γ
ZENNIT_STAB, ZENNIT_EPS, ZENNIT_GAMMA = 1e-6, 1e-6, 0.25
#: ε of the LRP-ε comparison: large enough to move the map well away from Gradient×Input
EPSILON = 0.1
POOLS = (nn.AvgPool2d, nn.AdaptiveAvgPool2d)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

FAMILIES: dict[str, tuple[Callable[..., nn.Module], Callable[[], object]]] = {
    "resnet50": (tv.models.resnet50, ResNetCanonizer),
    "vgg16_bn": (tv.models.vgg16_bn, SequentialMergeBatchNorm),
}


def _randomise_batchnorm(model: nn.Module, g: torch.Generator) -> None:
    """Running statistics and affine parameters drawn at random (folding is then not the
    identity and biases appear in every folded conv)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(0.2 * torch.randn(c, generator=g, dtype=torch.float64))
            m.running_var.copy_(0.5 + torch.rand(c, generator=g, dtype=torch.float64))
            m.weight.data.copy_(0.5 + torch.rand(c, generator=g, dtype=torch.float64))
            m.bias.data.copy_(0.2 * torch.randn(c, generator=g, dtype=torch.float64))


def _exact_merge_copy(model: nn.Module) -> nn.Module:
    """A copy for zennit with each BatchNorm's eps moved into its running variance (the same
    function): zennit's merge then leaves an exact identity (see the module docstring)."""
    z = copy.deepcopy(model)
    for m in z.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.add_(m.eps)
            m.eps = 0.0
    return z


@pytest.fixture(scope="module", params=list(FAMILIES))
def case(request: pytest.FixtureRequest) -> dict:
    """One family: the model, its zennit copy, the input, the target, the zB bounds."""
    name = request.param
    torch.manual_seed(0)
    model = FAMILIES[name][0](weights=None).double()
    g = torch.Generator().manual_seed(1)
    _randomise_batchnorm(model, g)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    x = (torch.rand(1, 3, 224, 224, generator=g, dtype=torch.float64) - mean) / std
    with torch.no_grad():
        target = int(model(x).argmax(1))
    low, high = ((0.0 - mean) / std).flatten(), ((1.0 - mean) / std).flatten()
    return {"name": name, "model": model, "zmodel": _exact_merge_copy(model), "x": x,
            "target": target, "low": low, "high": high,
            "canonizer": FAMILIES[name][1],
            "gxi": le.gradient_x_input(model, x, target)}


def _zennit(case: dict, composite: ZComposite) -> Tensor:
    """zennit's relevance, its output relevance the target's logit (as the engine's)."""
    x = case["x"].clone()
    with Gradient(case["zmodel"], composite) as attributor:
        def start(out: Tensor) -> Tensor:
            onehot = torch.zeros_like(out)
            onehot[:, case["target"]] = 1.0
            return out.detach() * onehot

        _, rel = attributor(x, start)
    return rel.detach()


def _assert_agree(r: Tensor, rz: Tensor, gxi: Tensor) -> None:
    assert torch.isfinite(r).all() and torch.isfinite(rz).all()
    scale = float(rz.abs().max())
    assert scale > 0 and float(rz.abs().sum()) > 0, "zennit's map is zero"
    rel = float((r - rz).norm() / rz.norm())
    assert rel <= RTOL, f"engine vs zennit: relative L2 difference {rel:.3g}"
    torch.testing.assert_close(r, rz, rtol=RTOL, atol=RTOL * scale)
    away = float((rz - gxi).norm() / gxi.norm())
    assert away > 1e3 * RTOL, f"the rules barely differ from Gradient×Input ({away:.3g})"


def test_epsilon_agrees_with_zennit(case: dict) -> None:
    """LRP-ε on every conv and dense layer, zennit's pools/sums/activations conventions."""
    zcomp = LayerMapComposite([
        (Activation, Pass()),
        (Sum, Norm(stabilizer=ZENNIT_STAB)),
        (AvgPool, Norm(stabilizer=ZENNIT_STAB)),
        (BatchNorm, Pass()),
        (Convolution, ZEpsilon(epsilon=EPSILON)),
        (nn.Linear, ZEpsilon(epsilon=EPSILON)),
    ], canonizers=[case["canonizer"]()])
    comp = le.Composite([(le.ByType(*POOLS), le.Epsilon(ZENNIT_STAB))],
                        default=le.Epsilon(EPSILON), maxpool="winner",
                        sums=le.Epsilon(ZENNIT_STAB))
    r = le.explain(case["model"], case["x"], case["target"], comp)
    _assert_agree(r, _zennit(case, zcomp), case["gxi"])


def test_epsilon_gamma_box_agrees_with_zennit(case: dict) -> None:
    """zennit's EpsilonGammaBox (its defaults) as an engine composite."""
    x = case["x"]
    zcomp = EpsilonGammaBox(
        low=case["low"].view(1, 3, 1, 1).expand_as(x).clone(),
        high=case["high"].view(1, 3, 1, 1).expand_as(x).clone(),
        epsilon=ZENNIT_EPS, gamma=ZENNIT_GAMMA, stabilizer=ZENNIT_STAB,
        canonizers=[case["canonizer"]()])
    comp = le.Composite([
        (le.First(), le.ZBox(case["low"], case["high"], stabilizer=ZENNIT_STAB)),
        (le.ByType(nn.Conv2d), le.Gamma(ZENNIT_GAMMA, stabilizer=ZENNIT_STAB)),
        (le.ByType(*POOLS), le.Epsilon(ZENNIT_STAB)),
    ], default=le.Epsilon(ZENNIT_EPS), maxpool="winner", sums=le.Epsilon(ZENNIT_STAB))
    r = le.explain(case["model"], x, case["target"], comp)
    _assert_agree(r, _zennit(case, zcomp), case["gxi"])
