"""AppTest: a model the server's operator defined in their own Python file (LRP_MODELS) is
offered in the sidebar of the MRI inspector and the Image explorer and explained with its
configured card; a broken configuration is a plain sidebar error; without LRP_MODELS nothing
extra is offered."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from lrp_engine.operator_models import ENV, read_config
from tests.test_operator_models import write_operator_files

ROOT = Path(__file__).resolve().parents[2]
MRI_PAGE = str(ROOT / "lrp_explorer" / "app_pages" / "mri_inspector.py")
IMAGE_PAGE = str(ROOT / "lrp_explorer" / "app_pages" / "image_explorer.py")


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


def test_operator_model_on_the_mri_inspector(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    toml = write_operator_files(tmp_path)
    monkeypatch.setenv(ENV, str(toml))
    at = AppTest.from_file(MRI_PAGE, default_timeout=120)
    at.run()
    _ok(at)
    radio = at.radio(key="mri_model")
    assert any("My scan net" in o for o in radio.options), radio.options  # the labels
    radio.set_value("operator:my_net").run()
    _ok(at)
    assert not at.error, [e.value for e in at.error]

    (spec,) = read_config(toml)
    mod_spec = importlib.util.spec_from_file_location("_t_net", tmp_path / "net.py")
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    net = mod.Net(3).eval()
    net.load_state_dict(torch.load(tmp_path / "net.pt", weights_only=True))
    from lrp_engine.mri_demo import held_out_set

    sl = held_out_set(40).images[0, 0].numpy()  # stored neurologically (as trained)

    def probs_of(a: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = spec.preprocessing.to_tensor(np.ascontiguousarray(a))
            return torch.softmax(net(x), 1)[0].numpy()

    # the sidebar's default: the model was trained on radiological slices (as DICOM stores
    # axial ones), so the demo's neurological slice reaches it mirrored left-right
    np.testing.assert_allclose(at.dataframe[0].value["probability"].to_numpy(),
                               probs_of(sl[:, ::-1]), rtol=1e-4, atol=1e-6)
    at.sidebar.radio(key="mri_model_convention").set_value("neurological").run()
    _ok(at)
    probs = probs_of(sl)
    np.testing.assert_allclose(at.dataframe[0].value["probability"].to_numpy(), probs,
                               rtol=1e-4, atol=1e-6)
    pred = next(str(m.value) for m in at.metric if m.label == "Prediction")
    assert pred == "abc"[int(probs.argmax())]
    assert any("1×1×64×64" in c.value for c in at.caption)

    at2 = AppTest.from_file(IMAGE_PAGE, default_timeout=120)  # the other page offers it too
    at2.run()
    at2.radio(key="img_model").set_value("operator:my_net").run()
    _ok(at2)
    assert not at2.error and at2.get("plotly_chart")


def test_broken_configuration_and_none(tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[model]]\nname = 'x'\ncode = 'x.py:X'\nweights = 'w.pt'\nshell = 1\n")
    monkeypatch.setenv(ENV, str(bad))
    at = AppTest.from_file(MRI_PAGE, default_timeout=120)
    at.run()
    _ok(at)
    assert any("unknown key" in e.value for e in at.sidebar.error)
    assert len(at.radio(key="mri_model").options) == 3  # nothing from the broken list

    monkeypatch.delenv(ENV)
    at = AppTest.from_file(MRI_PAGE, default_timeout=120)
    at.run()
    _ok(at)
    assert len(at.radio(key="mri_model").options) == 3 and not at.sidebar.error
