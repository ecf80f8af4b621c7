"""Preprocessing and model cards: what a model's input is, exactly, and what the model is.

A :class:`PreprocessingCard` defines the tensor a model sees: input size, how a picture is
resized to it, channels, pixel range and normalisation (and, for scans, windowing). Every
architecture in the registry has a default card; a user's fine-tuned model brings its own
(e.g. ``Resize((255, 255))`` + ``ToTensor()``, no normalisation: the preset "resize to a
square, no normalisation").
:meth:`PreprocessingCard.to_tensor` applies a card (see :mod:`lrp_engine.models.preprocess`,
which reproduces torchvision's transforms exactly).

A :class:`ModelCard` adds what the weights are: architecture, classes, provenance. It is a
small JSON document, stored on its own or inside a safetensors checkpoint's metadata
(:func:`save_safetensors`, :func:`card_from_safetensors`). Every problem with a card is one
:class:`CardError` with a plain-words message.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

import torch
from torch import Tensor

from ..safetensors_header import HeaderError, read_header

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: how a picture reaches the input size
ResizeMode = Literal["shorter-side-crop", "stretch", "pad-square"]
#: intensity windowing before normalisation (scans: "percentile")
Windowing = Literal["none", "percentile"]
Interpolation = Literal["nearest", "bilinear", "bicubic"]
RESIZE_MODES: tuple[ResizeMode, ...] = get_args(ResizeMode)
WINDOWINGS: tuple[Windowing, ...] = get_args(Windowing)
INTERPOLATIONS: tuple[Interpolation, ...] = get_args(Interpolation)
PIXEL_RANGES = (1.0, 255.0)
#: percentiles of the "percentile" window
WINDOW_PERCENTILES = (0.5, 99.5)
#: largest input side (pixels) a card may ask for
MAX_SIDE = 4096
#: smallest standard deviation a card may give (a smaller one blows inputs up to ±inf)
MIN_STD = 1e-6
#: largest card JSON read (bytes); 1 MB holds 100 000 class names of ~8 characters
MAX_JSON_BYTES = 1_000_000
#: most classes a model card may declare (ImageNet-21k has 21 843)
MAX_CLASSES = 100_000
MAX_NAME_CHARS = 1_000
MAX_PROVENANCE_CHARS = 20_000
#: model card format this code writes and reads
MODEL_CARD_VERSION = 1
#: the safetensors metadata key holding a model card's JSON
MODEL_CARD_KEY = "lrp_explorer.model_card"
#: largest safetensors header parsed for the card (the safetensors library's own limit)


class CardError(ValueError):
    """A preprocessing or model card that cannot be used; ``str(e)`` is a plain sentence."""


# -- checking values -----------------------------------------------------------------------

def _whole(value: object, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise CardError(f"{what} must be a whole number, got {_show(value)}")
    v = int(value)
    if not lo <= v <= hi:
        raise CardError(f"{what} must be between {lo:,} and {hi:,}, got {v:,}")
    return v


def _real(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise CardError(f"{what} must be a number, got {_show(value)}")
    v = float(value)
    if not math.isfinite(v):
        raise CardError(f"{what} must be a finite number, got {v}")
    return v


def _choice(value: object, what: str, options: Sequence[object]) -> Any:
    if not isinstance(value, str) or value not in options:
        raise CardError(f"{what} must be one of {', '.join(map(repr, options))}; got "
                        f"{_show(value)}")
    return value


def _numbers(value: object, what: str) -> tuple[float, ...]:
    listlike = isinstance(value, (Sequence, Tensor)) or hasattr(value, "__array__")
    if isinstance(value, (str, bytes)) or not listlike:
        raise CardError(f"{what} must be a list of numbers (one per channel), got "
                        f"{_show(value)}")
    items = list(cast("Iterable[object]", value))  # a sequence, tensor or array (above)
    if len(items) > 16:
        raise CardError(f"{what} has {len(items)} values; a card has at most 3 channels")
    return tuple(_real(v.item() if hasattr(v, "item") else v, f"each value of {what}")
                 for v in items)


def _show(value: object) -> str:
    """A short description of a bad value for messages (never the whole of a huge one)."""
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '…' if len(text) > 60 else text}"


def _parse_json(data: bytes | bytearray | memoryview | str, what: str) -> object:
    """JSON text or bytes (≤ :data:`MAX_JSON_BYTES`) → Python object; NaN/Infinity refused."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        if len(data) > MAX_JSON_BYTES:
            raise CardError(f"the {what} is {len(data):,} bytes; a card may be at most "
                            f"{MAX_JSON_BYTES:,} bytes (1 MB)")
        try:
            text = bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise CardError(f"the {what} is not UTF-8 text (is it a binary file?)") from None
    elif isinstance(data, str):
        text = data
        if len(text) > MAX_JSON_BYTES:
            raise CardError(f"the {what} is {len(text):,} characters; a card may be at most "
                            f"{MAX_JSON_BYTES:,} (1 MB)")
    else:
        raise CardError(f"the {what} must be JSON text or bytes, got {type(data).__name__}")

    def refuse(name: str) -> float:
        raise CardError(f"the {what} contains {name}, which is not a number JSON allows")

    try:
        return json.loads(text, parse_constant=refuse)
    except json.JSONDecodeError as e:
        raise CardError(f"the {what} is not valid JSON ({e.msg} at line {e.lineno}, column "
                        f"{e.colno})") from None
    except RecursionError:
        raise CardError(f"the {what} is nested too deeply to be a card") from None
    except ValueError as e:  # e.g. an integer with more than 4300 digits
        if isinstance(e, CardError):
            raise
        raise CardError(f"the {what} cannot be read as JSON ({e})") from None


