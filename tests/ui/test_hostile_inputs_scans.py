"""Hostile and odd uploads on the Image explorer and the MRI inspector (AppTest): photos, scans
(DICOM, NIfTI, pictures), checkpoints and class-names files from ``tests/hostile_files.py``.

Each bad file gives one specific message that starts with the file's name (never an exception,
never a traceback) and nothing is drawn; the next valid file then works in the same session.
Odd but valid files are read, with a note where something was changed. Class names are user
text: they reach Markdown only escaped.
"""

from __future__ import annotations

import html as html_lib
import json
import re
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from lrp_explorer.ui.scan_input import (
    CHECKPOINT_UPLOAD,
    CLASS_NAMES_UPLOAD,
    IMAGE_UPLOAD,
    SCAN_UPLOAD,
    plain,
)
from tests.hostile_files import (
    HTML_NAME,
    bad_checkpoints,
    bad_files,
    bad_scans,
    class_name_files,
    dicom_bytes,
    lenet_checkpoint,
    mr_slice,
    odd_files,
    odd_scans,
)
from tests.plotly_arrays import values

ROOT = Path(__file__).resolve().parents[2]
PAGES = {"image_explorer": str(ROOT / "lrp_explorer" / "app_pages" / "image_explorer.py"),
         "mri_inspector": str(ROOT / "lrp_explorer" / "app_pages" / "mri_inspector.py")}
#: the chart that shows the explanation on each page (its element id holds this key)
HEATMAP = {"image_explorer": "img_lrp", "mri_inspector": "mri_overlay"}
#: the widget-key prefix of each page
NS = {"image_explorer": "img", "mri_inspector": "mri"}
#: a valid photo (the bundled coffee)
COFFEE = (ROOT / "lrp_engine" / "assets" / "images" / "coffee.jpg").read_bytes()
#: the trained LeNet: a digit model reads the corpus' digit bars quickly
LENET = (ROOT / "lrp_engine" / "assets" / "models" / "lenet_mnist.pt").read_bytes()

#: the words each bad picture's message must contain (photo and scan uploader alike)
PICTURE_WORDS = {"empty.png": "empty (0 bytes)", "truncated.png": "truncated",
                 "truncated.jpg": "truncated", "letter.png": "text file",
                 "random.png": "not an image", "bomb.png": "too large"}
SCAN_WORDS = {"no_pixels.dcm": "no pixel data", "jpeg_ls.dcm": "JPEG-LS",
              "private_syntax.dcm": "unknown to pydicom", "letter.dcm": "not a DICOM file",
              "random.nii": "not a NIfTI file", "damaged.nii.gz": "damaged",
              "truncated.nii": "could not be read"}
#: the note each odd scan must show (None: read as it is, nothing to say)
SCAN_NOTES = {"nan_inf.nii": "NaN or infinite", "four_d.nii.gz": "2 volumes",
              "flat_2d.nii": "single slice", "multiframe.dcm": "3 frames stacked",
              "monochrome1.dcm": "MONOCHROME1", "constant.dcm": None}
CHECKPOINT_WORDS = {"empty.pt": "the file is empty", "random.pt": "unknown kind",
                    "notes.pt": "looks like a text file",
                    "broken_zip.pt": "not a readable PyTorch checkpoint",
                    "whole_model.pt": "pickled Python object",
                    "evil_open.pt": "never unpickled", "evil_system.pt": "never unpickled",
                    "single_tensor.pt": "single tensor", "other_arch.pt": "missing key",
                    "wrong_shapes.pt": "wrong shape", "nan_weights.pt": "NaN or infinite",
                    "bad_header.safetensors": "not valid JSON",
                    "truncated.safetensors": "truncated",
                    "not_really.safetensors": "broken safetensors file"}
GOOD_CHECKPOINT = "good_lenet.pt"
NAMES_WORDS = {"latin1_bad.txt": "not UTF-8", "blank_bad.txt": "empty",
               "count_bad.txt": "2 class names", "huge_bad.txt": "at most 100000"}


