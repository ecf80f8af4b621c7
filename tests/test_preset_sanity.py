"""Every preset on every bundled trained model and its bundled inputs keeps Σ input relevance
within [−0.5, 2] × the explained logit.

Random ReLU networks do not catch a rule used outside its assumptions: plain γ
(w + γw⁺) on EfficientNet-Lite0 gave sums of 10² to 10¹⁹ times the logit, because after
BatchNorm folding and in linear bottlenecks a layer's inputs and outputs have either sign.
This runs each preset on the real, trained models with the bounds the app gives zB.

The synthetic MRI demo is the exception, and a test says why: its folded BatchNorm biases
are as large as the contributions they offset (the last convolution's bias flips the sign
of the relevance sum), so rules that keep the bias in the denominator leave the range; so
does Gradient×Input itself, which LRP-0 equals on this ReLU network.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
from PIL import Image

import lrp_engine as le
from lrp_engine.data import load_bundled_mnist, mnist_to_tensor
from lrp_engine.models import load_bundled, zoo

ROOT = Path(__file__).resolve().parents[1]
LOW, HIGH = -0.5, 2.0


def _inputs(name: str) -> tuple[torch.nn.Module, torch.Tensor, str]:
    """(model, inputs, architecture) of one bundled model."""
    if name == "efficientnet_lite0":
        photos = sorted((ROOT / "lrp_engine" / "assets" / "images").glob("*.jpg"))
        assert len(photos) == 4
        x = torch.cat([zoo.prepare_image(Image.open(p), name) for p in photos])
        return zoo.load_efficientnet_lite0(), x, name
    if name == "mri_demo":
        from lrp_engine.mri_demo import held_out_set, load_mri_demo_model

        batch = held_out_set(200)
        idx = torch.cat([torch.nonzero(batch.labels == k)[:2, 0] for k in range(4)])
        return load_mri_demo_model(), batch.images[idx], name
    images, _ = load_bundled_mnist("test")
    size = 32 if name == "lenet" else 28
    return load_bundled(name), mnist_to_tensor(images[:12], size=size), name


def _composite(preset: str, arch: str) -> le.Composite:
    """The preset as the app builds it: zB gets the model's pixel range per channel."""
    pre = zoo.preprocessing(arch)
    params = inspect.signature(le.PRESETS[preset]).parameters
    kw = {"low": torch.tensor(pre.low), "high": torch.tensor(pre.high)} \
        if "low" in params else {}
    return le.get_composite(preset, **kw)


@pytest.mark.parametrize("name", ["lenet", "mlp", "efficientnet_lite0"])
def test_every_preset_stays_near_the_logit(name: str) -> None:
    model, x, arch = _inputs(name)
    bad = []
    for preset in le.PRESETS:
        res = le.analyze(model, x, composite=_composite(preset, arch), record=False)
        ratio = res.relevance.flatten(1).sum(1) / res.output_relevance
        assert torch.isfinite(ratio).all(), (preset, ratio)
        for i, r in enumerate(ratio.tolist()):
            if not LOW <= r <= HIGH:
                bad.append(f"{preset} on input {i}: Σ R / logit = {r:.3g}")
    assert not bad, f"{name}: " + "; ".join(bad)


def test_plain_gamma_explodes_where_the_generalised_one_does_not() -> None:
    """The shipped bug, kept as a fact: plain γ on EfficientNet-Lite0's convolutions leaves
    the range on the bundled photos, the generalised γ (the preset's rule) does not."""
    model, x, arch = _inputs("efficientnet_lite0")
    pre = zoo.preprocessing(arch)
    box = le.ZBox(torch.tensor(pre.low), torch.tensor(pre.high))
    for gamma, inside in ((le.GammaPlain(0.25), False), (le.Gamma(0.25), True)):
        comp = le.Composite([(le.First(), box), (le.ByType(torch.nn.Conv2d), gamma)],
                            default=le.Epsilon(0.25))
        res = le.analyze(model, x[:1], composite=comp, record=False)
        ratio = (res.relevance.sum() / res.output_relevance.sum()).item()
        assert (LOW <= ratio <= HIGH) is inside, (gamma, ratio)


def test_mri_demo_leaves_the_range_as_gradient_x_input_does() -> None:
    """On the MRI demo, LRP-0 (winner-takes-all max pooling) equals Gradient×Input, and
    both give Σ R / logit > 2 on some slices: the biases create that relevance, not a rule.
    The presets whose convolution rules ignore the bias stay in the range."""
    model, x, arch = _inputs("mri_demo")
    lrp0 = le.analyze(model, x, composite=le.get_composite("zero", maxpool="winner"),
                      record=False)
    gxi = le.gradient_x_input(model, x)
    torch.testing.assert_close(lrp0.relevance, gxi, rtol=1e-4, atol=1e-5)
    ratio = gxi.flatten(1).sum(1) / lrp0.output_relevance
    assert (ratio > HIGH).any(), ratio
    for preset in ("epsilon-plus-flat", "epsilon-gamma-box", "deep-taylor"):
        res = le.analyze(model, x, composite=_composite(preset, arch), record=False)
        ratio = res.relevance.flatten(1).sum(1) / res.output_relevance
        assert ((ratio >= LOW) & (ratio <= HIGH)).all(), (preset, ratio)
