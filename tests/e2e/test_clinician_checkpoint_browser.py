"""The clinician's case on the MRI inspector, in a real browser.

A fine-tuning notebook's wrapper (``CNNModel`` holding ``self.vgg16`` with
``classifier[6] = nn.Linear(4096, 4)``, so every key starts with ``vgg16.``), random
weights, saved as a float16 ``.safetensors`` state dict (~265 MB: half of float32; the
loader converts it to float32 and says so), plus a model card JSON (architecture vgg16,
four class names, the card "resize to a square, no normalisation" at 255×255). Both go
through the sidebar's uploaders, a grey PNG slice through the scan uploader. The page must
predict what the model itself predicts on ``Resize((255, 255)) + ToTensor()`` of that PNG
(as the app reads pictures: grey, then three equal channels), print the tensor's shape
1×3×255×255 and draw the heatmap.

The files are written once per module (``tmp_path_factory``); the checkpoint is handed to
Chromium by its path, so Playwright does not copy 265 MB through its pipe. The phases'
times (upload, checkpoint read, explanation) are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from lrp_engine.models.card import CARD_PRESETS, ModelCard
from lrp_engine.torchvision_compat import import_torchvision
from tests.clinician import CNNModel, scan_png

from .harness import (
    PLOTLY_CHART,
    arm_rerun,
    assert_no_exception,
    choose_radio,
    error_texts,
    metric_value,
    page_exists,
    shot,
    upload_file,
    wait_idle,
    wait_rerun,
    widget,
)

pytestmark = pytest.mark.skipif(not page_exists("mri_inspector.py"),
                                reason="the MRI inspector page does not exist")

SCAN_LABEL = "Scans: DICOM files or a study's .zip (a series), NIfTI (.nii, .nii.gz), PNG/JPEG"
CHECKPOINT_LABEL = "Checkpoint (.pt, .pth, .safetensors)"
CARD_LABEL = "Model card (.json, optional)"
NAMES = ("glioma", "meningioma", "no tumour", "pituitary")
#: VGG-16 on a loaded 2-core CPU: reading 265 MB, building the model, then LRP at 255×255
SLOW_MS = 400_000

#: the page's charts: the scan view first, then the overlay (the heatmap over the scan)
SCAN, OVERLAY = 0, 1
#: the trace types of the idx-th plotly chart (null when there is none)
TRACES_JS = """(idx) => {
  const c = document.querySelectorAll('[data-testid="stPlotlyChart"]')[idx];
  const gd = c && c.querySelector('.js-plotly-plot');
  return gd && gd.data ? gd.data.map(t => t.type) : null;
}"""


@pytest.fixture(scope="module")
def clinician_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The float16 safetensors checkpoint, the model card JSON, the PNG slice, and the class
    the model (its float16 weights, as float32) predicts on the card's tensor of the PNG."""
    from safetensors.torch import save_file

    tv = import_torchvision()
    out = tmp_path_factory.mktemp("clinician")
    torch.manual_seed(3)
    model = CNNModel().eval()
    half = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    ckpt = out / "brain_tumour_vgg16.safetensors"
    save_file(half, str(ckpt))
    model.load_state_dict({k: v.float() for k, v in half.items()})  # what the app will load

    pre = CARD_PRESETS["resize to a square, no normalisation"]
    assert pre.size == (255, 255) and pre.channels == 3
    card = ModelCard(architecture="vgg16", num_classes=4, class_names=NAMES, preprocessing=pre,
                     provenance="random weights (browser test)")
    card_path = out / "brain_tumour_vgg16_card.json"
    card_path.write_text(card.to_json())

    png = scan_png()
    t = tv.transforms.Compose([tv.transforms.Resize((255, 255)), tv.transforms.ToTensor()])
    x = t(Image.open(io.BytesIO(png)).convert("L").convert("RGB"))[None]
    assert tuple(x.shape) == (1, 3, 255, 255)
    with torch.no_grad():
        probs = torch.softmax(model(x), 1)[0]
    top2 = probs.topk(2).values
    assert float(top2[0] - top2[1]) > 1e-4, f"no clear predicted class: {probs.tolist()}"
    return {"ckpt": ckpt, "card": card_path, "png": png,
            "expected": NAMES[int(probs.argmax())], "probs": probs.numpy()}


