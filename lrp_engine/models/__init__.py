"""Model definitions, the architecture registry, and the bundled trained MNIST weights.

The registry lives in :mod:`lrp_engine.models.zoo` (re-exported here): ``build("lenet")`` or
``build_model("resnet50", 7)`` gives a fresh (randomly initialised) network, ``load_pretrained``
one with its pretrained weights. ``load_bundled("lenet")`` is the trained digit model from
``lrp_engine/assets/models/lenet_mnist.pt`` in eval mode; :data:`BUNDLED` says what each
bundled digit model expects (input size, classes) and how well it does on the 1 000 held-out digits.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .lenet import LeNet
from .mlp import MLP
from .vgg import VGG16
from .zoo import (
    ARCHITECTURES,
    ArchSpec,
    LoadedModel,
    WeightsUnavailableError,
    build,
    build_empty,
    load_pretrained,
    preprocessing,
    spec,
)

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / "lrp_engine" / "assets" / "models"

#: the registry's builder under its older name: ``build_model(arch, num_classes=None)``
build_model = build

_DIGITS = tuple(str(d) for d in range(10))

#: bundled trained models: file ``lrp_engine/assets/models/{name}_mnist.pt``; ``input_size`` is
#: the side of the square normalised input ``mnist_to_tensor(images, size=input_size)``;
#: ``accuracy`` was measured on the 1 000 held-out bundled digits (see lrp_engine/assets/README.md)
BUNDLED: dict[str, dict] = {
    "lenet": {"arch": "lenet", "dataset": "mnist", "input_size": 32, "classes": _DIGITS,
              "accuracy": 0.986},
    "mlp": {"arch": "mlp", "dataset": "mnist", "input_size": 28, "classes": _DIGITS,
            "accuracy": 0.972},
}


def bundled_path(name: str) -> Path:
    """Where the bundled weights of ``name`` live: ``lrp_engine/assets/models/{name}_mnist.pt``."""
    return MODEL_DIR / f"{name}_mnist.pt"


def load_bundled(name: str) -> nn.Module:
    """The bundled trained model ``name`` (a key of :data:`BUNDLED`), on CPU, in eval mode.

    Weights load with ``weights_only=True`` (tensors only, no pickled code) and
    ``strict=True`` (every key must match the architecture).
    """
    if name not in BUNDLED:
        raise ValueError(f"no bundled model {name!r}; bundled: {sorted(BUNDLED)}")
    meta = BUNDLED[name]
    model = build(meta["arch"], num_classes=len(meta["classes"]))
    state = torch.load(bundled_path(name), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


__all__ = ["ARCHITECTURES", "ArchSpec", "BUNDLED", "LeNet", "LoadedModel", "MLP", "VGG16",
           "WeightsUnavailableError", "build", "build_empty", "build_model", "bundled_path",
           "load_bundled", "load_pretrained", "preprocessing", "spec"]
