"""lrp_engine.viz: no NaN/Inf ever, zero stays zero and white, symmetric ranges, PNGs decode,
figures carry the values."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from lrp_engine import viz
from tests.plotly_arrays import values

maps = arrays(np.float64, st.tuples(st.integers(1, 12), st.integers(1, 12)),
              elements=st.floats(allow_nan=True, allow_infinity=True, width=64))


@settings(max_examples=200, deadline=None)
@given(maps)
def test_normalise_symmetric_is_finite_and_bounded(r):
    v = viz.normalise_symmetric(r)
    assert v.shape == r.shape and np.isfinite(v).all()
    assert np.abs(v).max() <= 1.0
    finite = np.where(np.isfinite(r), r, 0.0)
    if np.abs(finite).max() > 0 and np.isfinite(np.abs(finite).max()):
        assert np.isclose(np.abs(v).max(), 1.0)
        assert (v * finite >= 0).all()  # signs kept (tiny values may underflow to 0)
    rgb = viz.relevance_rgb(r)
    assert rgb.dtype == np.uint8 and rgb.shape == (*r.shape, 3)


def test_zero_map_stays_zero_and_white():
    z = np.zeros((5, 7))
    assert np.array_equal(viz.normalise_symmetric(z), z)
    assert (viz.relevance_rgb(z) == 255).all()
    assert viz.max_abs(z) == 0.0
    fig = viz.heatmap_figure(z)
    assert fig.data[0].zmin == -1 and fig.data[0].zmax == 1  # a valid range, drawn white


def test_colour_at_zero_is_white_and_ends_are_red_and_blue():
    rgb = viz.diverging_rgb(np.array([-1.0, -0.5, 0.0, 0.5, 1.0]))
    assert rgb[2].tolist() == [255, 255, 255]
    assert rgb[3].tolist() == [255, 0, 0] and rgb[1].tolist() == [0, 0, 255]
    assert rgb[4].tolist() == [128, 0, 0] and rgb[0].tolist() == [0, 0, 76]
    assert viz.SEISMIC_COLORSCALE[2] == [0.5, "rgb(255,255,255)"]


def test_symmetric_range_and_sign():
    r = np.array([[2.0, -1.0], [0.0, 0.5]])
    v = viz.normalise_symmetric(r)
    assert v.tolist() == [[1.0, -0.5], [0.0, 0.25]]
    assert viz.normalise_symmetric(r, vmax=4.0).tolist() == [[0.5, -0.25], [0.0, 0.125]]
    assert viz.normalise_symmetric(r, vmax=1.0).tolist() == [[1.0, -1.0], [0.0, 0.5]]
    fig = viz.heatmap_figure(r)
    assert fig.data[0].zmin == -2.0 and fig.data[0].zmax == 2.0 and fig.data[0].zmid == 0


def test_as_map_sums_channels_and_accepts_tensors():
    t = torch.tensor([[[[1.0, float("nan")], [2.0, float("inf")]],
                       [[1.0, 1.0], [-2.0, 3.0]]]])  # [1, 2, 2, 2]
    assert viz.as_map(t).tolist() == [[2.0, 1.0], [0.0, 3.0]]
    with pytest.raises(ValueError):
        viz.as_map(np.zeros(3))


def test_heatmap_png_decodes_with_the_right_colours():
    r = np.array([[1.0, 0.0], [-1.0, 0.0]])
    png = viz.heatmap_png(r, scale=4)
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.size == (8, 8)
    a = np.asarray(img.convert("RGB"))
    assert a[0, 0].tolist() == [128, 0, 0] and a[0, 7].tolist() == [255, 255, 255]
    assert a[7, 0].tolist() == [0, 0, 76]
    zero_png = viz.heatmap_png(np.zeros((3, 3)), scale=1)
    assert (np.asarray(Image.open(io.BytesIO(zero_png)).convert("RGB")) == 255).all()


def test_overlay_keeps_image_where_relevance_is_zero():
    image = np.array([[0.0, 1.0], [0.5, 0.25]])
    r = np.array([[0.0, 0.0], [2.0, -2.0]])
    out = viz.overlay(image, r, opacity=1.0)
    assert out[0, 0].tolist() == [0, 0, 0] and out[0, 1].tolist() == [255, 255, 255]
    assert out[1, 0].tolist() == [128, 0, 0] and out[1, 1].tolist() == [0, 0, 76]
    half = viz.overlay(image, r, opacity=0.5)
    assert half[1, 0].tolist() == [np.round(0.5 * 0.5 * 255 + 0.5 * 128), 64, 64]
    assert np.isfinite(viz.overlay(np.ones((2, 2)), np.zeros((2, 2)))).all()
    with pytest.raises(ValueError):
        viz.overlay(np.zeros((3, 3)), np.zeros((2, 2)))
    img = Image.open(io.BytesIO(viz.heatmap_png(r, scale=2, image=image)))
    assert img.size == (4, 4)


def test_npy_bytes_round_trip():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert np.array_equal(np.load(io.BytesIO(viz.npy_bytes(torch.from_numpy(a)))), a)


def test_panels_figure_values_and_scales():
    a, b = np.array([[1.0, -3.0]]), np.array([[0.5, 0.25]])
    fig = viz.panels_figure([a, b], ["A", "B"], image=np.array([[0.0, 1.0]]))
    spec = json.loads(fig.to_json())
    assert [t["type"] for t in spec["data"]] == ["heatmap"] * 3
    assert values(spec["data"][1]["z"]).tolist() == [[1.0, -3.0]]  # a typed array in JSON
    assert spec["data"][1]["zmax"] == 3.0
    assert spec["data"][2]["zmax"] == 0.5  # per-panel range
    assert [ann["text"] for ann in spec["layout"]["annotations"]] == ["input", "A", "B"]
    assert spec["data"][2]["xaxis"] == "x3" and spec["layout"]["xaxis3"]["scaleanchor"] == "y3"
    shared = viz.panels_figure([a, b], ["A", "B"], scale="shared")
    assert shared.data[1].zmax == 3.0
    with pytest.raises(ValueError):
        viz.panels_figure([a], ["A", "B"])


def test_probability_figure_highlights_prediction():
    p = np.array([0.1, 0.7, 0.2])
    fig = viz.probability_figure(p, highlight=1)
    assert list(fig.data[0].y) == [0.1, 0.7, 0.2]
    assert fig.data[0].marker.color[1] == "#d62728"


class _Row:
    def __init__(self, name, rin, rout):
        self.index, self.name, self.kind, self.rule = 0, name, "Linear", "ε=0.1"
        self.relevance_in, self.relevance_out = rin, rout

    @property
    def ratio(self):
        return self.relevance_in / self.relevance_out


class _Report:
    output_score = 4.0
    rows = (_Row("model.conv1", 3.0, 3.5), _Row("model.final", 3.5, 4.0))


def test_conservation_figure_orders_from_output_to_input():
    fig = viz.conservation_figure(_Report())
    bar = fig.data[0]
    assert list(bar.x) == ["output score", "final in", "conv1 in"]
    assert list(bar.y) == [4.0, 3.5, 3.0]
    assert fig.layout.shapes[0].y0 == 4.0


def test_curves_figure_and_tiles():
    fig = viz.curves_figure([0, 50, 100], {"lrp": [3.0, 1.0, 0.0], "random": [3, 2, 1]},
                            labels={"lrp": "LRP"})
    assert [t.name for t in fig.data] == ["LRP", "random"]
    assert list(fig.data[0].y) == [3.0, 1.0, 0.0]
    tiles = np.stack([np.full((2, 2), -2.0), np.full((2, 2), 0.0), np.eye(2)])
    tf = viz.tiles_figure(tiles, ncols=2)
    z = tf.data[0].z
    assert len(z) == 5 and len(z[0]) == 5  # 2×2 tiles with a 1-pixel gutter
    assert z[0][0] == -1.0 and z[0][2] is None and z[0][3] == 0.0 and z[3][0] == 1.0


def test_mosaic_indices():
    big, idx = viz.mosaic(np.ones((3, 2, 2)), ncols=2)
    assert big.shape == (5, 5) and idx[0, 0] == 0 and idx[0, 3] == 1 and idx[3, 0] == 2
    assert np.isnan(big[2]).all() and idx[4, 4] == -1


def _every_figure() -> dict[str, object]:
    rng = np.random.default_rng(0)
    r, img = rng.normal(size=(8, 8)), rng.random((8, 8))
    return {
        "heatmap": viz.heatmap_figure(r, "t"),
        "heatmap overlay": viz.heatmap_figure(r, None, image=img),
        "panels": viz.panels_figure([r, -r, np.zeros((8, 8))], ["a", "b", "c"], image=img,
                                    scale="shared"),
        "blrp stats": viz.blrp_stats_figure(r, np.abs(r), rng.random((8, 8))),
        "probabilities": viz.probability_figure(rng.dirichlet(np.ones(10)), highlight=3),
        "curves": viz.curves_figure([0, 50, 100], {"lrp": [3, 2, 1], "random": [3, 3, 2]}),
        "tiles": viz.tiles_figure(rng.normal(size=(6, 5, 5)), ncols=3),
    }


@pytest.mark.parametrize("name", list(_every_figure()))
def test_every_figure_passes_plotly_validation_unchanged(name: str) -> None:
    """Figures are built without plotly's validators (speed); plotly's full validation
    must accept each one and leave its JSON as it was."""
    import plotly.graph_objects as go
    import plotly.io as pio

    def spec(f: go.Figure) -> dict:
        out = json.loads(pio.to_json(f, validate=False))
        out["layout"] = {k: v for k, v in out["layout"].items() if v not in (None, {})}
        return out

    fig = _every_figure()[name]
    validated = go.Figure(fig.to_dict())  # raises on an unknown property or a bad value
    assert spec(validated) == spec(fig)
