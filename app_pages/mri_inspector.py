"""MRI inspector: a scan (DICOM, NIfTI, PNG/JPEG, or a synthetic demo slice) and a classifier
(the bundled demo CNN or your checkpoint) → heatmap over the scan, B-LRP α-maps and a
certainty map, two rule settings side by side, and a report to download. Not a medical
device."""

from __future__ import annotations

import html
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch
import torch.nn.functional as F

from lrp_engine import medical, viz
from lrp_engine.localisation import pointing_game, relevance_mass_accuracy
from lrp_engine.models.card import CardError
from lrp_engine.mri_demo import DISCLAIMER
from ui import compute, report, resources
from ui.model_setup import card_input, choose_model_and_card, display_geometry, scan_pixels
from ui.rule_table import rule_controls
from ui.scan_input import (
    plain,
    scan_background,
    scan_input,
    scan_model_input,
    to_device,
    window_controls,
)

PLOT = {"displayModeBar": False}
N_DEMO = 40  # demo held-out slices offered
ALPHAS = (5, 25, 50, 75, 95)
DEFAULT_PRESET = {"mri_demo": "epsilon-gamma-box", "vgg16": "vgg-gamma-blocks",
                  "efficientnet_lite0": "epsilon-plus-flat"}
NOT_A_DEVICE = ("Research and teaching tool: not a medical device, not for diagnosis. A "
                "heatmap shows what this model used, not where a finding is.")
REPORT_KEY = "mri_report_png"  # the last report's PNG bytes (tests read them here)

st.title("MRI inspector")
banner = st.empty()  # the disclaimer: filled once the model and the scan are known
st.caption(":material/lock: Uploaded scans stay in this app's memory for your session: they "
           "are never written to disk and never sent anywhere.")

# -- model (sidebar) and scan ------------------------------------------------------------------
setup = choose_model_and_card(("mri_demo", "checkpoint"), ns="mri", default_arch="vgg16",
                              scan=True)
m = None if setup is None else setup.model
if m is not None:
    st.sidebar.caption(f"{plain(m.label)} · {resources.device_label()}")
    for note in m.notes:
        st.sidebar.caption(plain(note))

col_in, col_out = st.columns([1, 2], gap="large")
with col_in:
    scan = scan_input(N_DEMO)
demo = (m is not None and m.key == "mri_demo") or (scan is not None and scan.kind == "demo")
if demo:
    banner.warning(f"**{DISCLAIMER}** {NOT_A_DEVICE}", icon=":material/science:")
else:
    banner.warning(NOT_A_DEVICE, icon=":material/info:")
if scan is None or m is None:
    st.stop()

with col_in:
    centre, width = window_controls(scan)
    st.image(medical.window(scan.array, centre, width), caption=plain(scan.source),
             width="stretch")
    for note in scan.notes:
        st.caption(plain(note))
    if scan.meta:
        with st.expander("Scan details"):
            st.json({k: v for k, v in scan.meta.items() if v not in (None, "")})

pre = setup.card
BOUNDS = {"low": pre.low, "high": pre.high}  # zB: the model-input range of a pixel
if m.key == "mri_demo":  # the bundled demo CNN: its own input, as it was trained
    x = scan_model_input(scan, m.arch)
    bg = scan_background(scan, pre.size[0], centre, width)  # the windowed scan, resampled
else:  # a checkpoint: exactly the card's tensor
    try:
        made = card_input(scan_pixels(scan.array, scan.kind), pre.to_json())
    except CardError as e:
        st.error(f"{plain(scan.source)}: {plain(e)}")
        st.stop()
    x = made.x
    bg = display_geometry(pre, medical.window(scan.array, centre, width))
    with col_in:
        st.image(made.shown, caption="What the model sees", width="stretch")
        st.caption(f"{made.caption}.")
        st.caption(f"{pre.describe()}.")
names = m.class_names


