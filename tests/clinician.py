"""The clinician's case, shared by the AppTest and the browser test: a fine-tuning notebook's
wrapper around torchvision's VGG-16 (keys ``vgg16.…``, 4 classes) and a grey PNG slice."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from torch import nn

from lrp_engine.torchvision_compat import import_torchvision


class CNNModel(nn.Module):
    """Like a fine-tuning notebook: torchvision's VGG-16 inside, its last layer 4 classes."""

    def __init__(self) -> None:
        super().__init__()
        tv = import_torchvision()
        self.vgg16 = tv.models.vgg16(weights=None)
        self.vgg16.classifier[6] = nn.Linear(4096, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vgg16(x)


def scan_png() -> bytes:
    """A grey 260×300 slice: a bright blob on a noisy background."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:300, :260]
    a = 80 + 100 * np.exp(-((yy - 150) ** 2 + (xx - 120) ** 2) / 4000.0)
    a = np.clip(a + rng.normal(0, 10, a.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a, "L").save(buf, format="PNG")
    return buf.getvalue()
