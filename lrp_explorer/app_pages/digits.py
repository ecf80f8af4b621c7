"""Digits: draw or pick a digit, choose rules per layer, see LRP, Gradient×Input, every
class, conservation and B-LRP."""

from __future__ import annotations

from functools import partial

import streamlit as st

from lrp_engine import viz
from lrp_engine.data import MNIST_HIGH, MNIST_LOW, mnist_to_tensor
from lrp_explorer.ui import compute, resources
from lrp_explorer.ui.digit_input import digit_input
from lrp_explorer.ui.rule_table import rule_controls
from lrp_explorer.ui.state import MODEL_ID, model_id, set_current_digit

ALPHAS = (5, 25, 50, 75, 95)
BOUNDS = {"low": (MNIST_LOW,), "high": (MNIST_HIGH,)}  # zB: pixel 0…1 in normalised units
PLOT = {"displayModeBar": False}

st.title("Digits")

# -- model ----------------------------------------------------------------------------------
st.session_state["digits_model"] = model_id()  # shared with the other pages
mid = st.sidebar.selectbox("Model", list(resources.MODEL_NAMES), key="digits_model",
                           format_func=resources.MODEL_NAMES.__getitem__,
                           on_change=lambda: st.session_state.update(
                               {MODEL_ID: st.session_state["digits_model"]}))
model, meta = resources.get_model(mid), resources.model_meta(mid)
st.sidebar.caption(f"{100 * meta['accuracy']:.1f} % on the 1 000 held-out digits · "
                   f"{resources.device_label()}")

col_in, col_out = st.columns([1, 2], gap="large")
with col_in:
    digit, why_not = digit_input()

# -- rules (drawn below the picture, read before it is computed) ------------------------------
st.subheader("Rules")
example = mnist_to_tensor(resources.heldout()[0][:1], size=meta["input_size"])
choice = rule_controls(model, example.to(resources.device()), mid)
targets = ["predicted", *range(len(meta["classes"])), "none"]
target = st.selectbox("Explain class", targets, key="digit_target",
                      format_func=lambda t: {"predicted": "the predicted class",
                                             "none": "no class (all-zero target)"}.get(t, str(t)),
                      help="Relevance for any class; 'no class' gives zero relevance.")

if digit is None:
    col_out.info(why_not or "Draw a digit.")
    st.stop()
set_current_digit(digit)
x = mnist_to_tensor(digit.image[None], size=meta["input_size"]).numpy()
with col_in:
    st.image(viz.image_png(x[0, 0], scale=4), caption=f"What the model sees: "
             f"{meta['input_size']}×{meta['input_size']}, normalised ({digit.source})")
if choice is None:
    st.stop()

a = compute.cached_analysis(model, mid, x, choice, target, **BOUNDS)
with col_out:
    m1, m2 = st.columns(2)
    m1.metric("Prediction", str(a.prediction),
              delta=None if digit.label is None else f"true class {digit.label}",
              delta_color="off")
    m2.metric("Confidence", f"{100 * a.probs[a.prediction]:.1f} %")
    st.subheader("LRP heatmap")
    overlay = st.toggle("Overlay on the digit", key="digit_overlay")
    what = "no class" if a.target is None else f"class {a.target}"
    h1, h2 = st.columns(2)
    h1.plotly_chart(viz.heatmap_figure(a.relevance, f"LRP ({choice.preset}) for {what}",
                                       image=x[0, 0] if overlay else None, height=320),
                    config=PLOT, key="lrp_heatmap")
    h2.plotly_chart(viz.heatmap_figure(a.gradient_x_input, f"Gradient×Input for {what}",
                                       image=x[0, 0] if overlay else None, height=320),
                    config=PLOT, key="gxi_heatmap")


def all_classes() -> None:
    maps = compute.class_maps(model, mid, x, choice, **BOUNDS)
    st.plotly_chart(viz.panels_figure(list(maps), [f"class {k}" for k in range(len(maps))],
                                      scale="shared", height=170),
                    config=PLOT, key="class_maps")
    st.caption("One colour scale for all ten maps: the predicted class usually carries the "
               "most positive relevance; other classes show what speaks against them.")


