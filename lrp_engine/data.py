"""MNIST data: the bundled 5 000-digit split, tensor conversion and IDX-file reading.

The bundled split (``lrp_engine/assets/mnist/mnist_5k_split.npz``, built by
``scripts/build_mnist_assets.py``) holds 4 000 training and 1 000 held-out digits, 400 / 100
per class. Images are uint8 [N, 28, 28] in 0…255, labels int64 [N].

Models see *normalised* inputs: ``(x01 - MNIST_MEAN) / MNIST_STD`` where ``x01`` is the image
in [0, 1]; LeNet additionally wants 32×32 (bilinear resize), the MLP the native 28×28.
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

#: mean and standard deviation of MNIST training pixels in [0, 1] (the usual constants)
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
#: normalised values of a black (0) and a white (1) pixel: the input bounds of the zB rule
MNIST_LOW = (0.0 - MNIST_MEAN) / MNIST_STD
MNIST_HIGH = (1.0 - MNIST_MEAN) / MNIST_STD

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_NPZ = ROOT / "lrp_engine" / "assets" / "mnist" / "mnist_5k_split.npz"
#: the bundled split's two parts
Split = Literal["train", "test"]
SPLITS: tuple[Split, ...] = get_args(Split)


@functools.lru_cache(maxsize=1)
def _bundled_arrays() -> dict[str, np.ndarray]:
    """All four arrays of the bundled ``.npz``, read once, made read-only."""
    if not BUNDLED_NPZ.is_file():
        raise FileNotFoundError(f"bundled MNIST split not found at {BUNDLED_NPZ}; rebuild it "
                                "with scripts/build_mnist_assets.py "
                                "(see lrp_engine/assets/README.md)")
    with np.load(BUNDLED_NPZ) as npz:
        arrays = {k: npz[k] for k in npz.files}
    for a in arrays.values():
        a.setflags(write=False)
    return arrays


def load_bundled_mnist(split: Split = "test") -> tuple[np.ndarray, np.ndarray]:
    """The bundled digits of ``split`` ("train": 4 000, "test": 1 000).

    Returns ``(images, labels)``: uint8 [N, 28, 28] in 0…255 and int64 [N]. The arrays are
    cached and read-only; ``.copy()`` them to modify.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    arrays = _bundled_arrays()
    return arrays[f"x_{split}"], arrays[f"y_{split}"]


def normalise_unit(x01: Tensor) -> Tensor:
    """Image(s) in [0, 1] → normalised model input ``(x01 - MNIST_MEAN) / MNIST_STD``."""
    return (x01 - MNIST_MEAN) / MNIST_STD


def denormalise(x: Tensor) -> Tensor:
    """Normalised model input → image(s) in [0, 1] (inverse of :func:`normalise_unit`)."""
    return x * MNIST_STD + MNIST_MEAN


def mnist_to_tensor(images: np.ndarray | Tensor, size: int = 32) -> Tensor:
    """uint8 digits [N, 28, 28] or [28, 28] (0…255) → normalised float32 [N, 1, size, size].

    The resize (only when ``size != 28``) is bilinear with ``align_corners=False``, applied to
    the [0, 1] image before normalisation. ``size=32`` is the LeNet input, 28 the MLP input.
    """
    if isinstance(images, Tensor):
        x = images.detach().to(torch.float32)
    else:  # a copy: the bundled arrays are read-only, which torch.from_numpy warns about
        x = torch.from_numpy(np.array(images, dtype=np.float32))
    if x.dim() == 2:
        x = x.unsqueeze(0)
    if x.dim() != 3:
        raise ValueError(f"expected images of shape [N, 28, 28] or [28, 28], got {tuple(x.shape)}")
    x01 = x.div(255.0).unsqueeze(1)
    if size != x01.shape[-1] or size != x01.shape[-2]:
        x01 = F.interpolate(x01, size=(size, size), mode="bilinear", align_corners=False)
    return normalise_unit(x01)


# -- IDX files (the original MNIST distribution format) -----------------------------------

#: IDX type code (third magic byte) → numpy dtype, big-endian as the format prescribes
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (plain or ``.gz``) into an array of its stored shape and dtype.

    Layout: magic ``00 00 <type> <ndim>``, then ``ndim`` big-endian uint32 sizes, then the
    data. Raises ``ValueError`` on a bad magic, an unknown type code, or a size mismatch
    (truncated or overlong file).
    """
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:  # gzip raises these on a damaged stream
        raise ValueError(f"{path}: cannot read IDX file ({exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic {raw[:4].hex() or 'empty'})")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{path}: IDX data has {len(raw) - header} bytes, shape {shape} of "
                         f"{dtype} needs {expected} (truncated or corrupt file)")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _find_idx(folder: Path, prefix: str, kind: str) -> Path | None:
    """The file for e.g. ``train``/``images-idx3``: hyphen or dot spelling, plain or ``.gz``."""
    what, idx = kind.split("-")
    for stem in (f"{prefix}-{what}-{idx}-ubyte", f"{prefix}-{what}.{idx}-ubyte"):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def load_idx_folder(folder: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Load the MNIST IDX files found in ``folder``.

    Looks for ``train-images-idx3-ubyte`` / ``train-labels-idx1-ubyte`` and ``t10k-…`` (also
    spelled ``train-images.idx3-ubyte``, optionally ``.gz``). Returns ``{"train": (x, y),
    "test": (x, y)}`` for each split whose image *and* label files exist: x uint8
    [N, 28, 28], y int64 [N]. Raises ``ValueError`` naming what is missing or bad.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder")
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    problems: list[str] = []
    for split, prefix in (("train", "train"), ("test", "t10k")):
        img_path = _find_idx(folder, prefix, "images-idx3")
        lab_path = _find_idx(folder, prefix, "labels-idx1")
        if img_path is None and lab_path is None:
            continue
        if img_path is None or lab_path is None:
            missing = (f"{prefix}-images-idx3-ubyte" if img_path is None
                       else f"{prefix}-labels-idx1-ubyte")
            problems.append(f"{split}: {missing}[.gz] is missing")
            continue
        x, y = read_idx(img_path), read_idx(lab_path)
        if x.ndim != 3 or x.dtype != np.uint8:
            raise ValueError(f"{img_path}: expected uint8 images [N, H, W], got "
                             f"{x.dtype} {list(x.shape)}")
        if y.ndim != 1 or len(y) != len(x):
            raise ValueError(f"{lab_path}: expected {len(x)} labels, got shape {list(y.shape)}")
        out[split] = (x, y.astype(np.int64))
    if problems:
        raise ValueError(f"{folder}: " + "; ".join(problems))
    if not out:
        raise ValueError(f"{folder}: no MNIST IDX files found (expected e.g. "
                         "train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                         "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, optionally .gz)")
    return out
