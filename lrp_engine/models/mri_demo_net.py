"""The network of the synthetic MRI demo and what its input and outputs are.

The demo itself (the synthetic lesions, training, the held-out set) is
:mod:`lrp_engine.mri_demo`; the registry (:mod:`lrp_engine.models.zoo`) needs only this
module to offer the model, so listing the architectures never loads the demo.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

from .card import PreprocessingCard

CLASS_NAMES: tuple[str, ...] = ("no lesion", "left-hemisphere round lesion",
                                "right-hemisphere round lesion", "midline elongated lesion")
#: the side of the square input slices (pixels)
SIZE = 96
#: the model input: one grey slice padded to a square, resized to 96×96, intensities in
#: [0, 1] by a percentile window (no further normalisation; the zB bounds are 0 and 1)
PREPROCESSING = PreprocessingCard(size=(SIZE, SIZE), resize="pad-square", channels=1,
                                  mean=(), std=(), windowing="percentile")


class MRIDemoNet(nn.Module):
    """A small VGG-style CNN: [N, 1, 96, 96] in [0, 1] → logits [N, 4].

    conv3×3-BatchNorm-ReLU blocks (the engine folds each BatchNorm into its conv) with 2×2
    max pooling (16, 32, 64, 64 channels; 96 → 6 pixels),
    4×4 adaptive average pooling (keeps coarse position: left/right matters here), then
    dropout → linear(1024, 64) → ReLU → dropout → linear(64, classes). Only layers the LRP
    engine handles; the two dropouts make it usable with B-LRP.
    """

    def __init__(self, num_classes: int = len(CLASS_NAMES), dropout: float = 0.3) -> None:
        super().__init__()
        chans = (1, 16, 32, 64, 64)
        layers: list[nn.Module] = []
        for cin, cout in itertools.pairwise(chans):
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                       nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((4, 4))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(64 * 4 * 4, 64), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(64, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


__all__ = ["CLASS_NAMES", "PREPROCESSING", "SIZE", "MRIDemoNet"]