def class_name(i: int | None) -> str:
    """The class name of output ``i`` (user text: escape before Markdown or plotly)."""
    return "no class" if i is None else names[i] if 0 <= i < len(names) else f"class {i}"


def mask_like(r: np.ndarray) -> torch.Tensor | None:
    """The demo slice's lesion mask at the heatmap's size (None: no lesion / no mask)."""
    if scan.mask is None or not scan.mask.any():
        return None
    msk = torch.from_numpy(scan.mask)[None, None].float()
    if msk.shape[-2:] != r.shape[-2:]:
        msk = F.interpolate(msk, size=r.shape[-2:], mode="nearest")
    return msk[0, 0] > 0.5


def overlay_figure(r: np.ndarray, title: str, opacity: float, outline: bool) -> go.Figure:
    """The heatmap over the windowed scan, with the lesion outline when asked."""
    fig = viz.heatmap_figure(r, html.escape(title), image=bg, opacity=opacity, height=380)
    msk = mask_like(r) if outline else None
    if msk is not None:
        fig.add_trace(go.Contour(z=msk.float().numpy().tolist(), showscale=False,
                                 contours={"start": 0.5, "end": 0.5, "size": 1,
                                           "coloring": "none"},
                                 line={"color": "#00c000", "width": 2}, hoverinfo="skip",
                                 name="lesion outline"))
    return fig


def localisation(r: np.ndarray) -> tuple[float, bool] | None:
    """(relevance mass accuracy, pointing-game hit) of ``r`` against the lesion mask."""
    msk = mask_like(r)
    if msk is None:
        return None
    rt = torch.from_numpy(np.asarray(r, dtype=np.float32))[None]
    rma = float(torch.nan_to_num(relevance_mass_accuracy(rt, msk[None]), nan=0.0)[0])
    return rma, bool(pointing_game(rt, msk[None])[0])


# -- rules and target ---------------------------------------------------------------------------
st.subheader("Rules")
if st.session_state.get("mri_rules_model") != m.key:  # a new model starts at its own preset
    st.session_state["mri_rules_model"] = m.key
    st.session_state["mri_rules_preset"] = DEFAULT_PRESET.get(m.arch, "epsilon")
choice = rule_controls(m.model, to_device(x), m.key, ns="mri_rules",
                       default_preset=DEFAULT_PRESET.get(m.arch, "epsilon"))
if st.session_state.get("mri_target", "predicted") not in ["predicted", *range(len(names))]:
    st.session_state["mri_target"] = "predicted"  # a class of the previous model
target = st.selectbox("Explain class", ["predicted", *range(len(names))], key="mri_target",
                      format_func=lambda t: "the predicted class" if t == "predicted"
                      else f"{t}: {class_name(t)}")
if choice is None:
    st.stop()
try:
    a = compute.analyse(m.model, m.key, x, choice, target, **BOUNDS)
except ValueError as e:
    st.error(f"These rules cannot be used on this model: {plain(e)}")
    st.stop()

