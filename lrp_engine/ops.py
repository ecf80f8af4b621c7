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
from typing import TypeGuard

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .kernels import IM2COL_MAX_TAPS, Geometry, im2col_conv2d, is_pointwise, unfold_gradient

Forward = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: the layers of each role that :func:`linear_op`, :func:`batchnorm_op` and :func:`pool_op`
#: take (``layers.role_of`` gives these roles by these types)
LinearLayer = nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d
BatchNormLayer = nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d
PoolLayer = (nn.AvgPool1d | nn.AvgPool2d | nn.AvgPool3d | nn.AdaptiveAvgPool1d
             | nn.AdaptiveAvgPool2d | nn.AdaptiveAvgPool3d | nn.MaxPool1d | nn.MaxPool2d
             | nn.MaxPool3d)
LINEAR_TYPES = (nn.Linear, *CONV_TYPES)
BATCHNORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
AVGPOOL_TYPES = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                 nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
MAXPOOL_TYPES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
#: spatial dimensions of each pooling type → its functional average pool, fixed-window and
#: adaptive (one mechanism for 1-, 2- and 3-d pooling)
_POOL_DIMS = {nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AvgPool3d: 3,
              nn.AdaptiveAvgPool1d: 1, nn.AdaptiveAvgPool2d: 2, nn.AdaptiveAvgPool3d: 3,
              nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3}
_AVG_POOL: dict[int, Callable[..., Tensor]] = {1: F.avg_pool1d, 2: F.avg_pool2d,
                                               3: F.avg_pool3d}
_ADAPTIVE_AVG_POOL: dict[int, Callable[..., Tensor]] = {
    1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}


