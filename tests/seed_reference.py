"""The seed notebook's ``LRP_epsilon``, re-implemented faithfully for tests only.

Source: ``seeds/000`` ("B-LRP: MNIST experiment"), function ``LRP_epsilon`` with its helper
``newlayer``. Kept as in the notebook (heatmapping.org tutorial style):

* the layer list is ``list(model.modules())[2:]`` (skips the LeNet and its ``nn.Sequential``);
* a forward pass stores every activation ``A[l]``;
* relevance at the output is ``A[-1] * T`` with ``T`` the one-hot of ``class_id``;
* backwards over the layers: ``MaxPool2d`` is replaced by ``AvgPool2d(2)``; for Conv2d,
  AvgPool2d, Linear and Flatten the four steps ``z = layer(A) + ε`` (a deep copy of the layer,
  parameters through ρ = identity; ``+ε`` with no sign!), ``s = R / z``, ``c = ∂(z·s)/∂A``,
  ``R = A · c``; every other layer (ReLU, dropout) passes relevance unchanged.

Only the notebook's ``dropout=False`` branch (standard LRP-ε, ``model.eval()``) is
reproduced; the ``dropout=True`` branch needs the notebook's custom ``MyDropout`` layer
with frozen seeds, which the project replaces by its own dropout-mask mechanism. Unlike the
notebook, this works in the input's dtype (the notebook used float32), processes one image
of shape [1, 1, 32, 32] per call as the notebook does, and uses ``torch.no_grad`` only for
the forward, as the notebook does. It does use autograd: that is the notebook's mechanism.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn


def newlayer(layer: nn.Module, g: Callable[[Tensor], Tensor]) -> nn.Module:
    """Clone a layer and pass its parameters through ``g`` (the notebook's helper)."""
    layer = copy.deepcopy(layer)
    try:
        layer.weight = nn.Parameter(g(layer.weight))
    except AttributeError:
        pass
    try:
        layer.bias = nn.Parameter(g(layer.bias))
    except AttributeError:
        pass
    return layer


def seed_lrp_epsilon(image: Tensor, class_id: int, model: nn.Module,
                     epsilon: float = 1e-9) -> Tensor:
    """The notebook's ``LRP_epsilon(image, class_id, model, dropout=False)``.

    ``image``: one image (anything that views as [1, 1, 32, 32]); returns the relevance
    [1, 1, 32, 32]. Puts ``model`` in eval mode, like the notebook.
    """
    model.eval()
    x = image.detach().clone().reshape([1, 1, 32, 32])  # a copy: the caller's tensor is kept
    layers = list(model.modules())[2:]
    n_layers = len(layers)

    acts: list[Tensor | None] = [x] + [None] * n_layers
    with torch.no_grad():
        for i in range(n_layers):
            acts[i + 1] = layers[i].forward(acts[i])

    out = acts[-1]
    assert out is not None
    t = torch.tensor((1.0 * (np.arange(out.shape[1]) == class_id)).reshape(out.shape),
                     dtype=out.dtype)
    rel: list[Tensor | None] = [None] * n_layers + [out * t]

    for i in range(0, n_layers)[::-1]:
        a = acts[i]
        assert a is not None
        a = a.requires_grad_(True)
        acts[i] = a

        def rho(p: Tensor) -> Tensor:
            return p

        def incr(z: Tensor) -> Tensor:
            return z + epsilon

        if isinstance(layers[i], torch.nn.MaxPool2d):
            layers[i] = torch.nn.AvgPool2d(2)

        if isinstance(layers[i], (nn.Conv2d, nn.AvgPool2d, nn.Linear, nn.Flatten)):
            z = incr(newlayer(layers[i], rho).forward(a))   # step 1
            s = (rel[i + 1] / z).data                        # step 2
            (z * s).sum().backward()                         # step 3
            c = a.grad
            rel[i] = (a * c).data                            # step 4
        else:
            rel[i] = rel[i + 1]

    r0 = rel[0]
    assert r0 is not None
    return r0.data
