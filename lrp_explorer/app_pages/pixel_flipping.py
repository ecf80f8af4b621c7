"""Pixel flipping: how fast does the true class's score fall when the most relevant pixels go?

Each method's relevance orders the pixels; they are replaced by the fill, a few per step,
and the model's score of the true class is recorded. A faithful explanation makes the score
fall sooner than a random order (lower AUC). The work is done by :mod:`ui.flipping`.
"""

import streamlit as st

from lrp_engine import has_dropout
from lrp_engine.evaluation import FILLS, SCORES
from lrp_explorer.ui import flipping, state
from lrp_explorer.ui.resources import MODEL_NAMES, get_model, heldout, model_meta


def _pick_model() -> None:
    st.session_state[state.MODEL_ID] = st.session_state["pf_model"]


st.title("Pixel flipping")
st.markdown(
    "Each method ranks the pixels of a held-out digit by relevance. The most relevant are "
    "replaced first, a few per step, and the model's score of the true class is recorded. "
    "**The faster the curve falls, the more faithful the explanation**; a random order is the "
    "baseline (pixel flipping and region perturbation, Samek et al. 2017).")

st.session_state["pf_model"] = state.model_id()
st.selectbox("Model", list(MODEL_NAMES), format_func=MODEL_NAMES.get, key="pf_model",
             on_change=_pick_model)
model_id = state.model_id()

left, right = st.columns([3, 2])
methods = left.multiselect("Methods", list(flipping.METHOD_NAMES),
                           default=list(flipping.METHOD_NAMES),
                           format_func=flipping.METHOD_NAMES.get, key="pf_methods")
alphas = right.multiselect("B-LRP percentiles α", flipping.ALPHA_OPTIONS,
                           default=flipping.DEFAULT_ALPHAS, key="pf_alphas",
                           disabled="blrp" not in methods,
                           help="α = 5: relevance nearly all posterior samples agree on; "
                                "α = 95: relevance some sample gives.")
c1, c2, c3, c4 = st.columns(4)
n_images = c1.number_input("Held-out images", 1, len(heldout()[0]), 100, key="pf_images")
n_samples = c2.number_input("B-LRP samples", 1, 100, 32, key="pf_samples",
                            disabled="blrp" not in methods)
steps = c3.number_input("Steps", 2, 1024, 64, key="pf_steps",
                        help="Evaluations per curve, the first one unperturbed.")
pixels_per_step = c4.number_input("Pixels per step", 1, 1024, 4, key="pf_pps")
c5, c6, c7 = st.columns(3)
fill = c5.selectbox("Fill", FILLS, key="pf_fill",
                    help="uniform: random grey values; zero: black; mean: the image's mean; "
                         "blur: a blurred copy of the image.")
score = c6.selectbox("Score", SCORES, key="pf_score",
                     format_func={"logit": "logit", "softmax": "probability"}.get)
seed = c7.number_input("Seed", 0, 2**31 - 1, 0, key="pf_seed")

side = model_meta(model_id)["input_size"]
flipped = (int(steps) - 1) * int(pixels_per_step)
st.caption(f"The model sees {side}×{side} = {side * side} pixels; {int(steps) - 1} steps of "
           f"{int(pixels_per_step)} flip {flipped} of them ({100 * flipped / side**2:.1f} %).")
if "blrp" in methods and not has_dropout(get_model(model_id)):
    st.info("This model has no dropout, so all B-LRP posterior samples are the same network: "
            "every α-map equals standard LRP.")

settings = flipping.FlipSettings(
    model_id=model_id, methods=tuple(m for m in flipping.METHOD_NAMES if m in methods),
    alphas=tuple(sorted(alphas)), n_images=int(n_images), n_samples=int(n_samples),
    steps=int(steps), pixels_per_step=int(pixels_per_step), fill=fill, score=score,
    seed=int(seed))

b1, b2, _ = st.columns([1, 1, 4])
run = b1.button("Run", type="primary", key="pf_run")
stop = b2.button("Stop", key="pf_stop")
flipping.show(settings, run=run, stop=stop)
