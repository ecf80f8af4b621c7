"""What the Image explorer and the MRI inspector give back: predictions, B-LRP with a
progress bar and a time estimate, and the downloadable report.

:func:`report_png` / :func:`report_pdf` turn a :class:`ScanReport` into the de-identified
report (numpy, PIL and fpdf2 only; no Streamlit runtime): scan, overlay and optional
certainty map side by side (with orientation markers and a per-slice relevance strip when
given) and every text field; the PDF carries the text as a real, extractable text layer.
Text is set in DejaVu Sans when the system has it; otherwise in PIL's bundled font or PDF
Helvetica, after spelling Greek letters and arrows out in ASCII (those have no glyphs for
them).
"""

from __future__ import annotations

import io
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import numpy as np
import streamlit as st
import torch
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo
from torch import nn

import lrp_engine as le
from lrp_engine import viz

from .compute import BLRPMaps, TargetKey, blrp_maps, model_device, model_input
from .rule_table import RuleChoice

# -- predictions and timing ------------------------------------------------------------------

@st.cache_data(max_entries=64, show_spinner=False)
def predict(_model: nn.Module, model_key: str, x: np.ndarray) -> np.ndarray:
    """Softmax probabilities [K] of ``x`` [1, C, H, W] (one forward pass)."""
    with torch.no_grad():
        logits = _model(model_input(_model, x))
    return torch.softmax(logits.float(), 1)[0].cpu().numpy()


def top_k(probs: np.ndarray, k: int = 5) -> list[int]:
    """Indices of the ``k`` most probable classes, most probable first."""
    k = min(k, len(probs))
    return [int(i) for i in np.argsort(-probs, kind="stable")[:k]]


@dataclass(frozen=True)
class Timing:
    """Measured LRP times here: ``single`` seconds for one input, ``batched`` seconds for a
    batch of ``batch`` copies (B-LRP explains its samples in such batches)."""

    single: float
    batched: float
    batch: int

    @property
    def speedup(self) -> float:
        """How much faster per input a batch is than one by one (1 … ``batch``: a larger
        measured value is noise)."""
        return min(float(self.batch), max(1.0, self.batch * self.single / max(self.batched,
                                                                                 1e-9)))

    def estimate(self, n_samples: int) -> float:
        """Expected B-LRP seconds for ``n_samples``: one explanation's time × samples /
        the batch speedup."""
        return self.single * n_samples / min(self.speedup, max(n_samples, 1))


@st.cache_data(max_entries=16, show_spinner=False)
def explain_timing(_model: nn.Module, model_key: str, shape: tuple[int, ...]) -> Timing:
    """Time one LRP explanation of an input of ``shape`` [1, C, H, W] and one batch of
    copies (2 for large inputs, 16 for small ones), once per model. Call it after the model
    has explained something, so the passes are warm."""
    dev = model_device(_model)
    batch = 2 if int(np.prod(shape[2:])) >= 128 * 128 else 16
    times = []
    for n in (1, batch):
        x = torch.zeros((n, *shape[1:]), device=dev)
        t0 = time.perf_counter()
        le.explain(_model, x, 0, "epsilon")
        times.append(time.perf_counter() - t0)
    return Timing(times[0], times[1], batch)


def duration_text(seconds: float) -> str:
    """E.g. "under a second", "about 12 s", "about 3 min"."""
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {seconds:.0f} s"
    return f"about {seconds / 60:.0f} min"


# -- B-LRP with a progress bar -----------------------------------------------------------------

