"""What the Image explorer and the MRI inspector give back: predictions, B-LRP with a
progress bar and a time estimate, and the downloadable report.

:func:`report_image` / :func:`png_bytes` / :func:`pdf_bytes` are pure functions (numpy and
PIL only; they need no Streamlit runtime): scan, overlay and optional certainty map side by
side above the prediction, model, rule and B-LRP settings and the date. Text is drawn with
DejaVu Sans when the system has it; otherwise with PIL's bundled font, after spelling Greek
letters and arrows out in ASCII (that font has no glyphs for them).
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache

import numpy as np
import streamlit as st
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn

import lrp_engine as le
from lrp_engine import viz

from .compute import BLRPMaps, TargetKey, compute_blrp
from .rule_table import RuleChoice


def _tensor(model: nn.Module, x: np.ndarray) -> torch.Tensor:
    p = next(model.parameters(), None)
    dev = p.device if p is not None else torch.device("cpu")
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(dev)


# -- predictions and timing ------------------------------------------------------------------

@st.cache_data(max_entries=64, show_spinner=False)
def predict(_model: nn.Module, model_key: str, x: np.ndarray) -> np.ndarray:
    """Softmax probabilities [K] of ``x`` [1, C, H, W] (one forward pass)."""
    with torch.no_grad():
        logits = _model(_tensor(_model, x))
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
    dev = _tensor(_model, np.zeros(1)).device
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


#: finished B-LRP results, process-wide and bounded (st.cache_data cannot hold them: it would
#: record the progress bar's updates and fail replaying them on a cache hit)
_BLRP_RESULTS: OrderedDict[tuple, BLRPMaps] = OrderedDict()
_BLRP_LOCK = threading.Lock()
BLRP_MAX_ENTRIES = 16


def blrp_with_progress(model: nn.Module, model_key: str, x: np.ndarray, choice: RuleChoice,
                       n_samples: int, alphas: Sequence[float], target: TargetKey = "predicted",
                       low: tuple[float, ...] | None = None,
                       high: tuple[float, ...] | None = None) -> BLRPMaps:
    """B-LRP of ``x`` [1, C, H, W] with an ``st.progress`` bar while the samples are
    explained. Results are kept (the last :data:`BLRP_MAX_ENTRIES`, keyed by model key,
    input bytes and settings), like :func:`ui.compute.blrp_maps`."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    args = (choice, int(n_samples), tuple(float(a) for a in alphas), target, low, high)
    key = (model_key, x.shape, hashlib.sha256(x.tobytes()).hexdigest(), *args)
    with _BLRP_LOCK:
        hit = _BLRP_RESULTS.get(key)
        if hit is not None:
            _BLRP_RESULTS.move_to_end(key)
            return hit
    bar = st.progress(0.0, text=f"Explaining {n_samples} sampled networks…")

    def progress(done: int, total: int) -> None:
        bar.progress(min(1.0, done / max(total, 1)),
                     text=f"{done} of {total} sampled networks explained")

    try:
        res = compute_blrp(model, x, *args, chunk=chunk_for(x, int(n_samples)),
                           progress=progress)
    finally:
        bar.empty()
    with _BLRP_LOCK:
        _BLRP_RESULTS[key] = res
        while len(_BLRP_RESULTS) > BLRP_MAX_ENTRIES:
            _BLRP_RESULTS.popitem(last=False)
    return res


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


# -- the report (pure: numpy and PIL) --------------------------------------------------------

_ASCII = str.maketrans({"γ": "gamma", "ε": "eps", "α": "alpha", "β": "beta", "×": "x",
                        "→": "->", "−": "-", "–": "-", "—": "-", "…": "...", "≈": "~",
                        "±": "+/-", "²": "2", "⁺": "+", "·": "*", "≤": "<=", "≥": ">="})


@dataclass(frozen=True)
class _Font:
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont
    unicode: bool

    def text(self, s: str) -> str:
        return s if self.unicode else s.translate(_ASCII).encode("ascii", "replace").decode()


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


