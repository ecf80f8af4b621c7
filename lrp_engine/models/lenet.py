"""LeNet for 32×32 MNIST: the network of the bundled weights, layer for layer and name for name.

Input: normalised digits [N, 1, 32, 32] (see :func:`lrp_engine.data.mnist_to_tensor`);
output: logits [N, num_classes]. Shapes through the stack: 32 → conv 5×5 → 28 → pool → 14 →
conv 5×5 → 10 → pool → 5, so ``flatten`` yields 48·5·5 = 1200 features.

All layers live in one ``nn.Sequential`` named ``model`` with fixed module names, so
state-dict keys read ``model.conv1.weight`` … ``model.final.bias`` and checkpoints of this
layout load with ``strict=True``.
"""

from __future__ import annotations

from torch import Tensor, nn


class LeNet(nn.Module):
    """conv1 → relu1 → maxpool1 → conv2 → relu2 → dropout2 → maxpool2 → flatten → dense3 →
    relu3 → dropout3 → final. ``dropout`` is the probability of both dropout layers."""

    def __init__(self, num_classes: int = 10, dropout: float = 0.5) -> None:
        super().__init__()
        self.model = nn.Sequential()
        self.model.add_module("conv1", nn.Conv2d(1, 24, kernel_size=5))
        self.model.add_module("relu1", nn.ReLU())
        self.model.add_module("maxpool1", nn.MaxPool2d(2))
        self.model.add_module("conv2", nn.Conv2d(24, 48, kernel_size=5))
        self.model.add_module("relu2", nn.ReLU())
        self.model.add_module("dropout2", nn.Dropout2d(dropout))
        self.model.add_module("maxpool2", nn.MaxPool2d(2))
        self.model.add_module("flatten", nn.Flatten())
        self.model.add_module("dense3", nn.Linear(1200, 240))
        self.model.add_module("relu3", nn.ReLU())
        self.model.add_module("dropout3", nn.Dropout(dropout))
        self.model.add_module("final", nn.Linear(240, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)
