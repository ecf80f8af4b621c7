"""Image explorer: explain a photo with the bundled EfficientNet-Lite0, VGG-16 or your own
checkpoint — preprocessing, top-5, target class, rules per layer, LRP beside and over the
photo, Gradient×Input and B-LRP."""

from __future__ import annotations

import html
from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from lrp_engine import viz
from lrp_engine.io import ImageLoadError, load_image
from lrp_engine.models.card import CardError
from lrp_explorer.ui import compute, report, resources
from lrp_explorer.ui.model_setup import card_input, choose_model_and_card
from lrp_explorer.ui.rule_table import rule_controls
from lrp_explorer.ui.scan_input import photo_input, plain, to_device

PLOT = {"displayModeBar": False}
ALPHAS = (5, 25, 50, 75, 95)
#: the preset each architecture starts with
DEFAULT_PRESET = {"vgg16": "vgg-gamma-blocks", "efficientnet_lite0": "epsilon-plus-flat",
                  "lenet": "epsilon", "mlp": "epsilon", "mri_demo": "epsilon-gamma-box"}

st.title("Image explorer")

# -- model (sidebar) -------------------------------------------------------------------------
setup = choose_model_and_card(("efficientnet_lite0", "vgg16", "checkpoint"), ns="img")
m = None if setup is None else setup.model

col_in, col_out = st.columns([1, 2], gap="large")
with col_in:
    photo, why_not = photo_input()
if m is None:
    st.stop()
if photo is None:
    col_out.info(why_not or "Choose a photo.")
    st.stop()
pre = setup.card
try:
    prep = card_input(photo.data, pre.to_json())
except (ImageLoadError, CardError) as e:
    col_out.error(f"{plain(photo.name)}: {plain(e)}")
    st.stop()
BOUNDS = {"low": pre.low, "high": pre.high}  # zB: the card's black and white pixel
names = m.class_names


def class_label(i: int) -> str:
    """``#281 tabby, tabby cat`` (plain text: for selectboxes and tables only)."""
    return f"#{i} {names[i]}" if 0 <= i < len(names) else f"#{i}"


with col_in:
    thumb = load_image(photo.data)
    size = thumb.size
    thumb.thumbnail((512, 512))
    st.image(np.asarray(thumb), caption=f"{plain(photo.name)}")
    st.image(prep.shown, width=224, caption="What the model sees")
    st.caption(f"{prep.caption}.")
    st.caption(f"{size[0]}×{size[1]} photo → {pre.describe()}.")

# -- predictions and target ------------------------------------------------------------------
probs = report.predict(m.model, m.key, prep.x)
top = report.top_k(probs, 5)
with col_out:
    st.subheader("Top-5 predictions")
    st.dataframe(pd.DataFrame({"class": [class_label(i) for i in top],
                               "probability": [float(probs[i]) for i in top]}),
                 hide_index=True, width="stretch",
                 column_config={"probability": st.column_config.ProgressColumn(
                     "probability", format="percent", min_value=0.0, max_value=1.0)})
    options = ["predicted", *top, "other"]
    if st.session_state.get("img_target", "predicted") not in options:
        st.session_state["img_target"] = "predicted"  # a top-5 class of the previous photo
    pick = st.selectbox("Explain class", options, key="img_target",
                        format_func=lambda t: {"predicted": f"the predicted class "
                                               f"({class_label(top[0])})",
                                               "other": "another class (by index)…"}.get(
                                                   t, class_label(t) if isinstance(t, int)
                                                   else str(t)))
    if pick == "other":
        idx = int(st.number_input("Class index", 0, len(probs) - 1, top[0],
                                  key="img_target_index"))
        st.text(class_label(idx))
        target: str | int = idx
    else:
        target = pick

# -- rules -----------------------------------------------------------------------------------
st.subheader("Rules")
if st.session_state.get("img_rules_model") != m.key:  # a new model starts at its own preset
    st.session_state["img_rules_model"] = m.key
    st.session_state["img_rules_preset"] = DEFAULT_PRESET.get(m.arch, "epsilon")
choice = rule_controls(m.model, to_device(prep.x), m.key, ns="img_rules",
                       default_preset=DEFAULT_PRESET.get(m.arch, "epsilon"))
if choice is None:
    st.stop()

try:
    with st.spinner("Explaining…"):
        a = compute.cached_analysis(m.model, m.key, prep.x, choice, target, **BOUNDS)
except ValueError as e:
    st.error(f"These rules cannot be used on this model: {plain(e)}")
    st.stop()
what = html.escape(names[a.target]) if a.target is not None and a.target < len(names) \
    else f"class {a.target}"
