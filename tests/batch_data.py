"""Small data sets on disk for the batch tests: bundled digits as PNG files.

:func:`digit_folder`: ``root/<class>/<i>.png`` (ImageFolder layout) from the first bundled
held-out digits, and optionally ``masks/<class>/<i>.png`` (the digit's bright pixels, i.e.
where the ink is) for some of them. :func:`fast_config`: a BatchConfig that runs in about a
second on LeNet (few items, few steps).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from lrp_engine.batch import BatchConfig


def digits(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` bundled held-out digits uint8 [n, 28, 28] and labels [n]."""
    from lrp_engine.data import load_bundled_mnist

    images, labels = load_bundled_mnist("test")
    return images[:n], labels[:n]


def digit_folder(root: Path, n: int = 10, masks: Path | None = None, mask_every: int = 2,
                 flat: bool = False) -> list[str]:
    """Write ``n`` digits as PNGs (``<label>/<i:03d>.png``, or ``<i:03d>.png`` when
    ``flat``) and masks for every ``mask_every``-th one; returns the relative paths."""
    images, labels = digits(n)
    names = []
    for i, (img, label) in enumerate(zip(images, labels, strict=True)):
        rel = Path(f"{i:03d}.png") if flat else Path(str(int(label))) / f"{i:03d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / rel)
        names.append(rel.as_posix())
        if masks is not None and i % mask_every == 0:
            (masks / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(((img > 128) * 255).astype(np.uint8)).save(masks / rel)
    return names


def fast_config(**changes: object) -> BatchConfig:
    """LeNet, ε and G×I and random, pixel flipping and region perturbation with 6 steps."""
    base = {"model": "lenet", "methods": ("epsilon", "gradient_x_input", "random"),
            "metrics": ("pf", "rp", "rma", "pointing"), "steps": 6, "pixels_per_step": 8,
            "patch": 8, "batch_size": 4, "quiet": True, "eval_batch": 64}
    base.update(changes)
    return BatchConfig(**base)  # type: ignore[arg-type]
