"""Preprocessing cards against torchvision's transforms (the oracle), and hostile cards.

Photos: the bundled ``lrp_engine/assets/images/*.jpg``. Where the same PIL operations run, card and
torchvision agree exactly (max |Δ| = 0, asserted ≤ 1e-6).
"""

from __future__ import annotations

import io
import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lrp_engine.medical import scan_to_tensor
from lrp_engine.models.card import (
    CARD_PRESETS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MODEL_CARD_KEY,
    CardError,
    ModelCard,
    PreprocessingCard,
    card_from_safetensors,
    card_from_torchvision,
    save_safetensors,
)
from lrp_engine.torchvision_compat import import_torchvision

tv = import_torchvision()
T = tv.transforms
ROOT = Path(__file__).resolve().parents[1]
PHOTOS = sorted((ROOT / "lrp_engine" / "assets" / "images").glob("*.jpg"))
INTERP = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC}
TOL = 1e-6


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    assert PHOTOS, "lrp_engine/assets/images/*.jpg missing"
    return {p.name: Image.open(p).convert("RGB") for p in PHOTOS}


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape and a.dtype == torch.float32
    assert (a - b).abs().max().item() <= TOL


# -- torchvision equivalence ---------------------------------------------------------------

@pytest.mark.parametrize("interp", ["bilinear", "bicubic"])
def test_stretch_equals_resize_totensor(photos: dict[str, Image.Image], interp: str) -> None:
    card = CARD_PRESETS["resize to a square, no normalisation"].replace(interpolation=interp)
    ref = T.Compose([T.Resize((255, 255), interpolation=INTERP[interp]), T.ToTensor()])
    for img in photos.values():
        _close(card.to_tensor(img), ref(img)[None])


