"""AppTest of the Image explorer: the bundled cat photo, presets, uploads (good and corrupt),
a user checkpoint with class names, and a malicious pickle that must not run."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from lrp_engine.models import zoo
from lrp_explorer.ui.scan_input import CHECKPOINT_UPLOAD, CLASS_NAMES_UPLOAD, IMAGE_UPLOAD
from tests.plotly_arrays import values

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "lrp_explorer" / "app_pages" / "image_explorer.py")


def _spec(at: AppTest, key: str) -> dict:
    for chart in at.get("plotly_chart"):
        if chart.proto.id and key in chart.proto.id:
            return json.loads(chart.proto.spec)
    raise AssertionError(f"no plotly chart {key!r}")


def _z(spec: dict, trace: int = -1) -> np.ndarray:
    z = values(spec["data"][trace]["z"])
    assert np.isfinite(z).all()
    return z


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


def _texts(at: AppTest) -> list[str]:
    """Everything rendered as Markdown: where user text must arrive escaped."""
    out = [e.value for kind in ("markdown", "caption", "error", "warning", "info", "success")
           for e in at.get(kind)]
    return out + [str(m.value) for m in at.metric]


@pytest.fixture
def at() -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=120)
    app.run()
    _ok(app)
    return app


def _use_checkpoint(at: AppTest, arch: str) -> None:
    at.radio(key="img_model").set_value("checkpoint")
    at.run()
    at.selectbox(key="img_ckpt_arch").set_value(arch)
    at.run()
    _ok(at)


def _state_dict_bytes(model: torch.nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getvalue()


def test_cat_sample_top5_heatmap_and_preset_change(at: AppTest) -> None:
    top = at.dataframe[0].value
    assert len(top) == 5 and "cat" in top["class"].iloc[0]
    assert 0.0 < top["probability"].iloc[0] <= 1.0
    lrp = _z(_spec(at, "img_lrp"))
    assert lrp.shape == (224, 224) and np.abs(lrp).max() > 0
    gxi = _z(_spec(at, "img_gxi"))
    assert gxi.shape == (224, 224) and not np.allclose(gxi, lrp)
    overlay = _spec(at, "img_overlay")
    assert len(overlay["data"]) == 2  # the grey photo, the relevance over it
    assert any("224×224" in c.value for c in at.caption)  # the preprocessing is spelled out

    at.selectbox(key="img_rules_preset").set_value("deep-taylor").run()
    _ok(at)
    changed = _z(_spec(at, "img_lrp"))
    assert changed.shape == (224, 224) and not np.allclose(changed, lrp)
    assert "deep-taylor" in _spec(at, "img_lrp")["layout"]["title"]["text"]


def test_uploaded_photo_then_corrupt_then_good_again(at: AppTest) -> None:
    buf = io.BytesIO()
    Image.open(ROOT / "lrp_engine" / "assets" / "images" / "coffee.jpg").save(buf, format="WEBP")
    at.session_state[IMAGE_UPLOAD] = buf.getvalue()
    at.session_state[f"{IMAGE_UPLOAD}_name"] = "coffee.webp"
    at.radio(key="img_source").set_value("Upload").run()
    _ok(at)
    assert not at.error
    assert "espresso" in at.dataframe[0].value["class"].iloc[0]
    assert _z(_spec(at, "img_lrp")).shape == (224, 224)

    at.session_state[IMAGE_UPLOAD] = b"%PDF-1.4 this is not a photo"
    at.run()
    _ok(at)
    assert any("not an image" in e.value for e in at.error)
    assert not at.get("plotly_chart")

    at.session_state[IMAGE_UPLOAD] = buf.getvalue()
    at.run()
    _ok(at)
    assert not at.error and at.get("plotly_chart")


def test_user_checkpoint_with_class_names_shown_as_text(at: AppTest) -> None:
    torch.manual_seed(0)
    at.session_state[CHECKPOINT_UPLOAD] = _state_dict_bytes(zoo.build("lenet", 3))
    at.session_state[f"{CHECKPOINT_UPLOAD}_name"] = "my_lenet.pt"
    names = ["alpha", "<b>beta</b>", "![x](http://example.invalid/x.png)"]
    at.session_state[CLASS_NAMES_UPLOAD] = "\n".join(names).encode()
    _use_checkpoint(at, "lenet")
    assert not at.error, [e.value for e in at.error]
    shown = " ".join(at.dataframe[0].value["class"])
    assert all(n in shown for n in names)  # verbatim, as table text
    for text in _texts(at):  # never as markup
        assert "<b>" not in text and "![x]" not in text
    lrp = _z(_spec(at, "img_lrp"))
    assert lrp.shape == (32, 32)  # LeNet's greyscale 32×32 input

    # LeNet has dropout: B-LRP with a time estimate first, then the maps (twice: the second
    # run takes the kept result)
    assert any(c.value.startswith("Estimated time") for c in at.caption)
    at.slider(key="img_blrp_samples").set_value(8)
    at.button(key="img_blrp_run").click().run()
    _ok(at)
    panels = _spec(at, "img_blrp_panels")
    assert len(panels["data"]) == 1 + 1 + 3  # photo, standard LRP, α = 5, 50, 95
    assert all(np.isfinite(values(d["z"])).all() for d in panels["data"])
    at.run()
    _ok(at)
    assert _spec(at, "img_blrp_stats")

    # a class-name count that does not fit: a plain error, no exception
    at.session_state[CLASS_NAMES_UPLOAD] = b"one\ntwo\n"
    at.run()
    _ok(at)
    assert any("2 class names" in e.value for e in at.error)


class _Evil:
    """Unpickling this would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


