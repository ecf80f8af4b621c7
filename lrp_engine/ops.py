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
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Forward = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
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
_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
_ADAPTIVE_AVG_POOL = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d,
                      3: F.adaptive_avg_pool3d}


class AffineOp:
    """A linear (affine) map ``a ↦ fn(a, weight, bias)``.

    ``native`` is the layer's own output tensor when it equals ``fn(a, weight, bias)`` with
    the unmodified parameters and is differentiable in ``a``; rules whose ρ is the identity
    reuse it instead of computing the layer again. ``regrad``: for a layer whose own
    input-gradient kernel is slow (see :data:`IM2COL_MAX_TAPS`), ``regrad(a, z)`` gives the
    output ``z``'s values with a faster gradient to ``a``; the relevance pass uses it in the
    layer's place.

    ``weight`` and ``bias`` may be given as ``params``, a function returning both, called
    the first time a rule reads either: rules that only rescale the native gradient (ε)
    never need a BatchNorm folded into its convolution.
    """

    def __init__(self, fn: Forward, weight: Tensor | None, bias: Tensor | None,
                 native: Tensor | None = None,
                 regrad: Callable[[Tensor, Tensor], Tensor] | None = None,
                 params: Callable[[], tuple[Tensor, Tensor | None]] | None = None) -> None:
        self.fn = fn
        self._weight, self._bias, self._params = weight, bias, params
        self.native = native
        self.regrad = regrad

    def _load(self) -> None:
        if self._params is not None:
            self._weight, self._bias = self._params()
            self._params = None

    @property
    def weight(self) -> Tensor:
        self._load()
        assert self._weight is not None
        return self._weight

    @property
    def bias(self) -> Tensor | None:
        self._load()
        return self._bias

    def __call__(self, a: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return self.fn(a, weight, bias)


def _detach(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach()


#: a Conv2d with at most this many input taps (C_in · k_h · k_w, e.g. 1·5·5 or 3·3·3: the
#: first layer on a grey or RGB image) is evaluated in the relevance pass as an im2col
#: matmul: oneDNN's input-gradient kernel is 2–6× slower than matmul + fold on so few taps
#: (measured on LeNet's and VGG-16's first layers), and the relevance pass is exactly that
#: gradient. With more taps oneDNN's own kernel is the faster one, except for the input
#: gradient of a pointwise (1×1, stride 1, unpadded) conv, a plain matmul whatever its taps,
#: which matmul computes faster too (EfficientNet-Lite0's 1×1 convs, measured); its forward,
#: which γ, z⁺ … evaluate again, stays oneDNN's (there matmul was 2–3× slower).
IM2COL_MAX_TAPS = 32


def _linear_forward(module: nn.Module) -> Forward:
    if isinstance(module, nn.Linear):
        return F.linear
    if isinstance(module, CONV_TYPES):
        im2col = _im2col_forward(module)
        if im2col is not None:
            return im2col
        return module._conv_forward  # honours stride, padding (any mode), dilation, groups
    raise TypeError(f"not a linear layer: {type(module).__name__}")


def _pointwise(geometry: tuple) -> bool:
    """Whether a conv's (kernel, dilation, padding, stride) make it a matmul over
    channels: 1×1, stride 1, no padding (its im2col columns are the input itself)."""
    kernel, _, padding, stride = geometry
    return kernel == (1, 1) and padding == (0, 0) and stride == (1, 1)


def _geometry(module: nn.Module) -> tuple:
    """(kernel, dilation, padding, stride) of a Conv2d, in ``F.fold``'s order."""
    return module.kernel_size, module.dilation, module.padding, module.stride


def _out_size(h: int, w: int, geometry: tuple) -> tuple[int, int]:
    """A conv's output height and width for an input of ``h`` × ``w`` pixels."""
    (kh, kw), (dh, dw), (ph, pw), (sh, sw) = geometry
    return ((h + 2 * ph - dh * (kh - 1) - 1) // sh + 1,
            (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1)


def _plain_conv2d(module: nn.Module) -> bool:
    """A Conv2d without groups, zero padding given as numbers, torch's own forward (not,
    e.g., a subclass padding "SAME" inside ``_conv_forward``)."""
    return (isinstance(module, nn.Conv2d) and module.groups == 1
            and type(module)._conv_forward is nn.Conv2d._conv_forward
            and module.padding_mode == "zeros" and not isinstance(module.padding, str))


def _im2col_forward(module: nn.Module) -> Forward | None:
    """``conv2d(a, w, b)`` as ``w · unfold(a)`` for a plain few-tap Conv2d (see
    :data:`IM2COL_MAX_TAPS`), else None. Same numbers up to float rounding."""
    if not _plain_conv2d(module) or module.weight[0].numel() > IM2COL_MAX_TAPS:
        return None
    kernel, dilation, padding, stride = geometry = _geometry(module)
    pointwise = _pointwise(geometry)

    def forward(a: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        n = a.shape[0]
        ho, wo = _out_size(a.shape[-2], a.shape[-1], geometry)
        cols = (a.reshape(n, a.shape[1], -1) if pointwise
                else F.unfold(a, kernel, dilation, padding, stride))  # [N, taps, ho·wo]
        z = (w.reshape(w.shape[0], -1) @ cols).view(n, w.shape[0], ho, wo)
        return z if b is None else z + b.view(1, -1, 1, 1)

    return forward


class _UnfoldGradient(torch.autograd.Function):
    """A few-tap conv's output ``z``, unchanged (a copy: later in-place activations may write
    to it), whose gradient reaches the input ``a`` as ``fold(wᵀ · g)``: the backward of
    ``w · unfold(a)`` without computing that forward again (the layer's own ``z`` has the
    same values). ``w`` [C_out, taps] is the layer's weight (BatchNorm folded in)."""

    @staticmethod
    def forward(ctx: Any, a: Tensor, z: Tensor, w: Tensor, geometry: tuple) -> Tensor:
        ctx.geometry, ctx.size = geometry, tuple(a.shape[-2:])
        ctx.save_for_backward(w)
        return z.clone()

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, None, None, None]:
        (w,) = ctx.saved_tensors
        n, c = g.shape[:2]
        cols = w.t() @ g.reshape(n, c, -1)  # [N, taps, L]
        if _pointwise(ctx.geometry):  # the columns are the input's pixels
            return cols.view(n, -1, *ctx.size), None, None, None
        return fold(cols, ctx.size, ctx.geometry), None, None, None


def fold(cols: Tensor, size: tuple[int, int], geometry: tuple) -> Tensor:
    """``F.fold(cols, size, *geometry)`` (the sum of im2col columns [N, C·kh·kw, L] back
    into [N, C, H, W]) as one strided add per kernel tap: 3–7× faster than ``F.fold``'s
    col2im on CPU (LeNet's and VGG-16's first layers, measured), the same sums up to the
    order of float additions."""
    (kh, kw), (dh, dw), (ph, pw), (sh, sw) = geometry
    h, w = size
    ho, wo = _out_size(h, w, geometry)
    n = cols.shape[0]
    taps = cols.view(n, -1, kh, kw, ho, wo)
    out = cols.new_zeros(n, taps.shape[1], h + 2 * ph, w + 2 * pw)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh,
                j * dw:j * dw + sw * (wo - 1) + 1:sw] += taps[:, :, i, j]
    return out[:, :, ph:ph + h, pw:pw + w]


def _im2col_regrad(module: nn.Module, weight: Callable[[], Tensor]
                   ) -> Callable[[Tensor, Tensor], Tensor] | None:
    """For a plain few-tap or pointwise Conv2d: ``(a, z) ↦ z`` with the im2col gradient
    (see :class:`_UnfoldGradient`) for the weight ``weight()``, else None."""
    if not _plain_conv2d(module):
        return None
    geometry = _geometry(module)
    if module.weight[0].numel() > IM2COL_MAX_TAPS and not _pointwise(geometry):
        return None

    def regrad(a: Tensor, z: Tensor) -> Tensor:
        w = weight()
        return _UnfoldGradient.apply(a, z.detach(), w.reshape(w.shape[0], -1), geometry)

    return regrad


def linear_op(module: nn.Module, native: Tensor | None) -> AffineOp:
    """Conv1d/2d/3d or Linear."""
    weight = module.weight.detach()
    return AffineOp(_linear_forward(module), weight, _detach(module.bias), native,
                    regrad=_im2col_regrad(module, lambda: weight))


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
    """``bn(layer(a))`` as one affine layer: weight·scale, (bias − μ)·scale + β (folded
    when a rule first reads them)."""
    def params() -> tuple[Tensor, Tensor]:
        scale, shift = bn_scale_shift(bn)
        w = layer.weight.detach()
        weight = w * scale.view(-1, *([1] * (w.dim() - 1)))
        bias = shift if layer.bias is None else layer.bias.detach() * scale + shift
        return weight, bias

    op = AffineOp(_linear_forward(layer), None, None, native, params=params)
    op.regrad = _im2col_regrad(layer, lambda: op.weight)
    return op


def batchnorm_op(bn: nn.Module, native: Tensor | None) -> AffineOp:
    """A BatchNorm on its own: a per-channel diagonal affine map."""
    def fn(a: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        shape = (1, -1, *([1] * (a.dim() - 2)))
        out = a * w.view(shape)
        return out if b is None else out + b.view(shape)

    return AffineOp(fn, None, None, native, params=lambda: bn_scale_shift(bn))


def _pool_dims(module: nn.Module) -> int:
    """Spatial dimensions (1, 2 or 3) of a pooling layer (subclasses included)."""
    for t in type(module).__mro__:
        if t in _POOL_DIMS:
            return _POOL_DIMS[t]
    raise TypeError(f"not a pooling layer: {type(module).__name__}")


def pool_op(module: nn.Module, native: Tensor | None, x: Tensor) -> AffineOp:
    """Average pooling (or max pooling treated as average pooling) as ``w · avgpool(a)``,
    for 1-, 2- and 3-d pools alike (``a``: [N, C, L], [N, C, H, W] or [N, C, D, H, W]).

    A max pool becomes the average pool over the same windows (kernel, stride, padding,
    ceil mode), padding not counted; dilated max pools have no such average pool."""
    dims = _pool_dims(module)
    m = module
    if isinstance(module, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)):
        adaptive = _ADAPTIVE_AVG_POOL[dims]

        def pool(a: Tensor) -> Tensor:
            return adaptive(a, m.output_size)
    elif isinstance(module, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
        avg = _AVG_POOL[dims]
        # AvgPool1d has no divisor_override (F.avg_pool1d takes none)
        extra = () if dims == 1 else (m.divisor_override,)

        def pool(a: Tensor) -> Tensor:
            return avg(a, m.kernel_size, m.stride, m.padding, m.ceil_mode,
                       m.count_include_pad, *extra)
    else:  # a max pool
        dilation = m.dilation if isinstance(m.dilation, tuple) else (m.dilation,)
        if any(d != 1 for d in dilation):
            raise ValueError(f"{type(m).__name__} with dilation cannot be treated as average "
                             "pooling; use maxpool='winner'")
        native = None  # the native output is the max, not the average
        avg = _AVG_POOL[dims]

        def pool(a: Tensor) -> Tensor:
            return avg(a, m.kernel_size, m.stride, m.padding, m.ceil_mode,
                       count_include_pad=False)

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
