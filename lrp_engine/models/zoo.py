"""The model zoo: every architecture the app can explain, with what its input must look like.

:data:`ARCHITECTURES` maps a short name to an :class:`ArchSpec`: a builder taking
``num_classes``, the default class count, and :class:`Preprocessing` (input size and
channels, per-channel mean/std, and the pixel bounds in normalised units that the zB rule
needs). Pretrained weights:

* :func:`load_efficientnet_lite0`: EfficientNet-Lite0 on ImageNet, bundled in
  ``assets/models/efficientnet_lite0_imagenet.pth`` (see ``assets/README.md``).
* :func:`load_vgg16_imagenet`: VGG-16 on ImageNet is too big to bundle (528 MB). It is read
  from a file the user names, or downloaded once from torchvision's published URL into
  torch's hub cache (``~/.cache/torch/hub/checkpoints``), and found there offline afterwards.

All weights load with ``weights_only=True`` (no pickled code runs) and ``strict=True``.
"""

from __future__ import annotations

import functools
import os
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from .efficientnet_lite import PREPROCESSING as EFFNET_PREPROCESSING
from .efficientnet_lite import EfficientNetLite0
from .vgg import VGG16

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / "assets" / "models"
EFFICIENTNET_LITE0_FILE = MODEL_DIR / "efficientnet_lite0_imagenet.pth"
EFFICIENTNET_LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
VGG16_FILENAME = "vgg16-397923af.pth"
CLASSES_FILE = Path(__file__).with_name("imagenet_classes.txt")


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be found locally nor downloaded."""


@dataclass(frozen=True)
class Preprocessing:
    """What a model's input must look like: [N, channels, height, width] with pixels in
    [0, 1] mapped to ``(x - mean) / std`` per channel."""

    size: tuple[int, int]
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def low(self) -> tuple[float, ...]:
        """Normalised value of a black pixel per channel (the zB rule's lower bound)."""
        return tuple((0.0 - m) / s for m, s in zip(self.mean, self.std, strict=True))

    @property
    def high(self) -> tuple[float, ...]:
        """Normalised value of a white pixel per channel (the zB rule's upper bound)."""
        return tuple((1.0 - m) / s for m, s in zip(self.mean, self.std, strict=True))

    def normalise(self, x01: Tensor) -> Tensor:
        """Pixels in [0, 1], [N, C, H, W] → model input (same shape)."""
        shape = (1, -1, 1, 1)
        mean = torch.tensor(self.mean, dtype=x01.dtype, device=x01.device).view(shape)
        std = torch.tensor(self.std, dtype=x01.dtype, device=x01.device).view(shape)
        return (x01 - mean) / std

    def denormalise(self, x: Tensor) -> Tensor:
        """Inverse of :meth:`normalise`."""
        shape = (1, -1, 1, 1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return x * std + mean


@dataclass(frozen=True)
class ArchSpec:
    """One architecture: ``builder(num_classes)`` → fresh model; ``default_classes``;
    ``preprocessing``; a one-line ``description`` for the UI."""

    name: str
    label: str
    builder: Callable[[int], nn.Module]
    default_classes: int
    preprocessing: Preprocessing
    description: str


def _lenet(num_classes: int) -> nn.Module:
    from .lenet import LeNet

    return LeNet(num_classes=num_classes)


def _mlp(num_classes: int) -> nn.Module:
    from .mlp import MLP

    return MLP(num_classes=num_classes)


def _mri_demo(num_classes: int) -> nn.Module:
    from ..mri_demo import MRIDemoNet

    return MRIDemoNet(num_classes=num_classes)


_MNIST = ((0.1307,), (0.3081,))
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

ARCHITECTURES: dict[str, ArchSpec] = {
    "lenet": ArchSpec("lenet", "LeNet (MNIST)", _lenet, 10,
                      Preprocessing((32, 32), 1, *_MNIST),
                      "2 conv + 2 dense layers, dropout; 1×32×32 digits"),
    "mlp": ArchSpec("mlp", "MLP (MNIST)", _mlp, 10, Preprocessing((28, 28), 1, *_MNIST),
                    "784 → 300 → 100 → classes, fully connected; 1×28×28 digits"),
    "vgg16": ArchSpec("vgg16", "VGG-16", lambda k: VGG16(num_classes=k), 1000,
                      Preprocessing((224, 224), 3, *_IMAGENET),
                      "13 conv + 3 dense layers (torchvision layout); 3×224×224 RGB"),
    "efficientnet_lite0": ArchSpec(
        "efficientnet_lite0", "EfficientNet-Lite0", lambda k: EfficientNetLite0(num_classes=k),
        1000, Preprocessing((224, 224), 3, EFFNET_PREPROCESSING["mean"],
                            EFFNET_PREPROCESSING["std"]),
        "depthwise-separable inverted residual blocks with BatchNorm, ReLU6 and residual "
        "sums; 3×224×224 RGB in [-1, 1]"),
    "mri_demo": ArchSpec("mri_demo", "MRI demo CNN (synthetic)", _mri_demo, 4,
                         Preprocessing((96, 96), 1, (0.0,), (1.0,)),
                         "4 conv-BN-ReLU blocks + 2 dense layers; 1×96×96 slices in [0, 1]"),
}


def spec(arch: str) -> ArchSpec:
    """The :class:`ArchSpec` of ``arch``; ValueError naming the known ones otherwise."""
    try:
        return ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; known: "
                         f"{', '.join(ARCHITECTURES)}") from None


def build(arch: str, num_classes: int | None = None) -> nn.Module:
    """A fresh, randomly initialised ``arch`` with ``num_classes`` outputs (default: the
    architecture's usual count), in eval mode."""
    s = spec(arch)
    k = s.default_classes if num_classes is None else int(num_classes)
    if k < 1:
        raise ValueError(f"num_classes must be at least 1, got {k}")
    return s.builder(k).eval()


def preprocessing(arch: str) -> Preprocessing:
    """Input size, normalisation and zB bounds of ``arch``."""
    return spec(arch).preprocessing


@functools.lru_cache(maxsize=1)
def _imagenet_classes() -> tuple[tuple[str, str], ...]:
    rows = []
    for line in CLASSES_FILE.read_text(encoding="utf-8").splitlines():
        wnid, names = line.split("\t", 1)
        rows.append((wnid, names))
    if len(rows) != 1000:
        raise RuntimeError(f"{CLASSES_FILE} has {len(rows)} classes, expected 1000")
    return tuple(rows)


#: the 1000 ImageNet-1k class names in the standard index order (WordNet lemmas, e.g.
#: index 281 = "tabby, tabby cat"), and their WordNet ids ("n02123045")
IMAGENET_CLASSES: list[str] = [names for _, names in _imagenet_classes()]
IMAGENET_WNIDS: list[str] = [wnid for wnid, _ in _imagenet_classes()]


def prepare_image(image: object, arch: str, crop_fraction: float = 224 / 256) -> Tensor:
    """A PIL image → the normalised input of ``arch``, float32 [1, C, H, W].

    ImageNet-style evaluation transform: the shorter side is resized (bicubic) to
    ``size / crop_fraction`` and the centre ``size`` square is cropped (``crop_fraction=1``
    keeps the whole shorter side); converted to RGB or grey as the model needs.
    """
    import numpy as np
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image, got {type(image).__name__}")
    pre = preprocessing(arch)
    h, w = pre.size
    img = image.convert("RGB" if pre.channels == 3 else "L")
    scale = max(h, w) / crop_fraction / min(img.size)
    new = (max(w, round(img.size[0] * scale)), max(h, round(img.size[1] * scale)))
    img = img.resize(new, Image.BICUBIC)
    left, top = (new[0] - w) // 2, (new[1] - h) // 2
    img = img.crop((left, top, left + w, top + h))
    arr = np.asarray(img, dtype=np.float32) / 255.0
    x = torch.from_numpy(arr.reshape(h, w, -1).copy()).permute(2, 0, 1)[None]
    return pre.normalise(x)


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    """A state dict from a local file, tensors only (``weights_only=True``), as float32."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsUnavailableError(f"weights file not found: {path}") from None
    except Exception as e:  # noqa: BLE001 - any unreadable file is reported the same way
        raise WeightsUnavailableError(
            f"could not read weights from {path}: {type(e).__name__}: {e}") from e
    if not isinstance(state, dict):
        raise WeightsUnavailableError(f"{path} does not hold a state dict")
    return {k: v.float() if isinstance(v, Tensor) and v.is_floating_point() else v
            for k, v in state.items()}


def load_efficientnet_lite0(path: str | Path = EFFICIENTNET_LITE0_FILE) -> nn.Module:
    """EfficientNet-Lite0 with the bundled ImageNet weights, on CPU, in eval mode.

    Input: RGB [N, 3, 224, 224] normalised by :func:`preprocessing` ("efficientnet_lite0":
    mean = std = 0.5, i.e. [-1, 1]); output: logits over :data:`IMAGENET_CLASSES`.
    """
    with torch.device("meta"):  # no random init: the weights replace everything
        model = EfficientNetLite0(num_classes=1000)
    model.load_state_dict(_read_state_dict(Path(path)), strict=True, assign=True)
    return model.eval()


def vgg16_cache_file() -> Path:
    """Where torch's hub cache keeps the downloaded VGG-16 weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILENAME


def _download_vgg16(progress: bool) -> dict[str, Tensor]:
    return torch.hub.load_state_dict_from_url(VGG16_URL, map_location="cpu", progress=progress,
                                              check_hash=True, weights_only=True)


def _unavailable(reason: str) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"The ImageNet weights of VGG-16 are not on this computer and could not be "
        f"downloaded ({reason}). Either connect to the internet once and try again — they "
        f"are downloaded from {VGG16_URL} (528 MB) into {vgg16_cache_file().parent} and "
        f"used offline from then on — or download the file {VGG16_FILENAME} elsewhere and "
        f"pass its path (load_vgg16_imagenet(path=...), or the path field in the app).")