def _check_keys(d: Mapping[str, object], what: str, known: Sequence[str],
                required: Sequence[str]) -> None:
    unknown = sorted(str(k) for k in d if k not in known)
    if unknown:
        raise CardError(f"unknown field(s) in the {what}: {', '.join(map(repr, unknown[:5]))}; "
                        f"known fields: {', '.join(known)}")
    missing = [k for k in required if k not in d]
    if missing:
        raise CardError(f"the {what} must give {', '.join(required)} explicitly (missing: "
                        f"{', '.join(missing)})")


# -- the preprocessing card ----------------------------------------------------------------

@dataclass(frozen=True)
class PreprocessingCard:
    """The model input [N, channels, H, W] made from a picture.

    ``size``: (H, W) of the model input, 1…4096 each. ``resize``: ``"shorter-side-crop"``
    (the shorter side to ``resize_size``, then the centre ``size`` crop: ImageNet
    evaluation), ``"stretch"`` (straight to ``size``, like ``Resize((255, 255))``) or
    ``"pad-square"`` (padded with black to a centred square, then resized). ``resize_size``:
    the shorter side before the crop (None: ``round(max(size) / 0.875)``). ``channels``: 1,
    or 3 (grey pictures repeated to 3). ``pixel_range``: pixels scaled to 0…1 (``1.0``,
    like ``ToTensor``) or 0…255 (``255.0``). ``mean``/``std``: per channel, in pixel-range
    units (both empty: no normalisation). ``windowing``: ``"percentile"`` (intensities
    clipped to the 0.5–99.5 % percentiles and mapped to 0…1 first: scans) or ``"none"``.
    ``interpolation``: ``"bilinear"``, ``"bicubic"`` or ``"nearest"``.

    Values are checked on construction (:class:`CardError`); lists become tuples, so a card
    is hashable (a cache key).
    """

    size: tuple[int, int] = (224, 224)
    resize: ResizeMode = "shorter-side-crop"
    resize_size: int | None = None
    channels: int = 3
    pixel_range: float = 1.0
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    windowing: Windowing = "none"
    interpolation: Interpolation = "bilinear"

    def __post_init__(self) -> None:
        size = self.size
        if isinstance(size, (str, bytes)) or not isinstance(size, Sequence) or len(size) != 2:
            raise CardError(f"size must be [height, width], got {_show(size)}")
        h = _whole(size[0], "the input height", 1, MAX_SIDE)
        w = _whole(size[1], "the input width", 1, MAX_SIDE)
        resize = _choice(self.resize, "resize", RESIZE_MODES)
        rs = None if self.resize_size is None else _whole(
            self.resize_size, "resize_size (the shorter side before the crop)", 1, MAX_SIDE)
        channels = _whole(self.channels, "channels", 1, 3)
        if channels == 2:
            raise CardError("channels must be 1 (grey) or 3 (RGB), got 2")
        pr = _real(self.pixel_range, "pixel_range")
        if pr not in PIXEL_RANGES:
            raise CardError(f"pixel_range must be 1.0 (pixels 0…1) or 255.0 (0…255), got {pr:g}")
        mean, std = _numbers(self.mean, "mean"), _numbers(self.std, "std")
        if len(mean) != len(std) or (mean and len(mean) != channels):
            raise CardError(f"mean and std need one value per channel ({channels}) each, or "
                            f"both empty for no normalisation; got {len(mean)} and {len(std)}")
        bad = [s for s in std if s < MIN_STD]
        if bad:
            raise CardError(f"std must be positive (at least {MIN_STD:g}), got {bad[0]:g}")
        values = {"size": (h, w), "resize": resize, "resize_size": rs, "channels": channels,
                  "pixel_range": pr, "mean": mean, "std": std,
                  "windowing": _choice(self.windowing, "windowing", WINDOWINGS),
                  "interpolation": _choice(self.interpolation, "interpolation",
                                           INTERPOLATIONS)}
        for name, value in values.items():
            object.__setattr__(self, name, value)

    # -- normalisation ---------------------------------------------------------------------

    def _stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        if not self.mean:
            return (0.0,) * self.channels, (1.0,) * self.channels
        return self.mean, self.std

    @property
    def low(self) -> tuple[float, ...]:
        """Model-input value of a black pixel per channel (the zB rule's lower bound)."""
        mean, std = self._stats()
        return tuple((0.0 - m) / s for m, s in zip(mean, std, strict=True))

    @property
    def high(self) -> tuple[float, ...]:
        """Model-input value of a white pixel per channel (the zB rule's upper bound)."""
        mean, std = self._stats()
        return tuple((self.pixel_range - m) / s for m, s in zip(mean, std, strict=True))

    def normalise(self, x01: Tensor) -> Tensor:
        """Pixels in [0, 1], [N, C, H, W] → model input (same shape)."""
        mean, std = self._stats()
        shape = (1, -1, 1, 1)
        m = torch.tensor(mean, dtype=x01.dtype, device=x01.device).view(shape)
        s = torch.tensor(std, dtype=x01.dtype, device=x01.device).view(shape)
        return (x01 * self.pixel_range - m) / s

    def denormalise(self, x: Tensor) -> Tensor:
        """Inverse of :meth:`normalise`: model input → pixels in [0, 1]."""
        mean, std = self._stats()
        shape = (1, -1, 1, 1)
        m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(shape)
        s = torch.tensor(std, dtype=x.dtype, device=x.device).view(shape)
        return (x * s + m) / self.pixel_range

    # -- applying --------------------------------------------------------------------------

    @property
    def resize_side(self) -> int:
        """The shorter side before the centre crop ("shorter-side-crop" only)."""
        return self.resize_size or round(max(self.size) / 0.875)

    def to_pixels(self, image: object) -> Tensor:
        """A PIL image or a 2-D/3-D numpy array → float32 [1, C, H, W] before normalisation
        (pixels 0…1 for pictures, windowed or raw intensities for arrays). See
        :func:`lrp_engine.models.preprocess.card_pixels`."""
        from .preprocess import card_pixels

        return card_pixels(self, image)

    def to_tensor(self, image: object) -> Tensor:
        """A PIL image (any mode) or a 2-D/3-D numpy array → the model input, float32
        [1, C, H, W]: :meth:`to_pixels`, then :meth:`normalise`."""
        return self.normalise(self.to_pixels(image))

    def replace(self, **changes: Any) -> PreprocessingCard:
        """A copy with some fields changed (checked like a new card)."""
        unknown = sorted(set(changes) - set(CARD_FIELDS))
        if unknown:
            raise CardError(f"unknown card field(s) {', '.join(unknown)}; known: "
                            f"{', '.join(CARD_FIELDS)}")
        return dataclasses.replace(self, **changes)

    # -- words and JSON --------------------------------------------------------------------

    def describe(self) -> str:
        """One line for people, e.g. ``stretch to 255×255 · RGB · pixels 0…1 · no
        normalisation``."""
        h, w = self.size
        how = {"stretch": f"stretch to {h}×{w}",
               "shorter-side-crop": f"shorter side to {self.resize_side}, centre crop {h}×{w}",
               "pad-square": f"pad to a square (black), resize to {h}×{w}"}[self.resize]
        if self.interpolation != "bilinear":
            how += f" ({self.interpolation})"
        parts = [how, "RGB" if self.channels == 3 else "grey",
                 "pixels 0…1" if self.pixel_range == 1.0 else "pixels 0…255"]
        if self.windowing == "percentile":
            lo, hi = WINDOW_PERCENTILES
            parts.append(f"percentile window {lo:g}–{hi:g} %")
        if not self.mean:
            parts.append("no normalisation")
        elif self.mean == IMAGENET_MEAN and self.std == IMAGENET_STD:
            parts.append("ImageNet mean/std")
        else:
            def fmt(v: tuple[float, ...]) -> str:
                return ", ".join(f"{x:.4g}" for x in v)

            parts.append(f"mean ({fmt(self.mean)}), std ({fmt(self.std)})")
        return " · ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (lists for tuples)."""
        return {"size": list(self.size), "resize": self.resize,
                "resize_size": self.resize_size, "channels": self.channels,
                "pixel_range": self.pixel_range, "mean": list(self.mean),
                "std": list(self.std), "windowing": self.windowing,
                "interpolation": self.interpolation}

    def to_json(self, indent: int | None = 2) -> str:
        """The card as JSON text (:meth:`from_json` reads it back)."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: object) -> PreprocessingCard:
        """A card from a dict such as :meth:`to_dict` gives. ``size``, ``resize``, ``mean``
        and ``std`` must be given (``[]`` for no normalisation): a forgotten normalisation
        must not silently become ImageNet's. Other fields take their defaults."""
        if not isinstance(d, Mapping):
            raise CardError(f"a preprocessing card must be a JSON object {{…}}, got "
                            f"{_json_kind(d)}")
        _check_keys(d, "preprocessing card", CARD_FIELDS, ("size", "resize", "mean", "std"))
        return cls(**dict(d))

    @classmethod
    def from_json(cls, data: bytes | bytearray | memoryview | str) -> PreprocessingCard:
        """A card from JSON text or bytes (at most :data:`MAX_JSON_BYTES`)."""
        return cls.from_dict(_parse_json(data, "preprocessing card"))