def _click_radio(page: Any, label: str, option: str) -> None:
    arm_rerun(page)
    choose_radio(page, label, option)
    wait_rerun(page, timeout_ms=SLOW_MS)


def test_clinician_vgg16_safetensors_with_card(page: Any, base_url: str, tmp_path: Path,
                                               clinician_files: dict[str, Any]) -> None:
    files = clinician_files
    t_start = time.monotonic()
    page.goto(f"{base_url}/mri_inspector")
    widget(page, "stRadio", "Scan").wait_for(state="visible", timeout=120_000)
    page.locator(PLOTLY_CHART).first.wait_for(state="visible", timeout=120_000)
    wait_idle(page, 120_000)
    assert_no_exception(page)

    # the scan first (the demo CNN explains it quickly), so that the VGG-16 runs only once
    _click_radio(page, "Scan", "Upload")
    upload_file(page, SCAN_LABEL, "slice.png", files["png"], "image/png")
    _click_radio(page, "Model", "Your own checkpoint")
    upload_file(page, CARD_LABEL, files["card"].name, files["card"].read_bytes(),
                "application/json")
    assert not error_texts(page), error_texts(page)
    assert page.locator(PLOTLY_CHART).count() == 0, "a heatmap before the checkpoint"
    t_ready = time.monotonic()

    # the checkpoint by its path: Chromium reads the file itself
    box = widget(page, "stFileUploader", CHECKPOINT_LABEL)
    arm_rerun(page)
    box.locator('input[type="file"]').set_input_files(str(files["ckpt"]))
    t_chosen = time.monotonic()
    page.wait_for_function("() => window.__lrpRan === true", timeout=SLOW_MS, polling=100)
    t_uploaded = time.monotonic()  # the file is on the server: its script run started
    tensor_caption = page.locator('[data-testid="stCaptionContainer"]').filter(
        has_text="The tensor the model sees")
    tensor_caption.first.wait_for(state="visible", timeout=SLOW_MS)
    t_loaded = time.monotonic()  # checkpoint read, model built, the card's tensor made
    page.locator(PLOTLY_CHART).nth(OVERLAY).wait_for(state="visible", timeout=SLOW_MS)
    wait_idle(page, SLOW_MS)
    t_done = time.monotonic()
    print(f"\nclinician case: page + scan + card {t_ready - t_start:.1f} s; checkpoint "
          f"upload {t_uploaded - t_chosen:.1f} s, read + model {t_loaded - t_uploaded:.1f} s,"
          f" explanation + page {t_done - t_loaded:.1f} s")

    assert_no_exception(page)
    assert not error_texts(page), error_texts(page)
    shot(page, tmp_path, "mri-clinician-vgg16")

    assert metric_value(page, "Prediction") == files["expected"], files["probs"]
    captions = " ".join(page.locator('[data-testid="stCaptionContainer"]').all_inner_texts())
    assert "1×3×255×255" in captions, captions
    sidebar = " ".join(page.locator('[data-testid="stSidebar"]').all_inner_texts())
    assert "float16" in sidebar and "float32" in sidebar, sidebar  # the loader's note
    assert "vgg16." in sidebar, sidebar  # the removed key prefix
    assert "model card from brain_tumour_vgg16_card.json" in sidebar, sidebar
    assert page.evaluate(TRACES_JS, SCAN) == ["image"], page.evaluate(TRACES_JS, SCAN)
    traces = page.evaluate(TRACES_JS, OVERLAY)
    assert traces is not None and traces[:2] == ["heatmap", "heatmap"], traces
    title = str(page.locator(PLOTLY_CHART).nth(OVERLAY).locator(".gtitle").text_content()
                or "")
    assert files["expected"] in title, title