def vgg16_state_dict(path: str | Path | None = None, progress: bool = True
                     ) -> dict[str, Tensor]:
    """The VGG-16 ImageNet state dict: from ``path`` if given, else from the hub cache, else
    downloaded once into it. :class:`WeightsUnavailableError` when none works."""
    if path is not None:
        return _read_state_dict(Path(os.fspath(path)).expanduser())
    cached = vgg16_cache_file()
    if cached.is_file():
        return _read_state_dict(cached)
    try:
        return _download_vgg16(progress)
    except (urllib.error.URLError, OSError, TimeoutError) as e:  # offline, DNS, refused …
        raise _unavailable(f"{type(e).__name__}: {getattr(e, 'reason', e)}") from e
    except RuntimeError as e:  # e.g. a corrupted download (hash mismatch)
        raise _unavailable(str(e)) from e


def load_vgg16_imagenet(path: str | Path | None = None, progress: bool = True) -> nn.Module:
    """VGG-16 with torchvision's ImageNet weights, on CPU, in eval mode.

    ``path``: a local copy of ``vgg16-397923af.pth``; without it the hub cache is used, or
    the file is downloaded once (``progress`` shows a bar on stderr). Offline with neither:
    :class:`WeightsUnavailableError` saying both ways to get the weights.
    """
    state = vgg16_state_dict(path, progress)
    with torch.device("meta"):  # no random init of 138 M parameters
        model = VGG16(num_classes=1000)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        raise WeightsUnavailableError(
            f"the file does not hold torchvision's VGG-16 ImageNet weights: {e}") from e
    return model.eval()


__all__ = ["ARCHITECTURES", "ArchSpec", "IMAGENET_CLASSES", "IMAGENET_WNIDS", "Preprocessing",
           "VGG16_URL", "WeightsUnavailableError", "build", "load_efficientnet_lite0",
           "load_vgg16_imagenet", "prepare_image", "preprocessing", "spec", "vgg16_cache_file",
           "vgg16_state_dict"]
