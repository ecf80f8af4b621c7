"""Bundled MNIST split, tensor conversion, and IDX reading."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from lrp_engine.data import (
    MNIST_HIGH,
    MNIST_LOW,
    MNIST_MEAN,
    MNIST_STD,
    denormalise,
    load_bundled_mnist,
    load_idx_folder,
    mnist_to_tensor,
    normalise_unit,
    read_idx,
)


@pytest.mark.parametrize(("split", "n_per_class"), [("train", 400), ("test", 100)])
def test_bundled_split_shapes_dtypes_and_balance(split: str, n_per_class: int) -> None:
    x, y = load_bundled_mnist(split)
    assert x.shape == (10 * n_per_class, 28, 28) and x.dtype == np.uint8
    assert y.shape == (10 * n_per_class,) and y.dtype == np.int64
    assert np.bincount(y, minlength=10).tolist() == [n_per_class] * 10
    assert x.max() == 255 and x.min() == 0
    # shuffled: the first 100 digits are not all one class
    assert len(np.unique(y[:100])) == 10


def test_bundled_split_is_read_only_and_cached() -> None:
    x, y = load_bundled_mnist("test")
    assert not x.flags.writeable and not y.flags.writeable
    assert load_bundled_mnist("test")[0] is x
    with pytest.raises(ValueError, match="split"):
        load_bundled_mnist("validation")


def test_train_and_test_digits_are_disjoint() -> None:
    x_tr, _ = load_bundled_mnist("train")
    x_te, _ = load_bundled_mnist("test")
    train = {img.tobytes() for img in x_tr}
    test = {img.tobytes() for img in x_te}
    assert len(train) == 4000 and len(test) == 1000  # no duplicates inside a split
    assert not train & test


def test_mnist_to_tensor_shapes_and_values() -> None:
    img = np.zeros((28, 28), np.uint8)
    img[10:18, 12:16] = 255
    t28 = mnist_to_tensor(img, size=28)
    assert t28.shape == (1, 1, 28, 28) and t28.dtype == torch.float32
    assert t28.min().item() == pytest.approx(MNIST_LOW)
    assert t28.max().item() == pytest.approx(MNIST_HIGH)
    assert t28[0, 0, 0, 0].item() == pytest.approx(-MNIST_MEAN / MNIST_STD)
    assert torch.allclose(denormalise(t28)[0, 0], torch.from_numpy(img / 255.0).float(),
                          atol=1e-6)

    x, _ = load_bundled_mnist("test")
    t32 = mnist_to_tensor(x[:5], size=32)
    assert t32.shape == (5, 1, 32, 32)
    # bilinear resize stays within the pixel bounds and keeps the mean ink roughly the same
    assert t32.min() >= MNIST_LOW - 1e-5 and t32.max() <= MNIST_HIGH + 1e-5
    m28 = denormalise(mnist_to_tensor(x[:5], size=28)).mean().item()
    assert denormalise(t32).mean().item() == pytest.approx(m28, rel=0.05)
    # same result from a tensor input
    assert torch.equal(mnist_to_tensor(torch.from_numpy(x[:5].copy()), size=32), t32)


def test_normalise_round_trip_and_bounds() -> None:
    x01 = torch.rand(3, 1, 8, 8)
    assert torch.allclose(denormalise(normalise_unit(x01)), x01, atol=1e-6)
    assert normalise_unit(torch.tensor(0.0)).item() == pytest.approx(MNIST_LOW)
    assert normalise_unit(torch.tensor(1.0)).item() == pytest.approx(MNIST_HIGH)
    assert MNIST_LOW < 0 < MNIST_HIGH
    # the usual MNIST constants, written out: a black pixel → -0.4242, a white one → 2.8215
    assert (MNIST_MEAN, MNIST_STD) == (0.1307, 0.3081)
    assert MNIST_LOW == pytest.approx(-0.42421, abs=1e-5)
    assert MNIST_HIGH == pytest.approx(2.82149, abs=1e-5)
    white = mnist_to_tensor(np.full((28, 28), 255, np.uint8), size=32)
    assert torch.allclose(white, torch.full_like(white, 2.82149), atol=1e-4)


# -- IDX ----------------------------------------------------------------------------------

def _idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def _write(path: Path, data: bytes) -> Path:
    if path.name.endswith(".gz"):
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trip(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    p = _write(tmp_path / f"imgs-idx3-ubyte{suffix}", _idx_bytes(imgs))
    out = read_idx(p)
    assert out.dtype == np.uint8 and np.array_equal(out, imgs)

    ints = rng.integers(-1000, 1000, (4, 3)).astype(np.int32)
    out = read_idx(_write(tmp_path / f"ints{suffix}", _idx_bytes(ints, code=0x0C)))
    assert out.dtype == np.int32 and np.array_equal(out, ints)


def test_read_idx_rejects_truncated_and_bad_magic(tmp_path: Path) -> None:
    imgs = np.zeros((3, 28, 28), np.uint8)
    data = _idx_bytes(imgs)
    with pytest.raises(ValueError, match="truncated"):
        read_idx(_write(tmp_path / "short-idx3-ubyte", data[:-10]))
    with pytest.raises(ValueError, match="truncated"):
        read_idx(_write(tmp_path / "short-idx3-ubyte.gz", data[:-10]))
    with pytest.raises(ValueError, match="magic"):
        read_idx(_write(tmp_path / "bad-idx3-ubyte", b"\x12\x34" + data[2:]))
    with pytest.raises(ValueError, match="type code"):
        read_idx(_write(tmp_path / "code-idx3-ubyte", data[:2] + b"\x07" + data[3:]))
    # a damaged gzip stream (cut in the middle) is a ValueError too, not an EOFError
    gz = tmp_path / "cut-idx3-ubyte.gz"
    _write(gz, data)
    gz.write_bytes(gz.read_bytes()[:20])
    with pytest.raises(ValueError):
        read_idx(gz)


def _mnist_folder(folder: Path, n_train: int = 6, n_test: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels.idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(exist_ok=True)
    for name, arr in arrays.items():
        _write(folder / name, _idx_bytes(arr))
    return arrays


def test_load_idx_folder_finds_all_spellings(tmp_path: Path) -> None:
    arrays = _mnist_folder(tmp_path)
    out = load_idx_folder(tmp_path)
    assert set(out) == {"train", "test"}
    x, y = out["train"]
    assert np.array_equal(x, arrays["train-images-idx3-ubyte.gz"])
    assert y.dtype == np.int64 and np.array_equal(y, arrays["train-labels.idx1-ubyte"])
    x, y = out["test"]
    assert x.shape == (4, 28, 28) and np.array_equal(y, arrays["t10k-labels-idx1-ubyte.gz"])


def test_load_idx_folder_only_test_split(tmp_path: Path) -> None:
    _mnist_folder(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").unlink()
    (tmp_path / "train-labels.idx1-ubyte").unlink()
    assert set(load_idx_folder(tmp_path)) == {"test"}


def test_load_idx_folder_errors(tmp_path: Path) -> None:
    _mnist_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte"):
        load_idx_folder(tmp_path)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no MNIST IDX files"):
        load_idx_folder(empty)
    with pytest.raises(ValueError, match="not a folder"):
        load_idx_folder(tmp_path / "nope")

    mismatch = tmp_path / "mismatch"
    _mnist_folder(mismatch)
    _write(mismatch / "t10k-labels-idx1-ubyte.gz", _idx_bytes(np.zeros(3, np.uint8)))
    with pytest.raises(ValueError, match="labels"):
        load_idx_folder(mismatch)
