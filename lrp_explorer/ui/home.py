"""The home page's small picture: a held-out digit, its LRP map and two B-LRP percentiles."""

from __future__ import annotations

import streamlit as st

from lrp_engine import viz
from lrp_engine.data import mnist_to_tensor

from . import compute, resources
from .rule_table import RuleChoice

TEASER_DIGIT = 0  # held-out digit shown on the home page


@st.cache_data(show_spinner=False, max_entries=1)
def _teaser_maps() -> tuple[list, list[str], object]:
    import lrp_engine as le

    model = resources.get_model("lenet")
    images, labels = resources.heldout()
    x = mnist_to_tensor(images[TEASER_DIGIT:TEASER_DIGIT + 1], size=32).numpy()
    table = le.layer_table(model, mnist_to_tensor(images[:1], size=32).to(resources.device()))
    choice = RuleChoice("epsilon", le.rows_from_composite("epsilon", table), "avg")
    a = compute.cached_analysis(model, "lenet", x, choice)
    b = compute.blrp_maps(model, "lenet", x, choice, 100, (5, 95))
    maps = [a.relevance, b.percentiles[5], b.percentiles[95]]
    titles = [f"LRP-ε (digit {int(labels[TEASER_DIGIT])})", "B-LRP α = 5", "B-LRP α = 95"]
    return maps, titles, x[0, 0]


def teaser() -> None:
    """Draw the picture (computed once per server)."""
    maps, titles, image = _teaser_maps()
    fig = viz.panels_figure(maps, titles, image=image, height=230)
    st.plotly_chart(fig, config={"displayModeBar": False}, key="home_teaser")
