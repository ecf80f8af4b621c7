"""AppTest of the Digits page: every input source, rule edits, B-LRP, bad input."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from lrp_explorer.ui.state import CANVAS_IMAGE
from tests.plotly_arrays import values

PAGE = str(Path(__file__).resolve().parents[2] / "lrp_explorer" / "app_pages" / "digits.py")


def _seven(side: int = 280) -> np.ndarray:
    """An RGBA canvas with a thick white "7" on black, like a mouse drawing."""
    img = np.zeros((side, side, 4), np.uint8)
    img[..., 3] = 255
    img[60:80, 70:210, :3] = 255  # the top bar
    for y in range(80, 230):  # the diagonal, down to the left
        x = int(205 - (y - 80) * 0.55)
        img[y, x - 10:x + 10, :3] = 255
    return img


def _spec(at: AppTest, key: str) -> dict:
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        if chart.proto.id and key in chart.proto.id:
            return spec
    raise AssertionError(f"no plotly chart {key!r}")


def _z(spec: dict, trace: int = -1) -> np.ndarray:
    z = values(spec["data"][trace]["z"])
    assert np.isfinite(z).all()
    return z


@pytest.fixture
def at() -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=120)
    app.run()
    assert not app.exception
    return app


def test_blank_canvas_asks_for_a_digit(at: AppTest) -> None:
    assert any("blank" in i.value for i in at.info)
    assert not at.metric
    assert not at.get("plotly_chart")


def test_drawn_seven_is_explained(at: AppTest) -> None:
    at.session_state[CANVAS_IMAGE] = _seven()
    at.run()
    assert not at.exception and not at.error
    assert at.metric[0].label == "Prediction" and at.metric[0].value == "7"
    z = _z(_spec(at, "lrp_heatmap"))
    assert z.shape == (32, 32)
    assert z.sum() > 0 and z.max() > 0  # the predicted class has net positive relevance
    g = _z(_spec(at, "gxi_heatmap"))
    assert not np.allclose(g, z)
    probs = _spec(at, "probs")  # the open tab by default
    assert int(np.argmax(probs["data"][0]["y"])) == 7
    at.session_state["digit_views"] = "All classes"
    at.run()
    ten = _spec(at, "class_maps")
    assert len(ten["data"]) == 10


def test_only_the_open_view_tab_is_drawn(at: AppTest) -> None:
    """The tabs rerun on a switch and draw only the open view (fewer charts per rerun)."""
    at.radio(key="digit_source").set_value("Held-out digit").run()

    def keys() -> set[str]:
        return {c.proto.id for c in at.get("plotly_chart")}

    assert any("probs" in k for k in keys())  # the first tab, open by default
    assert not any("class_maps" in k or "conservation" in k for k in keys())
    at.session_state["digit_views"] = "All classes"
    at.run()
    assert any("class_maps" in k for k in keys())
    assert not any("probs" in k for k in keys())
    at.session_state["digit_views"] = "Conservation"
    at.run()
    assert not at.exception
    assert any("conservation" in k for k in keys())
    assert not any("class_maps" in k for k in keys())
    assert any("relative difference" in m.value for m in at.markdown)
    at.session_state["digit_views"] = "Probabilities"
    at.run()
    probs = _spec(at, "probs")
    assert abs(sum(probs["data"][0]["y"]) - 1) < 1e-3


def test_preset_and_rule_edits_change_the_heatmap(at: AppTest) -> None:
    at.radio(key="digit_source").set_value("Held-out digit").run()
    before = _z(_spec(at, "lrp_heatmap"))
    at.selectbox(key="rules_preset").set_value("epsilon-gamma-box").run()
    assert not at.exception and not at.error
    after = _z(_spec(at, "lrp_heatmap"))
    assert not np.allclose(before, after)
    # the global γ slider moves the conv rows that follow it
    at.slider(key="rules_gamma_epsilon-gamma-box").set_value(1.5).run()
    assert not np.allclose(after, _z(_spec(at, "lrp_heatmap")))
    at.radio(key="rules_maxpool").set_value("winner").run()
    assert not at.exception and not at.error


def test_no_class_target_gives_zero_relevance(at: AppTest) -> None:
    at.radio(key="digit_source").set_value("Held-out digit").run()
    at.selectbox(key="digit_target").set_value("none").run()
    assert not at.exception
    assert np.count_nonzero(_z(_spec(at, "lrp_heatmap"))) == 0


def test_heldout_class_filter_and_true_label(at: AppTest) -> None:
    at.radio(key="digit_source").set_value("Held-out digit").run()
    at.selectbox(key="heldout_class").set_value(3).run()
    assert not at.exception
    assert "true class 3" in at.metric[0].proto.delta
    assert at.metric[0].value == "3"


def test_blrp_panels(at: AppTest) -> None:
    at.radio(key="digit_source").set_value("Held-out digit").run()
    at.number_input(key="blrp_samples").set_value(20).run()
    at.checkbox(key="blrp_alpha_25").uncheck().run()
    next(b for b in at.button if b.label == "Run B-LRP").click().run()
    assert not at.exception and not at.error
    panels = _spec(at, "blrp_panels")
    titles = [t["name"] for t in panels["data"]]
    assert titles == ["input", "standard LRP", "α = 5", "α = 50", "α = 75", "α = 95"]
    p5, p95 = _z(panels, 2), _z(panels, 5)
    assert (p5 <= p95 + 1e-4).all()  # percentiles are ordered per pixel
    stats = _spec(at, "blrp_stats")
    agree = _z(stats, 2)
    assert agree.min() >= 0 and agree.max() <= 1


def test_blrp_turns_off(at: AppTest, monkeypatch: pytest.MonkeyPatch) -> None:
    """After "Turn B-LRP off" a rule change computes no B-LRP and draws no panels."""
    from lrp_explorer.ui import compute

    calls: list[int] = []
    real = compute.blrp_maps
    monkeypatch.setattr(compute, "blrp_maps", lambda *a, **k: calls.append(1) or real(*a, **k))
    at.radio(key="digit_source").set_value("Held-out digit").run()
    at.number_input(key="blrp_samples").set_value(8).run()
    next(b for b in at.button if b.label == "Run B-LRP").click().run()
    assert calls and _spec(at, "blrp_panels")
    at.button(key="blrp_off").click().run()
    assert not at.exception
    assert not any("blrp_panels" in (c.proto.id or "") for c in at.get("plotly_chart"))
    assert any(b.label == "Run B-LRP" for b in at.button)
    calls.clear()
    at.selectbox(key="heldout_class").set_value(3).run()  # a later change: still off
    assert not at.exception and not calls
    assert not any("blrp_panels" in (c.proto.id or "") for c in at.get("plotly_chart"))


def test_upload_path_and_bad_uploads_in_one_session(at: AppTest) -> None:
    """The upload widget cannot be driven by AppTest; a corrupt or odd file goes through the
    same function (ui.digit_input → lrp_engine.io), checked here for its messages."""
    from lrp_engine.io import ImageLoadError, image_to_digit, load_image

    with pytest.raises(ImageLoadError):
        load_image(b"not an image at all")
    buf = io.BytesIO()
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(buf, "PNG")
    with pytest.raises(ImageLoadError, match="blank"):
        image_to_digit(load_image(buf.getvalue()))
    at.radio(key="digit_source").set_value("Upload").run()
    assert not at.exception
    assert any("Upload a picture" in i.value for i in at.info)


def test_mlp_model(at: AppTest) -> None:
    at.radio(key="digit_source").set_value("Held-out digit").run()
    at.sidebar.selectbox(key="digits_model").set_value("mlp").run()
    assert not at.exception and not at.error
    assert _z(_spec(at, "lrp_heatmap")).shape == (28, 28)
    at.selectbox(key="rules_preset").set_value("epsilon-gamma-box").run()  # zB after Flatten
    assert not at.exception and not at.error
    assert np.abs(_z(_spec(at, "lrp_heatmap"))).max() > 0
