"""The registry: every architecture the app can explain, with what its input must look like.

:data:`ARCHITECTURES` maps a name to an :class:`ArchSpec` (label, builder taking
``num_classes``, default class count, default :class:`~lrp_engine.models.card.
PreprocessingCard`, one-line description, family and, for the bundled models, their
:class:`BundledWeights`: file, label, training data, class names, held-out accuracy). It is
the one table of model facts: the checkpoint loader, the command line, the model cards and
the app's model choices all read it. It holds the bundled models (``lenet``, ``mlp``,
``efficientnet_lite0``, ``mri_demo``) and every classifier of ``torchvision.models``
under its torchvision name (``resnet50``, ``densenet121``, ``vit_b_16``, … ``vgg16``).
Listing them costs nothing: the torchvision rows are plain data
(:mod:`lrp_engine.models.torchvision_models`) and torchvision is imported only when a
torchvision model is built.

Weights (all read with ``weights_only=True``, loaded with ``strict=True``):

* :func:`load_pretrained`: any registry name. Bundled models read ``lrp_engine/assets/models``;
  torchvision models take their DEFAULT weights from a file the user names, else torch's hub
  cache (``torch.hub.get_dir()/checkpoints``), else a download into it (once; offline, a
  :class:`WeightsUnavailableError` says both ways to get them).
* :func:`load_efficientnet_lite0`: EfficientNet-Lite0 on ImageNet, bundled in
  ``lrp_engine/assets/models/efficientnet_lite0_imagenet.pth``
  (see ``lrp_engine/assets/README.md``).
"""

from __future__ import annotations

import functools
import http.client
import os
import re
import urllib.error
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ..data import MNIST_MEAN, MNIST_STD
from . import torchvision_models as tvm
from .card import IMAGENET_MEAN, IMAGENET_STD, PreprocessingCard
from .efficientnet_lite import PREPROCESSING as EFFNET_PREPROCESSING
from .efficientnet_lite import EfficientNetLite0
from .mri_demo_net import CLASS_NAMES as MRI_DEMO_CLASSES
from .mri_demo_net import PREPROCESSING as MRI_DEMO_PREPROCESSING
from .mri_demo_net import MRIDemoNet

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / "lrp_engine" / "assets" / "models"
EFFICIENTNET_LITE0_FILE = MODEL_DIR / "efficientnet_lite0_imagenet.pth"
EFFICIENTNET_LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
CLASSES_FILE = Path(__file__).with_name("imagenet_classes.txt")


#: where an architecture comes from: our code (weights bundled) or torchvision.models
ModelSource = Literal["bundled", "torchvision"]


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be found locally nor downloaded (plain-words message)."""


@dataclass(frozen=True)
class BundledWeights:
    """Trained weights shipped in ``lrp_engine/assets/models``: the ``file``, the trained
    model's ``label`` (as users read it), the ``dataset`` it was trained on, its
    ``class_names`` (one per output) and, where measured, its held-out ``accuracy``."""

    file: str
    label: str
    dataset: str
    class_names: tuple[str, ...]
    accuracy: float | None = None

    @property
    def path(self) -> Path:
        return MODEL_DIR / self.file


@dataclass(frozen=True)
class ArchSpec:
    """One architecture: ``builder(num_classes)`` → fresh model; ``default_classes``; its
    default ``preprocessing`` card; a one-line ``description`` for the UI; the ``family``
    (``"resnet"``, ``"vit"``, …); ``source``: ``"bundled"`` (our code, weights in
    ``lrp_engine/assets/models``) or ``"torchvision"`` (``torchvision.models.<name>``);
    ``weights``: the bundled trained weights (None for torchvision's, which
    :func:`load_pretrained` fetches)."""

    name: str
    label: str
    builder: Callable[[int], nn.Module]
    default_classes: int
    preprocessing: PreprocessingCard
    description: str
    family: str
    source: ModelSource = "bundled"
    weights: BundledWeights | None = None

    @property
    def torchvision(self) -> bool:
        """Whether this is torchvision's model of the same name."""
        return self.source == "torchvision"


