"""The Image explorer in a real browser:

- a deep link to ``/image_explorer`` explains the bundled cat with EfficientNet-Lite0;
- a photo uploaded through the file uploader gets its top-5 table and three plotly charts
  (LRP, LRP over the photo, Gradient×Input); another preset redraws the heatmap. The photo
  is the bundled cat under another name: the server has explained those pixels already, so
  this costs no EfficientNet run on a 2-core CI machine (the charts are gone before the
  upload and back after it, so they come from the upload);
- a user checkpoint (a LeNet state dict saved by the test) with a class-names file full of
  HTML: the names are shown as text, no element is made of them and no script runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.hostile_files import HTML_NAME, lenet_checkpoint

from .harness import (
    PLOTLY_CHART,
    REPO_ROOT,
    arm_rerun,
    assert_no_exception,
    chart_count,
    choose_radio,
    choose_select,
    error_texts,
    open_select,
    page_exists,
    select_value,
    shot,
    upload_file,
    wait_chart_changed,
    wait_idle,
    wait_rerun,
    widget,
)

pytestmark = pytest.mark.skipif(not page_exists("image_explorer.py"),
                                reason="the Image explorer page does not exist")

PHOTO_LABEL = "A photo (JPEG, PNG, WebP, GIF, BMP, TIFF)"
CHECKPOINT_LABEL = "Checkpoint (.pt, .pth, .safetensors)"
NAMES_LABEL = "Class names (optional text file, one per line)"
CAT = REPO_ROOT / "lrp_engine" / "assets" / "images" / "cat_chelsea.jpg"
#: EfficientNet-Lite0 on a 2-core CPU: the first explanation also loads the model
SLOW_MS = 300_000

#: per plotly chart: its trace count, its title as sent and its title as drawn (SVG text)
CHARTS_JS = """() => Array.from(document.querySelectorAll('[data-testid="stPlotlyChart"]'))
  .map(c => c.querySelector('.js-plotly-plot')).filter(gd => gd && gd.data)
  .map(gd => ({traces: gd.data.length,
               title: String(((gd.layout || {}).title || {}).text || ''),
               shown: (c => c ? c.textContent : '')(gd.querySelector('.gtitle'))}))"""


def open_image_explorer(page: Any, base_url: str) -> None:
    """Open the page by its deep link and wait for its first explanation (the cat)."""
    page.goto(f"{base_url}/image_explorer")
    widget(page, "stRadio", "Photo").wait_for(state="visible", timeout=SLOW_MS)
    page.locator(PLOTLY_CHART).first.wait_for(state="visible", timeout=SLOW_MS)
    wait_idle(page, SLOW_MS)
    assert_no_exception(page)


def charts(page: Any) -> list[dict]:
    """Per plotly chart: its trace count, title (as sent) and title as drawn."""
    return page.evaluate(CHARTS_JS)


def top5_classes(page: Any, until: Callable[[list[str]], bool] | None = None) -> list[str]:
    """The "class" column of the first table (the top-5), read from its grid's cells; with
    ``until``, read again (for up to 30 s) until ``until(classes)`` holds."""
    table = page.locator('[data-testid="stDataFrame"]').first
    table.wait_for(state="visible")
    cells = table.locator('[data-testid^="glide-cell-0-"]')
    # the grid paints on a canvas and fills its accessible cells a moment later; after a
    # rerun its cells may still hold the previous run's texts for a moment
    deadline = time.monotonic() + 30
    while True:
        texts = [str(cells.nth(i).text_content() or "").strip() for i in range(cells.count())]
        done = len(texts) >= 5 and (until is None or until(texts))
        if done or time.monotonic() >= deadline:
            return texts
        page.wait_for_timeout(200)


def class_options(page: Any) -> list[str]:
    """The texts of the "Explain class" options (the list is opened, read and closed).
    (The closed combobox's own input drops the markup from its value, a Streamlit quirk:
    the options show what the app sent.)"""
    open_select(page, "Explain class")
    opts = page.get_by_role("option")
    texts = [str(opts.nth(i).inner_text()).strip() for i in range(opts.count())]
    page.keyboard.press("Escape")
    return texts


def click_radio(page: Any, label: str, option: str) -> None:
    """Choose ``option`` of radio ``label`` and wait for the rerun."""
    arm_rerun(page)
    choose_radio(page, label, option)
    wait_rerun(page, timeout_ms=SLOW_MS)


def test_uploaded_photo_top5_heatmaps_and_preset_change(page: Any, base_url: str,
                                                         tmp_path: Path) -> None:
    open_image_explorer(page, base_url)
    click_radio(page, "Photo", "Upload")
    assert chart_count(page) == 0, "charts without a photo"
    upload_file(page, PHOTO_LABEL, "my_photo.jpg", CAT.read_bytes(), "image/jpeg",
                timeout_ms=SLOW_MS)
    page.locator(PLOTLY_CHART).nth(2).wait_for(state="visible", timeout=SLOW_MS)
    wait_idle(page, SLOW_MS)
    assert_no_exception(page)
    assert not error_texts(page), error_texts(page)
    shot(page, tmp_path, "image-explorer-upload")
    captions = page.locator('[data-testid="stImageCaption"]').all_inner_texts()
    assert "my_photo.jpg" in [c.strip() for c in captions], captions

    top = top5_classes(page)
    assert len(top) == 5 and "cat" in top[0], top
    drawn = charts(page)
    assert len(drawn) >= 3, drawn
    assert drawn[1]["traces"] == 2, "the overlay is not the photo plus the heatmap"
    assert "Gradient" in drawn[2]["title"]
    before = wait_chart_changed(page, 0, None)

    current = select_value(page, "Preset")
    target = "deep-taylor" if current != "deep-taylor" else "epsilon"
    arm_rerun(page)
    choose_select(page, "Preset", target)
    wait_rerun(page, timeout_ms=SLOW_MS)
    assert select_value(page, "Preset") == target
    wait_chart_changed(page, 0, before, timeout_ms=SLOW_MS)
    wait_idle(page, SLOW_MS)
    assert target in charts(page)[0]["title"]
    assert_no_exception(page)
    shot(page, tmp_path, "image-explorer-preset")


#: elements that the class names would create if they were rendered as HTML
INJECTED_JS = """() => ({
  bold: Array.from(document.querySelectorAll('b')).filter(b => b.textContent === 'x').length,
  scripts: Array.from(document.querySelectorAll('script'))
    .filter(s => (s.textContent || '').includes('alert(1)')).length})"""


def test_checkpoint_with_html_class_names_is_shown_as_text(page: Any, base_url: str,
                                                           tmp_path: Path) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    open_image_explorer(page, base_url)
    click_radio(page, "Model", "Your own checkpoint")
    arm_rerun(page)
    choose_select(page, "Architecture", "LeNet (MNIST) · lenet")
    wait_rerun(page)
    upload_file(page, CHECKPOINT_LABEL, "my_lenet.pt", lenet_checkpoint())
    names = "\n".join(f"{i} {HTML_NAME}" for i in range(10)).encode()
    upload_file(page, NAMES_LABEL, "names.txt", names, "text/plain")
    page.locator(PLOTLY_CHART).nth(2).wait_for(state="visible", timeout=SLOW_MS)
    wait_idle(page)
    shot(page, tmp_path, "image-explorer-checkpoint")
    assert_no_exception(page)
    assert not error_texts(page), error_texts(page)

    assert all(HTML_NAME in o for o in class_options(page)[:6])  # the literal text
    title = charts(page)[0]
    assert HTML_NAME in title["shown"], title  # drawn as text in the plotly title
    def named(classes: list[str]) -> bool:
        return all(HTML_NAME in c for c in classes)

    top = top5_classes(page, until=named)
    assert named(top), top
    assert page.evaluate(INJECTED_JS) == {"bold": 0, "scripts": 0}
    assert not dialogs, f"a dialog opened: {dialogs}"


CARD_LABEL = "Model card (.json, optional)"


def test_torchvision_checkpoint_with_model_card(page: Any, base_url: str,
                                                 tmp_path: Path) -> None:
    """A ResNet-18 with 3 classes (random weights) and its model card: the card sets the
    architecture, the class names and the preprocessing; the prediction is the model's own
    on ``card.to_tensor(cat)`` and the heatmap is drawn."""
    import io

    import torch
    from PIL import Image

    from lrp_engine.models import zoo
    from lrp_engine.models.card import CARD_PRESETS, ModelCard

    torch.manual_seed(0)
    model = zoo.build("resnet18", 3).eval()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    names = ("first kind", "second kind", "third kind")
    card = ModelCard(architecture="resnet18", num_classes=3, class_names=names,
                     preprocessing=CARD_PRESETS["ImageNet evaluation"])
    with torch.no_grad():
        expected = names[int(model(card.preprocessing.to_tensor(Image.open(CAT))).argmax())]

    open_image_explorer(page, base_url)
    click_radio(page, "Model", "Your own checkpoint")
    upload_file(page, CARD_LABEL, "resnet18_card.json", card.to_json().encode(),
                "application/json")
    assert select_value(page, "Architecture") == "ResNet-18 · resnet18"
    upload_file(page, CHECKPOINT_LABEL, "resnet18_3.pt", buf.getvalue(),
                timeout_ms=SLOW_MS)
    page.locator(PLOTLY_CHART).nth(2).wait_for(state="visible", timeout=SLOW_MS)
    wait_idle(page, SLOW_MS)
    assert_no_exception(page)
    assert not error_texts(page), error_texts(page)
    shot(page, tmp_path, "image-explorer-resnet18-card")

    table = page.locator('[data-testid="stDataFrame"]').first
    cells = table.locator('[data-testid^="glide-cell-0-"]')
    deadline = time.monotonic() + 30
    first = ""
    while time.monotonic() < deadline:
        first = str(cells.first.text_content() or "").strip() if cells.count() else ""
        if first.endswith(expected):
            break
        page.wait_for_timeout(200)
    assert first.endswith(expected), (first, expected)
    drawn = charts(page)
    assert drawn and drawn[0]["traces"] >= 1 and "LRP" in drawn[0]["title"], drawn
    assert expected in drawn[0]["shown"], drawn[0]
    captions = " ".join(page.locator('[data-testid="stCaptionContainer"]').all_inner_texts())
    assert "1×3×224×224" in captions, captions
