"""Hostile uploads in a real browser, one page session per page: a 0-byte file, a truncated
PNG, a text file called .png and a decompression bomb through the picture uploader, then a
malicious pickle through the checkpoint uploader. Each gives an error box naming the file
(never an exception box), nothing is drawn, the pickle never runs, and afterwards a valid
picture and a valid checkpoint work in the same session. The MRI inspector's scan
uploader takes several files (each chosen file joins those listed): the test removes the
listed ones before each upload, so that every bad file is read alone. The full corpus runs
in AppTest (tests/ui/test_hostile_inputs_scans.py); this checks the real uploader and
rendering path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.hostile_files import (
    bad_files,
    dicom_bytes,
    lenet_checkpoint,
    malicious_pickle,
    mr_slice,
)

from .harness import (
    PLOTLY_CHART,
    REPO_ROOT,
    arm_rerun,
    assert_no_exception,
    chart_count,
    choose_radio,
    choose_select,
    page_exists,
    remove_uploads,
    shot,
    upload_file,
    wait_error,
    wait_idle,
    wait_rerun,
    widget,
)

#: EfficientNet-Lite0 on a 2-core CPU: the first explanation also loads the model
SLOW_MS = 300_000
#: per page: its URL path, the picture source radio, the uploader's label, a valid picture,
#: whether the uploader takes several files
PAGES = {
    "image_explorer": ("Photo", "A photo (JPEG, PNG, WebP, GIF, BMP, TIFF)",
                       ("cat.jpg", (REPO_ROOT / "lrp_engine" / "assets" / "images"
                                     / "cat_chelsea.jpg").read_bytes()),
                       False),  # explained on opening already: no slow rerun
    "mri_inspector": ("Scan", "Scans: DICOM files or a study's .zip (a series), NIfTI (.nii, "
                              ".nii.gz), PNG/JPEG", ("scan.dcm", dicom_bytes(mr_slice())), True),
}
#: the bad pictures and the words their error must contain
BAD = {"empty.png": "empty", "truncated.png": "truncated", "letter.png": "text file",
       "bomb.png": "too large"}
CHECKPOINT_LABEL = "Checkpoint (.pt, .pth, .safetensors)"


def open_page(page: Any, base_url: str, path: str, radio: str) -> None:
    """Open ``path`` by its deep link and wait for its first run (an explanation)."""
    page.goto(f"{base_url}/{path}")
    widget(page, "stRadio", radio).wait_for(state="visible", timeout=SLOW_MS)
    page.locator(PLOTLY_CHART).first.wait_for(state="visible", timeout=SLOW_MS)
    wait_idle(page, SLOW_MS)
    assert_no_exception(page)


def pick(page: Any, kind: str, label: str, option: str) -> None:
    """Choose ``option`` in the radio (``kind`` "radio") or selectbox ``label``; wait."""
    arm_rerun(page)
    (choose_radio if kind == "radio" else choose_select)(page, label, option)
    wait_rerun(page, timeout_ms=SLOW_MS)


def refused(page: Any, name: str, words: str) -> None:
    """An error box that names ``name`` and says ``words``; no exception, no chart."""
    text = wait_error(page, name)
    assert words in text, f"{name}: {text!r} does not say {words!r}"
    assert "Traceback" not in text
    assert_no_exception(page)
    assert chart_count(page) == 0, f"a chart is drawn after {name}"


def works(page: Any) -> None:
    """A valid input: a chart, no error box, no exception."""
    page.locator(PLOTLY_CHART).first.wait_for(state="visible", timeout=SLOW_MS)
    wait_idle(page, SLOW_MS)
    assert_no_exception(page)
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0


@pytest.mark.parametrize("path", list(PAGES))
def test_bad_uploads_then_good_ones_in_one_session(page: Any, base_url: str, tmp_path: Path,
                                                   path: str) -> None:
    if not page_exists(f"{path}.py"):
        pytest.skip(f"app_pages/{path}.py does not exist")
    radio, label, (good_name, good), multiple = PAGES[path]
    open_page(page, base_url, path, radio)
    pick(page, "radio", radio, "Upload")
    corpus = bad_files()
    for name, words in BAD.items():
        if multiple:
            remove_uploads(page, label)
        upload_file(page, label, name, corpus[name], "image/png")
        refused(page, name, words)
    shot(page, tmp_path, f"{path}-bad-picture")
    if multiple:
        remove_uploads(page, label)
    upload_file(page, label, good_name, good, timeout_ms=SLOW_MS)
    works(page)

    marker = tmp_path / "pwned"
    pick(page, "radio", "Model", "Your own checkpoint")
    pick(page, "select", "Architecture", "LeNet (MNIST) · lenet")
    upload_file(page, CHECKPOINT_LABEL, "evil.pt", malicious_pickle(str(marker)))
    refused(page, "evil.pt", "pickled Python object")
    assert not marker.exists(), "the malicious pickle ran"
    shot(page, tmp_path, f"{path}-bad-checkpoint")
    upload_file(page, CHECKPOINT_LABEL, "good.pt", lenet_checkpoint())
    works(page)
    assert not marker.exists()