def chunk_for(x: np.ndarray, n_samples: int) -> int:
    """Samples per batched backward: small for big inputs (memory, a lively progress bar)."""
    pixels = int(np.prod(x.shape[2:]))
    if pixels >= 128 * 128:
        return 4
    return max(1, min(n_samples, max(10, n_samples // 10)))


def blrp_with_progress(model: nn.Module, model_key: str, x: np.ndarray, choice: RuleChoice,
                       n_samples: int, alphas: Sequence[float], target: TargetKey = "predicted",
                       low: tuple[float, ...] | None = None,
                       high: tuple[float, ...] | None = None) -> BLRPMaps:
    """B-LRP of ``x`` [1, C, H, W] with an ``st.progress`` bar while the samples are
    explained (:func:`ui.compute.blrp_maps`: kept in the same store)."""
    return blrp_maps(model, model_key, x, choice, n_samples, alphas, target, low, high,
                     chunk=chunk_for(np.asarray(x), int(n_samples)), progress_bar=True)


def certainty_map(agreement: np.ndarray, mean: np.ndarray, floor: float = 0.01) -> np.ndarray:
    """B-LRP's sign agreement as one [H, W] map in [0, 1] (the channels' mean), set to 0.5
    ("undecided", drawn white) where the posterior-mean relevance is below ``floor`` × its
    largest magnitude: there the sign of near-zero values says nothing."""
    agree = np.asarray(agreement, dtype=np.float64)
    while agree.ndim > 2:
        agree = agree.mean(0)
    mag = np.abs(viz.as_map(mean))
    top = float(mag.max()) if mag.size else 0.0
    return np.where(mag > floor * top, agree, 0.5) if top > 0 else np.full_like(agree, 0.5)


# -- the report (pure: numpy, PIL and fpdf2) -------------------------------------------------

TITLE = "LRP Explorer - MRI inspector report"
#: the first line under the title: what the report leaves out
DEIDENTIFIED = ("De-identified: no patient name, ID, birth date or accession number; "
                "file names left out.")

_ASCII = str.maketrans({"γ": "gamma", "ε": "eps", "α": "alpha", "β": "beta", "×": "x",
                        "→": "->", "−": "-", "–": "-", "—": "-", "…": "...", "≈": "~",
                        "±": "+/-", "²": "2", "⁺": "+", "·": "*", "≤": "<=", "≥": ">="})

#: Unicode TTF fonts for the PDF, tried in order (a bare name is looked up by PIL in the
#: system's font folders); none found: fpdf2's core Helvetica with ASCII spellings
PDF_FONTS: tuple[str, ...] = ("DejaVuSans.ttf",
                              "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def ascii_text(s: str) -> str:
    """``s`` with Greek letters, arrows and dashes spelled out in ASCII (for fonts without
    those glyphs); anything else outside ASCII becomes "?"."""
    return s.translate(_ASCII).encode("ascii", "replace").decode()


@dataclass(frozen=True)
class ScanReport:
    """Everything the downloadable report shows (PNG and PDF alike).

    ``scan`` (uint8 [H, W] or [H, W, 3]) is the slice as shown, ``overlay`` (uint8
    [H, W, 3]) the heatmap over it, ``certainty`` B-LRP's sign agreement in [0, 1] ([H, W]
    or [C, H, W]). The text fields are printed as given, so they must already be
    de-identified: ``scan_source`` says what was read (kind, modality, series description,
    slice count) and never a file name.
    ``markers`` ({"left": "R", "right": "L", "top": "A", "bottom": "P"}) are drawn at every
    panel's edges; ``strip`` (float [S]) is the relevance per slice, drawn as bars;
    ``study_date`` is printed only when given (the user chose to include it)."""

    scan: np.ndarray
    overlay: np.ndarray
    prediction: str
    probabilities: Sequence[tuple[str, float]]
    model: str
    card: str
    scan_source: str
    slices: str
    orientation: str
    window: str
    rules: str
    blrp: str
    disclaimer: str
    when: datetime
    certainty: np.ndarray | None = None
    markers: Mapping[str, str] | None = None
    strip: np.ndarray | None = None
    study_date: str | None = None


def _header(r: ScanReport) -> list[tuple[str, str]]:
    """(style, text) lines above the panels: title, date, de-identification, study date
    (when given), disclaimer."""
    lines = [("title", TITLE),
             ("meta", f"Created {r.when.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC"),
             ("meta", DEIDENTIFIED)]
    if r.study_date:
        lines.append(("meta", f"Study date: {r.study_date}"))
    if r.disclaimer:
        lines.append(("warn", r.disclaimer))
    return lines


def _fields(r: ScanReport) -> list[tuple[str, str]]:
    """(heading, text) below the panels, in order."""
    probs = "\n".join(f"{name}: {100 * p:.1f} %" for name, p in r.probabilities)
    return [("Prediction", r.prediction), ("Probabilities", probs), ("Model", r.model),
            ("Model card and preprocessing", r.card), ("Scan", r.scan_source),
            ("Slices", r.slices), ("Orientation", r.orientation),
            ("Display window", r.window), ("Rules", r.rules), ("B-LRP", r.blrp)]


@dataclass(frozen=True)
class _Font:
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont
    unicode: bool

    def text(self, s: str) -> str:
        return s if self.unicode else ascii_text(s)


@lru_cache(maxsize=8)
def _font(size: int) -> _Font:
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return _Font(ImageFont.truetype(name, size), True)
        except OSError:
            continue
    return _Font(ImageFont.load_default(size=size), False)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: _Font, width: int) -> list[str]:
    out: list[str] = []
    for para in font.text(text).split("\n"):
        line = ""
        for word in para.split(" "):
            cand = word if not line else f"{line} {word}"
            if draw.textlength(cand, font=font.font) <= width or not line:
                line = cand
            else:
                out.append(line)
                line = word
        out.append(line)
    return out


def _panel(a: np.ndarray, side: int) -> Image.Image:
    """uint8 [H, W] or [H, W, 3] → an RGB square ``side`` px (bilinear)."""
    img = Image.fromarray(np.ascontiguousarray(a, dtype=np.uint8))
    return img.convert("RGB").resize((side, side), Image.Resampling.BILINEAR)


def _colour_bar(width: int, height: int) -> Image.Image:
    ramp = np.linspace(-1, 1, width)[None].repeat(height, 0)
    return Image.fromarray(viz.diverging_rgb(ramp))


def _draw_markers(d: ImageDraw.ImageDraw, x0: int, y0: int, side: int,
                  markers: Mapping[str, str], font: _Font) -> None:
    """Orientation letters inside the panel at (x0, y0): yellow with a black outline, centred
    on the edge each key names."""
    inset = 5
    for edge, letter in markers.items():
        if not letter:
            continue
        text = font.text(str(letter))
        left, top, right, bottom = d.textbbox((0, 0), text, font=font.font, stroke_width=2)
        w, h = right - left, bottom - top
        x = {"left": x0 + inset, "right": x0 + side - inset - w}.get(edge, x0 + (side - w) // 2)
        y = {"top": y0 + inset, "bottom": y0 + side - inset - h}.get(edge, y0 + (side - h) // 2)
        d.text((x - left, y - top), text, font=font.font, fill="#ffd400", stroke_width=2,
               stroke_fill="black")


def _strip(values: np.ndarray, width: int, height: int) -> Image.Image:
    """Relevance per slice as bars on a light background: height ∝ value / max |value|,
    coloured like the heatmap (red for, blue against); the baseline is the middle when any
    value is negative, else the bottom."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float64).ravel())
    img = Image.new("RGB", (width, height), "#f2f2f2")
    if v.size == 0:
        return img
    top = float(np.abs(v).max())
    v = v / top if top > 0 else v
    signed = bool((v < 0).any())
    base = height / 2 if signed else height - 1
    reach = height / 2 - 1 if signed else height - 2
    colours = viz.diverging_rgb(v)
    d = ImageDraw.Draw(img)
    step = width / v.size
    for i, (val, c) in enumerate(zip(v, colours, strict=True)):
        x0, x1 = i * step, max(i * step, (i + 1) * step - (1 if step >= 3 else 0))
        y = base - val * reach
        d.rectangle((x0, min(y, base), x1, max(y, base)), fill=tuple(int(k) for k in c))
    d.line((0, base, width, base), fill="#888888")
    return img


def _figure(r: ScanReport, side: int = 320) -> Image.Image:
    """The panels as one white picture: scan, overlay (with a colour bar) and, when given,
    the certainty map side by side, each with a caption and the orientation markers; the
    per-slice strip below them when given."""
    panels = [("scan (display window)", _panel(r.scan, side)),
              ("LRP relevance over the scan", _panel(r.overlay, side))]
    if r.certainty is not None:
        agree = np.clip(np.nan_to_num(np.asarray(r.certainty, dtype=np.float64)), 0, 1)
        while agree.ndim > 2:  # [C, H, W]: the channels' mean share
            agree = agree.mean(0)
        panels.append(("B-LRP certainty (sign agreement)",
                       _panel(viz.diverging_rgb(2 * agree - 1), side)))
    gap, f_body, f_mark = 16, _font(14), _font(18)
    width = len(panels) * side + (len(panels) - 1) * gap
    strip_h = 0 if r.strip is None else 24 + 60 + 8
    img = Image.new("RGB", (width, 20 + side + 36 + strip_h), "white")
    d = ImageDraw.Draw(img)
    for i, (caption, p) in enumerate(panels):
        x0 = i * (side + gap)
        d.text((x0, 0), f_body.text(caption), font=f_body.font, fill="black")
        img.paste(p, (x0, 20))
        if r.markers:
            _draw_markers(d, x0, 20, side, r.markers, f_mark)
    bar_y = 20 + side + 6
    img.paste(_colour_bar(side, 10), (side + gap, bar_y))
    d.text((side + gap, bar_y + 12), f_body.text("− against   0   for +"),
           font=f_body.font, fill="#444444")
    if r.certainty is not None:
        img.paste(_colour_bar(side, 10), (2 * (side + gap), bar_y))
        d.text((2 * (side + gap), bar_y + 12),
               f_body.text("0 = all samples negative … 1 = all positive"), font=f_body.font,
               fill="#444444")
    if r.strip is not None:
        y = 20 + side + 36
        n = int(np.asarray(r.strip).size)
        d.text((0, y + 2), f_body.text(f"relevance per slice (slices 1–{n}, left to right; "
                                       "bar = relevance / largest |relevance|)"),
               font=f_body.font, fill="black")
        img.paste(_strip(r.strip, width, 60), (0, y + 24))
    return img


def _report_image(r: ScanReport, side: int = 320) -> Image.Image:
    """The whole report as one RGB picture: header, panels, then every text field."""
    fig = _figure(r, side)
    pad, gap = 24, 16
    width = max(2 * pad + fig.width, 900)
    fonts = {"title": _font(22), "warn": _font(16), "meta": _font(14), "head": _font(16),
             "body": _font(14)}
    colours = {"title": "black", "warn": "#b00020", "meta": "#444444"}
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = width - 2 * pad
    line_h = {k: f.font.getbbox("Ag")[3] + 5 for k, f in fonts.items()}
    head = [(k, _wrap(probe, t, fonts[k], text_w)) for k, t in _header(r)]
    body = [(k, _wrap(probe, t, fonts["body"], text_w - 20)) for k, t in _fields(r)]
    head_h = sum(len(lines) * line_h[k] for k, lines in head) + gap
    body_h = sum(line_h["head"] + len(v) * line_h["body"] + 8 for _, v in body)
    img = Image.new("RGB", (width, pad + head_h + fig.height + gap + body_h + pad), "white")
    d = ImageDraw.Draw(img)
    y = pad
    for k, lines in head:
        for ln in lines:
            d.text((pad, y), ln, font=fonts[k].font, fill=colours[k])
            y += line_h[k]
    y += gap
    img.paste(fig, (pad, y))
    y += fig.height + gap
    for key, lines in body:
        d.text((pad, y), fonts["head"].text(key), font=fonts["head"].font, fill="black")
        y += line_h["head"]
        for ln in lines:
            d.text((pad + 20, y), ln, font=fonts["body"].font, fill="#222222")
            y += line_h["body"]
        y += 8
    return img


def report_png(r: ScanReport) -> bytes:
    """The report as PNG bytes: the panels and every text field drawn into one picture.
    Its text chunks hold only the title, the software and the de-identification note."""
    info = PngInfo()
    info.add_text("Title", TITLE)
    info.add_text("Software", "LRP Explorer")
    info.add_text("Description", DEIDENTIFIED)
    info.add_text("Creation Time", f"{r.when.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC")
    buf = io.BytesIO()
    _report_image(r).save(buf, format="PNG", optimize=True, pnginfo=info)
    return buf.getvalue()


def _unicode_font() -> tuple[str, str | None] | None:
    """(regular, bold or None) paths of the first :data:`PDF_FONTS` entry that exists."""
    for name in PDF_FONTS:
        try:
            path = str(ImageFont.truetype(name, 10).path)
        except OSError:
            continue
        bold = path.replace("DejaVuSans.ttf", "DejaVuSans-Bold.ttf")
        return path, bold if bold != path and Path(bold).is_file() else None
    return None


def report_pdf(r: ScanReport) -> bytes:
    """The report as an A4 PDF (fpdf2): the header, the panels as one image, then every text
    field as real, extractable text. The font is a Unicode TTF from :data:`PDF_FONTS`;
    without one, Helvetica with Greek letters and arrows spelled out in ASCII. The document's
    metadata holds only the title, the creator and the date."""
    from fpdf import FPDF
    from fpdf.enums import XPos, YPos

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_margins(12, 12, 12)
    pdf.set_auto_page_break(True, margin=12)
    pdf.set_title(TITLE)
    pdf.set_creator("LRP Explorer")
    pdf.set_creation_date(r.when.astimezone(timezone.utc))
    found = _unicode_font()
    if found is not None:
        pdf.add_font("report", "", found[0])
        pdf.add_font("report", "B", found[1] or found[0])
        family, text = "report", (lambda s: s)
    else:
        family = "helvetica"

        def text(s: str) -> str:
            return ascii_text(s)

    def write(s: str, size: float, style: str = "", colour: tuple[int, int, int] = (0, 0, 0),
              indent: float = 0.0, after: float = 0.0) -> None:
        pdf.set_font(family, style, size)
        pdf.set_text_color(*colour)
        pdf.set_x(pdf.l_margin + indent)
        pdf.multi_cell(pdf.epw - indent, size * 0.45, text(s), new_x=XPos.LMARGIN,
                       new_y=YPos.NEXT)
        pdf.ln(after)

    pdf.add_page()
    styles = {"title": (15, "B", (0, 0, 0)), "meta": (9, "", (68, 68, 68)),
              "warn": (10, "B", (176, 0, 32))}
    for kind, line in _header(r):
        size, style, colour = styles[kind]
        write(line, size, style, colour, after=1.0)
    fig = _figure(r)
    w = pdf.epw
    h = w * fig.height / fig.width
    if h > 110:  # a tall figure (the strip, few panels): keep room for the text
        w, h = w * 110 / h, 110
    pdf.ln(2)
    pdf.image(fig, x=pdf.l_margin, w=w, h=h)
    pdf.ln(3)
    for heading, body in _fields(r):
        write(heading, 11, "B")
        write(body, 9, colour=(34, 34, 34), indent=5, after=1.5)
    return bytes(pdf.output())