def test_malicious_pickle_is_refused_and_never_runs(at: AppTest, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    torch.save({"state_dict": _Evil(marker)}, buf)
    at.session_state[CHECKPOINT_UPLOAD] = buf.getvalue()
    at.session_state[f"{CHECKPOINT_UPLOAD}_name"] = "evil.pt"
    _use_checkpoint(at, "mlp")
    assert not marker.exists()
    assert any("never unpickled" in e.value for e in at.error), [e.value for e in at.error]
    assert not at.get("plotly_chart")

    at.session_state[CHECKPOINT_UPLOAD] = pickle.dumps(_Evil(marker), protocol=2)
    at.run()
    _ok(at)
    assert not marker.exists() and at.error

    # the next valid checkpoint in the same session works
    at.session_state[CHECKPOINT_UPLOAD] = _state_dict_bytes(zoo.build("mlp", 10))
    at.run()
    _ok(at)
    assert not at.error
    assert _z(_spec(at, "img_lrp")).shape == (28, 28)
    assert any("no dropout" in i.value for i in at.info)  # the MLP: B-LRP explained away


def test_vgg16_offline_explains_and_offers_a_path(at: AppTest, monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    import urllib.error

    def offline(progress: bool) -> dict:
        raise urllib.error.URLError("offline (test)")

    if hasattr(zoo, "_download_vgg16"):  # before the registry held every torchvision model
        monkeypatch.setattr(zoo, "_download_vgg16", offline)
        monkeypatch.setattr(zoo, "vgg16_cache_file", lambda: tmp_path / "vgg16-397923af.pth")
    else:
        monkeypatch.setattr(zoo, "_download", lambda url, progress: offline(progress))
        monkeypatch.setattr(zoo, "weights_cache_file",
                            lambda arch: tmp_path / "vgg16-397923af.pth")
    at.radio(key="img_model").set_value("vgg16").run()
    _ok(at)
    assert any("not on this computer" in e.value for e in at.error)
    assert not at.get("plotly_chart")
    at.text_input(key="img_vgg16_path").input(str(tmp_path / "missing.pth")).run()
    _ok(at)
    assert any("not found" in e.value for e in at.error)

    at.radio(key="img_model").set_value("efficientnet_lite0").run()  # and back: it works
    _ok(at)
    assert not at.error and at.get("plotly_chart")
