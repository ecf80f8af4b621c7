"""Affine operations as the rules see them: a weight, a bias and a functional forward.

An :class:`AffineOp` lets a rule evaluate a layer with modified parameters and inputs,
``op(a, weight, bias)``, without ever editing the user's module. Parameters are detached:
the relevance pass needs gradients with respect to inputs only.

Pooling layers are affine too: an average pool is ``w · avgpool(a)`` with a scalar weight
``w = 1`` (so γ, αβ, flat, w² all apply to it), and BatchNorm after a convolution or linear
layer is folded into that layer's weight and bias (the canonical form for LRP).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Forward = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
LINEAR_TYPES = (nn.Linear, *CONV_TYPES)
BATCHNORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
AVGPOOL_TYPES = (nn.AvgPool2d, nn.AdaptiveAvgPool2d)
MAXPOOL_TYPES = (nn.MaxPool2d,)


class AffineOp:
    """A linear (affine) map ``a ↦ fn(a, weight, bias)``.

    ``native`` is the layer's own output tensor when it equals ``fn(a, weight, bias)`` with
    the unmodified parameters and is differentiable in ``a``; rules whose ρ is the identity
    reuse it instead of computing the layer again.
    """

    def __init__(self, fn: Forward, weight: Tensor, bias: Tensor | None,
                 native: Tensor | None = None) -> None:
        self.fn = fn
        self.weight = weight
        self.bias = bias
        self.native = native

    def __call__(self, a: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return self.fn(a, weight, bias)


def _detach(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach()


def _linear_forward(module: nn.Module) -> Forward:
    if isinstance(module, nn.Linear):
        return F.linear
    if isinstance(module, CONV_TYPES):
        return module._conv_forward  # honours stride, padding (any mode), dilation, groups
    raise TypeError(f"not a linear layer: {type(module).__name__}")


def linear_op(module: nn.Module, native: Tensor | None) -> AffineOp:
    """Conv1d/2d/3d or Linear."""
    return AffineOp(_linear_forward(module), module.weight.detach(), _detach(module.bias),
                    native)


def bn_scale_shift(bn: nn.Module) -> tuple[Tensor, Tensor]:
    """Per-channel (scale, shift) with ``bn(z) = z * scale + shift`` in eval mode."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("BatchNorm without running statistics cannot be explained")
    scale = (bn.running_var.detach() + bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight.detach()
    shift = -bn.running_mean.detach() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach()
    return scale, shift


def folded_op(layer: nn.Module, bn: nn.Module, native: Tensor | None) -> AffineOp:
    """``bn(layer(a))`` as one affine layer: weight·scale, (bias − μ)·scale + β."""
    scale, shift = bn_scale_shift(bn)
    w = layer.weight.detach()
    weight = w * scale.view(-1, *([1] * (w.dim() - 1)))
    bias = shift if layer.bias is None else layer.bias.detach() * scale + shift
    return AffineOp(_linear_forward(layer), weight, bias, native)


def batchnorm_op(bn: nn.Module, native: Tensor | None) -> AffineOp:
    """A BatchNorm on its own: a per-channel diagonal affine map."""
    scale, shift = bn_scale_shift(bn)

    def fn(a: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        shape = (1, -1, *([1] * (a.dim() - 2)))
        out = a * w.view(shape)
        return out if b is None else out + b.view(shape)

    return AffineOp(fn, scale, shift, native)


def pool_op(module: nn.Module, native: Tensor | None, x: Tensor) -> AffineOp:
    """Average pooling (or max pooling treated as average pooling) as ``w · avgpool(a)``."""
    if isinstance(module, nn.AdaptiveAvgPool2d):
        size = module.output_size

        def pool(a: Tensor) -> Tensor:
            return F.adaptive_avg_pool2d(a, size)
    elif isinstance(module, nn.AvgPool2d):
        m = module

        def pool(a: Tensor) -> Tensor:
            return F.avg_pool2d(a, m.kernel_size, m.stride, m.padding, m.ceil_mode,
                                m.count_include_pad, m.divisor_override)
    elif isinstance(module, nn.MaxPool2d):
        m = module
        if m.dilation not in (1, (1, 1)):
            raise ValueError("MaxPool2d with dilation cannot be treated as average pooling; "
                             "use maxpool='winner'")
        native = None  # the native output is the max, not the average

        def pool(a: Tensor) -> Tensor:
            return F.avg_pool2d(a, m.kernel_size, m.stride, m.padding, m.ceil_mode,
                                count_include_pad=False)
    else:
        raise TypeError(f"not a pooling layer: {type(module).__name__}")

    def fn(a: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        return w * pool(a)

    return AffineOp(fn, torch.ones((), dtype=x.dtype, device=x.device), None, native)
