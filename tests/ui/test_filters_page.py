"""AppTests of the Filters page (lrp_explorer/app_pages/filters.py): the LeNet's 24
first-layer filters, the activation maps of a digit, and the MLP's dense weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from lrp_explorer.ui import state
from lrp_explorer.ui.resources import heldout

PAGE = str(Path(__file__).resolve().parents[2] / "lrp_explorer" / "app_pages" / "filters.py")


def _figures(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _tiles(spec: dict) -> tuple[np.ndarray, np.ndarray]:
    """A ``tiles_figure``: its z mosaic (NaN in the gutters) and the tile index per cell."""
    tr = spec["data"][0]
    z = np.array([[np.nan if v is None else v for v in row] for row in tr["z"]])
    idx = np.array([[cell[0] for cell in row] for row in tr["customdata"]])
    return z, idx


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception
    assert not at.error
    return at


def test_lenet_filters_and_conv1_maps_of_heldout_digit_0() -> None:
    at = _run(AppTest.from_file(PAGE, default_timeout=120))
    assert "held-out digit #0" in at.info[0].value  # no digit from the Digits page yet
    filters, maps = _figures(at)

    z, idx = _tiles(filters)
    assert z.shape == (3 * 6 - 1, 8 * 6 - 1)  # 24 tiles of 5×5 in 3 rows of 8, 1-px gutters
    assert np.isfinite(z).sum() == 24 * 5 * 5
    assert sorted(set(idx[idx >= 0].tolist())) == list(range(24))
    assert np.nanmax(np.abs(z)) == 1.0 and np.nanmin(z) < 0  # diverging, per-tile ±max
    assert filters["data"][0]["zmid"] == 0

    z, idx = _tiles(maps)
    assert z.shape == (3 * 29 - 1, 8 * 29 - 1)  # 24 maps of 28×28
    assert np.isfinite(z).sum() == 24 * 28 * 28
    assert np.nanmin(z) >= 0  # after the ReLU


def test_activations_follow_the_chosen_heldout_digit_and_layer() -> None:
    at = _run(AppTest.from_file(PAGE, default_timeout=120))
    filters0, maps0 = _figures(at)
    at.number_input(key="filters_heldout").set_value(7)
    _run(at)
    assert "held-out digit #7" in at.info[0].value
    filters7, maps7 = _figures(at)
    assert filters7["data"][0]["z"] == filters0["data"][0]["z"]  # the weights stay
    assert maps7["data"][0]["z"] != maps0["data"][0]["z"]

    at.radio(key="filters_layer").set_value("conv2")
    _run(at)
    z, idx = _tiles(_figures(at)[1])
    assert z.shape == (4 * 11 - 1, 12 * 11 - 1)  # 48 maps of 10×10 in 4 rows of 12
    assert np.isfinite(z).sum() == 48 * 10 * 10
    assert idx.max() == 47


def test_uses_the_digits_page_digit_when_there_is_one() -> None:
    images, labels = heldout()
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state[state.CURRENT_DIGIT] = state.CurrentDigit.from_image(
        images[3], "held-out #3", int(labels[3]))
    _run(at)
    assert not at.info  # no "no digit yet" note
    assert at.radio(key="filters_source").value == "current"
    assert at.subheader[1].value == "Activations for held-out #3"
    current_maps = _figures(at)[1]["data"][0]["z"]

    at.radio(key="filters_source").set_value("heldout")
    _run(at)
    at.number_input(key="filters_heldout").set_value(3)
    _run(at)
    assert _figures(at)[1]["data"][0]["z"] == current_maps  # the same digit, the same maps


def test_mlp_shows_dense_weights_and_hidden_activations() -> None:
    at = AppTest.from_file(PAGE, default_timeout=120)
    _run(at)
    at.selectbox(key="filters_model").set_value("mlp")
    _run(at)
    assert at.session_state[state.MODEL_ID] == "mlp"
    assert any("no convolution" in i.value for i in at.info)
    weights, bars = _figures(at)
    z, _ = _tiles(weights)
    assert z.shape == (4 * 29 - 1, 16 * 29 - 1)  # the first 64 of 300 units, 28×28 each
    assert np.isfinite(z).sum() == 64 * 28 * 28
    assert bars["data"][0]["type"] == "bar" and len(bars["data"][0]["y"]) == 300
    assert min(bars["data"][0]["y"]) >= 0 and max(bars["data"][0]["y"]) > 0

    at.number_input(key="filters_units").set_value(10)
    at.radio(key="filters_layer").set_value("dense2")
    _run(at)
    weights, bars = _figures(at)
    assert np.isfinite(_tiles(weights)[0]).sum() == 10 * 28 * 28
    assert len(bars["data"][0]["y"]) == 100
