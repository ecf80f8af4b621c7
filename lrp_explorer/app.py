"""LRP Explorer: the home page and the navigation between the pages in ``app_pages/``."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent
# `streamlit run lrp_explorer/app.py` puts this folder on sys.path, not the one holding the
# package: the pages import `lrp_explorer.ui` from there (installed, it is site-packages)
if str(ROOT.parent) not in sys.path:
    sys.path.insert(0, str(ROOT.parent))

#: (file in app_pages/, title, icon, what it does): the navigation and the home page's table
PAGES = (
    ("digits.py", "Digits", ":material/draw:",
     "Draw a digit (or pick one of 1 000 held-out MNIST digits), choose LRP rules per layer "
     "and see the heatmap, Gradient×Input, all ten classes, conservation and B-LRP."),
    ("pixel_flipping.py", "Pixel flipping", ":material/query_stats:",
     "Which explanation is most faithful? Flip the most relevant pixels first and watch the "
     "score fall, live, for LRP, B-LRP, Gradient×Input and a random order."),
    ("results.py", "Results", ":material/table_chart:",
     "Read a folder written by the batch command (on this machine or on Ray): mean curves, "
     "the summary table, and every item sorted by a metric, worst explained first, with "
     "its maps."),
    ("filters.py", "Filters", ":material/grid_view:",
     "The first convolution's filters and the activation maps of the current digit."),
    ("image_explorer.py", "Image explorer", ":material/image:",
     "Explain a photo with the bundled ImageNet EfficientNet-Lite0, VGG-16 or your own "
     "checkpoint."),
    ("mri_inspector.py", "MRI inspector", ":material/neurology:",
     "Load a scan (DICOM, NIfTI, PNG) and a classifier checkpoint; heatmap, certainty map and "
     "a report."),
)


#: file → st.Page of the pages found at start-up (the home page links to these)
_NAV: dict[str, st.Page] = {}


def home() -> None:
    """What LRP and B-LRP are, what each page does, which model and device are in use."""
    from lrp_explorer.ui import resources
    from lrp_explorer.ui.home import teaser

    st.title("LRP Explorer")
    st.markdown(
        "**Layer-wise Relevance Propagation (LRP**, Bach et al. 2015) explains one decision "
        "of a neural network: it takes the score of a class and passes it back through the "
        "network, layer by layer, to the input pixels. Each layer shares out what it received "
        "in proportion to how much each input contributed, following a *rule* (LRP-0, ε, γ, "
        "αβ, zB, …). The result is a heatmap: **red** pixels spoke for the class, **blue** ones "
        "against it.\n\n"
        "**Bayesian LRP (B-LRP**, Bykov et al. 2022) asks how certain that picture is. A "
        "network trained with dropout is a sample from a posterior; B-LRP explains many "
        "sampled networks and shows, per pixel, percentiles of the relevance: the **5th "
        "percentile** keeps the relevance nearly every network agrees on, the **95th** shows "
        "what at least some network uses.")
    teaser()
    st.subheader("Pages")
    for file, title, icon, what in PAGES:
        if file in _NAV:
            st.page_link(_NAV[file], label=f"**{title}** — {what}", icon=icon)
    meta = resources.model_meta("lenet")
    st.caption(f"Model: {resources.MODEL_NAMES['lenet']}, trained on the bundled MNIST digits "
               f"({100 * meta['accuracy']:.1f} % on 1 000 held-out digits). "
               f"Device: {resources.device_label()}. Everything runs on this machine; nothing "
               "you draw or upload leaves it or is written to disk.")


def main() -> None:
    st.set_page_config(page_title="LRP Explorer", page_icon=":material/blur_on:",
                       layout="wide")
    _NAV.clear()
    _NAV.update({file: st.Page(f"app_pages/{file}", title=title, icon=icon)
                 for file, title, icon, _ in PAGES if (ROOT / "app_pages" / file).exists()})
    home_page = st.Page(home, title="Home", icon=":material/home:", default=True)
    st.navigation([home_page, *_NAV.values()]).run()


main()
