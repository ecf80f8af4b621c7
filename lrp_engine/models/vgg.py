"""VGG-16 in our own code, with torchvision's parameter names.

``features.N.*`` and ``classifier.N.*`` match torchvision's ``vgg16`` exactly, so its
state dicts (ImageNet weights, or a user's fine-tuned checkpoint) load with ``strict=True``.
The flatten between ``avgpool`` and ``classifier`` is ``torch.flatten`` in ``forward``, as
in torchvision.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

#: channels per conv, "M" = 2×2 max pooling (configuration "D")
VGG16_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                                    512, 512, 512, "M", 512, 512, 512, "M")


def _features(cfg: tuple[int | str, ...], in_channels: int = 3) -> nn.Sequential:
    layers: list[nn.Module] = []
    c = in_channels
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(c, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            c = int(v)
    return nn.Sequential(*layers)


class VGG16(nn.Module):
    """VGG-16 (configuration D), input [N, 3, 224, 224] normalised with ImageNet mean/std,
    output logits [N, num_classes]. ``dropout`` is the classifier's dropout probability."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = _features(VGG16_CFG)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=False), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=False), nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))
