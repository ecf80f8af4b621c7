"""LayerNorm and GroupNorm for relevance: the normalising statistic is a constant.

``y = (x − μ(x)) / σ(x) · w + b`` is not linear in ``x``; with σ taken as a constant (the
LN-rule of Ali et al. 2022, "XAI for Transformers: Better Explanations through Conservative
Propagation") it is: the centring ``x − μ(x)`` is a linear map, homogeneous in ``x``, so
relevance passes through it and the scale ``w`` conserved (Σ_i x_i ∂y_j/∂x_i = y_j − b_j);
the bias takes its share like any bias. Forward values are unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

#: the norms :func:`constant_statistics` takes (torchvision's LayerNorm2d is a LayerNorm)
NormLayer = nn.LayerNorm | nn.GroupNorm


def _statistic_dims(module: NormLayer, x: Tensor) -> tuple[Tensor, tuple[int, ...], tuple]:
    """(x viewed for normalising, the dims normalised over, the view of the affine
    parameters that broadcasts against the output)."""
    if isinstance(module, nn.GroupNorm):
        g = module.num_groups
        xv = x.reshape(x.shape[0], g, -1)
        return xv, (2,), (1, -1, *([1] * (x.dim() - 2)))
    if type(module).__name__ == "LayerNorm2d":  # torchvision's, over channels of [N, C, …]
        return x, (1,), (1, -1, *([1] * (x.dim() - 2)))
    k = len(module.normalized_shape)
    return x, tuple(range(x.dim() - k, x.dim())), tuple(module.normalized_shape)


def constant_statistics(module: NormLayer, x: Tensor, out: Tensor) -> Tensor:
    """``out``'s values, with the gradient of the norm whose σ is a constant (see the
    module docstring). ``module``: nn.LayerNorm, torchvision's LayerNorm2d or
    nn.GroupNorm; ``x``: its input, ``out``: its output (same shape)."""
    xv, dims, affine_shape = _statistic_dims(module, x)
    mean = xv.mean(dims, keepdim=True)
    var = xv.detach().var(dims, unbiased=False, keepdim=True)
    y = ((xv - mean) * torch.rsqrt(var + module.eps)).reshape(x.shape)
    if module.weight is not None:
        y = y * module.weight.detach().view(affine_shape)
    if module.bias is not None:
        y = y + module.bias.detach().view(affine_shape)
    return y + (out - y).detach()