# -- helpers -------------------------------------------------------------------------------

def _ok(at: AppTest) -> None:
    """No uncaught exception in the last run."""
    assert not at.exception, [e.message for e in at.exception]


def unescape(text: str) -> str:
    """A message as the user reads it: without :func:`ui.scan_input.plain`'s backslashes."""
    return re.sub(r"\\(.)", r"\1", text)


def _spec(at: AppTest, key: str) -> dict:
    """The plotly figure (as a dict) of the chart whose element id holds ``key``."""
    for chart in at.get("plotly_chart"):
        if chart.proto.id and key in chart.proto.id:
            return json.loads(chart.proto.spec)
    raise AssertionError(f"no plotly chart {key!r}")


def _relevance(at: AppTest, key: str) -> np.ndarray:
    """The relevance of chart ``key`` (its last heatmap trace): finite, not all zero."""
    heat = [d for d in _spec(at, key)["data"] if d["type"] == "heatmap"]
    z = values(heat[-1]["z"])
    assert np.isfinite(z).all() and np.abs(z).max() > 0
    return z


def _markdown_texts(at: AppTest) -> list[str]:
    """Everything the page rendered as Markdown: user text must arrive there escaped."""
    out = [e.value for kind in ("markdown", "caption", "error", "warning", "info", "success")
           for e in at.get(kind)]
    return out + [str(m.value) for m in at.metric] + [str(m.label) for m in at.metric]


def assert_refused(at: AppTest, name: str, words: str) -> None:
    """Exactly one error, starting with ``name`` and containing ``words``; no exception,
    no traceback, no chart."""
    _ok(at)
    errors = [unescape(e.value) for e in at.error]
    assert len(errors) == 1, errors
    assert errors[0].startswith(name), errors[0]
    assert words in errors[0], f"{name}: {errors[0]!r} does not say {words!r}"
    assert "Traceback" not in errors[0]
    assert not at.get("plotly_chart")


def _fresh(page: str, **state: object) -> AppTest:
    """``page`` as a new AppTest, with ``state`` in its session state before the first run."""
    at = AppTest.from_file(PAGES[page], default_timeout=180)
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    _ok(at)
    return at


def _put(at: AppTest, key: str, name: str, data: bytes) -> None:
    """Put ``data`` (called ``name``) in the uploader injected under ``key``, then run."""
    at.session_state[key] = data
    at.session_state[f"{key}_name"] = name
    at.run()


# -- the photo uploader (Image explorer) ------------------------------------------------------

@pytest.fixture(scope="module")
def photo_at() -> AppTest:
    """The Image explorer with its photo uploader and the bundled LeNet uploaded as a
    checkpoint: the photo path is the same for every model, and a 32×32 digit model explains
    in milliseconds where EfficientNet-Lite0 takes seconds (tests/ui/test_image_explorer_page
    uploads a photo to EfficientNet-Lite0)."""
    return _fresh("image_explorer", img_source="Upload", img_model="checkpoint",
                  img_ckpt_arch="lenet", **{CHECKPOINT_UPLOAD: LENET,
                                            f"{CHECKPOINT_UPLOAD}_name": "lenet_mnist.pt"})


def _photo_works(at: AppTest) -> None:
    """The photo's top-5 and its LeNet heatmap, no error."""
    _ok(at)
    assert not at.error, [e.value for e in at.error]
    assert len(at.dataframe[0].value) == 5  # the top-5
    assert _relevance(at, "img_lrp").shape == (32, 32)


@pytest.mark.parametrize("name", list(PICTURE_WORDS))
def test_bad_photo_is_refused_then_a_good_one_works(photo_at: AppTest, name: str) -> None:
    _put(photo_at, IMAGE_UPLOAD, name, bad_files()[name])
    assert_refused(photo_at, name, PICTURE_WORDS[name])
    _put(photo_at, IMAGE_UPLOAD, "coffee.jpg", COFFEE)
    _photo_works(photo_at)


