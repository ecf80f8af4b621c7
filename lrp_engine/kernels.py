"""Fast CPU tensor primitives for 2-d convolutions: im2col forward, a strided-add fold and
an input gradient through them.

Nothing here knows about rules or layers: a convolution is given by its weight and its
geometry ``(kernel, dilation, padding, stride)``, each a pair of ints in ``F.fold``'s order
(zero padding, no groups). :mod:`lrp_engine.ops` decides which layers use these kernels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

#: a conv's (kernel, dilation, padding, stride), each an (h, w) pair of ints
Geometry = tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]

#: a Conv2d with at most this many input taps (C_in · k_h · k_w, e.g. 1·5·5 or 3·3·3: the
#: first layer on a grey or RGB image) is evaluated in the relevance pass as an im2col
#: matmul: oneDNN's input-gradient kernel is 2–6× slower than matmul + fold on so few taps
#: (measured on LeNet's and VGG-16's first layers), and the relevance pass is exactly that
#: gradient. With more taps oneDNN's own kernel is the faster one, except for the input
#: gradient of a pointwise (1×1, stride 1, unpadded) conv, a plain matmul whatever its taps,
#: which matmul computes faster too (EfficientNet-Lite0's 1×1 convs, measured); its forward,
#: which γ, z⁺ … evaluate again, stays oneDNN's (matmul is 2–3× slower there).
IM2COL_MAX_TAPS = 32


def is_pointwise(geometry: Geometry) -> bool:
    """Whether a conv's geometry makes it a matmul over channels: 1×1, stride 1, no
    padding (its im2col columns are the input itself)."""
    kernel, _, padding, stride = geometry
    return kernel == (1, 1) and padding == (0, 0) and stride == (1, 1)


def conv_out_size(h: int, w: int, geometry: Geometry) -> tuple[int, int]:
    """A conv's output height and width for an input of ``h`` × ``w`` pixels."""
    (kh, kw), (dh, dw), (ph, pw), (sh, sw) = geometry
    return ((h + 2 * ph - dh * (kh - 1) - 1) // sh + 1,
            (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1)


def im2col_conv2d(geometry: Geometry) -> Callable[[Tensor, Tensor, Tensor | None], Tensor]:
    """``(a, w, b) ↦ conv2d(a, w, b)`` computed as ``w · unfold(a)``: ``a`` [N, C, H, W],
    ``w`` [C_out, C, kh, kw], ``b`` [C_out] or None. Same numbers as ``F.conv2d`` with this
    geometry up to float rounding; its input gradient is matmul + col2im."""
    kernel, dilation, padding, stride = geometry
    pointwise = is_pointwise(geometry)

    def forward(a: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        n = a.shape[0]
        ho, wo = conv_out_size(a.shape[-2], a.shape[-1], geometry)
        cols = (a.reshape(n, a.shape[1], -1) if pointwise
                else F.unfold(a, kernel, dilation, padding, stride))  # [N, taps, ho·wo]
        z = (w.reshape(w.shape[0], -1) @ cols).view(n, w.shape[0], ho, wo)
        return z if b is None else z + b.view(1, -1, 1, 1)

    return forward


def fold(cols: Tensor, size: tuple[int, int], geometry: Geometry) -> Tensor:
    """``F.fold(cols, size, *geometry)`` (the sum of im2col columns [N, C·kh·kw, L] back
    into [N, C, H, W]) as one strided add per kernel tap: 3–7× faster than ``F.fold``'s
    col2im on CPU (LeNet's and VGG-16's first layers, measured), the same sums up to the
    order of float additions."""
    (kh, kw), (dh, dw), (ph, pw), (sh, sw) = geometry
    h, w = size
    ho, wo = conv_out_size(h, w, geometry)
    n = cols.shape[0]
    taps = cols.view(n, -1, kh, kw, ho, wo)
    out = cols.new_zeros(n, taps.shape[1], h + 2 * ph, w + 2 * pw)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh,
                j * dw:j * dw + sw * (wo - 1) + 1:sw] += taps[:, :, i, j]
    return out[:, :, ph:ph + h, pw:pw + w]


class _UnfoldGradient(torch.autograd.Function):
    """A conv's output ``z``, unchanged (a copy: later in-place writes may reach it), whose
    gradient reaches the input ``a`` as ``fold(wᵀ · g)``: the backward of ``w · unfold(a)``
    without computing that forward again (``z`` already has its values). ``w`` is the
    conv's weight as a matrix [C_out, taps]."""

    @staticmethod
    def forward(ctx: Any, a: Tensor, z: Tensor, w: Tensor, geometry: Geometry) -> Tensor:
        ctx.geometry, ctx.size = geometry, tuple(a.shape[-2:])
        ctx.save_for_backward(w)
        return z.clone()

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, None, None, None]:
        (w,) = ctx.saved_tensors
        n, c = g.shape[:2]
        cols = w.t() @ g.reshape(n, c, -1)  # [N, taps, L]
        if is_pointwise(ctx.geometry):  # the columns are the input's pixels
            return cols.view(n, -1, *ctx.size), None, None, None
        return fold(cols, ctx.size, ctx.geometry), None, None, None


def unfold_gradient(a: Tensor, z: Tensor, w: Tensor, geometry: Geometry) -> Tensor:
    """``z``'s values (a copy; ``z`` [N, C_out, ho, wo] is the conv of ``a`` [N, C, H, W]
    with weight ``w`` [C_out, C, kh, kw]) with the gradient to ``a`` of ``w · unfold(a)``
    and none to ``z`` or ``w``: a faster input gradient for few-tap or pointwise convs
    (see :data:`IM2COL_MAX_TAPS`)."""
    return _UnfoldGradient.apply(a, z.detach(), w.reshape(w.shape[0], -1), geometry)