with col_out:
    m1, m2 = st.columns([3, 1])
    m1.metric("Prediction", plain(class_name(a.prediction)),
              delta=None if scan.label is None else plain(f"true: {class_name(scan.label)}"),
              delta_color="off")
    m2.metric("Probability", f"{100 * a.probs[a.prediction]:.1f} %")
    st.dataframe(pd.DataFrame({"class": [f"{i}: {class_name(i)}" for i in range(len(a.probs))],
                               "probability": a.probs.astype(float)}),
                 hide_index=True, width="stretch",
                 column_config={"probability": st.column_config.ProgressColumn(
                     "probability", format="percent", min_value=0.0, max_value=1.0)})
    opacity = st.slider("Heatmap opacity", 0.0, 1.0, 0.7, 0.05, key="mri_opacity")
    outline = scan.mask is not None and st.toggle(
        "Show the lesion outline (ground truth)", value=True, key="mri_outline",
        disabled=not scan.mask.any(), help="Synthetic demo slices only: the drawn lesion.")
    st.plotly_chart(overlay_figure(a.relevance, f"LRP ({choice.preset}) for "
                                   f"{class_name(a.target)}", opacity, outline),
                    config=PLOT, key="mri_overlay")
    st.caption("Red: relevance for the class, blue: against it (colour bar: ± the largest "
               "|relevance|). The scan is drawn with your display window.")
    loc = localisation(a.relevance)
    if scan.mask is not None and loc is None:
        st.caption("No lesion on this slice: nothing to localise.")
    elif loc is not None:
        l1, l2 = st.columns(2)
        l1.metric("Relevance mass accuracy", f"{100 * loc[0]:.1f} %",
                  help="Share of the positive relevance inside the lesion mask.")
        l2.metric("Pointing game", "hit" if loc[1] else "miss",
                  help="Whether the most relevant pixel lies inside the lesion.")
        area = float(mask_like(a.relevance).float().mean())
        st.caption(f"The lesion covers {100 * area:.1f} % of the slice: a random heatmap "
                   f"would score about {100 * area:.1f} % relevance mass accuracy.")

# -- two rule settings side by side ---------------------------------------------------------------
st.subheader("Compare two rule settings")
if st.toggle("Show a second rule setting beside the first", key="mri_compare"):
    with st.expander("Rules of setting B", expanded=True):
        choice_b = rule_controls(m.model, to_device(x), m.key, ns="mri_rules_b",
                                 default_preset="epsilon")
    try:
        a_b = None if choice_b is None else compute.analyse(m.model, m.key, x, choice_b, target,
                                                            **BOUNDS)
    except ValueError as e:
        st.error(f"Setting B cannot be used on this model: {plain(e)}")
        a_b = None
    if a_b is not None:
        for col, res, ch, tag in zip(st.columns(2), (a, a_b), (choice, choice_b), "AB",
                                     strict=True):
            col.plotly_chart(overlay_figure(res.relevance, f"{tag}: {ch.preset}", opacity,
                                             outline),
                             config=PLOT, key=f"mri_compare_{tag}")
            loc_ab = localisation(res.relevance)
            if loc_ab is not None:
                col.caption(f"Relevance mass accuracy {100 * loc_ab[0]:.1f} %, pointing game "
                            f"{'hit' if loc_ab[1] else 'miss'}.")

# -- B-LRP ----------------------------------------------------------------------------------------
st.subheader("B-LRP: where is the explanation stable?")
blrp = None
if not m.has_dropout:
    st.info(f"{plain(m.label)} has no dropout layer: every sampled network would be the same, "
            "so B-LRP would only repeat the heatmap above.")