@dataclass
class LoadedModel:
    """A model ready to explain: ``model`` (CPU, eval mode), its ``arch``, ``num_classes``,
    ``class_names`` (one per output) and ``notes`` (what was done to load it)."""

    model: nn.Module
    arch: str
    num_classes: int
    class_names: list[str]
    notes: list[str] = field(default_factory=list)


# -- builders ------------------------------------------------------------------------------

def _lenet(num_classes: int) -> nn.Module:
    from .lenet import LeNet

    return LeNet(num_classes=num_classes)


def _mlp(num_classes: int) -> nn.Module:
    from .mlp import MLP

    return MLP(num_classes=num_classes)


def _mri_demo(num_classes: int) -> nn.Module:
    return MRIDemoNet(num_classes=num_classes)


def _torchvision_builder(name: str, num_classes: int) -> nn.Module:
    """``torchvision.models.<name>`` without weights, with :data:`~lrp_engine.models.
    torchvision_models.BUILD_KWARGS` (GoogLeNet / Inception v3: ``aux_logits=False``,
    ``init_weights=False``, ``transform_input=False``; ViT-H/14: 518×518 inputs)."""
    from ..torchvision_compat import import_torchvision

    tv = import_torchvision()
    return tv.models.get_model(name, weights=None, num_classes=num_classes,
                               **tvm.BUILD_KWARGS.get(name, {}))


def _digits_card(side: int) -> PreprocessingCard:
    """The bundled digit models' input: grey ``side``×``side``, MNIST's mean and std."""
    return PreprocessingCard(size=(side, side), channels=1, interpolation="bicubic",
                             mean=(MNIST_MEAN,), std=(MNIST_STD,))


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


_DIGITS = tuple(str(d) for d in range(10))


def _bundled() -> dict[str, ArchSpec]:
    # accuracy: on the 1 000 held-out bundled digits (see lrp_engine/assets/README.md)
    return {
        "lenet": ArchSpec(
            "lenet", "LeNet (MNIST)", _lenet, 10,
            _digits_card(32),
            "2 conv + 2 dense layers, dropout; 1×32×32 digits", "lenet",
            weights=BundledWeights("lenet_mnist.pt", "LeNet-5 (LeCun et al. 1998), 32×32 input",
                                   "mnist", _DIGITS, 0.986)),
        "mlp": ArchSpec(
            "mlp", "MLP (MNIST)", _mlp, 10,
            _digits_card(28),
            "784 → 300 → 100 → classes, fully connected; 1×28×28 digits", "mlp",
            weights=BundledWeights("mlp_mnist.pt", "MLP 784-300-100-10", "mnist", _DIGITS,
                                   0.972)),
        "efficientnet_lite0": ArchSpec(
            "efficientnet_lite0", "EfficientNet-Lite0 (bundled)",
            lambda k: EfficientNetLite0(num_classes=k), 1000,
            EFFNET_PREPROCESSING,
            "depthwise-separable inverted residual blocks with BatchNorm, ReLU6 and residual "
            "sums; 3×224×224 RGB in [-1, 1]", "efficientnet_lite",
            weights=BundledWeights(EFFICIENTNET_LITE0_FILE.name,
                                   "EfficientNet-Lite0 (bundled, ImageNet)", "imagenet",
                                   tuple(IMAGENET_CLASSES))),
        "mri_demo": ArchSpec(
            "mri_demo", "MRI demo CNN (synthetic)", _mri_demo, 4,
            MRI_DEMO_PREPROCESSING,
            "4 conv-BN-ReLU blocks + 2 dense layers; 1×96×96 slices in [0, 1]", "cnn",
            weights=BundledWeights("mri_demo.pt",
                                   "Bundled demo CNN (synthetic lesions, not diagnostic)",
                                   "synthetic MRI lesions", MRI_DEMO_CLASSES)),
    }


