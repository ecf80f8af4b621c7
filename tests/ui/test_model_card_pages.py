"""AppTest of the "your own checkpoint" path with preprocessing and model cards.

* Image explorer: a torchvision ResNet-18 with 3 classes (random weights) and its model card:
  the prediction is the model's own argmax on ``card.to_tensor(photo)``; the download button's
  card round-trips; a safetensors file with the card in its metadata restores everything; a
  contradicting card and hostile card files are plain errors, the next valid file works; the
  card editor's invalid values are plain errors.
* MRI inspector, the clinician's case: a fine-tuning notebook's wrapper (``CNNModel`` holding
  ``self.vgg16`` with ``classifier[6] = nn.Linear(4096, 4)``, so every key starts with
  ``vgg16.``) and the card "resize to a square, no normalisation" at 255×255: the inspector
  predicts exactly what the model predicts on ``Resize((255, 255)) + ToTensor`` of the PNG.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest
from torch import nn

from lrp_engine.models import zoo
from lrp_engine.models.card import CARD_PRESETS, ModelCard, PreprocessingCard, save_safetensors
from lrp_engine.torchvision_compat import import_torchvision
from lrp_explorer.ui.model_setup import MODEL_CARD_UPLOAD
from lrp_explorer.ui.scan_input import CHECKPOINT_UPLOAD, SCAN_UPLOAD
from tests.clinician import CNNModel, scan_png

ROOT = Path(__file__).resolve().parents[2]
IMAGE_PAGE = str(ROOT / "lrp_explorer" / "app_pages" / "image_explorer.py")
MRI_PAGE = str(ROOT / "lrp_explorer" / "app_pages" / "mri_inspector.py")
CAT = ROOT / "lrp_engine" / "assets" / "images" / "cat_chelsea.jpg"
NAMES = ("cat", "dog", "<b>bird</b>")


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


def _errors(at: AppTest) -> list[str]:
    return [e.value.replace("\\", "") for e in at.error]


def _bytes(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return zoo.build("resnet18", 3).eval()


def _card(arch: str = "resnet18", k: int = 3, pre: PreprocessingCard | None = None,
          names: tuple[str, ...] = NAMES) -> ModelCard:
    return ModelCard(architecture=arch, num_classes=k, class_names=names,
                     preprocessing=pre or CARD_PRESETS["ImageNet evaluation"],
                     provenance="random weights (test)")


def _image_explorer(ckpt: bytes, ckpt_name: str, card: bytes | None = None,
                    card_name: str = "card.json") -> AppTest:
    at = AppTest.from_file(IMAGE_PAGE, default_timeout=180)
    at.session_state[CHECKPOINT_UPLOAD] = ckpt
    at.session_state[f"{CHECKPOINT_UPLOAD}_name"] = ckpt_name
    if card is not None:
        at.session_state[MODEL_CARD_UPLOAD] = card
        at.session_state[f"{MODEL_CARD_UPLOAD}_name"] = card_name
    at.run()
    at.radio(key="img_model").set_value("checkpoint").run()
    _ok(at)
    return at


def _expected(model: nn.Module, pre: PreprocessingCard, image: Image.Image) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(model(pre.to_tensor(image)), 1)[0]


def test_resnet18_with_card_predicts_what_the_model_gives(resnet: nn.Module) -> None:
    card = _card(pre=CARD_PRESETS["resize to a square, ImageNet normalisation"])
    at = _image_explorer(_bytes(resnet.state_dict()), "resnet18_3.pt", card.to_json().encode())
    assert not at.error, _errors(at)
    assert at.selectbox(key="img_ckpt_arch").value == "resnet18"  # from the card
    assert at.selectbox(key="img_pre_card_preset").value == "from the model card"
    probs = _expected(resnet, card.preprocessing, Image.open(CAT))
    top = at.dataframe[0].value
    assert top["class"].iloc[0] == f"#{int(probs.argmax())} {NAMES[int(probs.argmax())]}"
    np.testing.assert_allclose(top["probability"].iloc[0], float(probs.max()), rtol=1e-4)
    captions = " ".join(c.value for c in at.caption)
    assert "1×3×224×224" in captions and "3 classes" in captions
    assert card.preprocessing.describe().replace("·", "") in captions.replace("\\", "") \
        .replace("·", "")
    assert at.get("plotly_chart")

    # the download button offers this setup: the same card back
    out = ModelCard.from_json(at.session_state["img_model_card_json"])
    assert out == card

    # editing a field: the card becomes custom, the input follows
    at.number_input(key="img_pre_card_h").set_value(160).run()
    _ok(at)
    assert at.selectbox(key="img_pre_card_preset").value == "custom"
    assert "1×3×160×224" in " ".join(c.value for c in at.caption)
    probs = _expected(resnet, card.preprocessing.replace(size=(160, 224)), Image.open(CAT))
    assert at.dataframe[0].value["class"].iloc[0].startswith(f"#{int(probs.argmax())} ")

    # invalid values: plain errors, no exception
    at.radio(key="img_pre_card_norm").set_value("custom").run()
    at.text_input(key="img_pre_card_mean").input("0.5, oops, 0.5").run()
    _ok(at)
    assert any("must be numbers" in e for e in _errors(at)), _errors(at)
    at.text_input(key="img_pre_card_mean").input("0.5").run()
    at.text_input(key="img_pre_card_std").input("0").run()
    _ok(at)
    assert any("std must be positive" in e for e in _errors(at)), _errors(at)
    at.text_input(key="img_pre_card_std").input("0.25").run()
    at.selectbox(key="img_pre_card_channels").set_value(1).run()
    _ok(at)
    assert any("first layer takes 3" in e for e in _errors(at)), _errors(at)
    at.selectbox(key="img_pre_card_preset").set_value("ImageNet evaluation").run()
    _ok(at)
    assert not at.error, _errors(at)
    assert at.number_input(key="img_pre_card_h").value == 224


def test_safetensors_with_card_restores_everything(resnet: nn.Module) -> None:
    pre = PreprocessingCard(size=(192, 192), resize="pad-square", mean=(), std=())
    data = save_safetensors(resnet.state_dict(), _card(pre=pre))
    at = _image_explorer(data, "resnet18_3.safetensors")
    assert not at.error, _errors(at)
    assert at.selectbox(key="img_ckpt_arch").value == "resnet18"
    assert at.number_input(key="img_pre_card_h").value == 192
    assert at.selectbox(key="img_pre_card_resize").value == "pad-square"
    assert at.radio(key="img_pre_card_norm").value == "none"
    probs = _expected(resnet, pre, Image.open(CAT))
    i = int(probs.argmax())
    assert at.dataframe[0].value["class"].iloc[0] == f"#{i} {NAMES[i]}"
    assert "random weights (test)" in at.text_area(key="img_provenance").value


def test_contradicting_and_hostile_cards_then_a_valid_one(resnet: nn.Module) -> None:
    ckpt = _bytes(resnet.state_dict())
    at = _image_explorer(ckpt, "resnet18_3.pt", _card(k=5, names=()).to_json().encode(),
                         "five.json")
    errs = _errors(at)
    assert any("five.json" in e and "resnet18_3.pt" in e and "5 classes" in e
               and "3 outputs" in e for e in errs), errs
    assert not at.get("plotly_chart")

    at.session_state[MODEL_CARD_UPLOAD] = _card(arch="resnet34").to_json().encode()
    at.run()
    _ok(at)
    errs = _errors(at)  # the card set the architecture: the checkpoint does not fit it
    assert errs and not at.get("plotly_chart")
    at.selectbox(key="img_ckpt_arch").set_value("resnet18").run()
    _ok(at)
    errs = _errors(at)
    assert any("resnet34" in e and "resnet18" in e for e in errs), errs

    nested = b"[" * 100_000 + b"]" * 100_000
    hostile = [b"not json at all", b"\xff\xfe\x00garbage", nested, b"[1, 2, 3]",
               json.dumps({"architecture": "resnet18", "num_classes": 1e308,
                           "preprocessing": {}}).encode(),
               json.dumps({"architecture": "__import__('os').system('echo pwned')",
                           "num_classes": 3,
                           "preprocessing": json.loads(CARD_PRESETS["ImageNet evaluation"]
                                                       .to_json())}).encode(),
               b'{"architecture": "resnet18", "num_classes": 3, "preprocessing": '
               b'{"size": [224, 224], "resize": "stretch", "mean": [], "std": [], '
               b'"__class__": "os.system"}}']
    for data in hostile:
        at.session_state[MODEL_CARD_UPLOAD] = data
        at.run()
        _ok(at)
        assert at.error, data[:60]
        assert not at.get("plotly_chart")

    at.session_state[MODEL_CARD_UPLOAD] = _card().to_json().encode()
    at.run()
    _ok(at)
    assert not at.error, _errors(at)
    assert at.get("plotly_chart")


# -- the clinician's case on the MRI inspector ------------------------------------------------

@pytest.fixture(scope="module")
def clinician() -> tuple[CNNModel, bytes]:
    torch.manual_seed(3)
    model = CNNModel().eval()
    return model, _bytes(model.state_dict())


def test_clinician_vgg16_wrapper_on_the_mri_inspector(clinician: tuple[CNNModel, bytes]
                                                      ) -> None:
    model, ckpt = clinician
    tv = import_torchvision()
    png = scan_png()
    t = tv.transforms.Compose([tv.transforms.Resize((255, 255)), tv.transforms.ToTensor()])
    x = t(Image.open(io.BytesIO(png)).convert("RGB"))[None]
    with torch.no_grad():
        expected = torch.softmax(model(x), 1)[0]
    names = ("glioma", "meningioma", "no tumour", "pituitary")
    pre = CARD_PRESETS["resize to a square, no normalisation"]
    assert pre.size == (255, 255)
    card = ModelCard(architecture="vgg16", num_classes=4, class_names=names, preprocessing=pre)

    at = AppTest.from_file(MRI_PAGE, default_timeout=600)
    at.session_state[SCAN_UPLOAD] = png
    at.session_state[f"{SCAN_UPLOAD}_name"] = "slice.png"
    at.session_state[CHECKPOINT_UPLOAD] = ckpt
    at.session_state[f"{CHECKPOINT_UPLOAD}_name"] = "brain_tumour_vgg16.pth"
    at.session_state[MODEL_CARD_UPLOAD] = card.to_json().encode()
    at.run()
    at.radio(key="mri_source").set_value("Upload").run()
    at.radio(key="mri_model").set_value("checkpoint").run()
    _ok(at)
    assert not at.error, _errors(at)
    pred = next(str(m.value).replace("\\", "") for m in at.metric if m.label == "Prediction")
    assert pred == names[int(expected.argmax())]
    table = at.dataframe[0].value
    np.testing.assert_allclose(table["probability"].to_numpy(), expected.numpy(), rtol=1e-4,
                               atol=1e-6)
    assert "1×3×255×255" in " ".join(c.value for c in at.caption)
    charts = [c for c in at.get("plotly_chart") if c.proto.id and "mri_overlay" in c.proto.id]
    assert charts
    heat = [d for d in json.loads(charts[0].proto.spec)["data"] if d["type"] == "heatmap"]
    from tests.plotly_arrays import values

    r = values(heat[-1]["z"])
    assert r.shape == (255, 255) and np.isfinite(r).all() and np.abs(r).max() > 0

    # a card for another class count: a plain error naming both files
    at.session_state[MODEL_CARD_UPLOAD] = ModelCard(
        architecture="vgg16", num_classes=2, preprocessing=pre).to_json().encode()
    at.session_state[f"{MODEL_CARD_UPLOAD}_name"] = "wrong.json"
    at.run()
    _ok(at)
    errs = _errors(at)
    assert any("wrong.json" in e and "brain_tumour_vgg16.pth" in e and "2 classes" in e
               for e in errs), errs


def test_a_card_beyond_the_size_limit_is_reduced_with_a_warning(resnet: nn.Module) -> None:
    pre = PreprocessingCard(size=(2048, 2048), resize="stretch")
    at = _image_explorer(_bytes(resnet.state_dict()), "resnet18_3.pt",
                         _card(pre=pre).to_json().encode())
    assert any("1024" in w.value for w in at.warning), [w.value for w in at.warning]
    assert at.number_input(key="img_pre_card_h").value == 1024
    assert not at.error, _errors(at)
