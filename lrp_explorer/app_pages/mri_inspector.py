"""MRI inspector: a scan (a DICOM slice, series, multi-frame file or study .zip, a NIfTI
volume, a PNG/JPEG, or a synthetic demo slice or volume) and a classifier (the bundled 2-D or
3-D demo CNN, or your checkpoint) → the slice on screen with orientation markers, its heatmap,
relevance per slice over the volume, B-LRP α-maps and a certainty map, two rule settings
side by side, and a de-identified report. Not a medical device."""

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
from lrp_engine.mri_demo3d import HIGH_PCT, LOW_PCT
from lrp_engine.scans.volume import AXIS_NAMES, axial_stack_to_ras, convert, slice_array, stack
from lrp_explorer.ui import compute, report, resources, volume_run
from lrp_explorer.ui.model_setup import (
    card_input,
    choose_model_and_card,
    display_geometry,
    scan_pixels,
)
from lrp_explorer.ui.rule_table import rule_controls
from lrp_explorer.ui.scan_input import plain, scan_background, scan_model_input, to_device
from lrp_explorer.ui.scan_viewer import (
    CONVENTION_TEXT,
    mask_slice,
    orient_figure,
    scan_figure,
    scan_source,
    slice_controls,
    slice_view,
    window_controls,
)

PLOT = {"displayModeBar": False}
N_DEMO = 40  # demo held-out slices offered
ALPHAS = (5, 25, 50, 75, 95)
DEFAULT_PRESET = {"mri_demo": "epsilon-gamma-box", "mri_demo3d": "epsilon-gamma-box",
                  "vgg16": "vgg-gamma-blocks", "efficientnet_lite0": "epsilon-plus-flat"}
NOT_A_DEVICE = ("Research and teaching tool: not a medical device, not for diagnosis. A "
                "heatmap shows what this model used, not where a finding is.")
REPORT_KEY = "mri_report_png"  # the last report's PNG bytes (tests read them here)

st.title("MRI inspector")
banner = st.empty()  # the disclaimer: filled once the model and the scan are known
st.caption(":material/lock: Uploaded scans stay in this app's memory for your session: they "
           "are never written to disk and never sent anywhere.")

# -- model (sidebar) and scan ------------------------------------------------------------------
setup = choose_model_and_card(("mri_demo", "mri_demo3d", "checkpoint"), ns="mri",
                              default_arch="vgg16", scan=True)
m = None if setup is None else setup.model

col_in, col_out = st.columns([1, 2], gap="large")
with col_in:
    scan = scan_source(N_DEMO)
demo = (m is not None and m.key.startswith("mri_demo")) or (scan is not None
                                                            and scan.kind == "demo")
if demo:
    banner.warning(f"**{DISCLAIMER}** {NOT_A_DEVICE}", icon=":material/science:")
else:
    banner.warning(NOT_A_DEVICE, icon=":material/info:")
if scan is None or m is None:
    st.stop()

vol = scan.volume
with col_in:
    sl = slice_controls(scan)
    n_slices = vol.n_slices(sl.axis)
    centre, width = window_controls(scan)
    sv = slice_view(scan, sl)
    st.plotly_chart(scan_figure(medical.window(sv.array, centre, width), sv,
                                f"{sl.describe(n_slices)}"), config=PLOT, key="mri_scan")
    st.caption(plain(f"{scan.source}. {CONVENTION_TEXT[sl.convention].capitalize()}."
                     if vol.oriented else f"{scan.source}. Orientation unknown: no markers."))
    for note in vol.notes:
        st.caption(plain(note))
    if vol.meta:
        with st.expander("Scan details"):
            st.json({k: v for k, v in vol.meta.items() if v not in (None, "")})

# -- the model's input --------------------------------------------------------------------------
pre = setup.card
BOUNDS = {"low": pre.low, "high": pre.high}  # zB: the model-input range of a pixel
three_d = m.arch == "mri_demo3d"
if three_d or not vol.oriented:  # no orientation: every model reads the image as stored
    model_convention = sl.convention
elif m.key == "mri_demo":  # the 2-D demo CNN reads slices as it was trained
    model_convention = "neurological"
else:
    model_convention = st.sidebar.radio(
        "Slices the model was trained on", ("radiological", "neurological"),
        key="mri_model_convention", help="How your model's training slices were laid out: "
        "DICOM stores axial slices radiologically. The screen follows the switch under the "
        "scan; the model always gets its own layout.")


def model_slice(k: int) -> np.ndarray:
    """Slice ``k`` of the plane on screen, laid out as the model reads it."""
    return slice_array(vol.data, sl.axis, k, model_convention)


