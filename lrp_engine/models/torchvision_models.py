"""The classifiers of ``torchvision.models`` (torchvision 0.28.0), as plain data.

One row per classification builder (``torchvision.models.list_models(module=
torchvision.models)``): its torchvision name, a human label, the family, and what the
DEFAULT weights' evaluation transform does (centre-crop size, resize size of the shorter
side, interpolation; mean/std are ImageNet's unless :data:`STATS` says otherwise). The
registry (:mod:`lrp_engine.models.zoo`) turns the rows into entries without importing
torchvision, so listing every architecture costs nothing; ``tests/test_models_zoo.py``
checks the rows against torchvision's own list and weights.
"""

from __future__ import annotations

from .card import Interpolation

#: (name, label, family, crop size, resize size, interpolation), grouped by family
MODELS: tuple[tuple[str, str, str, int, int, Interpolation], ...] = (
    ("alexnet", "AlexNet", "alexnet", 224, 256, "bilinear"),
    ("vgg11", "VGG-11", "vgg", 224, 256, "bilinear"),
    ("vgg11_bn", "VGG-11 (BatchNorm)", "vgg", 224, 256, "bilinear"),
    ("vgg13", "VGG-13", "vgg", 224, 256, "bilinear"),
    ("vgg13_bn", "VGG-13 (BatchNorm)", "vgg", 224, 256, "bilinear"),
    ("vgg16", "VGG-16", "vgg", 224, 256, "bilinear"),
    ("vgg16_bn", "VGG-16 (BatchNorm)", "vgg", 224, 256, "bilinear"),
    ("vgg19", "VGG-19", "vgg", 224, 256, "bilinear"),
    ("vgg19_bn", "VGG-19 (BatchNorm)", "vgg", 224, 256, "bilinear"),
    ("resnet18", "ResNet-18", "resnet", 224, 256, "bilinear"),
    ("resnet34", "ResNet-34", "resnet", 224, 256, "bilinear"),
    ("resnet50", "ResNet-50", "resnet", 224, 232, "bilinear"),
    ("resnet101", "ResNet-101", "resnet", 224, 232, "bilinear"),
    ("resnet152", "ResNet-152", "resnet", 224, 232, "bilinear"),
    ("resnext50_32x4d", "ResNeXt-50 32×4d", "resnet", 224, 232, "bilinear"),
    ("resnext101_32x8d", "ResNeXt-101 32×8d", "resnet", 224, 232, "bilinear"),
    ("resnext101_64x4d", "ResNeXt-101 64×4d", "resnet", 224, 232, "bilinear"),
    ("wide_resnet50_2", "Wide ResNet-50-2", "resnet", 224, 232, "bilinear"),
    ("wide_resnet101_2", "Wide ResNet-101-2", "resnet", 224, 232, "bilinear"),
    ("densenet121", "DenseNet-121", "densenet", 224, 256, "bilinear"),
    ("densenet161", "DenseNet-161", "densenet", 224, 256, "bilinear"),
    ("densenet169", "DenseNet-169", "densenet", 224, 256, "bilinear"),
    ("densenet201", "DenseNet-201", "densenet", 224, 256, "bilinear"),
    ("squeezenet1_0", "SqueezeNet 1.0", "squeezenet", 224, 256, "bilinear"),
    ("squeezenet1_1", "SqueezeNet 1.1", "squeezenet", 224, 256, "bilinear"),
    ("googlenet", "GoogLeNet (Inception v1)", "googlenet", 224, 256, "bilinear"),
    ("inception_v3", "Inception v3", "inception", 299, 342, "bilinear"),
    ("mobilenet_v2", "MobileNetV2", "mobilenet", 224, 232, "bilinear"),
    ("mobilenet_v3_small", "MobileNetV3-Small", "mobilenet", 224, 256, "bilinear"),
    ("mobilenet_v3_large", "MobileNetV3-Large", "mobilenet", 224, 232, "bilinear"),
    ("mnasnet0_5", "MNASNet 0.5", "mnasnet", 224, 256, "bilinear"),
    ("mnasnet0_75", "MNASNet 0.75", "mnasnet", 224, 232, "bilinear"),
    ("mnasnet1_0", "MNASNet 1.0", "mnasnet", 224, 256, "bilinear"),
    ("mnasnet1_3", "MNASNet 1.3", "mnasnet", 224, 232, "bilinear"),
    ("shufflenet_v2_x0_5", "ShuffleNetV2 ×0.5", "shufflenet", 224, 256, "bilinear"),
    ("shufflenet_v2_x1_0", "ShuffleNetV2 ×1.0", "shufflenet", 224, 256, "bilinear"),
    ("shufflenet_v2_x1_5", "ShuffleNetV2 ×1.5", "shufflenet", 224, 232, "bilinear"),
    ("shufflenet_v2_x2_0", "ShuffleNetV2 ×2.0", "shufflenet", 224, 232, "bilinear"),
    ("efficientnet_b0", "EfficientNet-B0", "efficientnet", 224, 256, "bicubic"),
    ("efficientnet_b1", "EfficientNet-B1", "efficientnet", 240, 255, "bilinear"),
    ("efficientnet_b2", "EfficientNet-B2", "efficientnet", 288, 288, "bicubic"),
    ("efficientnet_b3", "EfficientNet-B3", "efficientnet", 300, 320, "bicubic"),
    ("efficientnet_b4", "EfficientNet-B4", "efficientnet", 380, 384, "bicubic"),
    ("efficientnet_b5", "EfficientNet-B5", "efficientnet", 456, 456, "bicubic"),
    ("efficientnet_b6", "EfficientNet-B6", "efficientnet", 528, 528, "bicubic"),
    ("efficientnet_b7", "EfficientNet-B7", "efficientnet", 600, 600, "bicubic"),
    ("efficientnet_v2_s", "EfficientNetV2-S", "efficientnet", 384, 384, "bilinear"),
    ("efficientnet_v2_m", "EfficientNetV2-M", "efficientnet", 480, 480, "bilinear"),
    ("efficientnet_v2_l", "EfficientNetV2-L", "efficientnet", 480, 480, "bicubic"),
    ("regnet_x_400mf", "RegNetX-400MF", "regnet", 224, 232, "bilinear"),
    ("regnet_x_800mf", "RegNetX-800MF", "regnet", 224, 232, "bilinear"),
    ("regnet_x_1_6gf", "RegNetX-1.6GF", "regnet", 224, 232, "bilinear"),
    ("regnet_x_3_2gf", "RegNetX-3.2GF", "regnet", 224, 232, "bilinear"),
    ("regnet_x_8gf", "RegNetX-8GF", "regnet", 224, 232, "bilinear"),
    ("regnet_x_16gf", "RegNetX-16GF", "regnet", 224, 232, "bilinear"),
    ("regnet_x_32gf", "RegNetX-32GF", "regnet", 224, 232, "bilinear"),
    ("regnet_y_400mf", "RegNetY-400MF", "regnet", 224, 232, "bilinear"),
    ("regnet_y_800mf", "RegNetY-800MF", "regnet", 224, 232, "bilinear"),
    ("regnet_y_1_6gf", "RegNetY-1.6GF", "regnet", 224, 232, "bilinear"),
    ("regnet_y_3_2gf", "RegNetY-3.2GF", "regnet", 224, 232, "bilinear"),
    ("regnet_y_8gf", "RegNetY-8GF", "regnet", 224, 232, "bilinear"),
    ("regnet_y_16gf", "RegNetY-16GF", "regnet", 224, 232, "bilinear"),
    ("regnet_y_32gf", "RegNetY-32GF", "regnet", 224, 232, "bilinear"),
    ("regnet_y_128gf", "RegNetY-128GF", "regnet", 384, 384, "bicubic"),
    ("convnext_tiny", "ConvNeXt-Tiny", "convnext", 224, 236, "bilinear"),
    ("convnext_small", "ConvNeXt-Small", "convnext", 224, 230, "bilinear"),
    ("convnext_base", "ConvNeXt-Base", "convnext", 224, 232, "bilinear"),
    ("convnext_large", "ConvNeXt-Large", "convnext", 224, 232, "bilinear"),
    ("vit_b_16", "ViT-B/16", "vit", 224, 256, "bilinear"),
    ("vit_b_32", "ViT-B/32", "vit", 224, 256, "bilinear"),
    ("vit_l_16", "ViT-L/16", "vit", 224, 242, "bilinear"),
    ("vit_l_32", "ViT-L/32", "vit", 224, 256, "bilinear"),
    ("vit_h_14", "ViT-H/14", "vit", 518, 518, "bicubic"),
    ("swin_t", "Swin-T", "swin", 224, 232, "bicubic"),
    ("swin_s", "Swin-S", "swin", 224, 246, "bicubic"),
    ("swin_b", "Swin-B", "swin", 224, 238, "bicubic"),
    ("swin_v2_t", "Swin-V2-T", "swin", 256, 260, "bicubic"),
    ("swin_v2_s", "Swin-V2-S", "swin", 256, 260, "bicubic"),
    ("swin_v2_b", "Swin-V2-B", "swin", 256, 272, "bicubic"),
    ("maxvit_t", "MaxViT-T", "maxvit", 224, 224, "bicubic"),
)

HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
#: (mean, std) where it is not ImageNet's. EfficientNetV2-L's weights expect [-1, 1].
#: GoogLeNet and Inception v3 are built with ``transform_input=False``: torchvision's
#: pretrained versions (``transform_input=True``) turn an ImageNet-normalised input into
#: (pixel − 0.5) / 0.5 as the first step of ``forward``, so normalising with 0.5 / 0.5
#: gives the first convolution exactly the same numbers (and the zB rule true bounds).
STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "efficientnet_v2_l": HALF, "googlenet": HALF, "inception_v3": HALF,
}

#: extra keyword arguments of the builder. GoogLeNet / Inception v3: no auxiliary
#: classifiers (used in training only) and no torchvision weight init (slow, and every
#: weight is replaced when a checkpoint loads). ViT-H/14: the DEFAULT (SWAG) weights are for
#: 518×518 inputs, and a ViT's position embedding is sized for one input size.
BUILD_KWARGS: dict[str, dict[str, object]] = {
    "googlenet": {"aux_logits": False, "init_weights": False, "transform_input": False},
    "inception_v3": {"aux_logits": False, "init_weights": False, "transform_input": False},
    "vit_h_14": {"image_size": 518},
}

#: key prefixes of auxiliary classifiers in checkpoints (dropped when loading: not built)
AUX_PREFIXES: dict[str, tuple[str, ...]] = {
    "googlenet": ("aux1.", "aux2."),
    "inception_v3": ("AuxLogits.",),
}

