"""Seeded training of the bundled MNIST models on the bundled 4 000-digit training split.

    python -m lrp_engine.train --arch lenet --epochs 30 \
        --out lrp_engine/assets/models/lenet_mnist.pt
    python -m lrp_engine.train --arch mlp --epochs 30 \
        --out lrp_engine/assets/models/mlp_mnist.pt

Adam with a cosine learning-rate decay, cross-entropy, light augmentation (each training digit
randomly shifted by up to ±2 px, rotated by up to ±10° and scaled by 0.9…1.1, done with
``affine_grid``/``grid_sample`` on the [0, 1] image, black fill). Everything random — weight
init, shuffling, augmentation, dropout — flows from ``seed``, deterministic algorithms are
requested and torch uses 2 threads, so a run is repeatable on the same machine and torch
version. Accuracy is always measured on the 1 000 held-out bundled digits, never trained on.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import denormalise, load_bundled_mnist, mnist_to_tensor, normalise_unit
from .models import BUNDLED, build_model

#: side of the square input each architecture expects (LeNet 32×32, MLP 28×28)
INPUT_SIZE = {"lenet": 32, "mlp": 28}
DEFAULT_LR = {"lenet": 2e-3, "mlp": 1e-3}
MAX_SHIFT_PX = 2.0
MAX_ROTATE_DEG = 10.0
SCALE_RANGE = (0.9, 1.1)
THREADS = 2


def unit_images(images: np.ndarray, size: int) -> Tensor:
    """uint8 digits [N, 28, 28] → float32 [N, 1, size, size] in [0, 1] (bilinear resize)."""
    return denormalise(mnist_to_tensor(images, size=size)).clamp_(0.0, 1.0)


def random_affine(x01: Tensor, generator: torch.Generator) -> Tensor:
    """Random small affine warp of each image in ``x01`` [N, 1, H, W] (values in [0, 1]).

    Per image: shift ±``MAX_SHIFT_PX`` px in x and y, rotation ±``MAX_ROTATE_DEG`` degrees,
    isotropic scale in ``SCALE_RANGE``; bilinear sampling, zeros (black) outside.
    """
    n, _, h, w = x01.shape
    u = torch.rand(n, 4, generator=generator) * 2 - 1  # uniform in [-1, 1]
    angle = u[:, 0] * math.radians(MAX_ROTATE_DEG)
    lo, hi = SCALE_RANGE
    scale = lo + (u[:, 1] + 1) / 2 * (hi - lo)
    # affine_grid maps output coords to input coords in [-1, 1] units: 1 px = 2 / size
    tx, ty = u[:, 2] * MAX_SHIFT_PX * 2 / w, u[:, 3] * MAX_SHIFT_PX * 2 / h
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x01.shape), align_corners=False)
    return F.grid_sample(x01, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy (0…1) of ``model`` (switched to eval mode) on normalised ``x``, ``y``."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    return correct / len(x)


def bundled_test_accuracy(model: nn.Module, input_size: int) -> float:
    """Accuracy of ``model`` on the 1 000 held-out bundled digits at ``input_size``."""
    images, labels = load_bundled_mnist("test")
    x, y = mnist_to_tensor(images, size=input_size), torch.from_numpy(labels.copy())
    return evaluate(model, x, y)


def train_mnist(arch: str, epochs: int, seed: int = 0, batch_size: int = 64,
                lr: float | None = None, augment: bool = True, limit: int | None = None,
                log: Callable[[str], None] = print) -> tuple[nn.Module, float]:
    """Train ``arch`` ("lenet" or "mlp") on the bundled training digits.

    ``epochs`` passes over the (first ``limit``, if given) 4 000 training digits in batches of
    ``batch_size``; Adam at ``lr`` (default per architecture, :data:`DEFAULT_LR`) decayed to 0
    by a per-step cosine. ``augment`` turns the random affine warp (:func:`random_affine`)
    on. ``log`` receives one line per epoch. Returns the model in eval mode and its accuracy
    (0…1) on the 1 000 held-out bundled digits.
    """
    if arch not in INPUT_SIZE:
        raise ValueError(f"train_mnist knows {sorted(INPUT_SIZE)}, not {arch!r}")
    size = INPUT_SIZE[arch]
    lr = DEFAULT_LR[arch] if lr is None else lr

    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(seed)  # weight init and dropout masks
        gen = torch.Generator().manual_seed(seed)  # shuffling and augmentation
        images, labels = load_bundled_mnist("train")
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        x01, y = unit_images(images, size), torch.from_numpy(labels.copy())
        test_images, test_labels = load_bundled_mnist("test")
        x_test = mnist_to_tensor(test_images, size=size)
        y_test = torch.from_numpy(test_labels.copy())

        model = build_model(arch, num_classes=10)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        steps = epochs * math.ceil(len(x01) / batch_size)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(steps, 1))))
        acc = 0.0
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            model.train()
            order = torch.randperm(len(x01), generator=gen)
            total_loss, total_correct = 0.0, 0
            for i in range(0, len(order), batch_size):
                idx = order[i:i + batch_size]
                xb = random_affine(x01[idx], gen) if augment else x01[idx]
                logits = model(normalise_unit(xb))
                loss = F.cross_entropy(logits, y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total_loss += float(loss.detach()) * len(idx)
                total_correct += int((logits.argmax(1) == y[idx]).sum())
            acc = evaluate(model, x_test, y_test)
            log(f"epoch {epoch:3d}/{epochs}  loss {total_loss / len(x01):.4f}  "
                f"train acc {total_correct / len(x01):.4f}  test acc {acc:.4f}  "
                f"({time.perf_counter() - t0:.1f} s)")
        return model.eval(), acc
    finally:
        torch.use_deterministic_algorithms(prev_det)
        torch.set_num_threads(prev_threads)


def save_state_dict(model: nn.Module, path: str | Path) -> None:
    """Save only the tensors of ``model.state_dict()`` (loadable with ``weights_only=True``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train a bundled MNIST model (seeded).")
    parser.add_argument("--arch", choices=sorted(INPUT_SIZE), default="lenet")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=None,
                        help=f"Adam learning rate (default per arch: {DEFAULT_LR})")
    parser.add_argument("--no-augment", action="store_true", help="train on the plain digits")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N digits")
    parser.add_argument("--out", type=Path, default=None, help="where to save the state dict")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    model, acc = train_mnist(args.arch, args.epochs, seed=args.seed, batch_size=args.batch_size,
                             lr=args.lr, augment=not args.no_augment, limit=args.limit)
    print(f"{args.arch}: test accuracy {acc:.4f} on the 1000 held-out digits, "
          f"{time.perf_counter() - t0:.1f} s")
    if args.out is not None:
        save_state_dict(model, args.out)
        print(f"saved {args.out}")
    if args.arch in BUNDLED:
        print(f"(the bundled {args.arch} records {BUNDLED[args.arch]['accuracy']})")


if __name__ == "__main__":
    main()