def model_input(k: int) -> np.ndarray:
    """The 2-D model's input [1, C, H, W] for slice ``k`` of the plane on screen."""
    if m.key == "mri_demo":
        return scan_model_input(model_slice(k), scan.kind, m.arch)
    return card_input(scan_pixels(model_slice(k), scan.kind), pre.to_json()).x


if three_d:
    from lrp_engine.mri_demo3d import volume_to_input

    axial = stack(vol, 2, "neurological")  # [Z, rows, cols]: how the 3-D model was trained
    x = np.ascontiguousarray(volume_to_input(axial).numpy(), dtype=np.float32)
    bg = medical.window(sv.array, centre, width)  # relevance is drawn on the scan's grid
elif m.key == "mri_demo":
    x = model_input(sl.index)
    bg = scan_background(model_slice(sl.index), pre.size[0], centre, width)
else:  # a checkpoint: exactly the card's tensor
    try:
        made = card_input(scan_pixels(model_slice(sl.index), scan.kind), pre.to_json())
    except CardError as e:
        st.error(f"{plain(scan.source)}: {plain(e)}")
        st.stop()
    x = made.x
    bg = display_geometry(pre, medical.window(model_slice(sl.index), centre, width))
    with col_in:
        st.image(made.shown, caption="What the model sees", width="stretch")
        st.caption(f"{made.caption}. {pre.describe()}.")
if not three_d:
    bg = convert(bg, sl.axis, model_convention, sl.convention)
names = m.class_names


def class_name(i: int | None) -> str:
    """The class name of output ``i`` (user text: escape before Markdown or plotly)."""
    return "no class" if i is None else names[i] if 0 <= i < len(names) else f"class {i}"


def on_scan_grid(r: np.ndarray, density: bool = True) -> np.ndarray:
    """The 3-D model's map [C, D, H, W] (channels summed, or averaged if not ``density``)
    → a RAS+ volume on the scan's grid: trilinear, and a relevance ``density`` scaled so
    that its sum is kept; sign agreement and std are resampled as they are."""
    rv = torch.from_numpy(np.asarray(r, dtype=np.float32))
    rv = (rv.sum(0) if density else rv.mean(0))[None, None]
    big = F.interpolate(rv, size=axial.shape, mode="trilinear", align_corners=False)[0, 0]
    if density:
        big = big * (rv.numel() / big.numel())
    return axial_stack_to_ras(big.numpy())


def on_screen(r: np.ndarray, density: bool = True) -> np.ndarray:
    """A map of the model's input ([C, H, W], or [C, D, H, W] for the 3-D model) → the
    slice on screen: float32 [rows, cols] as displayed."""
    if not three_d:
        flat = viz.as_map(r) if density else np.asarray(r, dtype=np.float32).mean(0)
        return convert(flat, sl.axis, model_convention, sl.convention)
    return slice_array(on_scan_grid(r, density), sl.axis, sl.index, sl.convention)


def mask_like(r: np.ndarray) -> torch.Tensor | None:
    """The demo's lesion mask on the slice at the displayed heatmap's size (None: no
    lesion / no mask)."""
    msk = mask_slice(scan, sl, sl.convention)
    if msk is None or not msk.any():
        return None
    if not three_d:  # the 2-D model's geometry: its input's size
        msk = convert(mask_slice(scan, sl, model_convention), sl.axis, model_convention,
                      sl.convention)
    t = torch.from_numpy(np.ascontiguousarray(msk))[None, None].float()
    if t.shape[-2:] != r.shape[-2:]:
        t = F.interpolate(t, size=r.shape[-2:], mode="nearest")
    return t[0, 0] > 0.5


def overlay_figure(r: np.ndarray, title: str, opacity: float, outline: bool) -> go.Figure:
    """The heatmap (display layout) over the windowed scan, with markers and the lesion
    outline when asked."""
    fig = viz.heatmap_figure(r, html.escape(title), image=bg, opacity=opacity, height=380)
    msk = mask_like(r) if outline else None
    if msk is not None:
        fig.add_trace(go.Contour(z=msk.float().numpy().tolist(), showscale=False,
                                 contours={"start": 0.5, "end": 0.5, "size": 1,
                                           "coloring": "none"},
                                 line={"color": "#00c000", "width": 2}, hoverinfo="skip",
                                 name="lesion outline"))
    square = three_d or m.key == "mri_demo" or pre.resize == "pad-square"
    return orient_figure(fig, r.shape[-2:], sv.markers, sv.aspect if square else 1.0)


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
    a = compute.cached_analysis(m.model, m.key, x, choice, target, **BOUNDS)
except ValueError as e:
    st.error(f"These rules cannot be used on this model: {plain(e)}")
    st.stop()