def _torchvision_specs() -> dict[str, ArchSpec]:
    specs = {}
    for name, label, family, crop, resize, interp in tvm.MODELS:
        mean, std = tvm.STATS.get(name, (IMAGENET_MEAN, IMAGENET_STD))
        card = PreprocessingCard(size=(crop, crop), resize="shorter-side-crop",
                                 resize_size=resize, mean=mean, std=std, interpolation=interp)
        specs[name] = ArchSpec(name, label, functools.partial(_torchvision_builder, name),
                               1000, card, tvm.description(name, family, crop), family,
                               "torchvision")
    return specs


#: every architecture: the bundled ones first, then torchvision's classifiers by family
ARCHITECTURES: dict[str, ArchSpec] = {**_bundled(), **_torchvision_specs()}
#: the families, in registry order
FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(s.family for s in ARCHITECTURES.values()))


def spec(arch: str) -> ArchSpec:
    """The :class:`ArchSpec` of ``arch``; ValueError naming the known ones otherwise."""
    try:
        return ARCHITECTURES[arch]
    except (KeyError, TypeError):
        import difflib

        close = difflib.get_close_matches(str(arch), list(ARCHITECTURES), n=4, cutoff=0.6)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown architecture {arch!r}{hint}; known: "
                         f"{', '.join(ARCHITECTURES)}") from None


def _classes(arch: str, num_classes: int | None) -> int:
    k = spec(arch).default_classes if num_classes is None else int(num_classes)
    if k < 1:
        raise ValueError(f"num_classes must be at least 1, got {k}")
    return k


def build(arch: str, num_classes: int | None = None) -> nn.Module:
    """A fresh, randomly initialised ``arch`` with ``num_classes`` outputs (default: the
    architecture's usual count), in eval mode. Torchvision models need torchvision
    (ImportError with the pip command otherwise)."""
    k = _classes(arch, num_classes)
    return spec(arch).builder(k).eval()


class _WeightsOnMeta(TorchFunctionMode):
    """Tensor factories called without a device (``torch.empty``, ``zeros``, …: how layers
    make their parameters) allocate on the meta device. Unlike ``torch.device("meta")``,
    arithmetic a builder does on its own tensors (RegNet's block widths, Swin's position
    indices) stays on the CPU and works. Thread-local, like every torch function mode."""

    FACTORIES = frozenset({torch.empty, torch.zeros, torch.ones, torch.full, torch.rand,
                           torch.randn})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.FACTORIES and kwargs.get("device") is None:
            kwargs = {**kwargs, "device": "meta"}
        return func(*args, **kwargs)


@contextmanager
def _weights_on_meta() -> Iterator[None]:
    with _WeightsOnMeta():
        yield


def build_empty(arch: str, num_classes: int | None = None) -> nn.Module:
    """``arch`` with its parameters on the meta device: names and shapes without memory or
    random init (the big ones build in milliseconds). ``load_state(model, state_dict)``
    fills it. Eval mode."""
    k = _classes(arch, num_classes)
    with _weights_on_meta():
        model = spec(arch).builder(k)
    return model.eval()


def preprocessing(arch: str) -> PreprocessingCard:
    """The default :class:`~lrp_engine.models.card.PreprocessingCard` of ``arch`` (for
    torchvision models: its DEFAULT weights' evaluation transform)."""
    return spec(arch).preprocessing