@pytest.mark.parametrize("interp", ["bilinear", "bicubic"])
def test_imagenet_evaluation_equals_resize_crop_normalize(photos: dict[str, Image.Image],
                                                          interp: str) -> None:
    card = CARD_PRESETS["ImageNet evaluation"].replace(interpolation=interp)
    ref = T.Compose([T.Resize(256, interpolation=INTERP[interp]), T.CenterCrop(224),
                     T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    for img in photos.values():
        _close(card.to_tensor(img), ref(img)[None])


@pytest.mark.parametrize("weights", ["ResNet50_Weights", "VGG16_Weights"])
def test_weights_transforms(photos: dict[str, Image.Image], weights: str) -> None:
    t = getattr(tv.models, weights).DEFAULT.transforms()  # antialiased, on PIL
    card = card_from_torchvision(t)
    assert card.resize_side == t.resize_size[0] and card.size == (224, 224)
    for img in photos.values():
        _close(card.to_tensor(img), t(img)[None])


def test_crop_larger_than_resized_picture_pads_like_centercrop(photos) -> None:
    img = photos["coffee.jpg"]
    card = PreprocessingCard(size=(301, 180), resize_size=171, mean=(0.5, 0.4, 0.3),
                             std=(0.2, 0.3, 0.4))
    ref = T.Compose([T.Resize(171), T.CenterCrop((301, 180)), T.ToTensor(),
                     T.Normalize((0.5, 0.4, 0.3), (0.2, 0.3, 0.4))])
    _close(card.to_tensor(img), ref(img)[None])


def test_grey_model_and_grey_picture(photos) -> None:
    img = photos["cat_chelsea.jpg"]
    grey = PreprocessingCard(size=(64, 48), resize="stretch", channels=1, mean=(0.5,),
                             std=(0.25,))
    ref = T.Compose([T.Grayscale(1), T.Resize((64, 48)), T.ToTensor(),
                     T.Normalize((0.5,), (0.25,))])
    _close(grey.to_tensor(img), ref(img)[None])
    rgb = PreprocessingCard(size=(64, 48), resize="stretch", mean=(), std=())
    x = rgb.to_tensor(img.convert("L"))  # grey picture, RGB model: repeated to 3 channels
    _close(x, T.Compose([T.Resize((64, 48)), T.ToTensor()])(img.convert("L").convert("RGB"))[None])
    assert torch.equal(x[:, 0], x[:, 2])


def test_pixel_range_255(photos) -> None:
    img = photos["rocket.jpg"]
    card = PreprocessingCard(size=(32, 32), resize="stretch", pixel_range=255.0,
                             mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))
    ref = T.Compose([T.Resize((32, 32)), T.ToTensor()])(img)[None] * 255
    m = torch.tensor(card.mean).view(1, 3, 1, 1)
    s = torch.tensor(card.std).view(1, 3, 1, 1)
    assert torch.allclose(card.to_tensor(img), (ref - m) / s, atol=1e-5)
    assert card.low[0] == pytest.approx(-123.675 / 58.395)


def test_pad_square_equals_pad_then_resize(photos) -> None:
    img = photos["coffee.jpg"].resize((61, 40))  # odd difference: the extra row at the bottom
    card = PreprocessingCard(size=(32, 32), resize="pad-square", mean=(), std=())
    ref = T.Compose([T.Pad((0, 10, 0, 11), fill=0), T.Resize((32, 32)), T.ToTensor()])
    _close(card.to_tensor(img), ref(img)[None])
    tall = PreprocessingCard(size=(8, 8), resize="pad-square", mean=(), std=(),
                             interpolation="nearest")
    x = tall.to_pixels(Image.new("L", (2, 8), 255))  # white 2×8 strip centred in black
    assert x.shape == (1, 3, 8, 8) and x[0, 0, :, 3:5].min() == 1 and x[0, 0, :, :3].max() == 0


def test_float_arrays_follow_torchvision_tensor_path(photos) -> None:
    a = np.asarray(photos["rocket.jpg"], dtype=np.float32) / 255
    t = torch.from_numpy(a).permute(2, 0, 1)
    card = PreprocessingCard(size=(100, 90), resize_size=120, mean=(), std=(),
                             interpolation="bicubic")
    ref = T.Compose([T.Resize(120, interpolation=INTERP["bicubic"], antialias=True),
                     T.CenterCrop((100, 90))])(t)[None]
    _close(card.to_tensor(a), ref)
    _close(card.to_tensor(np.ascontiguousarray(a.transpose(2, 0, 1))), ref)  # [C, H, W]
    _close(card.to_tensor(t), ref)  # a tensor is read like an array


def test_uint8_array_is_a_picture(photos) -> None:
    img = photos["astronaut.jpg"]
    card = CARD_PRESETS["ImageNet evaluation"]
    assert torch.equal(card.to_tensor(np.asarray(img)), card.to_tensor(img))


def test_scan_preset_equals_the_mri_pipeline() -> None:
    rng = np.random.default_rng(0)
    scan = rng.gamma(2.0, 300.0, size=(70, 110)).astype(np.float32)  # raw MR-like units
    x = CARD_PRESETS["scan slice, percentile window"].to_tensor(scan)
    ref = scan_to_tensor(scan, size=96)
    assert x.shape == (1, 1, 96, 96)
    assert (x - ref).abs().max().item() <= 1e-5  # windowed in float64 here, float32 there


# -- picture modes and odd arrays ----------------------------------------------------------

@pytest.mark.parametrize("mode", ["L", "RGBA", "LA", "P", "1", "CMYK", "YCbCr", "I;16", "I",
                                  "F", "I;16B"])
@pytest.mark.parametrize("channels", [1, 3])
def test_every_mode_gives_a_finite_input(photos, mode: str, channels: int) -> None:
    base = photos["cat_chelsea.jpg"].resize((40, 30))
    img = base.convert("L").convert(mode) if mode.startswith("I") or mode == "F" \
        else base.convert(mode)
    card = PreprocessingCard(size=(16, 16), resize="stretch", channels=channels,
                             mean=(0.5,) * channels, std=(0.5,) * channels)
    x = card.to_tensor(img)
    assert x.shape == (1, channels, 16, 16) and x.dtype == torch.float32
    assert torch.isfinite(x).all()


def test_rgba_alpha_is_dropped_and_palette_transparency_is_quiet(recwarn) -> None:
    rgba = Image.new("RGBA", (4, 4), (200, 100, 50, 0))
    card = PreprocessingCard(size=(4, 4), resize="stretch", mean=(), std=())
    assert torch.allclose(card.to_tensor(rgba)[0, :, 0, 0],
                          torch.tensor([200, 100, 50]) / 255.0)
    p = Image.new("P", (4, 4), 0)
    p.info["transparency"] = b"\x00"
    card.to_tensor(p)
    assert not [w for w in recwarn if "Palette" in str(w.message)]


def test_sixteen_bit_picture_uses_the_full_range() -> None:
    a = np.full((8, 8), 65535, dtype=np.uint16)
    a[:4] = 0
    img = Image.fromarray(a)
    assert img.mode == "I;16"
    card = PreprocessingCard(size=(8, 8), resize="stretch", channels=1, mean=(), std=())
    x = card.to_tensor(img)
    assert x[0, 0, 0, 0] == 0 and x[0, 0, -1, 0] == 1
    assert card.replace(windowing="percentile").to_tensor(img).max() == 1


def test_windowing_constant_nan_and_raw() -> None:
    scan = CARD_PRESETS["scan slice, percentile window"]
    assert torch.equal(scan.to_tensor(np.full((20, 30), 7.0)), torch.zeros(1, 1, 96, 96))
    a = np.random.default_rng(1).normal(size=(50, 50))
    a[:5] = np.nan
    x = scan.replace(resize="stretch", size=(50, 50)).to_tensor(a)
    assert torch.isfinite(x).all() and x[0, 0, :5].max() == 0  # NaN rows became black
    with pytest.raises(CardError, match="no finite value"):
        scan.to_tensor(np.full((10, 10), np.nan))
    raw = scan.replace(windowing="none")
    with pytest.raises(CardError, match="NaN or infinite"):
        raw.to_tensor(a)
    b = np.full((96, 96), 1234.5, dtype=np.float64)
    assert torch.equal(raw.to_tensor(b), torch.full((1, 1, 96, 96), 1234.5))  # raw values


@pytest.mark.parametrize("bad, match", [
    (np.zeros((3, 3, 3, 3)), "image array"),
    (np.zeros((5, 5, 7)), "image array"),
    (np.zeros((0, 5)), "empty"),
    (np.array([["a", "b"]]), "hold numbers"),
    (np.zeros((7000, 7000), dtype=np.uint8), "at most"),
    ("not an image", "PIL image or a numpy array"),
])
def test_bad_images(bad: object, match: str) -> None:
    with pytest.raises(CardError, match=match):
        CARD_PRESETS["ImageNet evaluation"].to_tensor(bad)


def test_long_strip_is_refused_before_resizing() -> None:
    strip = Image.new("RGB", (40000, 2))
    with pytest.raises(CardError, match="would be"):
        CARD_PRESETS["ImageNet evaluation"].to_tensor(strip)  # 256 × 5 120 000 after Resize


def test_lab_cannot_become_grey() -> None:
    card = PreprocessingCard(size=(4, 4), channels=1, mean=(), std=())
    with pytest.raises(CardError, match="'LAB'"):
        card.to_tensor(Image.new("LAB", (4, 4)))


# -- describing, JSON, validation ----------------------------------------------------------

def test_describe() -> None:
    assert CARD_PRESETS["resize to a square, no normalisation"].describe() == (
        "stretch to 255×255 · RGB · pixels 0…1 · no normalisation")
    assert CARD_PRESETS["ImageNet evaluation"].describe() == (
        "shorter side to 256, centre crop 224×224 · RGB · pixels 0…1 · ImageNet mean/std")
    assert "percentile window 0.5–99.5 %" in CARD_PRESETS["scan slice, percentile window"] \
        .describe()
    odd = PreprocessingCard(size=(32, 32), resize="pad-square", channels=1, mean=(0.1307,),
                            std=(0.3081,), interpolation="bicubic")
    assert odd.describe() == ("pad to a square (black), resize to 32×32 (bicubic) · grey · "
                              "pixels 0…1 · mean (0.1307), std (0.3081)")


def test_json_round_trip_and_defaults() -> None:
    for card in CARD_PRESETS.values():
        assert PreprocessingCard.from_json(card.to_json()) == card
        assert PreprocessingCard.from_json(card.to_json().encode()) == card
        assert hash(card) == hash(PreprocessingCard.from_dict(card.to_dict()))
    assert PreprocessingCard().resize_side == 256  # the defaults the registry relies on
    lists = PreprocessingCard(size=[10, 12], mean=[0.5, 0.5, 0.5], std=[1, 1, 1])
    assert lists.size == (10, 12) and lists.mean == (0.5,) * 3 and lists.std == (1.0,) * 3


HOSTILE_CARDS = {
    "not json": (b"size: 224", "not valid JSON"),
    "array": (b"[1, 2, 3]", "JSON object"),
    "string": (b'"stretch"', "JSON object"),
    "binary": (b"\xff\xfe\x00\x81", "not UTF-8"),
    "NaN literal": (b'{"size": [8, 8], "resize": "stretch", "mean": [NaN], "std": [1], '
                    b'"channels": 1}', "NaN"),
    "missing mean": (b'{"size": [8, 8], "resize": "stretch"}', "missing: mean, std"),
    "typo": (b'{"size": [8, 8], "resize": "stretch", "mean": [], "std": [], "szie": 3}',
             "unknown field"),
    "size 0": (b'{"size": [0, 8], "resize": "stretch", "mean": [], "std": []}', "between 1"),
    "size 1e6": (b'{"size": [1000000, 8], "resize": "stretch", "mean": [], "std": []}',
                 "4,096"),
    "size float": (b'{"size": [8.5, 8], "resize": "stretch", "mean": [], "std": []}',
                   "whole number"),
    "size string": (b'{"size": "224", "resize": "stretch", "mean": [], "std": []}',
                    "height, width"),
    "zero std": (b'{"size": [8, 8], "resize": "stretch", "mean": [0, 0, 0], '
                 b'"std": [1, 0, 1]}', "positive"),
    "negative std": (b'{"size": [8, 8], "resize": "stretch", "mean": [0, 0, 0], '
                     b'"std": [1, -1, 1]}', "positive"),
    "huge float": (b'{"size": [8, 8], "resize": "stretch", "mean": [1e999, 0, 0], '
                   b'"std": [1, 1, 1]}', "finite"),
    "mean string": (b'{"size": [8, 8], "resize": "stretch", "mean": "0.5", "std": []}',
                    "list of numbers"),
    "short mean": (b'{"size": [8, 8], "resize": "stretch", "mean": [0.5], "std": [0.5]}',
                   "one value per channel"),
    "unknown resize": (b'{"size": [8, 8], "resize": "zoom", "mean": [], "std": []}',
                       "resize must be one of"),
    "unknown window": (b'{"size": [8, 8], "resize": "stretch", "mean": [], "std": [], '
                       b'"windowing": "ct"}', "windowing must be one of"),
    "unknown interp": (b'{"size": [8, 8], "resize": "stretch", "mean": [], "std": [], '
                       b'"interpolation": "lanczos"}', "interpolation must be one of"),
    "channels 2": (b'{"size": [8, 8], "resize": "stretch", "mean": [], "std": [], '
                   b'"channels": 2}', "1 \\(grey\\) or 3"),
    "channels true": (b'{"size": [8, 8], "resize": "stretch", "mean": [], "std": [], '
                      b'"channels": true}', "whole number"),
    "pixel range": (b'{"size": [8, 8], "resize": "stretch", "mean": [], "std": [], '
                    b'"pixel_range": 65535}', "pixel_range"),
    "giant int": (b'{"size": [' + b"9" * 5000 + b', 8], "resize": "stretch"}', "JSON"),
    "deep": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply|JSON object|valid JSON"),
    "5 MB": (b'{"pad": "' + b"x" * 5_000_000 + b'"}', "1 MB"),
}


@pytest.mark.parametrize("name", list(HOSTILE_CARDS))
def test_hostile_preprocessing_cards(name: str) -> None:
    data, match = HOSTILE_CARDS[name]
    with pytest.raises(CardError, match=match):
        PreprocessingCard.from_json(data)


def test_bad_constructor_values_and_replace() -> None:
    with pytest.raises(CardError, match="positive"):
        PreprocessingCard(std=(0.2, 0.0, 0.2))
    with pytest.raises(CardError, match="finite"):
        PreprocessingCard(mean=(math.nan, 0.0, 0.0))
    with pytest.raises(CardError, match="one value per channel"):
        PreprocessingCard(channels=1)  # ImageNet's 3 means for a grey model
    with pytest.raises(CardError, match="unknown card field"):
        PreprocessingCard().replace(colour="red")
    assert isinstance(CardError("x"), ValueError)


# -- model cards ---------------------------------------------------------------------------

def _model_card(**kw: object) -> ModelCard:
    d = {"architecture": "vgg16", "num_classes": 4,
         "class_names": ["glioma", "meningioma", "no tumour", "pituitary"],
         "preprocessing": CARD_PRESETS["resize to a square, no normalisation"],
         "provenance": "fine-tuned by Dr X on the Kaggle brain MRI set, 2024-05-01"}
    d.update(kw)
    return ModelCard(**d)


def test_model_card_round_trip() -> None:
    card = _model_card()
    text = card.to_json()
    assert json.loads(text)["format_version"] == 1
    assert ModelCard.from_json(text) == card == ModelCard.from_json(text.encode())
    assert ModelCard.from_dict({k: v for k, v in card.to_dict().items()
                                if k != "format_version"}) == card


def _hostile(**changes: object) -> bytes:
    d = _model_card().to_dict()
    d.update(changes)
    return json.dumps(d).encode()


HOSTILE_MODEL_CARDS = {
    "not json": (b"<html>", "not valid JSON"),
    "array": (b'[{"architecture": "vgg16"}]', "JSON object"),
    "1e9 classes": (_hostile(num_classes=10**9, class_names=[]), "100,000"),
    "zero classes": (_hostile(num_classes=0, class_names=[]), "between 1"),
    "classes string": (_hostile(num_classes="4"), "whole number"),
    "names wrong length": (_hostile(class_names=["a", "b", "c"]), "3 class names for "
                                                                   "num_classes = 4"),
    "names not strings": (_hostile(class_names=[1, 2, 3, 4]), "string"),
    "names a string": (_hostile(class_names="abcd"), "list of strings"),
    "arch number": (_hostile(architecture=16), "model name"),
    "arch empty": (_hostile(architecture="  "), "model name"),
    "provenance dict": (_hostile(provenance={"who": "me"}), "provenance must be text"),
    "newer format": (_hostile(format_version=2), "newer LRP Explorer"),
    "version string": (_hostile(format_version="1"), "whole number"),
    "nan mean": (_hostile(preprocessing={"size": [8, 8], "resize": "stretch",
                                         "mean": [float("nan")] * 3, "std": [1, 1, 1]}),
                 "NaN"),
    "zero std": (_hostile(preprocessing={"size": [8, 8], "resize": "stretch",
                                         "mean": [0] * 3, "std": [0, 1, 1]}),
                 "preprocessing: std must be positive"),
    "size 1e6": (_hostile(preprocessing={"size": [10**6, 10**6], "resize": "stretch",
                                         "mean": [], "std": []}), "preprocessing: .*4,096"),
    "preprocessing list": (_hostile(preprocessing=[224, 224]), "JSON object"),
    "missing preprocessing": (json.dumps({"architecture": "vgg16", "num_classes": 4}).encode(),
                              "missing: preprocessing"),
    "a preprocessing card": (CARD_PRESETS["ImageNet evaluation"].to_json().encode(),
                             "preprocessing card, not a model card"),
    "extra field": (_hostile(weights="http://x"), "unknown field"),
    "5 MB": (_hostile(provenance="x" * 5_000_000), "1 MB"),
}


@pytest.mark.parametrize("name", list(HOSTILE_MODEL_CARDS))
def test_hostile_model_cards(name: str) -> None:
    data, match = HOSTILE_MODEL_CARDS[name]
    with pytest.raises(CardError, match=match):
        ModelCard.from_json(data)


def test_check_against_names_both_numbers() -> None:
    card = _model_card()
    card.check_against(4, "vgg16", in_channels=3)
    card.check_against(4, "VGG16")
    with pytest.raises(CardError, match="says 4 classes but the checkpoint has 1,000"):
        card.check_against(1000, "vgg16")
    with pytest.raises(CardError, match="'vgg16' but the checkpoint was loaded as 'resnet50'"):
        card.check_against(4, "resnet50")
    with pytest.raises(CardError, match="gives 3 channel\\(s\\) but the model's first layer "
                                        "takes 1"):
        card.check_against(4, "vgg16", in_channels=1)


# -- safetensors ---------------------------------------------------------------------------

def test_safetensors_round_trip() -> None:
    from safetensors.torch import load

    sd = {"fc.weight": torch.randn(4, 3), "fc.bias": torch.zeros(4),
          "t": torch.arange(6).view(2, 3).t()}  # non-contiguous is fine
    card = _model_card()
    data = save_safetensors(sd, card)
    assert card_from_safetensors(data) == card
    back = load(data)
    assert torch.equal(back["fc.weight"], sd["fc.weight"]) and torch.equal(back["t"], sd["t"])


def test_card_is_read_from_the_header_only() -> None:
    data = save_safetensors({"w": torch.randn(1000, 100)}, _model_card())
    (n,) = struct.unpack("<Q", data[:8])
    assert card_from_safetensors(data[:8 + n]) == _model_card()  # tensor bytes cut off


def _safetensors_with(meta: object) -> bytes:
    header = json.dumps({"__metadata__": meta, "w": {"dtype": "F32", "shape": [1],
                                                     "data_offsets": [0, 4]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\x00" * 4


def test_card_from_safetensors_without_a_card() -> None:
    from safetensors.torch import save

    assert card_from_safetensors(save({"w": torch.zeros(2)})) is None
    assert card_from_safetensors(save({"w": torch.zeros(2)}, metadata={"a": "b"})) is None
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buf)
    assert card_from_safetensors(buf.getvalue()) is None  # a .pt file holds no card
    assert card_from_safetensors(b"") is None


@pytest.mark.parametrize("data, match", [
    (_safetensors_with({MODEL_CARD_KEY: "{not json"}), "'lrp_explorer.model_card'.*valid JSON"),
    (_safetensors_with({MODEL_CARD_KEY: "[]"}), "is not valid: a model card must be"),
    (_safetensors_with({MODEL_CARD_KEY: 5}), "is not text"),
    (_safetensors_with([1, 2]), "__metadata__ is not a JSON object"),
    (_safetensors_with({MODEL_CARD_KEY: _hostile(num_classes=10**9, class_names=[]).decode()}),
     "100,000"),
    (struct.pack("<Q", 2) + b'{}' + b'[]', None),
])
def test_malformed_safetensors_metadata(data: bytes, match: str | None) -> None:
    if match is None:
        assert card_from_safetensors(data) is None
        return
    with pytest.raises(CardError, match=match):
        card_from_safetensors(data)


@pytest.mark.parametrize("data, match", [
    (struct.pack("<Q", 500) + b'{"a": 1}', "truncated"),
    (struct.pack("<Q", 10**12) + b'{"a": 1}', "claims"),
    (struct.pack("<Q", 6) + b'{"a": ', "not valid JSON"),
])
def test_a_broken_safetensors_header_is_the_checkpoints_error(data: bytes, match: str) -> None:
    """No card is read from a broken header; reading the file as a checkpoint says why."""
    from lrp_engine.checkpoints import CheckpointError, read_state_dict

    assert card_from_safetensors(data) is None
    with pytest.raises(CheckpointError, match=match):
        read_state_dict(data)


def test_save_safetensors_refuses_bad_input() -> None:
    with pytest.raises(CardError, match="ModelCard"):
        save_safetensors({"w": torch.zeros(1)}, {"architecture": "x"})  # type: ignore[arg-type]
    with pytest.raises(CardError, match="not a named tensor"):
        save_safetensors({"w": [1, 2]}, _model_card())  # type: ignore[dict-item]


def test_card_from_json_reads_either_kind() -> None:
    from lrp_engine.models.card import card_from_json

    assert card_from_json(_model_card().to_json()) == _model_card()
    pre = CARD_PRESETS["ImageNet evaluation"]
    assert card_from_json(pre.to_json()) == pre
    with pytest.raises(CardError, match="JSON object"):
        card_from_json("[]")