@pytest.mark.parametrize("name", ["blank.png", *odd_files()])
def test_odd_photo_is_read(photo_at: AppTest, name: str) -> None:
    _put(photo_at, IMAGE_UPLOAD, name, {**bad_files(), **odd_files()}[name])
    _photo_works(photo_at)


# -- the scan uploader (MRI inspector) --------------------------------------------------------

#: a valid 16-bit DICOM: the good scan after a bad one
GOOD_DICOM = dicom_bytes(mr_slice(), RescaleSlope=2.0, RescaleIntercept=-1000.0)


@pytest.fixture(scope="module")
def scan_at() -> AppTest:
    """The MRI inspector with the demo CNN, its scan uploader chosen."""
    return _fresh("mri_inspector", mri_source="Upload")


def _good_scan_works(at: AppTest) -> None:
    _put(at, SCAN_UPLOAD, "good.dcm", GOOD_DICOM)
    _ok(at)
    assert not at.error, [e.value for e in at.error]
    assert _relevance(at, "mri_overlay").shape == (96, 96)


@pytest.mark.parametrize("name", [*PICTURE_WORDS, *SCAN_WORDS])
def test_bad_scan_is_refused_then_a_good_one_works(scan_at: AppTest, name: str) -> None:
    words = SCAN_WORDS.get(name) or PICTURE_WORDS[name]
    _put(scan_at, SCAN_UPLOAD, name, {**bad_files(), **bad_scans()}[name])
    assert_refused(scan_at, name, words)
    _good_scan_works(scan_at)


@pytest.mark.parametrize("name", list(SCAN_NOTES))
def test_odd_scan_is_read_with_a_note(scan_at: AppTest, name: str) -> None:
    _put(scan_at, SCAN_UPLOAD, name, odd_scans()[name])
    _ok(scan_at)
    assert not scan_at.error, [e.value for e in scan_at.error]
    assert _relevance(scan_at, "mri_overlay").shape == (96, 96)
    note = SCAN_NOTES[name]
    if note is not None:
        captions = [unescape(c.value) for c in scan_at.caption]
        assert any(note in c for c in captions), captions
    if name.endswith((".nii", ".nii.gz")):  # a volume: its slice selector (one slice: off)
        slider = scan_at.slider(key="mri_slice_2")
        assert slider.proto.disabled == (name == "flat_2d.nii")


@pytest.mark.parametrize("name", ["blank.png", *odd_files()])
def test_odd_picture_as_scan_is_read(scan_at: AppTest, name: str) -> None:
    _put(scan_at, SCAN_UPLOAD, name, {**bad_files(), **odd_files()}[name])
    _ok(scan_at)
    assert not scan_at.error, [e.value for e in scan_at.error]
    z = values(_spec(scan_at, "mri_overlay")["data"][-1]["z"])
    assert z.shape == (96, 96) and np.isfinite(z).all()  # a blank scan may explain as 0