def prepare_image(image: object, arch: str | PreprocessingCard) -> Tensor:
    """A PIL image → the input of ``arch`` (or of a card), float32 [1, C, H, W]: the card's
    resize, crop, channels and normalisation, exactly as torchvision's transforms do (see
    :meth:`~lrp_engine.models.card.PreprocessingCard.to_tensor`)."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image, got {type(image).__name__}")
    card = arch if isinstance(arch, PreprocessingCard) else preprocessing(arch)
    return card.to_tensor(image)


def known_class_names(arch: str, num_classes: int) -> list[str] | None:
    """The class names ``arch`` has with ``num_classes`` outputs when that is its usual
    task (ImageNet for torchvision models and EfficientNet-Lite0 with 1000, digits for
    LeNet/MLP with 10, the MRI demo's four); None otherwise. Torchvision models use their
    weights' ``meta["categories"]``."""
    s = spec(arch)
    if s.torchvision and num_classes == 1000:
        return list(_torchvision_weights(arch).meta["categories"])
    if s.weights is not None and num_classes == len(s.weights.class_names):
        return list(s.weights.class_names)
    return None


# -- state dicts ---------------------------------------------------------------------------

def with_metadata(state: Mapping[str, Tensor], metadata: Mapping | None) -> OrderedDict:
    """``state`` as an OrderedDict carrying ``metadata`` (the per-module versions that
    ``state_dict()`` records and ``load_state_dict`` hands to each module's loader)."""
    out = OrderedDict(state)
    if metadata is not None:
        # torch's own attribute for the module versions, which OrderedDict does not declare
        out._metadata = dict(metadata)  # type: ignore[attr-defined]
    return out


def metadata_of(state: Mapping) -> dict | None:
    """The module versions recorded with ``state`` (None when it has none: safetensors)."""
    meta = getattr(state, "_metadata", None)
    return dict(meta) if meta is not None else None


def add_missing_counters(state: Mapping[str, Tensor], expected: Iterable[str]
                         ) -> tuple[OrderedDict, int]:
    """Older BatchNorm checkpoints lack the ``num_batches_tracked`` counters (unused in
    eval): add the missing ones as 0. Returns the state and how many were added."""
    out = with_metadata(state, metadata_of(state))
    added = [k for k in expected if k.endswith("num_batches_tracked") and k not in out]
    for k in added:
        out[k] = torch.zeros((), dtype=torch.long)
    return out, len(added)


#: DenseNet layers were once named ``norm.1``/``conv.1``…; torchvision's published weights
#: still use those names (torchvision renames them on load; so do we)
_DENSENET_OLD = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|"
    r"running_var|num_batches_tracked))$")


def fix_torchvision_keys(arch: str, state: Mapping[str, Tensor]
                         ) -> tuple[OrderedDict, list[str]]:
    """What torchvision itself does to its checkpoints before loading them: DenseNet's old
    layer names (``norm.1`` → ``norm1``) are renamed; the auxiliary classifiers of
    GoogLeNet (``aux1``, ``aux2``) and Inception v3 (``AuxLogits``), used in training only
    and not built here, are dropped. Returns the state (metadata kept) and notes."""
    notes: list[str] = []
    meta = metadata_of(state)
    out = OrderedDict(state)
    if spec(arch).family == "densenet":
        renamed = OrderedDict()
        n = 0
        for k, v in out.items():
            m = _DENSENET_OLD.match(k)
            renamed[m.group(1) + m.group(2) if m else k] = v
            n += bool(m)
        if n:
            notes.append(f"renamed {n} DenseNet keys from the old 'norm.1' form")
        out = renamed
    aux = tvm.AUX_PREFIXES.get(arch, ())
    dropped = [k for k in out if k.startswith(aux)] if aux else []
    if dropped:
        for k in dropped:
            del out[k]
        names = ", ".join(p.rstrip(".") for p in aux)
        notes.append(f"dropped the auxiliary classifier ({names}: {len(dropped)} tensors, "
                     "used in training only)")
    return with_metadata(out, meta), notes


def _listing(keys: list[str], shown: int = 5) -> str:
    head = ", ".join(keys[:shown])
    return head + (f" … and {len(keys) - shown} more" if len(keys) > shown else "")


def key_mismatch(state: Mapping[str, Tensor], reference: Mapping[str, torch.Size]
                 ) -> list[str]:
    """How ``state`` differs from a model's key → shape ``reference``, in a few words per
    kind: missing keys (BatchNorm counters aside: they are added), unexpected keys, tensors
    of the wrong shape (five of each named). Empty when the keys and shapes agree."""
    missing = [k for k in reference if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in reference]
    wrong = [f"{k} {list(state[k].shape)} (expected {list(v)})" for k, v in reference.items()
             if k in state and state[k].shape != v]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {_listing(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected)}")
    if wrong:
        parts.append(f"{len(wrong)} tensor(s) of the wrong shape: {_listing(wrong)}")
    return parts


