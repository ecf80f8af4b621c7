"""A synthetic brain-MRI lesion demo: data, a small CNN, its training. NOT diagnostic.

The images are axial slices of one healthy brain template (MNI ICBM152 2009a T1, bundled as
``lrp_engine/assets/mri/mni152_slices.npz``, see ``lrp_engine/assets/MRI.md``)
with **synthetic** lesions drawn at run time at known places, so every heatmap can be
checked against a ground-truth mask.
Nothing here comes from a patient, and the model knows nothing about real pathology.

Classes (by location and shape; "left" is the subject's left). The arrays are stored in
the neurological layout (the subject's left in the left columns, anterior at the top), as
the model was trained; the MRI inspector shows them radiologically by default (the
subject's left on the image's right, beside its "L" marker), so a "left-hemisphere" lesion
is drawn on the screen's right, where a clinician expects it:

0. ``no lesion``
1. ``left-hemisphere round lesion``: a bright disc in the left hemisphere
2. ``right-hemisphere round lesion``: the same in the right hemisphere
3. ``midline elongated lesion``: a thin bright ellipse along the midline (periventricular)

Images: float32 [N, 1, 96, 96] in [0, 1] (1.97 mm per pixel; white matter ≈ 0.65, lesions
0.85–1.0), with random brightness, a smooth bias field, noise and a small shift. Masks: bool
[N, 96, 96], the lesion's support (empty for "no lesion"). Everything is seeded: the same
``(n, seed, split)`` always gives the same images; train and test use disjoint slices.

    python -m lrp_engine.mri_demo train --out lrp_engine/assets/models/mri_demo.pt  # ≈ 1–2 min
    python -m lrp_engine.mri_demo evaluate
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .data import Split
from .models.mri_demo_net import CLASS_NAMES, SIZE, MRIDemoNet
from .models.zoo import bundled_weights

ROOT = Path(__file__).resolve().parents[1]
SLICES_FILE = ROOT / "lrp_engine" / "assets" / "mri" / "mni152_slices.npz"
#: the bundled trained weights (the registry's file of "mri_demo")
WEIGHTS_FILE = bundled_weights("mri_demo").path

DISCLAIMER = ("Synthetic demo: a healthy brain template with computer-drawn lesions. "
              "Not a medical device, not diagnostic, trained on no patient data.")
WM_LEVEL = 0.75  # the template's 255 maps to this: white matter ≈ 0.6–0.72
TEST_SEED = 20240605
TRAIN_SEED = 0


# -- the bundled slices --------------------------------------------------------------------

@dataclass(frozen=True)
class TemplateSlices:
    """The bundled template slices: ``images`` float32 [S, 96, 96] in [0, WM_LEVEL],
    ``brain`` bool [S, 96, 96], ``z_mm`` [S] and the midline column (47.5)."""

    images: np.ndarray
    brain: np.ndarray
    z_mm: np.ndarray
    midline: float
    mm_per_pixel: float

    def split(self, name: Split) -> np.ndarray:
        """Slice indices of a split: every 4th slice (from the 2nd) is held out for "test"."""
        idx = np.arange(len(self.images))
        test = idx % 4 == 1
        if name == "test":
            return idx[test]
        if name == "train":
            return idx[~test]
        raise ValueError(f"split must be 'train' or 'test', got {name!r}")


@functools.lru_cache(maxsize=2)
def load_slices(path: str | Path = SLICES_FILE) -> TemplateSlices:
    """Read the bundled slices (cached)."""
    with np.load(path) as d:
        return TemplateSlices(images=d["slices"].astype(np.float32) / 255.0 * WM_LEVEL,
                              brain=d["brain_masks"].astype(bool), z_mm=d["z_mm"].copy(),
                              midline=float(d["midline_col"]),
                              mm_per_pixel=float(d["mm_per_pixel"]))


# -- synthetic lesions ---------------------------------------------------------------------

def ellipse(shape: tuple[int, int], cy: float, cx: float, ry: float, rx: float,
            angle: float = 0.0) -> np.ndarray:
    """Normalised elliptic radius r [H, W] (r ≤ 1 inside), axes ry/rx in pixels, rotated by
    ``angle`` radians."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dy + s * dx, -s * dy + c * dx
    return np.sqrt((u / ry) ** 2 + (v / rx) ** 2)