# the 3-D model's relevance on the scan's grid, once: the slice on screen and the strip
relevance_volume = on_scan_grid(a.relevance) if three_d else None
relevance = (slice_array(relevance_volume, sl.axis, sl.index, sl.convention) if three_d
             else on_screen(a.relevance))

with col_out:
    m1, m2 = st.columns([3, 1])
    m1.metric("Prediction", plain(class_name(a.prediction)),
              delta=None if scan.label is None else plain(f"true: {class_name(scan.label)}"),
              delta_color="off")
    m2.metric("Probability", f"{100 * a.probs[a.prediction]:.1f} %")
    st.caption("The 3-D model classifies the whole volume; the heatmap shows its relevance "
               "on the slice on screen." if three_d else
               f"The model classifies the slice on screen ({sl.describe(n_slices)}).")
    st.dataframe(pd.DataFrame({"class": [f"{i}: {class_name(i)}" for i in range(len(a.probs))],
                               "probability": a.probs.astype(float)}),
                 hide_index=True, width="stretch",
                 column_config={"probability": st.column_config.ProgressColumn(
                     "probability", format="percent", min_value=0.0, max_value=1.0)})
    opacity = st.slider("Heatmap opacity", 0.0, 1.0, 0.7, 0.05, key="mri_opacity")
    outline = scan.mask is not None and st.toggle(
        "Show the lesion outline (ground truth)", value=True, key="mri_outline",
        disabled=not scan.mask.any(), help="Synthetic demo scans only: the drawn lesion.")
    st.plotly_chart(overlay_figure(relevance, f"LRP ({choice.preset}) for "
                                   f"{class_name(a.target)}", opacity, outline),
                    config=PLOT, key="mri_overlay")
    st.caption("Red: relevance for the class, blue: against it (colour bar: ± the largest "
               "|relevance|). The scan is drawn with your display window.")
    loc = localisation(relevance)
    if scan.mask is not None and loc is None:
        st.caption("No lesion on this slice: nothing to localise.")
    elif loc is not None:
        l1, l2 = st.columns(2)
        l1.metric("Relevance mass accuracy", f"{100 * loc[0]:.1f} %",
                  help="Share of the positive relevance inside the lesion mask.")
        l2.metric("Pointing game", "hit" if loc[1] else "miss",
                  help="Whether the most relevant pixel lies inside the lesion.")
        area = float(mask_like(relevance).float().mean())
        st.caption(f"The lesion covers {100 * area:.1f} % of the slice: a random heatmap "
                   f"would score about {100 * area:.1f} % relevance mass accuracy.")

# -- relevance per slice over the volume --------------------------------------------------------
st.subheader("Relevance per slice")
strip = None
if three_d:
    strip = relevance_volume.sum(axis=tuple(i for i in range(3) if i != sl.axis)).astype(
        np.float64)
    volume_run.show_strip(strip, sl.axis, sl.index,
                          f"Σ R per {AXIS_NAMES[sl.axis]} slice (3-D relevance)")
    explained_slices = f"the whole volume ({n_slices} {AXIS_NAMES[sl.axis]} slices)"
elif n_slices == 1:
    st.caption("A single slice: nothing to scroll through.")
    explained_slices = "the slice on screen"
else:
    run_key = (m.key, scan.digest, sl.axis, model_convention, choice, target, pre.to_json())
    run = volume_run.slice_runs(m.model, m.key, n_slices, model_input, choice, target,
                                run_key, BOUNDS)
    if run is None:
        st.caption("Explain every slice of the plane on screen (or a range) to see which "
                   "slices hold the relevance for the class: a strip plot, one bar per slice.")
        explained_slices = "the slice on screen"
    else:
        strip = volume_run.scores_array(run, n_slices)
        volume_run.show_strip(strip, sl.axis, sl.index,
                              f"Σ R per {AXIS_NAMES[sl.axis]} slice, each slice's own "
                              f"{'prediction' if target == 'predicted' else 'class'}")
        explained_slices = (f"{AXIS_NAMES[sl.axis]} slices {run.first + 1}–{run.last + 1}"
                            f" ({len(run.scores)} explained)")