CARD_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(PreprocessingCard))


def _json_kind(value: object) -> str:
    kinds = {list: "a JSON array […]", str: "a JSON string", bool: "true/false",
             type(None): "null", int: "a number", float: "a number"}
    return kinds.get(type(value), type(value).__name__)


#: named cards for the UI and the command line
CARD_PRESETS: dict[str, PreprocessingCard] = {
    "ImageNet evaluation": PreprocessingCard(
        size=(224, 224), resize="shorter-side-crop", resize_size=256),
    "resize to a square, no normalisation": PreprocessingCard(
        size=(255, 255), resize="stretch", mean=(), std=()),
    "resize to a square, ImageNet normalisation": PreprocessingCard(
        size=(224, 224), resize="stretch"),
    "scan slice, percentile window": PreprocessingCard(
        size=(96, 96), resize="pad-square", channels=1, mean=(), std=(),
        windowing="percentile"),
}


def card_from_torchvision(transforms: object) -> PreprocessingCard:
    """The card of a torchvision ``weights.transforms()`` object (``ImageClassification``:
    resize_size, crop_size, mean, std, interpolation), e.g.
    ``tv.models.ResNet50_Weights.DEFAULT.transforms()`` → shorter side 232, crop 224."""
    try:
        t: Any = transforms
        resize, crop = list(t.resize_size), list(t.crop_size)
        mean, std, interp = t.mean, t.std, str(t.interpolation.value)
    except (AttributeError, TypeError):
        raise CardError(f"{type(transforms).__name__} is not a torchvision classification "
                        "transform (resize_size, crop_size, mean, std, interpolation)") from None
    if len(resize) != 1 or len(crop) not in (1, 2):
        raise CardError(f"unsupported torchvision transform: resize {resize}, crop {crop}")
    size = (crop[0], crop[-1])
    return PreprocessingCard(size=size, resize="shorter-side-crop", resize_size=resize[0],
                             mean=tuple(mean), std=tuple(std),
                             interpolation=_choice(interp, "interpolation", INTERPOLATIONS))