def conservation() -> None:
    rep = a.conservation
    st.plotly_chart(viz.conservation_figure(rep), config=PLOT, key="conservation")
    st.markdown(f"Output score **{rep.output_score:.4g}**, relevance at the input "
                f"**{rep.input_relevance:.4g}** (relative difference "
                f"{100 * rep.relative_error:.2f} %).")
    for line in rep.reasons():
        st.caption(line)


def probabilities() -> None:
    st.plotly_chart(viz.probability_figure(a.probs, meta["classes"], highlight=a.prediction),
                    config=PLOT, key="probs")


# only the open tab is computed and drawn: a rule change redraws three charts, not five.
# Probabilities open first: the prediction at a glance, and the cheapest view to redraw (all
# ten class maps cost a batched pass and ~90 ms of the browser's CPU per rerun)
views = {"Probabilities": probabilities, "All classes": all_classes,
         "Conservation": conservation}
for tab, draw in zip(st.tabs(list(views), key="digit_views", on_change="rerun"),
                     views.values(), strict=True):
    if tab.open:
        with tab:
            draw()

# -- B-LRP -----------------------------------------------------------------------------------
st.subheader("B-LRP: how certain is the heatmap?")
b1, b2, b3 = st.columns([1, 3, 1], vertical_alignment="bottom")
n_samples = b1.number_input("Samples", 1, 500, 100, key="blrp_samples",
                            help="Networks drawn from the MC-dropout posterior.")
alphas = [al for al, c in zip(ALPHAS, b2.columns(len(ALPHAS)), strict=True)
          if c.checkbox(f"α = {al}", value=True, key=f"blrp_alpha_{al}")]
# a switch, on until turned off: while on, every change of digit or rule recomputes B-LRP.
# The callbacks run before the script, so this run already draws the other button
if st.session_state.get("blrp_on"):
    b3.button("Turn B-LRP off", width="stretch", key="blrp_off",
              on_click=lambda: st.session_state.update(blrp_on=False))
else:
    b3.button("Run B-LRP", type="primary", width="stretch", key="blrp_run",
              on_click=lambda: st.session_state.update(blrp_on=True))
if not st.session_state.get("blrp_on"):
    st.caption("B-LRP explains many dropout networks at once and shows per-pixel percentiles "
               "of their relevance (α = 5: what nearly all agree on; α = 95: what some use).")
elif target == "none":
    st.info("B-LRP explains a class: choose the predicted class or a class above.")
elif not alphas:
    st.info("Tick at least one α.")
else:
    with st.spinner(f"Explaining {n_samples} sampled networks…"):
        b = compute.blrp_maps(model, mid, x, choice, int(n_samples), tuple(alphas),
                              target, **BOUNDS)
    if mid == "mlp":
        st.info("This MLP has no dropout layer: every sampled network is the same, so all "
                "percentiles equal standard LRP.")
    st.plotly_chart(viz.panels_figure([a.relevance, *(b.percentiles[al] for al in alphas)],
                                      ["standard LRP", *(f"α = {al}" for al in alphas)],
                                      image=x[0, 0], height=230),
                    config=PLOT, key="blrp_panels")
    st.plotly_chart(viz.blrp_stats_figure(b.mean, b.std, b.agreement), config=PLOT,
                    key="blrp_stats")
    st.caption(f"{b.n_samples} samples, class {b.target}; sign agreement 1 = every sampled "
               "network gives the pixel positive relevance, 0 = every one negative.")

# -- downloads (made when clicked, not on every rerun) -----------------------------------------
st.subheader("Downloads")
d = st.columns(4)
d[0].download_button("LRP heatmap (PNG)", partial(viz.heatmap_png, a.relevance),
                     "lrp_heatmap.png", "image/png", on_click="ignore")
d[1].download_button("LRP relevance (.npy)", partial(viz.npy_bytes, a.relevance),
                     "lrp_relevance.npy", "application/octet-stream", on_click="ignore")
d[2].download_button("Gradient×Input (.npy)", partial(viz.npy_bytes, a.gradient_x_input),
                     "gradient_x_input.npy", "application/octet-stream", on_click="ignore")
d[3].download_button("Input (PNG)", partial(viz.image_png, x[0, 0]), "input.png", "image/png",
                     on_click="ignore")