#: one line per family: what its layers are
FAMILY_TEXT: dict[str, str] = {
    "alexnet": "5 conv + 3 dense layers with ReLU and max pooling",
    "vgg": "stacked 3×3 convs with ReLU and max pooling, 3 dense layers",
    "resnet": "residual blocks (conv-BatchNorm-ReLU) with identity shortcuts",
    "densenet": "dense blocks: every layer reads all earlier ones (BatchNorm-ReLU-conv, "
                "concatenated)",
    "squeezenet": "fire modules (1×1 squeeze, 1×1 + 3×3 expand), a conv as classifier",
    "googlenet": "inception modules: parallel 1×1, 3×3, 5×5 convs and pooling, concatenated",
    "inception": "factorised inception modules (1×n and n×1 convs) with BatchNorm",
    "mobilenet": "inverted residual blocks with depthwise convs and BatchNorm",
    "mnasnet": "searched inverted residual blocks with depthwise convs and BatchNorm",
    "shufflenet": "channel split and shuffle around depthwise convs",
    "efficientnet": "MBConv blocks: depthwise convs, squeeze-excitation, SiLU",
    "regnet": "residual bottlenecks of grouped convs, widths from a quantised linear rule",
    "convnext": "7×7 depthwise convs, LayerNorm, GELU and layer scale in residual blocks",
    "vit": "Vision Transformer: patch embedding, self-attention blocks, LayerNorm, GELU",
    "swin": "shifted-window self-attention in four stages with patch merging",
    "maxvit": "MBConv blocks with block and grid self-attention",
}


def description(name: str, family: str, crop: int) -> str:
    """The registry's one-line description of torchvision's ``name``."""
    text = FAMILY_TEXT[family]
    if name.endswith("_bn") and family == "vgg":
        text += ", BatchNorm after every conv"
    elif name.startswith("resnext"):
        text += ", grouped convs"
    elif name.startswith("wide_"):
        text += ", twice as wide"
    elif name.startswith("regnet_y"):
        text += ", squeeze-excitation"
    elif name.startswith("efficientnet_v2"):
        text = "fused and depthwise MBConv blocks, squeeze-excitation, SiLU"
    elif name.startswith("mobilenet_v3"):
        text += ", hard-swish and squeeze-excitation"
    elif name.startswith("swin_v2"):
        text += " (cosine attention, log-spaced position bias)"
    return f"{text}; torchvision, 3×{crop}×{crop} RGB"


__all__ = ["AUX_PREFIXES", "BUILD_KWARGS", "FAMILY_TEXT", "MODELS", "STATS", "description"]
