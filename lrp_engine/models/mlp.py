"""A small fully connected MNIST classifier, 784 → 300 → 100 → classes.

Input: normalised digits [N, 1, 28, 28] (``mnist_to_tensor(images, size=28)``) or already
flat [N, 784]; output: logits [N, num_classes]. Layers sit in an ``nn.Sequential`` named
``model`` (``flatten, dense1, relu1, dense2, relu2, final``), so state-dict keys read
``model.dense1.weight`` … ``model.final.bias``.
"""

from __future__ import annotations

from torch import Tensor, nn


class MLP(nn.Module):
    """flatten → dense1 (784→300) → relu1 → dense2 (300→100) → relu2 → final (100→classes)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.model = nn.Sequential()
        self.model.add_module("flatten", nn.Flatten())
        self.model.add_module("dense1", nn.Linear(784, 300))
        self.model.add_module("relu1", nn.ReLU())
        self.model.add_module("dense2", nn.Linear(300, 100))
        self.model.add_module("relu2", nn.ReLU())
        self.model.add_module("final", nn.Linear(100, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)