rep = a.conservation
if not abs(rep.input_relevance) <= 100 * max(abs(rep.output_score), 1e-6):
    st.warning(f"These rules are numerically unstable on this model: the input relevance "
               f"sums to {rep.input_relevance:.3g} for an output score of "
               f"{rep.output_score:.3g}, so a few extreme pixels dominate the heatmap. Try "
               "'epsilon-plus-flat' or 'deep-taylor'.")

# -- heatmaps --------------------------------------------------------------------------------
st.subheader("LRP heatmap")
opacity = st.slider("Heatmap opacity over the photo", 0.0, 1.0, 0.7, 0.05, key="img_opacity")
h1, h2, h3 = st.columns(3)
h1.plotly_chart(viz.heatmap_figure(a.relevance, f"LRP ({choice.preset}): {what}",
                                   height=330), config=PLOT, key="img_lrp")
h2.plotly_chart(viz.heatmap_figure(a.relevance, "LRP over the photo", image=prep.shown
                                   if prep.shown.ndim == 2 else prep.shown.mean(-1),
                                   opacity=opacity, height=330), config=PLOT, key="img_overlay")
h3.plotly_chart(viz.heatmap_figure(a.gradient_x_input, f"Gradient×Input: {what}", height=330),
                config=PLOT, key="img_gxi")
st.caption(f"Red speaks for the class, blue against it. Output score {rep.output_score:.4g}, "
           f"relevance at the input {rep.input_relevance:.4g}. Gradient×Input (the "
           "gradient times the pixel) is shown for comparison: it is noisier on deep "
           "networks.")

# -- B-LRP -----------------------------------------------------------------------------------
st.subheader("B-LRP: how certain is the heatmap?")
if not m.has_dropout:
    st.info(f"{plain(m.label)} has no dropout layer: every network sampled from its "
            "MC-dropout posterior would be the same, so B-LRP would only repeat the heatmap "
            "above. B-LRP is offered for models with dropout, such as VGG-16 (dropout in its "
            "classifier).")
else:
    if m.arch == "efficientnet_lite0":
        st.caption("EfficientNet-Lite0's only dropout (p = 0.2) sits just before its last "
                   "layer: the sampled networks differ there only, so the percentiles vary "
                   "less than on VGG-16 (dropout twice in its classifier).")
    b1, b2 = st.columns([1, 2])
    n_samples = b1.slider("Samples", 2, 128, 16, key="img_blrp_samples",
                          help="Networks drawn from the MC-dropout posterior.")
    alphas = b2.multiselect("Percentiles α", ALPHAS, default=[5, 50, 95],
                            key="img_blrp_alphas")
    tm = report.explain_timing(m.model, m.key, tuple(prep.x.shape))
    st.caption(f"Estimated time: {report.duration_text(tm.estimate(n_samples))} on "
               f"{resources.device_label()} (one explanation takes {tm.single:.2f} s here; "
               f"samples run in batches, {tm.speedup:.1f}× faster each).")
    run_for = (m.key, photo.digest)  # a new model or photo waits for a new click
    if st.button("Run B-LRP", type="primary", key="img_blrp_run"):
        st.session_state["img_blrp_on"] = run_for
    if st.session_state.get("img_blrp_on") != run_for:
        st.caption("B-LRP explains many dropout networks and shows per-pixel percentiles of "
                   "their relevance (α = 5: what nearly all agree on; α = 95: what some use).")
    elif not alphas:
        st.info("Choose at least one α.")
    else:
        b = report.blrp_with_progress(m.model, m.key, prep.x, choice, n_samples,
                                      sorted(alphas), target, **BOUNDS)
        grey = prep.shown if prep.shown.ndim == 2 else prep.shown.mean(-1)
        st.plotly_chart(viz.panels_figure([a.relevance, *(b.percentiles[al] for al in
                                                          sorted(alphas))],
                                          ["standard LRP", *(f"α = {al}" for al in
                                                             sorted(alphas))],
                                          image=grey, height=260),
                        config=PLOT, key="img_blrp_panels")
        st.plotly_chart(viz.blrp_stats_figure(b.mean, b.std, b.agreement, height=260),
                        config=PLOT, key="img_blrp_stats")
        st.caption(f"{b.n_samples} samples, class {b.target}; sign agreement 1 = every sampled "
                   "network gives the pixel positive relevance, 0 = every one negative.")

# -- downloads -------------------------------------------------------------------------------
st.subheader("Downloads")
d = st.columns(3)
d[0].download_button("LRP heatmap (PNG)", partial(viz.heatmap_png, a.relevance, scale=2),
                     "lrp_heatmap.png", "image/png", on_click="ignore")
d[1].download_button("LRP relevance (.npy)", partial(viz.npy_bytes, a.relevance),
                     "lrp_relevance.npy", "application/octet-stream", on_click="ignore")
d[2].download_button("Gradient×Input (.npy)", partial(viz.npy_bytes, a.gradient_x_input),
                     "gradient_x_input.npy", "application/octet-stream", on_click="ignore")
