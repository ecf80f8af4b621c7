"""Filters: what the first layer looks for, and how the current digit lights it up.

LeNet: the first convolution's 5×5 filters as a grid (red positive, blue negative weights),
and the activation maps (after ReLU) of the first or second convolution for a digit. The
MLP has no convolution: its first dense layer's weight vectors are shown as 28×28 images and
its hidden activations as bars. The digit is the one the Digits page last explained, or a
held-out digit.
"""

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch
from torch import nn

from lrp_engine import viz
from lrp_engine.data import mnist_to_tensor
from lrp_explorer.ui import state
from lrp_explorer.ui.resources import MODEL_NAMES, get_model, heldout, model_meta


def _layers(model: nn.Module) -> tuple[str, list[str]]:
    """``("conv", conv layer names)`` or, without convolutions, ``("dense", dense layer
    names but the output layer)``, in order, from the model's ``model`` Sequential."""
    seq = getattr(model, "model", model)
    convs = [n for n, m in seq.named_children() if isinstance(m, nn.Conv2d)]
    if convs:
        return "conv", convs
    return "dense", [n for n, m in seq.named_children() if isinstance(m, nn.Linear)][:-1]


@st.cache_data(max_entries=16, show_spinner=False)
def layer_weights(model_id: str, layer: str, _model: nn.Module) -> np.ndarray:
    """Weights of layer ``layer`` of the model ``model_id``: conv [out, in, k, k] or dense
    [out, in], float32 (a copy: the shared model is never touched)."""
    seq = getattr(_model, "model", _model)
    return getattr(seq, layer).weight.detach().cpu().numpy().copy()


@st.cache_data(max_entries=256, show_spinner=False)
def activations(model_id: str, layer: str, digit: bytes, _model: nn.Module
                ) -> tuple[np.ndarray, np.ndarray]:
    """The activations after the ReLU that follows ``layer`` for a 28×28 uint8 digit
    (``digit`` = its bytes): conv [C, h, w] or dense [units]; and the class probabilities
    [K]. The submodules are called directly, so no hook is left behind."""
    image = np.frombuffer(digit, dtype=np.uint8).reshape(28, 28)
    device = next(_model.parameters()).device
    x = mnist_to_tensor(image, size=int(model_meta(model_id)["input_size"])).to(device)
    seq = getattr(_model, "model", _model)
    children = list(seq.named_children())
    out = None
    with torch.no_grad():
        h = x
        for i, (name, module) in enumerate(children):
            h = module(h)
            if name == layer:
                nxt = children[i + 1][1] if i + 1 < len(children) else None
                out = nxt(h) if isinstance(nxt, nn.ReLU) else h
                break
        if out is None:
            raise ValueError(f"the model has no layer {layer!r}")
        probs = _model(x).softmax(1)[0]
    return out[0].cpu().numpy(), probs.cpu().numpy()


def bars_figure(values: np.ndarray, height: int = 260) -> go.Figure:
    """Hidden-unit activations as bars, one per unit (hover: unit and value)."""
    fig = go.Figure(go.Bar(x=list(range(len(values))), y=np.round(values, 5).tolist(),
                           marker_color="#1f77b4",
                           hovertemplate="unit %{x}: %{y:.4g}<extra></extra>"))
    fig.update_layout(height=height, xaxis_title="hidden unit", yaxis_title="activation",
                      bargap=0, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      plot_bgcolor="white")
    return fig


def _pick_model() -> None:
    st.session_state[state.MODEL_ID] = st.session_state["filters_model"]


st.title("Filters and activations")

st.session_state["filters_model"] = state.model_id()
st.selectbox("Model", list(MODEL_NAMES), format_func=MODEL_NAMES.get, key="filters_model",
             on_change=_pick_model)
model_id = state.model_id()
model = get_model(model_id)

# -- the digit -----------------------------------------------------------------------------
images, labels = heldout()
current = state.current_digit()
source = "heldout"
if current is not None:
    source = st.radio("Digit", ["current", "heldout"], horizontal=True, key="filters_source",
                      format_func={"current": f"From the Digits page ({current.source})",
                                   "heldout": "A held-out digit"}.get)
if source == "current":
    image, label, name = current.image, current.label, current.source
else:
    index = int(st.number_input("Held-out digit #", 0, len(images) - 1, 0,
                                key="filters_heldout"))
    image, label, name = images[index], int(labels[index]), f"held-out #{index}"
    if current is None:
        st.info(f"No digit has been explained on the Digits page yet, so this page shows "
                f"held-out digit #{index}. Pick another number above.")

kind, layer_names = _layers(model)
try:
    first = layer_weights(model_id, layer_names[0], model)
except (AttributeError, IndexError):
    st.error("This model has neither a convolution nor a hidden dense layer to show.")
    st.stop()

# -- first layer ---------------------------------------------------------------------------
if kind == "conv":
    st.subheader(f"First convolution: {first.shape[0]} filters of "
                 f"{first.shape[2]}×{first.shape[3]}")
    st.caption("Each tile is one filter's weights, red positive, blue negative, white zero, "
               "scaled by its own largest |weight|. Hover for the values.")
    st.plotly_chart(viz.tiles_figure(first, ncols=8, diverging=True, titles="filter"))
else:
    st.info("This model has no convolution. Its first dense layer instead has one weight "
            f"vector of {first.shape[1]} inputs per hidden unit; reshaped to 28×28, each "
            "shows the pattern that unit responds to.")
    count = int(st.number_input("Hidden units to show", 1, first.shape[0],
                                min(64, first.shape[0]), key="filters_units"))
    st.subheader(f"First dense layer: weights of units 0–{count - 1} of {first.shape[0]}")
    st.plotly_chart(viz.tiles_figure(first[:count].reshape(count, 28, 28), ncols=16,
                                     diverging=True, titles="unit"))

# -- activations -----------------------------------------------------------------------------
st.subheader(f"Activations for {name}")
layer = st.radio("Layer", layer_names, horizontal=True, key="filters_layer")
try:
    acts, probs = activations(model_id, layer, np.ascontiguousarray(image).tobytes(), model)
except (ValueError, RuntimeError) as e:
    st.error(f"The activations could not be computed: {e}")
    st.stop()

left, right = st.columns([1, 4])
left.image(viz.image_png(image, scale=4), caption=name)
pred = int(np.argmax(probs))
truth = "" if label is None else f" (true class {label})"
left.markdown(f"Predicted **{pred}** with {probs[pred]:.0%}{truth}.")
with right:
    if acts.ndim == 3:
        st.caption(f"{acts.shape[0]} maps of {acts.shape[1]}×{acts.shape[2]} after the ReLU, "
                   "each scaled by its own maximum (dark = zero).")
        st.plotly_chart(viz.tiles_figure(acts, ncols=8 if acts.shape[0] <= 24 else 12,
                                         diverging=False, titles="map"))
    else:
        st.caption(f"{acts.shape[0]} hidden units after the ReLU; "
                   f"{int((acts > 0).sum())} are active for this digit.")
        st.plotly_chart(bars_figure(acts))
