"""AppTest of the home page (app.py with its navigation)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from tests.plotly_arrays import values

APP = str(Path(__file__).resolve().parents[2] / "lrp_explorer" / "app.py")


def test_home_explains_lrp_and_shows_a_real_teaser() -> None:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception
    assert at.title[0].value == "LRP Explorer"
    text = " ".join(m.value for m in at.markdown)
    assert "Layer-wise Relevance Propagation" in text and "Bayesian LRP" in text
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    names = [t["name"] for t in spec["data"]]
    assert names[0] == "input" and names[2:] == ["B-LRP α = 5", "B-LRP α = 95"]
    p5, p95 = (values(spec["data"][i]["z"]) for i in (2, 3))
    assert (p5 <= p95 + 1e-4).all() and np.abs(p95).max() > 0
    links = [e.proto.label for e in at.get("page_link")]
    assert any("Digits" in label for label in links)
    assert any("CPU" in c.value or "GPU" in c.value for c in at.caption)