def test_elongated_picture_as_scan_stays_small_in_memory(scan_at: AppTest) -> None:
    """A 10 000 × 40 picture was padded to a 10 000² square (400 MB, seconds per rerun; a
    25 MP 25 000 × 1 000 one: 2.5 GB) before it was resized to the model's input."""
    data = odd_files()["wide_10000x40.png"]
    tracemalloc.start()
    try:
        _put(scan_at, SCAN_UPLOAD, "wide_10000x40.png", data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    _ok(scan_at)
    assert not scan_at.error
    assert peak < 100e6, f"{peak / 1e6:.0f} MB (numpy) for a 0.4 MP picture"


# -- the checkpoint and class-names uploaders (both pages) ------------------------------------

@pytest.fixture(scope="module", params=list(PAGES))
def ckpt_at(request: pytest.FixtureRequest) -> Iterator[tuple[str, AppTest]]:
    """Each page with "Your own checkpoint" and the LeNet architecture chosen (the bundled
    photo / demo slice as the input)."""
    page = request.param
    ns = NS[page]
    yield page, _fresh(page, **{f"{ns}_model": "checkpoint", f"{ns}_ckpt_arch": "lenet"})


def _good_checkpoint_works(page: str, at: AppTest) -> None:
    _put(at, CHECKPOINT_UPLOAD, GOOD_CHECKPOINT, lenet_checkpoint())
    _ok(at)
    assert not at.error, [e.value for e in at.error]
    assert _relevance(at, HEATMAP[page]).shape == (32, 32)


@pytest.mark.parametrize("name", list(CHECKPOINT_WORDS))
def test_bad_checkpoint_is_refused_then_a_good_one_works(ckpt_at: tuple[str, AppTest],
                                                         name: str, tmp_path: Path) -> None:
    page, at = ckpt_at
    marker = tmp_path / "pwned"
    _put(at, CHECKPOINT_UPLOAD, name, bad_checkpoints(str(marker))[name])
    assert_refused(at, name, CHECKPOINT_WORDS[name])
    assert not marker.exists(), "a pickled payload ran"
    _put(at, CHECKPOINT_UPLOAD, name, bad_checkpoints(str(marker))[name])  # a rerun: the same
    assert_refused(at, name, CHECKPOINT_WORDS[name])
    _good_checkpoint_works(page, at)
    assert not marker.exists()


def _with_good_checkpoint(at: AppTest) -> None:
    """A valid LeNet checkpoint in the uploader (before the next run)."""
    at.session_state[CHECKPOINT_UPLOAD] = lenet_checkpoint()
    at.session_state[f"{CHECKPOINT_UPLOAD}_name"] = GOOD_CHECKPOINT


def _class_names_shown_as_text(page: str, at: AppTest, names: list[str]) -> None:
    """``names`` are used verbatim as table text and plotly titles (HTML-escaped there), and
    reach Markdown only escaped."""
    _ok(at)
    assert not at.error, [e.value for e in at.error]
    table = " ".join(at.dataframe[0].value["class"])
    shown = [n for n in names if n in table]
    assert shown, f"none of {names} in the class table: {table!r}"
    markup = [n for n in names if plain(n) != n]  # names that Markdown would change
    for text in _markdown_texts(at):
        for n in markup:
            assert n not in text, f"class name {n!r} reached Markdown unescaped: {text!r}"
    title = _spec(at, HEATMAP[page])["layout"]["title"]["text"]
    assert "<script>" not in title and "<b>" not in title, title


@pytest.mark.parametrize("name", list(NAMES_WORDS))
def test_bad_class_names_are_refused_then_good_ones_work(ckpt_at: tuple[str, AppTest],
                                                         name: str) -> None:
    page, at = ckpt_at
    _with_good_checkpoint(at)
    _put(at, CLASS_NAMES_UPLOAD, name, class_name_files()[name])
    # a count that does not fit the model is the checkpoint's error
    assert_refused(at, GOOD_CHECKPOINT if name == "count_bad.txt" else name, NAMES_WORDS[name])
    html = class_name_files()["html.txt"]
    _put(at, CLASS_NAMES_UPLOAD, "html.txt", html)
    _class_names_shown_as_text(page, at, html.decode().splitlines())
    title = _spec(at, HEATMAP[page])["layout"]["title"]["text"]
    assert html_lib.escape(HTML_NAME) in title, title  # drawn as the literal text


def test_markdown_class_names_are_shown_as_text(ckpt_at: tuple[str, AppTest]) -> None:
    page, at = ckpt_at
    _with_good_checkpoint(at)
    data = class_name_files()["markdown.txt"]
    _put(at, CLASS_NAMES_UPLOAD, "markdown.txt", data)
    _class_names_shown_as_text(page, at, data.decode().splitlines())
    at.session_state[CLASS_NAMES_UPLOAD] = None  # no names file: the default names again
    at.run()
    _ok(at)
    assert not at.error
