"""VGG-16: torchvision's own ``vgg16`` (our earlier copy had exactly its state-dict keys and
shapes, ``features.N.*`` / ``classifier.N.*``, and is gone).

``VGG16(num_classes)`` stays for code that builds it by this name; the registry entry is
``"vgg16"`` (:func:`lrp_engine.models.zoo.build`). Torchvision is imported on the first call.
"""

from __future__ import annotations

from torch import nn


def VGG16(num_classes: int = 1000, dropout: float = 0.5) -> nn.Module:
    """``torchvision.models.vgg16(num_classes=…, dropout=…)`` without weights: input
    [N, 3, H, W] (224×224 for ImageNet weights) normalised with ImageNet mean/std, output
    logits [N, num_classes]."""
    from ..torchvision_compat import import_torchvision

    return import_torchvision().models.vgg16(weights=None, num_classes=num_classes,
                                             dropout=dropout)


__all__ = ["VGG16"]