def load_state(model: nn.Module, state: Mapping[str, Tensor]) -> nn.Module:
    """Load ``state`` into ``model`` (e.g. from :func:`build_empty`) strictly; its tensors
    become the model's (``assign=True``). Modules without a recorded version get the
    model's own (torchvision's MNASNet refuses none; safetensors files record none).
    RuntimeError if keys or shapes differ, or if anything stays on the meta device."""
    meta = metadata_of(model.state_dict()) or {}
    meta.update(metadata_of(state) or {})
    model.load_state_dict(with_metadata(state, meta), strict=True, assign=True)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"{len(left)} tensor(s) were not loaded: {', '.join(left[:5])}")
    return model.eval()


def _read_state_dict(path: Path) -> OrderedDict:
    """A state dict from a local file, tensors only (``weights_only=True``), as float32."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsUnavailableError(f"weights file not found: {path}") from None
    except IsADirectoryError:
        raise WeightsUnavailableError(f"{path} is a folder, not a weights file") from None
    except Exception as e:  # any unreadable file is reported the same way
        raise WeightsUnavailableError(
            f"could not read weights from {path}: {type(e).__name__}: {e}") from e
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsUnavailableError(f"{path} does not hold a state dict (names → tensors)")
    floats = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    return with_metadata(floats, metadata_of(state))


def load_efficientnet_lite0(path: str | Path = EFFICIENTNET_LITE0_FILE) -> nn.Module:
    """EfficientNet-Lite0 with the bundled ImageNet weights, on CPU, in eval mode.

    Input: RGB [N, 3, 224, 224] normalised by :func:`preprocessing` ("efficientnet_lite0":
    mean = std = 0.5, i.e. [-1, 1]); output: logits over :data:`IMAGENET_CLASSES`.
    """
    model = build_empty("efficientnet_lite0")
    return load_state(model, _read_state_dict(Path(path)))


# -- pretrained weights --------------------------------------------------------------------

def _torchvision_weights(arch: str) -> Any:
    """``torchvision.models.get_model_weights(arch).DEFAULT`` (a ``Weights`` enum member;
    torchvision is optional, so untyped here)."""
    from ..torchvision_compat import import_torchvision

    if not spec(arch).torchvision:
        raise ValueError(f"{arch!r} is not a torchvision model")
    return import_torchvision().models.get_model_weights(arch).DEFAULT


def _file_name(url: str) -> str:
    return os.path.basename(urllib.parse.urlparse(url).path)


def weights_cache_file(arch: str) -> Path:
    """Where torch's hub cache keeps the DEFAULT weights of torchvision's ``arch``
    (``torch.hub.get_dir()/checkpoints/<file name of the URL>``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / _file_name(_torchvision_weights(arch).url)


def _download(url: str, progress: bool) -> dict[str, Tensor]:
    return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=progress,
                                              check_hash=True, weights_only=True)


def _size(meta: Mapping) -> str:
    mb = meta.get("_file_size")
    if not isinstance(mb, (int, float)):
        return ""
    return f", {mb / 1000:.1f} GB" if mb >= 1000 else f", {mb:.0f} MB"


def _unavailable(arch: str, weights: Any, reason: str) -> WeightsUnavailableError:
    url = weights.url
    return WeightsUnavailableError(
        f"The ImageNet weights of {spec(arch).label} are not on this computer and could not "
        f"be downloaded ({reason}). Either connect to the internet once and try again — "
        f"they are downloaded from {url}{_size(weights.meta)} into "
        f"{weights_cache_file(arch).parent} and used offline from then on — or download "
        f"the file {_file_name(url)} elsewhere and pass its path "
        f"(load_pretrained({arch!r}, path=...), or the path field in the app).")


