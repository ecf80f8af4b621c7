"""A synthetic 3-D brain-MRI lesion demo: volumes, a small 3-D CNN, its training. NOT
diagnostic.

The 3-D sibling of :mod:`lrp_engine.mri_demo`: the 32 bundled axial template slices stacked
into one volume [Z=32, H=96, W=96] (2 mm between slices, 1.97 mm pixels), with **synthetic**
3-D ellipsoid lesions of the same four classes (:data:`CLASS_NAMES`) drawn at run time at
known places, each spanning a few slices. Nothing here comes from a patient.

Array orientation (as the 2-D demo's slices): axis 0 is z, slice 0 the most inferior
(MNI z = −10 mm) and slice 31 the most superior (+52 mm); axis 1 runs from anterior (row 0)
to posterior; axis 2 from the subject's left (column 0) to the right.

The model reads a coarser grid, :data:`INPUT_SHAPE` = (8, 48, 48) (8 mm between slices,
3.94 mm pixels): :func:`volume_to_input` resamples any volume in that orientation (any size,
any intensity units) to it. Train and test lesions are centred on disjoint template slices
(the 2-D demo's split: every 4th slice from the 2nd is held out); everything is seeded.

    python -m lrp_engine.mri_demo3d train      # ≈ 1–2 min on 2 idle cores
    python -m lrp_engine.mri_demo3d evaluate
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import Split
from .models.card import PreprocessingCard
from .mri_demo import (
    CLASS_NAMES,
    DISCLAIMER,
    ROOT,
    WM_LEVEL,
    TemplateSlices,
    _bias_field,
    _place_midline,
    _place_round,
    ellipse,
    fit_epoch,
    load_slices,
)

__all__ = ["CLASS_NAMES", "DISCLAIMER", "HIGH_PCT", "INPUT_SHAPE", "LOW_PCT",
           "SLICE_PREPROCESSING", "VOLUME_SHAPE", "MRIDemo3DNet", "VolumeBatch", "accuracy",
           "demo_volume", "draw_lesion_3d", "generate_volumes", "held_out_volumes",
           "load_mri_demo3d_model", "resample_mask", "train", "volume_to_input"]

WEIGHTS_FILE = ROOT / "lrp_engine" / "assets" / "models" / "mri_demo3d.pt"
#: the full-resolution demo volume [Z, H, W]: the bundled slices stacked
VOLUME_SHAPE: tuple[int, int, int] = (32, 96, 96)
#: the model's input grid [D, H, W]: the demo volume downsampled 4× along z (8 mm between
#: slices) and 2× in the plane (3.94 mm pixels)
INPUT_SHAPE: tuple[int, int, int] = (8, 48, 48)
#: the card of the model's axial slices (a volume [1, 1, D, H, W] is made of them): grey,
#: padded to a square and resized to 48×48, intensities in [0, 1] by a percentile window
SLICE_PREPROCESSING = PreprocessingCard(size=INPUT_SHAPE[1:], resize="pad-square", channels=1,
                                        mean=(), std=(), windowing="percentile")
#: percentiles of a volume's intensities that :func:`volume_to_input` maps to 0 and to
#: :data:`TOP_LEVEL`
LOW_PCT, HIGH_PCT = 0.5, 99.5
#: where the high percentile lands: the demo's white-matter level (the clean template's
#: 99.5th percentile is 0.747), so brighter voxels (lesions, up to 1.33× the robust maximum)
#: keep their contrast below the clip at 1 instead of all clipping to 1
TOP_LEVEL = WM_LEVEL
TEST_SEED = 20240606
TRAIN_SEED = 0
#: the full-resolution volume's slice spacing, mm (the bundled slices' z step)
SLICE_MM = 2.0
#: the midline lesion's half-height along z, in slices of the full-resolution volume
MIDLINE_Z_RADIUS = (3.0, 6.0)
#: the largest half-height of any lesion along z, in slices (round lesions: a mean radius of
#: at most 7 px × 1.97 mm / 2 mm ≈ 6.9)
MAX_Z_RADIUS = 7


# -- volumes -------------------------------------------------------------------------------

def _resample(a: Tensor, size: Sequence[int]) -> Tensor:
    """[N, C, D, H, W] → [N, C, *size]: axes that grow are interpolated (trilinear), axes
    that shrink are averaged over their cells (adaptive average pooling: no aliasing)."""
    grow = tuple(max(s, t) for s, t in zip(a.shape[2:], size, strict=True))
    if grow != tuple(a.shape[2:]):
        a = F.interpolate(a, size=grow, mode="trilinear", align_corners=False)
    if grow != tuple(size):
        d, h, w = size
        a = F.adaptive_avg_pool3d(a, (d, h, w))
    return a


def volume_to_input(vol_zhw: np.ndarray, shape: Sequence[int] = INPUT_SHAPE,
                    low_pct: float = LOW_PCT, high_pct: float = HIGH_PCT) -> Tensor:
    """A volume [Z, H, W] in the demo's orientation (any size, any units) → float32
    [1, 1, D, H, W] in [0, 1] on the model's grid (``shape``).

    Like :func:`lrp_engine.medical.scan_to_tensor` for a slice: NaN/±Inf → 0, the
    ``low_pct``…``high_pct`` percentiles of the whole volume map to 0…:data:`TOP_LEVEL`
    (0.75: the demo's own units, with headroom for lesions brighter than white matter),
    clipped to [0, 1]; non-square
    slices are zero-padded to squares (anatomy keeps its in-plane proportions), then each
    axis is resampled to ``shape`` (averaged where it shrinks, trilinear where it grows).
    The volume is taken to cover about the demo's field (a 189 mm square, z −10…+52 mm).
    """
    a = np.asarray(vol_zhw, dtype=np.float32)
    if a.ndim != 3 or min(a.shape) < 1:
        raise ValueError(f"expected a volume [Z, H, W], got shape {list(a.shape)}")
    a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = np.percentile(a, [low_pct, high_pct])
    a = np.clip((a - lo) / (hi - lo if hi > lo else 1.0) * TOP_LEVEL, 0.0, 1.0)
    a = a.astype(np.float32)
    h, w = a.shape[1:]
    if h != w:
        n = max(h, w)
        top, left = (n - h) // 2, (n - w) // 2
        a = np.pad(a, ((0, 0), (top, n - h - top), (left, n - w - left)))
    x = _resample(torch.from_numpy(np.ascontiguousarray(a))[None, None], shape)
    return x.clamp(0.0, 1.0)


def resample_mask(mask_zhw: np.ndarray, shape: Sequence[int] = INPUT_SHAPE) -> Tensor:
    """A bool mask [Z, H, W] of the full-resolution volume → bool [D, H, W] on the model's
    grid: a voxel is in the mask when any of the full-resolution voxels it covers is (the
    resampled mask is > 0; on axes that grow, any voxel interpolated from a mask voxel)."""
    m = torch.from_numpy(np.ascontiguousarray(mask_zhw, dtype=np.float32))[None, None]
    return _resample(m, shape)[0, 0] > 0


def draw_lesion_3d(volume: np.ndarray, brain: np.ndarray, label: int, midline: float,
                   rng: np.random.Generator, centre: int, mm_per_pixel: float = 189 / 96
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Draw class ``label``'s lesion into a copy of ``volume`` [Z, H, W]: (volume, mask
    [Z, H, W]).

    The lesion is the 2-D demo's disc or midline ellipse, placed on slice ``centre``'s brain
    (:func:`lrp_engine.mri_demo.draw_lesion`'s placement), made an ellipsoid: a round lesion
    is as high as it is wide (its mean in-plane radius in mm; a ball of 7–14 mm radius), a
    midline lesion has a half-height of 3–6 slices (6–12 mm). Normalised radius
    ``r = √(r_xy² + (Δz / r_z)²)``, blended to intensity 0.85–1.0 with the same soft rim,
    kept inside the brain. The mask is its whole support (every changed voxel is inside).

    (Thinner lesions, 1.5–3.5 slices half-height, were tried first, before
    :class:`MRIDemo3DNet`'s bright-spot init: training stayed at chance, loss ln 4.)"""
    if label == 0:
        return volume.copy(), np.zeros(volume.shape, bool)
    t_brain = brain[centre]
    if label in (1, 2):
        cy, cx, ry, rx, ang = _place_round(rng, t_brain, midline, left=label == 1)
    elif label == 3:
        cy, cx, ry, rx, ang = _place_midline(rng, t_brain, midline)
    else:
        raise ValueError(f"label must be 0…{len(CLASS_NAMES) - 1}, got {label}")
    if label == 3:
        rz = float(rng.uniform(*MIDLINE_Z_RADIUS))
    else:  # round: the same radius in mm along z as in the plane
        rz = float(np.sqrt(ry * rx)) * mm_per_pixel / SLICE_MM
    level = float(rng.uniform(0.85, 1.0))
    r_xy = ellipse(volume.shape[1:], cy, cx, ry, rx, ang)
    dz = (np.arange(volume.shape[0], dtype=np.float32) - centre) / rz
    r = np.sqrt(r_xy[None] ** 2 + dz[:, None, None] ** 2)
    alpha = np.clip((1.0 - r) / 0.35, 0.0, 1.0) * brain  # soft rim, never outside the brain
    out = volume * (1 - alpha) + level * alpha
    return out.astype(np.float32), (r < 1.0) & brain


def _centre_slices(t: TemplateSlices, split: Split) -> np.ndarray:
    """Lesion centre slices of a split: the 2-D demo's slices, away from the volume's ends
    (a lesion of the largest half-height fits above and below)."""
    idx = t.split(split)
    margin = MAX_Z_RADIUS
    return idx[(idx >= margin) & (idx < len(t.images) - margin)]


def _augment(vol: np.ndarray, mask: np.ndarray, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray]:
    """The 2-D demo's augmentation in 3-D: brightness ×0.9–1.1, a smooth bias field (the 2-D
    demo's in-plane field times a linear ramp of ±10 % along z), Gaussian noise σ 0.01–0.04
    and a shift of up to ±4 (x) / ±2 (y) pixels and ±1 slice (z)."""
    ramp = 1.0 + float(rng.uniform(-0.1, 0.1)) * np.linspace(-0.5, 0.5, vol.shape[0])
    vol = vol * float(rng.uniform(0.9, 1.1)) * _bias_field(rng, vol.shape[1:])[None] \
        * ramp[:, None, None].astype(np.float32)
    vol = vol + rng.normal(0.0, float(rng.uniform(0.01, 0.04)), vol.shape)
    shift = (int(rng.integers(-1, 2)), int(rng.integers(-2, 3)), int(rng.integers(-4, 5)))
    vol, mask = np.roll(vol, shift, (0, 1, 2)), np.roll(mask, shift, (0, 1, 2))
    return np.clip(vol, 0.0, 1.0).astype(np.float32), mask


def _volume(rng: np.random.Generator, label: int, split: Split, augment: bool,
            t: TemplateSlices) -> tuple[np.ndarray, np.ndarray, int]:
    """One full-resolution volume [32, 96, 96] in [0, 1], its mask and the lesion's centre
    slice (−1 for "no lesion")."""
    centre = int(rng.choice(_centre_slices(t, split)))
    vol, mask = draw_lesion_3d(t.images, t.brain, label, t.midline, rng, centre,
                               t.mm_per_pixel)
    if augment:
        vol, mask = _augment(vol, mask, rng)
    return vol, mask, centre if label else -1


@dataclass(frozen=True)
class VolumeBatch:
    """``images`` float32 [N, 1, 8, 48, 48] in [0, 1] (the model's grid, through
    :func:`volume_to_input`); ``masks`` bool [N, 8, 48, 48] (:func:`resample_mask`);
    ``labels`` long [N]; ``centre_slice`` long [N] (the lesion's centre in the 32 bundled
    slices, −1 for "no lesion")."""

    images: Tensor
    masks: Tensor
    labels: Tensor
    centre_slice: Tensor

    def __len__(self) -> int:
        return int(self.labels.numel())


def generate_volumes(n: int, seed: int, split: Split = "train", augment: bool = True,
                     slices: TemplateSlices | None = None) -> VolumeBatch:
    """``n`` labelled volumes on the model's grid (classes balanced, order shuffled), lesions
    centred on ``split``'s slices. Deterministic in ``(n, seed, split, augment)``."""
    t = slices or load_slices()
    rng = np.random.default_rng([seed, 0 if split == "train" else 1, 3])
    labels = rng.permutation(np.arange(n) % len(CLASS_NAMES))
    images = torch.empty((n, 1, *INPUT_SHAPE))
    masks = torch.empty((n, *INPUT_SHAPE), dtype=torch.bool)
    centres = np.empty(n, np.int64)
    for i in range(n):
        vol, mask, centres[i] = _volume(rng, int(labels[i]), split, augment, t)
        images[i] = volume_to_input(vol)[0]
        masks[i] = resample_mask(mask)
    return VolumeBatch(images=images, masks=masks,
                       labels=torch.from_numpy(labels.astype(np.int64)),
                       centre_slice=torch.from_numpy(centres))


def held_out_volumes(n: int = 100) -> tuple[Tensor, Tensor, Tensor]:
    """The fixed held-out set: ``n`` volumes with lesions centred on the test slices, seed
    :data:`TEST_SEED`: (images float32 [N, 1, 8, 48, 48], masks bool [N, 8, 48, 48],
    labels long [N])."""
    b = generate_volumes(n, TEST_SEED, split="test")
    return b.images, b.masks, b.labels


def demo_volume(i: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """Demo volume number ``i`` for the UI, at full resolution: (volume float32 [32, 96, 96]
    in [0, 1], mask bool [32, 96, 96], label). Its class is ``i % 4`` (0 is "no lesion");
    the lesion is centred on a held-out slice; deterministic in ``i``. Feed the volume to
    the model through :func:`volume_to_input`."""
    if i < 0:
        raise ValueError(f"demo volume index must be ≥ 0, got {i}")
    label = i % len(CLASS_NAMES)
    rng = np.random.default_rng([TEST_SEED, 2, i])
    vol, mask, _ = _volume(rng, label, "test", True, load_slices())
    return vol, mask, label


# -- the model -----------------------------------------------------------------------------

class MRIDemo3DNet(nn.Module):
    """A small 3-D CNN: [N, 1, 8, 48, 48] in [0, 1] → logits [N, 4].

    Three conv3×3×3-BatchNorm3d-ReLU-MaxPool3d(2) blocks (8, 16, 32 channels; 8×48×48 →
    1×6×6 voxels; the engine folds each BatchNorm into its conv), a fourth conv block
    (32 channels) with max pooling over 1×3×3 cells (→ 1×2×2: left/right and front/back
    halves), adaptive average pooling to 1×2×2 (the identity on the demo grid; it fixes the
    head's input for other grids), then dropout → linear(128, classes).

    Why maxima over halves rather than averages: every volume is the same template brain,
    so averaged features differ between volumes only by a lesion's few voxels, and training
    learnt slowly (tried, before the bright-spot init: 1×4×4 average pooling stayed at loss
    ln 4); a half's maximum is the lesion's response itself. Only layers the LRP engine
    handles; the dropout makes it usable with B-LRP. 46 k parameters; the first conv starts
    as a bright-spot detector
    (:meth:`_bright_spot_init`).
    """

    def __init__(self, num_classes: int = len(CLASS_NAMES), dropout: float = 0.3) -> None:
        super().__init__()
        chans = (1, 8, 16, 32)
        layers: list[nn.Module] = []
        for cin, cout in itertools.pairwise(chans):
            layers += [nn.Conv3d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout),
                       nn.ReLU(), nn.MaxPool3d(2)]
        layers += [nn.Conv3d(chans[-1], 32, 3, padding=1, bias=False), nn.BatchNorm3d(32),
                   nn.ReLU(), nn.MaxPool3d((1, 3, 3))]
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool3d((1, 2, 2))
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(32 * 4, num_classes))
        self._bright_spot_init()

    def _bright_spot_init(self) -> None:
        """Start the first conv as a bright-spot detector: its kernels a 3×3×3 mean plus
        0.3× their random init, its BatchNorm's shift −1.5, so that after the ReLU only
        voxels about 1.5 σ above the volume's mean pass (lesions at 0.85–1.0, not white
        matter at ≤ 0.75). From torch's default init, training stayed at chance (loss
        ln 4): every volume is the same template brain, whose many edges outweigh a lesion's
        few voxels in every max pool, so no gradient reached the lesions."""
        conv, bn = self.features[0], self.features[1]
        assert isinstance(conv, nn.Conv3d) and isinstance(bn, nn.BatchNorm3d)
        with torch.no_grad():
            conv.weight.mul_(0.3).add_(1.0 / conv.weight[0].numel())
            bn.bias.fill_(-1.5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def load_mri_demo3d_model(path: str | Path = WEIGHTS_FILE) -> MRIDemo3DNet:
    """The bundled trained 3-D demo model (a plain state dict, loaded with
    ``weights_only=True``), in eval mode."""
    model = MRIDemo3DNet()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model.eval()


# -- training ------------------------------------------------------------------------------

@torch.no_grad()
def accuracy(model: nn.Module, images: Tensor, labels: Tensor, chunk: int = 64) -> float:
    """Top-1 accuracy of ``model`` (put in eval mode) on ``images`` [N, 1, D, H, W]."""
    model.eval()
    preds = torch.cat([model(images[i:i + chunk]).argmax(1)
                       for i in range(0, len(labels), chunk)])
    return float((preds == labels).float().mean())


def confusion(model: nn.Module, images: Tensor, labels: Tensor) -> np.ndarray:
    """Confusion matrix [true, predicted] as int counts."""
    with torch.no_grad():
        pred = model.eval()(images).argmax(1)
    k = len(CLASS_NAMES)
    m = np.zeros((k, k), int)
    for t, p in zip(labels.tolist(), pred.tolist(), strict=True):
        m[t, p] += 1
    return m


def train(out: str | Path | None = WEIGHTS_FILE, epochs: int = 8, n_train: int = 1200,
          batch_size: int = 16, lr: float = 2e-3, seed: int = TRAIN_SEED,
          threads: int | None = 2, n_test: int = 100, log: bool = True
          ) -> tuple[MRIDemo3DNet, float]:
    """Train :class:`MRIDemo3DNet` for ``epochs`` passes over ``n_train`` synthetic volumes
    (generated once, seeded: drawing a volume costs about as much as a training step on
    it); returns the model (eval mode) and its accuracy on :func:`held_out_volumes`
    (``n_test``). Saves the state dict to ``out`` unless it is None."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    data = generate_volumes(n_train, seed=seed, split="train")
    test_x, _, test_y = held_out_volumes(n_test)
    if log:
        print(f"generated {n_train} + {n_test} volumes ({time.perf_counter() - t0:.0f} s)",
              flush=True)
    model = MRIDemo3DNet()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * -(-n_train // batch_size))
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        total = fit_epoch(model, opt, sched, loss_fn, data.images, data.labels, batch_size)
        if log:
            print(f"epoch {epoch + 1}/{epochs}: loss {total / len(data):.4f}, "
                  f"test accuracy {accuracy(model, test_x, test_y):.3f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    model.eval()
    acc = accuracy(model, test_x, test_y)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), out)
        if log:
            print(f"saved {out}; held-out accuracy {acc:.3f} on {n_test} volumes "
                  f"({time.perf_counter() - t0:.0f} s)")
    return model, acc


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lrp_engine.mri_demo3d",
                                description="Synthetic 3-D MRI lesion demo (not diagnostic).")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train MRIDemo3DNet and save its weights")
    t.add_argument("--out", type=Path, default=WEIGHTS_FILE)
    t.add_argument("--epochs", type=int, default=8)
    t.add_argument("--n-train", type=int, default=1200)
    t.add_argument("--seed", type=int, default=TRAIN_SEED)
    e = sub.add_parser("evaluate", help="accuracy of saved weights on the fixed test set")
    e.add_argument("--weights", type=Path, default=WEIGHTS_FILE)
    e.add_argument("-n", type=int, default=100, help="held-out volumes (default 100)")
    args = p.parse_args(argv)
    print(DISCLAIMER)
    if args.cmd == "train":
        train(args.out, epochs=args.epochs, n_train=args.n_train, seed=args.seed)
    else:
        model = load_mri_demo3d_model(args.weights)
        x, _, y = held_out_volumes(args.n)
        print(f"held-out accuracy: {accuracy(model, x, y):.3f} on {len(y)} volumes")
        print("confusion [true × predicted]:", *CLASS_NAMES, sep="\n  ")
        print(confusion(model, x, y))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
