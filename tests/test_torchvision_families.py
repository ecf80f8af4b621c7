"""Every torchvision classifier family is explained, and conserves where the rules promise.

torchvision's own model definitions (random weights, randomised BatchNorm statistics, in
float64) on bias-free copies: every bias, BatchNorm shift, LayerNorm shift and the ViT's
position embedding set to zero, so that nothing may absorb relevance. LRP-ε with a
negligible ε must then keep Σ input relevance equal to the explained logit to 1e-4: this
checks the residual sums, gates (squeeze-excitation), LayerNorm/LayerNorm2d, layer scale,
channel shuffle, concatenation, stochastic depth, permutations and attention of each family
at once. The forward values must stay torchvision's.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lrp_engine as le
from lrp_engine.torchvision_compat import import_torchvision

tv = import_torchvision()

#: family → (torchvision builder, input side)
FAMILIES = {
    "resnet": ("resnet18", 64),
    "densenet": ("densenet121", 64),
    "vgg-bn": ("vgg11_bn", 64),
    "alexnet": ("alexnet", 64),
    "squeezenet": ("squeezenet1_1", 64),
    "googlenet": ("googlenet", 64),
    "inception": ("inception_v3", 75),
    "mobilenet-v2": ("mobilenet_v2", 64),
    "mobilenet-v3": ("mobilenet_v3_small", 64),
    "mnasnet": ("mnasnet0_5", 64),
    "shufflenet": ("shufflenet_v2_x0_5", 64),
    "efficientnet": ("efficientnet_b0", 64),
    "regnet": ("regnet_y_400mf", 64),
    "convnext": ("convnext_tiny", 64),
    "vit": ("vit_b_16", 224),
    "swin": ("swin_t", 64),
    "swin-v2": ("swin_v2_t", 64),
}


def bias_free(model: nn.Module) -> nn.Module:
    """``model`` with every additive constant zero and BatchNorm statistics randomised."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or name.endswith("pos_embedding"):
                p.zero_()
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.zero_()
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            if isinstance(m, nn.Linear) and not m.weight.abs().sum():  # zero-initialised head
                m.weight.normal_(0.0, 0.05, generator=g)
    return model


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_is_explained_and_conserves_without_bias(family: str) -> None:
    arch, side = FAMILIES[family]
    torch.manual_seed(0)
    kw = {"aux_logits": False, "init_weights": False} if arch in ("googlenet",
                                                                  "inception_v3") else {}
    model = bias_free(tv.models.get_model(arch, num_classes=5, **kw)).double().eval()
    x = torch.randn(2, 3, side, side, dtype=torch.float64)
    comp = le.Composite(default=le.Epsilon(1e-30), sums=le.Epsilon(1e-30), maxpool="winner")
    res = le.analyze(model, x, composite=comp, record=False)
    with torch.no_grad():
        torch.testing.assert_close(res.logits, model(x), rtol=1e-10, atol=1e-10)
    out = res.output_relevance
    assert (out != 0).all(), out  # may be tiny (deep, bias-free, random): ε is 1e-30
    torch.testing.assert_close(res.relevance.flatten(1).sum(1), out, rtol=1e-4, atol=0.0)
