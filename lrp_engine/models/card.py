"""Preprocessing and model cards: what a model's input is, exactly, and what the model is.

A :class:`PreprocessingCard` defines the tensor a model sees: input size, how a picture is
resized to it, channels, pixel range and normalisation (and, for scans, windowing). Every
architecture in the registry has a default card; a user's fine-tuned model brings its own
(seed 003's notebook: ``Resize((255, 255))`` + ``ToTensor()``, no normalisation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: how a picture reaches the input size
RESIZE_MODES = ("shorter-side-crop", "stretch", "pad-square")


@dataclass(frozen=True)
class PreprocessingCard:
    """The model input [N, channels, H, W] made from a picture.

    ``size``: (H, W) of the model input. ``resize``: ``"shorter-side-crop"`` (the shorter
    side to ``resize_size``, then the centre ``size`` crop: ImageNet evaluation),
    ``"stretch"`` (straight to ``size``, like ``Resize((255, 255))``) or ``"pad-square"``
    (padded to a square, then resized). ``resize_size``: the shorter side before the crop
    (None: ``round(max(size) / 0.875)``). ``channels``: 1, or 3 (grey pictures repeated to
    3). ``pixel_range``: pixels scaled to 0…1 (``1.0``, like ``ToTensor``) or 0…255
    (``255.0``). ``mean``/``std``: per channel, in pixel-range units (empty: no
    normalisation). ``windowing``: for scans, ``"percentile"`` (intensities clipped to the
    0.5–99.5 % percentiles and mapped to the pixel range first) or ``"none"`` (raw).
    """

    size: tuple[int, int] = (224, 224)
    resize: str = "shorter-side-crop"
    resize_size: int | None = None
    channels: int = 3
    pixel_range: float = 1.0
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    windowing: str = "none"
    interpolation: str = "bilinear"

    def _stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        if not self.mean:
            return (0.0,) * self.channels, (1.0,) * self.channels
        return self.mean, self.std

    @property
    def low(self) -> tuple[float, ...]:
        """Model-input value of a black pixel per channel (the zB rule's lower bound)."""
        mean, std = self._stats()
        return tuple((0.0 - m) / s for m, s in zip(mean, std, strict=True))

    @property
    def high(self) -> tuple[float, ...]:
        """Model-input value of a white pixel per channel (the zB rule's upper bound)."""
        mean, std = self._stats()
        return tuple((self.pixel_range - m) / s for m, s in zip(mean, std, strict=True))

    def normalise(self, x01: Tensor) -> Tensor:
        """Pixels in [0, 1], [N, C, H, W] → model input (same shape)."""
        mean, std = self._stats()
        shape = (1, -1, 1, 1)
        m = torch.tensor(mean, dtype=x01.dtype, device=x01.device).view(shape)
        s = torch.tensor(std, dtype=x01.dtype, device=x01.device).view(shape)
        return (x01 * self.pixel_range - m) / s

    def denormalise(self, x: Tensor) -> Tensor:
        """Inverse of :meth:`normalise`: model input → pixels in [0, 1]."""
        mean, std = self._stats()
        shape = (1, -1, 1, 1)
        m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(shape)
        s = torch.tensor(std, dtype=x.dtype, device=x.device).view(shape)
        return (x * s + m) / self.pixel_range