else:
    b1, b2 = st.columns([1, 2])
    n_samples = int(b1.number_input("Samples", 2, 1000, 100 if m.arch == "mri_demo" else 16,
                                    key="mri_blrp_samples",
                                    help="Networks drawn from the MC-dropout posterior."))
    alphas = sorted(b2.multiselect("Percentiles α", ALPHAS, default=[5, 50, 95],
                                   key="mri_blrp_alphas"))
    tm = report.explain_timing(m.model, m.key, tuple(x.shape))
    st.caption(f"Estimated time: {report.duration_text(tm.estimate(n_samples))} on "
               f"{resources.device_label()} (one explanation takes {tm.single:.2f} s here; "
               f"samples run in batches, {tm.speedup:.1f}× faster each).")
    run_for = (m.key, scan.digest, scan.source)  # a new model or scan waits for a new click
    if st.button("Run B-LRP", type="primary", key="mri_blrp_run"):
        st.session_state["mri_blrp_on"] = run_for
    if st.session_state.get("mri_blrp_on") != run_for:
        st.caption("B-LRP explains many networks drawn from the dropout posterior. The α-maps "
                   "are per-pixel percentiles of their relevance (α = 5: what nearly all "
                   "agree on); the certainty map shows how many agree on the sign.")
    elif not alphas:
        st.info("Choose at least one α.")
    else:
        blrp = report.blrp_with_progress(m.model, m.key, x, choice, n_samples, alphas, target,
                                         **BOUNDS)
        st.plotly_chart(viz.panels_figure([a.relevance, *(blrp.percentiles[al] for al in alphas)],
                                          ["standard LRP", *(f"α = {al}" for al in alphas)],
                                          image=bg, image_title="scan", height=260),
                        config=PLOT, key="mri_blrp_panels")
        certainty = report.certainty_map(blrp.agreement, blrp.mean)
        st.plotly_chart(viz.panels_figure([certainty, blrp.std],
                                          ["certainty: sign agreement", "std over samples"],
                                          image=bg, image_title="scan",
                                          ranges=[(0.0, 1.0), (0.0, float(blrp.std.max()) or 1.0)],
                                          colorscales=[viz.SEISMIC_COLORSCALE, "Greys"],
                                          height=300),
                        config=PLOT, key="mri_blrp_certainty")
        st.caption(f"{blrp.n_samples} samples. Certainty: dark red = every sampled network "
                   "finds that the pixel speaks for the class, dark blue = every one finds it "
                   "speaks against, white = they disagree (an unstable part of the "
                   "explanation) or the pixel has almost no relevance (< 1 % of the largest).")

# -- report ---------------------------------------------------------------------------------------
st.subheader("Report")
probs_sorted = sorted(((class_name(i), float(p)) for i, p in enumerate(a.probs)),
                      key=lambda t: -t[1])
rules_text = (f"preset {choice.preset}; max pooling: {choice.maxpool}; target: "
              f"{'predicted' if target == 'predicted' else class_name(int(target))}\n"
              + choice.describe())
blrp_text = ("not run" if blrp is None else
             f"{blrp.n_samples} MC-dropout samples, alphas "
             f"{', '.join(f'{al:g}' for al in alphas)}, explained class "
             f"{class_name(blrp.target)}; certainty = share of samples with positive relevance "
             "(white where the relevance is below 1 % of its largest magnitude)")
orientation, markers = report.scan_orientation(scan)
with_date = st.checkbox("Include the study date", key="mri_report_study_date", value=False)
content = report.ScanReport(
    scan=bg, overlay=viz.overlay(bg, a.relevance, opacity),
    prediction=f"{class_name(a.prediction)} ({100 * a.probs[a.prediction]:.1f} %)",
    probabilities=probs_sorted, model=m.label,
    card=f"input {pre.channels}×{pre.size[0]}×{pre.size[1]}; {pre.describe()}",
    scan_source=report.describe_scan(scan), slices=report.describe_slices(scan),
    orientation=orientation, window=f"centre {centre:.4g}, width {width:.4g} (display only)",
    rules=rules_text, blrp=blrp_text,
    disclaimer=f"{DISCLAIMER} {NOT_A_DEVICE}" if demo else NOT_A_DEVICE,
    when=datetime.now(timezone.utc),
    certainty=None if blrp is None else report.certainty_map(blrp.agreement, blrp.mean),
    markers=markers, study_date=getattr(scan, "study_date", None) if with_date else None)
png, pdf = report.report_png(content), report.report_pdf(content)
st.session_state[REPORT_KEY] = png
st.session_state["mri_report_pdf"] = pdf
r1, r2 = st.columns(2)
r1.download_button("Report (PNG)", png, "lrp_report.png", "image/png", on_click="ignore",
                   key="mri_report_png_button")
r2.download_button("Report (PDF)", pdf, "lrp_report.pdf", "application/pdf",
                   on_click="ignore", key="mri_report_pdf_button")
st.caption("The report holds the scan as shown, the overlay, the prediction with every "
           "class's probability, the model, the rule and B-LRP settings and the date (UTC). "
           "It is de-identified: no patient name, ID, birth date, accession number or file "
           "name.")