class AffineOp:
    """A linear (affine) map ``a ↦ fn(a, weight, bias)``.

    ``native`` is the layer's own output tensor when it equals ``fn(a, weight, bias)`` with
    the unmodified parameters and is differentiable in ``a``; rules whose ρ is the identity
    reuse it instead of computing the layer again. ``regrad``: for a layer whose own
    input-gradient kernel is slow (see :data:`lrp_engine.kernels.IM2COL_MAX_TAPS`),
    ``regrad(a, z)`` gives the output ``z``'s values with a faster gradient to ``a``; the
    relevance pass uses it in the layer's place (:meth:`with_native` then gives the op that
    reuses that output).

    ``weight`` and ``bias`` may be given as ``params``, a function returning both (or a
    :class:`Params`), called once, the first time a rule reads either: rules that only
    rescale the native gradient (ε) never need a BatchNorm folded into its convolution.
    Every builder below passes all of these at construction.
    """

    def __init__(self, fn: Forward, weight: Tensor | None, bias: Tensor | None,
                 native: Tensor | None = None,
                 regrad: Callable[[Tensor, Tensor], Tensor] | None = None,
                 params: Params | Callable[[], tuple[Tensor, Tensor | None]] | None = None
                 ) -> None:
        self.fn = fn
        if isinstance(params, Params):
            self._params = params
        elif params is not None:
            self._params = Params(params)
        else:
            assert weight is not None, "an AffineOp needs a weight or params"
            self._params = Params(value=(weight, bias))
        self.native = native
        self.regrad = regrad

    @property
    def weight(self) -> Tensor:
        weight = self._params()[0]
        assert weight is not None
        return weight

    @property
    def bias(self) -> Tensor | None:
        return self._params()[1]

    def with_native(self, native: Tensor | None) -> AffineOp:
        """This op with ``native`` as the layer's own output (the parameters, loaded or
        not, shared)."""
        return AffineOp(self.fn, None, None, native, self.regrad, params=self._params)

    def __call__(self, a: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return self.fn(a, weight, bias)


class Params:
    """An affine map's (weight, bias): given, or computed by ``load`` on the first read and
    kept (a folded BatchNorm's weight and bias: several rule terms, and the im2col
    gradient, read them; rules that only rescale never do)."""

    __slots__ = ("_load", "_value")

    def __init__(self, load: Callable[[], tuple[Tensor, Tensor | None]] | None = None,
                 value: tuple[Tensor, Tensor | None] | None = None) -> None:
        self._load, self._value = load, value

    def __call__(self) -> tuple[Tensor, Tensor | None]:
        if self._value is None:
            assert self._load is not None
            self._value, self._load = self._load(), None
        return self._value


def _detach(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach()


def _linear_forward(module: LinearLayer) -> Forward:
    if isinstance(module, nn.Linear):
        return F.linear
    if isinstance(module, CONV_TYPES):
        im2col = _im2col_forward(module)
        if im2col is not None:
            return im2col
        return module._conv_forward  # honours stride, padding (any mode), dilation, groups
    raise TypeError(f"not a linear layer: {type(module).__name__}")


def _geometry(module: nn.Conv2d) -> Geometry:
    """(kernel, dilation, padding, stride) of a Conv2d with numeric padding, in ``F.fold``'s
    order."""
    def pair(v: tuple[int, ...] | str) -> tuple[int, int]:
        assert not isinstance(v, str)
        return v[0], v[1]

    return (pair(module.kernel_size), pair(module.dilation), pair(module.padding),
            pair(module.stride))


def _plain_conv2d(module: LinearLayer) -> TypeGuard[nn.Conv2d]:
    """A Conv2d without groups, zero padding given as numbers, torch's own forward (not,
    e.g., a subclass padding "SAME" inside ``_conv_forward``)."""
    return (isinstance(module, nn.Conv2d) and module.groups == 1
            and type(module)._conv_forward is nn.Conv2d._conv_forward
            and module.padding_mode == "zeros" and not isinstance(module.padding, str))


def _im2col_forward(module: LinearLayer) -> Forward | None:
    """``conv2d(a, w, b)`` as ``w · unfold(a)`` (:func:`lrp_engine.kernels.im2col_conv2d`)
    for a plain few-tap Conv2d (see :data:`lrp_engine.kernels.IM2COL_MAX_TAPS`), else None.
    Same numbers up to float rounding."""
    if not _plain_conv2d(module) or module.weight[0].numel() > IM2COL_MAX_TAPS:
        return None
    return im2col_conv2d(_geometry(module))


def _im2col_regrad(module: LinearLayer, weight: Callable[[], Tensor]
                   ) -> Callable[[Tensor, Tensor], Tensor] | None:
    """For a plain few-tap or pointwise Conv2d: ``(a, z) ↦ z`` with the im2col gradient
    (:func:`lrp_engine.kernels.unfold_gradient`) for the weight ``weight()``, else None."""
    if not _plain_conv2d(module):
        return None
    geometry = _geometry(module)
    if module.weight[0].numel() > IM2COL_MAX_TAPS and not is_pointwise(geometry):
        return None

    def regrad(a: Tensor, z: Tensor) -> Tensor:
        return unfold_gradient(a, z, weight(), geometry)

    return regrad


def linear_op(module: LinearLayer, native: Tensor | None) -> AffineOp:
    """Conv1d/2d/3d or Linear."""
    weight = module.weight.detach()
    return AffineOp(_linear_forward(module), weight, _detach(module.bias), native,
                    regrad=_im2col_regrad(module, lambda: weight))


def bn_scale_shift(bn: BatchNormLayer) -> tuple[Tensor, Tensor]:
    """Per-channel (scale, shift) with ``bn(z) = z * scale + shift`` in eval mode."""
    mean, var = bn.running_mean, bn.running_var  # buffers: Tensor or None
    if not isinstance(mean, Tensor) or not isinstance(var, Tensor):
        raise ValueError("BatchNorm without running statistics cannot be explained")
    scale = (var.detach() + bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight.detach()
    shift = -mean.detach() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach()
    return scale, shift


def folded_op(layer: LinearLayer, bn: BatchNormLayer, native: Tensor | None) -> AffineOp:
    """``bn(layer(a))`` as one affine layer: weight·scale, (bias − μ)·scale + β (folded
    when a rule first reads them)."""
    def params() -> tuple[Tensor, Tensor]:
        scale, shift = bn_scale_shift(bn)
        w = layer.weight.detach()
        weight = w * scale.view(-1, *([1] * (w.dim() - 1)))
        bias = shift if layer.bias is None else layer.bias.detach() * scale + shift
        return weight, bias

    folded = Params(params)
    return AffineOp(_linear_forward(layer), None, None, native,
                    regrad=_im2col_regrad(layer, lambda: folded()[0]), params=folded)


def batchnorm_op(bn: BatchNormLayer, native: Tensor | None) -> AffineOp:
    """A BatchNorm on its own: a per-channel diagonal affine map."""
    def fn(a: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        shape = (1, -1, *([1] * (a.dim() - 2)))
        out = a * w.view(shape)
        return out if b is None else out + b.view(shape)

    return AffineOp(fn, None, None, native, params=lambda: bn_scale_shift(bn))


def _pool_dims(module: PoolLayer) -> int:
    """Spatial dimensions (1, 2 or 3) of a pooling layer (subclasses included)."""
    for t in type(module).__mro__:
        if t in _POOL_DIMS:
            return _POOL_DIMS[t]
    raise TypeError(f"not a pooling layer: {type(module).__name__}")


def _adaptive_pool(m: nn.AdaptiveAvgPool1d | nn.AdaptiveAvgPool2d | nn.AdaptiveAvgPool3d,
                   dims: int) -> Callable[[Tensor], Tensor]:
    adaptive = _ADAPTIVE_AVG_POOL[dims]
    size = m.output_size

    def pool(a: Tensor) -> Tensor:
        return adaptive(a, size)

    return pool


def _avg_pool(m: nn.AvgPool1d | nn.AvgPool2d | nn.AvgPool3d, dims: int
              ) -> Callable[[Tensor], Tensor]:
    avg = _AVG_POOL[dims]
    # AvgPool1d has no divisor_override (F.avg_pool1d takes none)
    extra = () if isinstance(m, nn.AvgPool1d) else (m.divisor_override,)

    def pool(a: Tensor) -> Tensor:
        return avg(a, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
                   *extra)

    return pool


def _max_as_avg_pool(m: nn.MaxPool1d | nn.MaxPool2d | nn.MaxPool3d, dims: int
                     ) -> Callable[[Tensor], Tensor]:
    """The average pool over a max pool's windows (kernel, stride, padding, ceil mode),
    padding not counted; dilated max pools have none."""
    dilation = m.dilation if isinstance(m.dilation, tuple) else (m.dilation,)
    if any(d != 1 for d in dilation):
        raise ValueError(f"{type(m).__name__} with dilation cannot be treated as average "
                         "pooling; use maxpool='winner'")
    avg = _AVG_POOL[dims]

    def pool(a: Tensor) -> Tensor:
        return avg(a, m.kernel_size, m.stride, m.padding, m.ceil_mode, count_include_pad=False)

    return pool


def pool_op(module: PoolLayer, native: Tensor | None, x: Tensor) -> AffineOp:
    """Average pooling (or max pooling treated as average pooling) as ``w · avgpool(a)``,
    for 1-, 2- and 3-d pools alike (``a``: [N, C, L], [N, C, H, W] or [N, C, D, H, W]).

    A max pool becomes the average pool over the same windows (kernel, stride, padding,
    ceil mode), padding not counted; dilated max pools have no such average pool."""
    dims = _pool_dims(module)
    if isinstance(module, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)):
        pool = _adaptive_pool(module, dims)
    elif isinstance(module, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
        pool = _avg_pool(module, dims)
    else:
        pool = _max_as_avg_pool(module, dims)
        native = None  # the native output is the max, not the average

    def fn(a: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        return w * pool(a)

    return AffineOp(fn, torch.ones((), dtype=x.dtype, device=x.device), None, native)


def sum_op(native: Tensor) -> AffineOp:
    """A residual sum as an affine layer over its stacked summands: ``A`` [2, N, …] ↦
    ``Σ_k w·A_k`` with a scalar weight ``w = 1`` (so every rule applies to it: LRP-0 and ε
    split in proportion to the summands, γ and αβ by their signs)."""
    def fn(a: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        out = (w * a).sum(0)
        return out if b is None else out + b

    weight = torch.ones((), dtype=native.dtype, device=native.device)
    return AffineOp(fn, weight, None, native)