# -- the model card ------------------------------------------------------------------------

MODEL_CARD_FIELDS = ("format_version", "architecture", "num_classes", "class_names",
                     "preprocessing", "provenance")


@dataclass(frozen=True)
class ModelCard:
    """What a checkpoint is: ``architecture`` (a registry name, e.g. ``"resnet50"``),
    ``num_classes``, ``class_names`` (one per class, or empty: the loader's defaults),
    ``preprocessing`` (its exact input), ``provenance`` (free text: where the weights come
    from, who trained them, when) and ``format_version`` (:data:`MODEL_CARD_VERSION`)."""

    architecture: str
    num_classes: int
    preprocessing: PreprocessingCard
    class_names: tuple[str, ...] = ()
    provenance: str = ""
    format_version: int = MODEL_CARD_VERSION

    def __post_init__(self) -> None:
        arch = self.architecture
        if not isinstance(arch, str) or not arch.strip() or len(arch) > 100:
            raise CardError(f"architecture must be a model name such as 'resnet50', got "
                            f"{_show(arch)}")
        k = _whole(self.num_classes, "num_classes", 1, MAX_CLASSES)
        names = self.class_names
        if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
            raise CardError(f"class_names must be a list of strings, got {_show(names)}")
        if len(names) > MAX_CLASSES:
            raise CardError(f"class_names has {len(names):,} entries; at most "
                            f"{MAX_CLASSES:,} classes")
        bad = next((n for n in names if not isinstance(n, str) or len(n) > MAX_NAME_CHARS),
                   None)
        if bad is not None:
            raise CardError(f"each class name must be a string of at most {MAX_NAME_CHARS} "
                            f"characters, got {_show(bad)}")
        if names and len(names) != k:
            raise CardError(f"the model card lists {len(names):,} class names for "
                            f"num_classes = {k:,}; give one name per class (or none)")
        if not isinstance(self.preprocessing, PreprocessingCard):
            raise CardError(f"preprocessing must be a PreprocessingCard, got "
                            f"{type(self.preprocessing).__name__}")
        prov = self.provenance
        if not isinstance(prov, str) or len(prov) > MAX_PROVENANCE_CHARS:
            raise CardError(f"provenance must be text of at most {MAX_PROVENANCE_CHARS:,} "
                            f"characters, got {_show(prov)}")
        version = _whole(self.format_version, "format_version", 1, 10**6)
        if version > MODEL_CARD_VERSION:
            raise CardError(f"this model card has format version {version}, written by a "
                            f"newer LRP Explorer; this one reads version {MODEL_CARD_VERSION}")
        object.__setattr__(self, "architecture", arch.strip())
        object.__setattr__(self, "num_classes", k)
        object.__setattr__(self, "class_names", tuple(names))
        object.__setattr__(self, "format_version", version)

    def check_against(self, num_classes: int, arch: str, in_channels: int | None = None
                      ) -> None:
        """Raise :class:`CardError` when the card contradicts its checkpoint: another class
        count, another architecture, or (given the model's first layer) another channel
        count. Architecture names compare case-insensitively."""
        if int(num_classes) != self.num_classes:
            raise CardError(f"the model card says {self.num_classes:,} classes but the "
                            f"checkpoint has {int(num_classes):,} outputs")
        if arch.strip().lower() != self.architecture.lower():
            raise CardError(f"the model card is for architecture '{self.architecture}' but "
                            f"the checkpoint was loaded as '{arch}'")
        if in_channels is not None and int(in_channels) != self.preprocessing.channels:
            raise CardError(f"the model card's preprocessing gives {self.preprocessing.channels}"
                            f" channel(s) but the model's first layer takes {int(in_channels)}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return {"format_version": self.format_version, "architecture": self.architecture,
                "num_classes": self.num_classes, "class_names": list(self.class_names),
                "preprocessing": self.preprocessing.to_dict(), "provenance": self.provenance}

    def to_json(self, indent: int | None = 2) -> str:
        """The card as JSON text (:meth:`from_json` reads it back)."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: object) -> ModelCard:
        """A model card from a dict; ``architecture``, ``num_classes`` and
        ``preprocessing`` are required, ``format_version`` defaults to 1."""
        if not isinstance(d, Mapping):
            raise CardError(f"a model card must be a JSON object {{…}}, got {_json_kind(d)}")
        if "preprocessing" not in d and "size" in d:
            raise CardError("this is a preprocessing card, not a model card (a model card "
                            "has architecture, num_classes and preprocessing)")
        _check_keys(d, "model card", MODEL_CARD_FIELDS,
                    ("architecture", "num_classes", "preprocessing"))
        values = dict(d)
        version = _whole(values.get("format_version", MODEL_CARD_VERSION), "format_version",
                         1, 10**6)
        if version > MODEL_CARD_VERSION:  # before reading fields a newer layout may change
            raise CardError(f"this model card has format version {version}, written by a "
                            f"newer LRP Explorer; this one reads version {MODEL_CARD_VERSION}")
        try:
            values["preprocessing"] = PreprocessingCard.from_dict(values["preprocessing"])
        except CardError as e:
            raise CardError(f"preprocessing: {e}") from None
        return cls(**values)

    @classmethod
    def from_json(cls, data: bytes | bytearray | memoryview | str) -> ModelCard:
        """A model card from JSON text or bytes (at most :data:`MAX_JSON_BYTES`, 1 MB)."""
        return cls.from_dict(_parse_json(data, "model card"))


def card_from_json(data: bytes | bytearray | memoryview | str
                   ) -> ModelCard | PreprocessingCard:
    """A card file of either kind: a :class:`ModelCard` when the JSON object has
    ``preprocessing``, else a :class:`PreprocessingCard`."""
    d = _parse_json(data, "card")
    if isinstance(d, Mapping) and "preprocessing" in d:
        return ModelCard.from_dict(d)
    return PreprocessingCard.from_dict(d)


# -- in safetensors metadata ---------------------------------------------------------------

def save_safetensors(state_dict: Mapping[str, Tensor], card: ModelCard) -> bytes:
    """A safetensors file (bytes) of ``state_dict`` with ``card`` in its metadata under
    :data:`MODEL_CARD_KEY`."""
    from safetensors.torch import save

    if not isinstance(card, ModelCard):
        raise CardError(f"card must be a ModelCard, got {type(card).__name__}")
    if not isinstance(state_dict, Mapping):
        raise CardError(f"state_dict must be a dict of names to tensors, got "
                        f"{type(state_dict).__name__}")
    bad = next((k for k, v in state_dict.items()
                if not isinstance(k, str) or not isinstance(v, Tensor)), None)
    if bad is not None:
        raise CardError(f"state_dict entry {bad!r} is not a named tensor")
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    try:
        return save(tensors, metadata={MODEL_CARD_KEY: card.to_json(indent=None)})
    except RuntimeError as e:  # tensors sharing memory (tied weights)
        raise CardError(f"the weights cannot be written as safetensors: "
                        f"{str(e).splitlines()[0]}") from None


def card_from_safetensors(data: bytes | bytearray | memoryview) -> ModelCard | None:
    """The model card stored in a safetensors file's metadata; None when ``data`` is not a
    safetensors file (or one whose header is broken: reading it as a checkpoint says so) or
    holds no card. Reads only the header (no tensors are loaded); a broken card →
    :class:`CardError`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CardError(f"expected the file's bytes, got {type(data).__name__}")
    try:
        header = read_header(data)
    except HeaderError:  # a broken checkpoint: the checkpoint loader says what is wrong
        return None
    if header is None:
        return None
    meta = header.get("__metadata__")
    if meta is None:
        return None
    if not isinstance(meta, dict):
        raise CardError("broken safetensors file: its __metadata__ is not a JSON object")
    text = meta.get(MODEL_CARD_KEY)
    if text is None:
        return None
    where = f"the model card in this safetensors file's metadata ('{MODEL_CARD_KEY}')"
    if not isinstance(text, str):
        raise CardError(f"{where} is not text")
    try:
        return ModelCard.from_json(text)
    except CardError as e:
        raise CardError(f"{where} is not valid: {e}") from None


__all__ = ["CARD_FIELDS", "CARD_PRESETS", "CardError", "IMAGENET_MEAN", "IMAGENET_STD",
           "INTERPOLATIONS", "Interpolation", "MAX_CLASSES", "MAX_JSON_BYTES", "MAX_SIDE",
           "MODEL_CARD_KEY", "MODEL_CARD_VERSION", "ModelCard", "PreprocessingCard",
           "RESIZE_MODES", "ResizeMode", "WINDOWINGS", "Windowing", "card_from_json",
           "card_from_safetensors", "card_from_torchvision", "save_safetensors"]