# -- two rule settings side by side ---------------------------------------------------------------
st.subheader("Compare two rule settings")
if st.toggle("Show a second rule setting beside the first", key="mri_compare"):
    with st.expander("Rules of setting B", expanded=True):
        choice_b = rule_controls(m.model, to_device(x), m.key, ns="mri_rules_b",
                                 default_preset="epsilon")
    try:
        a_b = None if choice_b is None else compute.cached_analysis(
            m.model, m.key, x, choice_b, target, **BOUNDS)
    except ValueError as e:
        st.error(f"Setting B cannot be used on this model: {plain(e)}")
        a_b = None
    if a_b is not None:
        for col, res, ch, tag in zip(st.columns(2), (a, a_b), (choice, choice_b), "AB",
                                     strict=True):
            r_ab = on_screen(res.relevance)
            col.plotly_chart(overlay_figure(r_ab, f"{tag}: {ch.preset}", opacity, outline),
                             config=PLOT, key=f"mri_compare_{tag}")
            loc_ab = localisation(r_ab)
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
    n_samples = int(b1.number_input("Samples", 2, 1000,
                                    100 if m.arch == "mri_demo" else 16,
                                    key="mri_blrp_samples",
                                    help="Networks drawn from the MC-dropout posterior."))
    alphas = sorted(b2.multiselect("Percentiles α", ALPHAS, default=[5, 50, 95],
                                   key="mri_blrp_alphas"))
    tm = report.explain_timing(m.model, m.key, tuple(x.shape))
    st.caption(f"Estimated time: {report.duration_text(tm.estimate(n_samples))} on "
               f"{resources.device_label()} (one explanation takes {tm.single:.2f} s here; "
               f"samples run in batches, {tm.speedup:.1f}× faster each). "
               + ("It explains the whole volume; the maps show the slice on screen."
                  if three_d else "It explains the slice on screen."))
    run_for = (m.key, scan.digest, sl.axis, sl.index)  # a new slice waits for a new click
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
        maps = [relevance, *(on_screen(blrp.percentiles[al]) for al in alphas)]
        st.plotly_chart(viz.panels_figure(maps, ["standard LRP", *(f"α = {al}" for al in alphas)],
                                          image=bg, image_title="scan", height=260),
                        config=PLOT, key="mri_blrp_panels")
        certainty = report.certainty_map(on_screen(blrp.agreement, density=False),
                                         on_screen(blrp.mean))
        std_map = on_screen(blrp.std, density=False)
        st.plotly_chart(viz.panels_figure([certainty, std_map],
                                          ["certainty: sign agreement", "std over samples"],
                                          image=bg, image_title="scan",
                                          ranges=[(0.0, 1.0), (0.0, float(std_map.max()) or 1.0)],
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
orientation = (CONVENTION_TEXT[sl.convention] + (
    "" if three_d or model_convention == sl.convention
    else f"; the model reads slices {model_convention}ly") if vol.oriented
    else "unknown (the file holds no orientation): no markers")
with_date = st.checkbox("Include the study date", key="mri_report_study_date", value=False,
                        disabled=scan.study_date is None,
                        help="Off by default: the report is de-identified.")
card_text = (f"input 1×{'×'.join(str(int(v)) for v in x.shape[2:])} volume; "
             f"axial slices, {LOW_PCT:g}–{HIGH_PCT:g} percentiles → 0…1" if three_d else
             f"input {pre.channels}×{pre.size[0]}×{pre.size[1]}; {pre.describe()}")
content = report.ScanReport(
    scan=bg, overlay=viz.overlay(bg, relevance, opacity),
    prediction=f"{class_name(a.prediction)} ({100 * a.probs[a.prediction]:.1f} %)",
    probabilities=probs_sorted, model=m.label, card=card_text,
    scan_source=scan.source,
    slices=f"{sl.describe(n_slices)} shown; explained: {explained_slices}",
    orientation=orientation, window=f"centre {centre:.4g}, width {width:.4g} (display only)",
    rules=rules_text, blrp=blrp_text,
    disclaimer=f"{DISCLAIMER} {NOT_A_DEVICE}" if demo else NOT_A_DEVICE,
    when=datetime.now(timezone.utc),
    certainty=None if blrp is None else certainty,
    markers=sv.markers or None, strip=strip,
    study_date=scan.study_date if with_date else None)
png, pdf = report.report_png(content), report.report_pdf(content)
st.session_state[REPORT_KEY] = png
st.session_state["mri_report_pdf"] = pdf
r1, r2 = st.columns(2)
r1.download_button("Report (PNG)", png, "lrp_report.png", "image/png", on_click="ignore",
                   key="mri_report_png_button")
r2.download_button("Report (PDF)", pdf, "lrp_report.pdf", "application/pdf",
                   on_click="ignore", key="mri_report_pdf_button")
st.caption("The report holds the slice as shown with its markers, the overlay, the "
           "prediction with every class's probability, the model card, the rules, the slices "
           "explained, the B-LRP settings and the date (UTC). It is de-identified: no patient "
           "name, ID, birth date, accession number or file name; the study date only if you "
           "tick it.")