def pretrained_state_dict(arch: str, path: str | Path | None = None, progress: bool = True
                          ) -> OrderedDict:
    """The DEFAULT ImageNet state dict of torchvision's ``arch``: from ``path`` if given,
    else from the hub cache, else downloaded once into it (hash checked, ``progress``: a bar
    on stderr). :class:`WeightsUnavailableError` when none works."""
    if path is not None:
        return _read_state_dict(Path(os.fspath(path)).expanduser())
    try:
        weights = _torchvision_weights(arch)
    except ImportError as e:
        raise WeightsUnavailableError(str(e)) from e
    cached = weights_cache_file(arch)
    if cached.is_file():
        return _read_state_dict(cached)
    try:
        state = _download(weights.url, progress)
    except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as e:
        raise _unavailable(arch, weights, f"{type(e).__name__}: {getattr(e, 'reason', e)}") \
            from e
    except RuntimeError as e:  # e.g. a corrupted download (hash mismatch)
        raise _unavailable(arch, weights, str(e)) from e
    return with_metadata(state, metadata_of(state))


def bundled_weights(arch: str) -> BundledWeights:
    """The bundled trained weights of ``arch``; ValueError for an architecture without."""
    weights = spec(arch).weights
    if weights is None:
        raise ValueError(f"{arch!r} has no bundled weights")
    return weights


def model_label(arch: str) -> str:
    """How users read the model :func:`load_pretrained` gives: the bundled weights' label,
    else the architecture's with the data of its pretrained weights (torchvision's:
    ImageNet)."""
    s = spec(arch)
    return s.weights.label if s.weights is not None else f"{s.label} (ImageNet)"


def load_pretrained(arch: str, path: str | Path | None = None, progress: bool = True
                    ) -> LoadedModel:
    """``arch`` with its pretrained weights, on CPU, in eval mode, with its class names.

    Torchvision models: the DEFAULT weights of ``torchvision.models.get_model_weights(arch)``
    (ImageNet-1k, class names from ``weights.meta["categories"]``), read from ``path``, else
    the hub cache, else downloaded once. Bundled models: their file in ``lrp_engine/assets/models``
    (or ``path``). Raises :class:`WeightsUnavailableError` (offline without a file: what to
    do, in plain words; a file that does not fit: what is wrong).
    """
    s = spec(arch)
    if s.torchvision:
        state = pretrained_state_dict(arch, path, progress)
        state, notes = fix_torchvision_keys(arch, state)
    else:
        file = (Path(os.fspath(path)).expanduser() if path is not None
                else bundled_weights(arch).path)
        state, notes = _read_state_dict(file), []
    try:
        model = build_empty(arch)
    except ImportError as e:
        raise WeightsUnavailableError(str(e)) from e
    state, added = add_missing_counters(state, model.state_dict().keys())
    if added:
        notes.append(f"added {added} missing BatchNorm counters (num_batches_tracked)")
    try:
        load_state(model, state)
    except (RuntimeError, ValueError) as e:
        parts = key_mismatch(state, {k: v.shape for k, v in model.state_dict().items()})
        detail = "; ".join(parts) or str(e).strip().splitlines()[0][:300]
        raise WeightsUnavailableError(
            f"the file does not hold the {s.label} weights: {detail}") from None
    names = known_class_names(arch, s.default_classes) or [
        f"class {i}" for i in range(s.default_classes)]
    return LoadedModel(model, arch, s.default_classes, names, notes)


__all__ = ["ARCHITECTURES", "ArchSpec", "BundledWeights", "FAMILIES", "IMAGENET_CLASSES",
           "IMAGENET_WNIDS", "LoadedModel", "ModelSource", "WeightsUnavailableError",
           "add_missing_counters", "build", "build_empty", "bundled_weights",
           "fix_torchvision_keys", "key_mismatch", "known_class_names",
           "load_efficientnet_lite0", "load_pretrained", "load_state", "metadata_of",
           "model_label", "prepare_image", "preprocessing", "pretrained_state_dict", "spec",
           "weights_cache_file", "with_metadata"]