def report_image(scan: np.ndarray, overlay: np.ndarray, *, prediction: str,
                 probabilities: Sequence[tuple[str, float]], model: str, rules: str,
                 blrp: str, certainty: np.ndarray | None = None,
                 title: str = "LRP Explorer - MRI inspector report",
                 disclaimer: str | None = None, when: datetime | None = None,
                 side: int = 320) -> Image.Image:
    """The report as an RGB picture: the scan, the LRP overlay (with a colour bar) and, when
    given, B-LRP's certainty map (sign agreement in [0, 1], [H, W] or [C, H, W]) side by
    side, then the prediction with every class's probability, the model, the rule settings
    (one line per layer), the B-LRP settings and the UTC date; ``disclaimer`` in red at the
    top."""
    when = when or datetime.now(timezone.utc)
    panels = [("scan (display window)", _panel(scan, side)),
              ("LRP relevance over the scan", _panel(overlay, side))]
    if certainty is not None:
        agree = np.clip(np.nan_to_num(np.asarray(certainty, dtype=np.float64)), 0, 1)
        while agree.ndim > 2:  # [C, H, W]: the channels' mean share
            agree = agree.mean(0)
        panels.append(("B-LRP certainty (sign agreement)",
                       _panel(viz.diverging_rgb(2 * agree - 1), side)))
    pad, gap = 24, 16
    width = max(2 * pad + len(panels) * side + (len(panels) - 1) * gap, 900)
    f_title, f_head, f_body = _font(22), _font(16), _font(14)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = width - 2 * pad
    blocks: list[tuple[_Font, list[str], str]] = [
        (f_title, _wrap(probe, title, f_title, text_w), "black"),
        (f_body, _wrap(probe, f"Created {when.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC",
                       f_body, text_w), "#444444")]
    if disclaimer:
        blocks.append((f_head, _wrap(probe, disclaimer, f_head, text_w), "#b00020"))
    body: list[tuple[str, str]] = [
        ("Prediction", prediction),
        ("Probabilities", "\n".join(f"{name}: {100 * p:.1f} %" for name, p in probabilities)),
        ("Model", model), ("Rules", rules), ("B-LRP", blrp)]
    line_h = {id(f): f.font.getbbox("Ag")[3] + 5 for f in (f_title, f_head, f_body)}
    head_h = sum(len(lines) * line_h[id(f)] for f, lines, _ in blocks) + gap
    panel_h = 20 + side + 36
    body_lines = [(k, _wrap(probe, v, f_body, text_w - 20)) for k, v in body]
    body_h = sum(line_h[id(f_head)] + len(v) * line_h[id(f_body)] + 8 for _, v in body_lines)
    img = Image.new("RGB", (width, pad + head_h + panel_h + body_h + pad), "white")
    d = ImageDraw.Draw(img)
    y = pad
    for f, lines, colour in blocks:
        for ln in lines:
            d.text((pad, y), ln, font=f.font, fill=colour)
            y += line_h[id(f)]
    y += gap
    for i, (caption, p) in enumerate(panels):
        x0 = pad + i * (side + gap)
        d.text((x0, y), f_body.text(caption), font=f_body.font, fill="black")
        img.paste(p, (x0, y + 20))
    bar_y = y + 20 + side + 6
    img.paste(_colour_bar(side, 10), (pad + side + gap, bar_y))
    d.text((pad + side + gap, bar_y + 12), f_body.text("− against   0   for +"),
           font=f_body.font, fill="#444444")
    if certainty is not None:
        img.paste(_colour_bar(side, 10), (pad + 2 * (side + gap), bar_y))
        d.text((pad + 2 * (side + gap), bar_y + 12),
               f_body.text("0 = all samples negative … 1 = all positive"), font=f_body.font,
               fill="#444444")
    y += panel_h
    for key, lines in body_lines:
        d.text((pad, y), f_head.text(key), font=f_head.font, fill="black")
        y += line_h[id(f_head)]
        for ln in lines:
            d.text((pad + 20, y), ln, font=f_body.font, fill="#222222")
            y += line_h[id(f_body)]
        y += 8
    return img


def png_bytes(img: Image.Image) -> bytes:
    """The picture as PNG bytes."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def pdf_bytes(img: Image.Image) -> bytes:
    """The picture as a one-page PDF (150 dpi)."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="PDF", resolution=150.0)
    return buf.getvalue()
