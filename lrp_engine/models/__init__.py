"""Model definitions, an architecture registry, and the bundled trained MNIST weights.

``build_model("lenet")`` gives a fresh (randomly initialised) network;
``load_bundled("lenet")`` the trained one from ``assets/models/lenet_mnist.pt`` in eval mode.
:data:`BUNDLED` says what each bundled model expects (input size, classes) and how well it
does on the 1 000 held-out bundled digits.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .lenet import LeNet
from .mlp import MLP
from .vgg import VGG16

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / "assets" / "models"

#: architecture name → constructor taking ``num_classes`` (add new architectures here)
ARCHITECTURES: dict[str, Callable[[int], nn.Module]] = {
    "lenet": lambda num_classes: LeNet(num_classes=num_classes),
    "mlp": lambda num_classes: MLP(num_classes=num_classes),
}

_DIGITS = tuple(str(d) for d in range(10))

#: bundled trained models: file ``assets/models/{name}_mnist.pt``; ``input_size`` is the side
#: of the square normalised input ``mnist_to_tensor(images, size=input_size)``; ``accuracy``
#: was measured on the 1 000 held-out bundled digits (see assets/README.md)
BUNDLED: dict[str, dict] = {
    "lenet": {"arch": "lenet", "dataset": "mnist", "input_size": 32, "classes": _DIGITS,
              "accuracy": 0.986},
    "mlp": {"arch": "mlp", "dataset": "mnist", "input_size": 28, "classes": _DIGITS,
            "accuracy": 0.972},
}


def build_model(arch: str, num_classes: int = 10) -> nn.Module:
    """A fresh model of architecture ``arch`` (a key of :data:`ARCHITECTURES`)."""
    try:
        ctor = ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; known: {sorted(ARCHITECTURES)}") \
            from None
    return ctor(num_classes)


def bundled_path(name: str) -> Path:
    """Where the bundled weights of ``name`` live: ``assets/models/{name}_mnist.pt``."""
    return MODEL_DIR / f"{name}_mnist.pt"


def load_bundled(name: str) -> nn.Module:
    """The bundled trained model ``name`` (a key of :data:`BUNDLED`), on CPU, in eval mode.

    Weights load with ``weights_only=True`` (tensors only, no pickled code) and
    ``strict=True`` (every key must match the architecture).
    """
    if name not in BUNDLED:
        raise ValueError(f"no bundled model {name!r}; bundled: {sorted(BUNDLED)}")
    meta = BUNDLED[name]
    model = build_model(meta["arch"], num_classes=len(meta["classes"]))
    state = torch.load(bundled_path(name), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


__all__ = ["ARCHITECTURES", "BUNDLED", "LeNet", "MLP", "VGG16", "build_model", "bundled_path",
           "load_bundled"]