def _erode(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary erosion by a (2r+1)² square, numpy only."""
    out = mask.copy()
    for _ in range(r):
        m = out.copy()
        m[1:] &= out[:-1]
        m[:-1] &= out[1:]
        m[:, 1:] &= out[:, :-1]
        m[:, :-1] &= out[:, 1:]
        out = m
    return out


def _place_round(rng: np.random.Generator, brain: np.ndarray, midline: float, left: bool
                 ) -> tuple[float, float, float, float, float]:
    r = float(rng.uniform(3.5, 7.0))
    ok = _erode(brain, int(np.ceil(r)) + 1)
    cols = np.arange(brain.shape[1])
    side = cols < midline - (r + 4) if left else cols > midline + (r + 4)
    ok &= side[None, :]
    ys, xs = np.nonzero(ok)
    i = rng.integers(len(ys))
    stretch = float(rng.uniform(0.85, 1.15))
    return float(ys[i]), float(xs[i]), r * stretch, r / stretch, float(rng.uniform(0, np.pi))


def _place_midline(rng: np.random.Generator, brain: np.ndarray, midline: float
                   ) -> tuple[float, float, float, float, float]:
    ry, rx = float(rng.uniform(8.0, 14.0)), float(rng.uniform(1.8, 2.8))
    ok = _erode(brain, int(np.ceil(ry)) + 1)
    rows = np.nonzero(ok[:, int(midline)])[0]
    rows = rows[(rows > 28) & (rows < 68)] if np.any((rows > 28) & (rows < 68)) else rows
    cy = float(rng.choice(rows))
    cx = midline + float(rng.uniform(-1.0, 1.0))
    return cy, cx, ry, rx, float(rng.uniform(-0.3, 0.3))


def draw_lesion(image: np.ndarray, brain: np.ndarray, label: int, midline: float,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw class ``label``'s lesion into a copy of ``image`` [H, W]: (image, mask [H, W]).

    The lesion blends to intensity 0.85–1.0 with a soft rim; the mask is its whole support
    (every changed pixel is inside the mask)."""
    if label == 0:
        return image.copy(), np.zeros(image.shape, bool)
    if label in (1, 2):
        cy, cx, ry, rx, ang = _place_round(rng, brain, midline, left=label == 1)
    elif label == 3:
        cy, cx, ry, rx, ang = _place_midline(rng, brain, midline)
    else:
        raise ValueError(f"label must be 0…{len(CLASS_NAMES) - 1}, got {label}")
    r = ellipse(image.shape, cy, cx, ry, rx, ang)
    alpha = np.clip((1.0 - r) / 0.35, 0.0, 1.0)  # 1 in the core, soft rim, 0 outside r = 1
    level = float(rng.uniform(0.85, 1.0))
    out = image * (1 - alpha) + level * alpha
    return out.astype(np.float32), r < 1.0


def _bias_field(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32) / shape[0] - 0.5
    a, b, c = rng.uniform(-0.15, 0.15, size=3)
    return (1.0 + a * yy + b * xx + c * (yy ** 2 + xx ** 2)).astype(np.float32)


@dataclass(frozen=True)
class LesionBatch:
    """``images`` float32 [N, 1, 96, 96] in [0, 1]; ``masks`` bool [N, 96, 96];
    ``labels`` long [N]; ``slice_index`` long [N] (into the bundled slices)."""

    images: Tensor
    masks: Tensor
    labels: Tensor
    slice_index: Tensor

    def __len__(self) -> int:
        return int(self.labels.numel())


def generate(n: int, seed: int, split: Split = "train", augment: bool = True,
             slices: TemplateSlices | None = None) -> LesionBatch:
    """``n`` labelled images (classes balanced, order shuffled) from ``split``'s slices.

    Deterministic in ``(n, seed, split, augment)``. ``augment``: brightness, bias field,
    noise and a shift of up to ±4 (x) / ±2 (y) pixels."""
    t = slices or load_slices()
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    pool = t.split(split)
    labels = rng.permutation(np.arange(n) % len(CLASS_NAMES))
    images = np.empty((n, 1, SIZE, SIZE), np.float32)
    masks = np.empty((n, SIZE, SIZE), bool)
    which = rng.choice(pool, size=n)
    for i in range(n):
        k = int(which[i])
        img, mask = draw_lesion(t.images[k], t.brain[k], int(labels[i]), t.midline, rng)
        if augment:
            img = img * float(rng.uniform(0.9, 1.1)) * _bias_field(rng, img.shape)
            img = img + rng.normal(0.0, float(rng.uniform(0.01, 0.04)), img.shape)
            dy, dx = int(rng.integers(-2, 3)), int(rng.integers(-4, 5))
            img, mask = np.roll(img, (dy, dx), (0, 1)), np.roll(mask, (dy, dx), (0, 1))
        images[i, 0] = np.clip(img, 0.0, 1.0)
        masks[i] = mask
    return LesionBatch(images=torch.from_numpy(images), masks=torch.from_numpy(masks),
                       labels=torch.from_numpy(labels.astype(np.int64)),
                       slice_index=torch.from_numpy(which.astype(np.int64)))


def held_out_set(n: int = 200) -> LesionBatch:
    """The fixed held-out test set: ``n`` images from the test slices, seed ``TEST_SEED``."""
    return generate(n, TEST_SEED, split="test")


# -- the model -----------------------------------------------------------------------------

def load_mri_demo_model(path: str | Path = WEIGHTS_FILE) -> MRIDemoNet:
    """The bundled trained demo model, in eval mode."""
    model = MRIDemoNet()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model.eval()


# -- training ------------------------------------------------------------------------------

@torch.no_grad()
def accuracy(model: nn.Module, batch: LesionBatch, chunk: int = 256) -> float:
    """Top-1 accuracy of ``model`` (put in eval mode) on ``batch``."""
    model.eval()
    preds = torch.cat([model(batch.images[i:i + chunk]).argmax(1)
                       for i in range(0, len(batch), chunk)])
    return float((preds == batch.labels).float().mean())


def fit_epoch(model: nn.Module, opt: torch.optim.Optimizer,
              sched: torch.optim.lr_scheduler.LRScheduler, loss_fn: nn.Module,
              images: Tensor, labels: Tensor, batch_size: int) -> float:
    """One epoch over ``images`` [N, …] / ``labels`` [N] in a random order (torch's global
    generator), a scheduler step per batch; returns the summed loss (× batch sizes)."""
    order = torch.randperm(len(labels))
    model.train()
    total = 0.0
    for i in range(0, len(labels), batch_size):
        idx = order[i:i + batch_size]
        opt.zero_grad()
        loss = loss_fn(model(images[idx]), labels[idx])
        loss.backward()
        opt.step()
        sched.step()
        total += loss.item() * len(idx)
    return total


def train(out: str | Path | None = WEIGHTS_FILE, epochs: int = 8, per_epoch: int = 2400,
          batch_size: int = 64, lr: float = 2e-3, seed: int = TRAIN_SEED,
          threads: int | None = 2, log: bool = True) -> tuple[MRIDemoNet, float]:
    """Train :class:`MRIDemoNet` on fresh synthetic images each epoch (seeded); returns the
    model (eval mode) and its accuracy on :func:`held_out_set`. Saves the state dict to ``out``
    unless it is None."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = MRIDemoNet()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * -(-per_epoch // batch_size))
    loss_fn = nn.CrossEntropyLoss()
    held_out = held_out_set()
    t0 = time.perf_counter()
    for epoch in range(epochs):
        data = generate(per_epoch, seed=seed * 1000 + epoch, split="train")
        total = fit_epoch(model, opt, sched, loss_fn, data.images, data.labels, batch_size)
        if log:
            print(f"epoch {epoch + 1}/{epochs}: loss {total / len(data):.4f}, "
                  f"test accuracy {accuracy(model, held_out):.3f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    model.eval()
    acc = accuracy(model, held_out)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), out)
        if log:
            print(f"saved {out}; held-out accuracy {acc:.3f} on {len(held_out)} images")
    return model, acc


def confusion(model: nn.Module, batch: LesionBatch) -> np.ndarray:
    """Confusion matrix [true, predicted] as int counts."""
    with torch.no_grad():
        pred = model.eval()(batch.images).argmax(1)
    k = len(CLASS_NAMES)
    m = np.zeros((k, k), int)
    for t, p in zip(batch.labels.tolist(), pred.tolist(), strict=True):
        m[t, p] += 1
    return m


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lrp_engine.mri_demo",
                                description="Synthetic MRI lesion demo (not diagnostic).")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train MRIDemoNet and save its weights")
    t.add_argument("--out", type=Path, default=WEIGHTS_FILE)
    t.add_argument("--epochs", type=int, default=8)
    t.add_argument("--per-epoch", type=int, default=2400)
    t.add_argument("--seed", type=int, default=TRAIN_SEED)
    e = sub.add_parser("evaluate", help="accuracy of saved weights on the fixed test set")
    e.add_argument("--weights", type=Path, default=WEIGHTS_FILE)
    args = p.parse_args(argv)
    print(DISCLAIMER)
    if args.cmd == "train":
        train(args.out, epochs=args.epochs, per_epoch=args.per_epoch, seed=args.seed)
    else:
        model = load_mri_demo_model(args.weights)
        batch = held_out_set()
        print(f"held-out accuracy: {accuracy(model, batch):.3f} on {len(batch)} images")
        print("confusion [true × predicted]:", *CLASS_NAMES, sep="\n  ")
        print(confusion(model, batch))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
