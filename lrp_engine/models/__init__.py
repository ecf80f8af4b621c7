"""Model definitions, the architecture registry, and the bundled trained MNIST weights.

The registry lives in :mod:`lrp_engine.models.zoo` (re-exported here): ``build("lenet")`` or
``build_model("resnet50", 7)`` gives a fresh (randomly initialised) network, ``load_pretrained``
one with its pretrained weights. ``load_bundled("lenet")`` is the trained digit model from
``lrp_engine/assets/models/lenet_mnist.pt`` in eval mode; :data:`BUNDLED` says what each
bundled digit model expects (input size, classes) and how well it does on the 1 000 held-out
digits, read from the registry's entries.
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
    MODEL_DIR,
    ArchSpec,
    BundledWeights,
    LoadedModel,
    WeightsUnavailableError,
    build,
    build_empty,
    bundled_weights,
    load_pretrained,
    model_label,
    preprocessing,
    spec,
)

#: the registry's builder under its older name: ``build_model(arch, num_classes=None)``
build_model = build


def _digit_model(name: str, weights: BundledWeights) -> dict:
    return {"arch": name, "dataset": weights.dataset,
            "input_size": spec(name).preprocessing.size[0], "classes": weights.class_names,
            "accuracy": weights.accuracy}


#: the bundled digit models (the registry's models with MNIST weights), in registry order:
#: ``input_size`` is the side of the square normalised input ``mnist_to_tensor(images,
#: size=input_size)``; ``accuracy`` on the 1 000 held-out bundled digits
BUNDLED: dict[str, dict] = {
    name: _digit_model(name, s.weights) for name, s in ARCHITECTURES.items()
    if s.weights is not None and s.weights.dataset == "mnist"}


def bundled_path(name: str) -> Path:
    """Where the bundled weights of ``name`` live (``lrp_engine/assets/models``)."""
    return bundled_weights(name).path


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


__all__ = ["ARCHITECTURES", "BUNDLED", "MODEL_DIR", "ArchSpec", "BundledWeights", "LeNet",
           "LoadedModel", "MLP", "VGG16", "WeightsUnavailableError", "build", "build_empty",
           "build_model", "bundled_path", "bundled_weights", "load_bundled", "load_pretrained",
           "model_label", "preprocessing", "spec"]
