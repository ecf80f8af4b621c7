"""Relevance maps → colours, PNG files and plotly figures (numpy, PIL, plotly; no Streamlit).

Conventions (LRP's usual ``seismic`` pictures): a relevance map is shown with a diverging
colormap centred at zero — red positive, blue negative, white zero — over the symmetric range
``±max|R|``, so the colour of a pixel says its sign and its share of the strongest pixel.
Every function here accepts a 2-D map ``[H, W]``, a ``[C, H, W]`` or ``[1, C, H, W]`` map
(summed over channels), as a numpy array or a torch tensor, and never returns NaN or Inf:
non-finite entries are treated as 0 and an all-zero map stays all zero (no division by
its zero maximum).
"""

from __future__ import annotations

import functools
import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # plotly is imported by the figure functions only: arrays and PNGs
    import plotly.graph_objects as go  # (the engine's CLI) need numpy and PIL alone

#: how :func:`panels_figure` scales its maps: each over its own range, or one for all
PanelScale = Literal["panel", "shared"]
PANEL_SCALES: tuple[PanelScale, ...] = get_args(PanelScale)

# -- arrays --------------------------------------------------------------------------------

#: matplotlib's ``seismic`` anchors: (position in [0, 1], RGB in [0, 1])
SEISMIC_ANCHORS: tuple[tuple[float, tuple[float, float, float]], ...] = (
    (0.0, (0.0, 0.0, 0.3)),
    (0.25, (0.0, 0.0, 1.0)),
    (0.5, (1.0, 1.0, 1.0)),
    (0.75, (1.0, 0.0, 0.0)),
    (1.0, (0.5, 0.0, 0.0)),
)


def _rgb_css(rgb: Sequence[float], alpha: float | None = None) -> str:
    r, g, b = (round(255 * c) for c in rgb)
    return f"rgb({r},{g},{b})" if alpha is None else f"rgba({r},{g},{b},{alpha:.3f})"


#: the same colormap as a plotly colorscale
SEISMIC_COLORSCALE: list[list[Any]] = [[p, _rgb_css(c)] for p, c in SEISMIC_ANCHORS]


def overlay_colorscale(opacity: float = 0.7) -> list[list[Any]]:
    """``seismic`` with transparency growing with |value|: 0 is fully transparent, ±max has
    ``opacity``. Drawn over a grey image it shows the digit where relevance is small."""
    return [[p, _rgb_css(c, opacity * abs(2 * p - 1))] for p, c in SEISMIC_ANCHORS]


def as_map(r: Any) -> np.ndarray:
    """A relevance map as a finite float64 array ``[H, W]``.

    Accepts numpy arrays or torch tensors of shape [H, W], [C, H, W] or [1, C, H, W]
    (channels are summed: relevance is additive). NaN and ±Inf become 0.
    """
    if hasattr(r, "detach"):  # a torch tensor, without importing torch here
        r = r.detach().cpu().numpy()
    a = np.asarray(r, dtype=np.float64)
    while a.ndim > 3 and a.shape[0] == 1:
        a = a[0]
    a = np.where(np.isfinite(a), a, 0.0)
    if a.ndim == 3:
        a = a.sum(0)
        a = np.where(np.isfinite(a), a, 0.0)  # a sum of huge values can overflow
    if a.ndim != 2:
        raise ValueError(f"expected a map [H, W], [C, H, W] or [1, C, H, W], got {a.shape}")
    return a


def max_abs(r: Any) -> float:
    """``max |R|`` over the finite entries (0.0 for an all-zero or empty map)."""
    a = as_map(r)
    return float(np.abs(a).max()) if a.size else 0.0


def normalise_symmetric(r: Any, vmax: float | None = None) -> np.ndarray:
    """``R / max|R|`` in [-1, 1], float64 [H, W]; an all-zero map stays zero (no NaN).

    ``vmax`` overrides ``max|R|`` (e.g. a scale shared by several panels); values beyond it
    are clipped to ±1.
    """
    a = as_map(r)
    m = max_abs(a) if vmax is None else float(vmax)
    if not np.isfinite(m) or m <= 0:
        return np.zeros_like(a)
    return np.clip(a / m, -1.0, 1.0)


def diverging_rgb(v: np.ndarray) -> np.ndarray:
    """Values in [-1, 1] (any shape) → ``seismic`` RGB uint8 [..., 3]; 0 is pure white."""
    t = (np.clip(np.nan_to_num(np.asarray(v, dtype=np.float64)), -1, 1) + 1) / 2
    pos = [p for p, _ in SEISMIC_ANCHORS]
    channels = [np.interp(t, pos, [c[i] for _, c in SEISMIC_ANCHORS]) for i in range(3)]
    return np.round(np.stack(channels, -1) * 255).astype(np.uint8)


def relevance_rgb(r: Any, vmax: float | None = None) -> np.ndarray:
    """A relevance map as ``seismic`` RGB uint8 [H, W, 3] over ``±max|R|`` (or ``±vmax``)."""
    return diverging_rgb(normalise_symmetric(r, vmax))


def grey_unit(image: Any) -> np.ndarray:
    """Any image [H, W] / [C, H, W] → float64 [H, W] in [0, 1] by min–max (flat → zeros)."""
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    a = np.asarray(image, dtype=np.float64)
    while a.ndim > 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3:
        a = a.mean(0)
    a = np.where(np.isfinite(a), a, 0.0)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"expected an image [H, W] or [C, H, W], got {np.shape(image)}")
    lo, hi = float(a.min()), float(a.max())
    return np.zeros_like(a) if hi <= lo else (a - lo) / (hi - lo)


def overlay(image: Any, r: Any, opacity: float = 0.7, vmax: float | None = None) -> np.ndarray:
    """The heatmap blended over a greyscale image, RGB uint8 [H, W, 3].

    Each pixel mixes the grey image and the relevance colour with weight
    ``opacity · |R| / max|R|``: zero relevance shows the image unchanged, the strongest
    relevance shows its colour at ``opacity``. ``image`` and ``r`` must have the same H, W.
    """
    g = grey_unit(image)
    v = normalise_symmetric(r, vmax)
    if g.shape != v.shape:
        raise ValueError(f"image {g.shape} and relevance {v.shape} differ in size")
    colour = diverging_rgb(v).astype(np.float64) / 255
    w = float(np.clip(opacity, 0, 1)) * np.abs(v)[..., None]
    out = (1 - w) * g[..., None] + w * colour
    return np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)


def _png(rgb: np.ndarray, scale: int) -> bytes:
    img = Image.fromarray(rgb)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def heatmap_png(r: Any, scale: int = 8, vmax: float | None = None,
                image: Any = None, opacity: float = 0.7) -> bytes:
    """PNG bytes of the ``seismic`` heatmap, each pixel enlarged to ``scale``×``scale``
    (nearest neighbour: pixels stay sharp); with ``image``, the overlay instead."""
    rgb = relevance_rgb(r, vmax) if image is None else overlay(image, r, opacity, vmax)
    return _png(rgb, scale)


def image_png(image: Any, scale: int = 8) -> bytes:
    """PNG bytes of a greyscale image (min–max scaled), enlarged ``scale``×."""
    return _png(np.round(grey_unit(image) * 255).astype(np.uint8), scale)


def npy_bytes(a: Any) -> bytes:
    """``numpy.save`` of an array (or tensor) into bytes: the ``.npy`` download."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    buf = io.BytesIO()
    np.save(buf, np.asarray(a), allow_pickle=False)
    return buf.getvalue()


def mosaic(tiles: np.ndarray, ncols: int, pad: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Tiles [N, h, w] → one array with NaN gutters (drawn transparent by plotly), and the
    tile index of every cell (-1 in the gutters). Both [rows·(h+pad)−pad, ncols·(w+pad)−pad]."""
    n, h, w = tiles.shape
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    big = np.full((nrows * (h + pad) - pad, ncols * (w + pad) - pad), np.nan)
    idx = np.full(big.shape, -1, dtype=np.int64)
    for i in range(n):
        r0, c0 = (i // ncols) * (h + pad), (i % ncols) * (w + pad)
        big[r0:r0 + h, c0:c0 + w] = tiles[i]
        idx[r0:r0 + h, c0:c0 + w] = i
    return big, idx


# -- plotly figures ------------------------------------------------------------------------

_CONFIG_AXES = {"showticklabels": False, "showgrid": False, "zeroline": False, "ticks": ""}


def _square_axes() -> dict[str, Any]:
    """Layout of one image-like plot: square pixels, row 0 on top, no ticks. A plain dict
    given to ``go.Figure`` at once: updating ``fig.layout`` property by property costs
    ~40 ms per figure in plotly's validators, noticeable on every rerun."""
    return {"xaxis": {**_CONFIG_AXES, "constrain": "domain", "scaleanchor": "y"},
            "yaxis": {**_CONFIG_AXES, "autorange": "reversed", "constrain": "domain"}}


def _round(a: np.ndarray, digits: int = 5) -> list:
    """Values as nested lists, rounded to ``digits`` significant digits of the largest one:
    plain numbers in the figure's JSON (readable in tests, small for the browser)."""
    a = np.asarray(a, dtype=np.float64)
    m = float(np.abs(a).max()) if a.size else 0.0
    if np.isfinite(m) and m > 0:
        a = np.round(a, max(0, digits - 1 - int(np.floor(np.log10(m)))))
    return a.tolist()


def _grid(a: np.ndarray) -> np.ndarray:
    """A heatmap's values as a float32 array: plotly's validators take an array without
    walking every element (nested lists cost ~20 ms per 10-panel figure), and its JSON
    carries them as a base64 typed array (``{"dtype": "f4", "bdata": …}``)."""
    return np.ascontiguousarray(a, dtype=np.float32)


def _figure(data: Sequence[dict[str, Any]], layout: dict[str, Any]) -> go.Figure:
    """A figure from our own trace and layout dicts, without plotly's per-property
    validators (~10 ms for a 10-panel row, paid on every rerun of a page, and again as
    CPU stolen from the browser beside it). Every figure this module builds is validated
    by the tests (``tests/test_viz.py``), so a typo still fails there, not in a browser."""
    import plotly.graph_objects as go

    return go.Figure(data=list(data), layout=layout, _validate=False)


@functools.lru_cache(maxsize=32)
def _named_colorscale(name: str) -> tuple[tuple[float, str], ...]:
    import plotly.colors

    return tuple((float(v), c) for v, c in plotly.colors.get_colorscale(name))


def _colorscale(cs: Any) -> Any:
    """A colour scale as [[position, colour], …]: a name (``"Greys"``, ``"RdBu_r"``) is
    resolved here as plotly's validator would (plotly.js knows no ``_r`` names)."""
    return [list(p) for p in _named_colorscale(cs)] if isinstance(cs, str) else cs


def _heatmap_trace(r: np.ndarray, m: float, name: str, showscale: bool,
                   colorscale: Any = None, colorbar_x: float | None = None) -> dict[str, Any]:
    m = m if m > 0 else 1.0  # an all-zero map: any symmetric range draws it white
    bar = {"thickness": 12, "len": 0.9}
    if colorbar_x is not None:
        bar["x"] = colorbar_x
    return {"type": "heatmap", "z": _grid(r), "zmin": -m, "zmax": m, "zmid": 0.0,
            "name": name, "colorscale": _colorscale(colorscale or SEISMIC_COLORSCALE),
            "showscale": showscale, "colorbar": bar,
            "hovertemplate": "x=%{x}, y=%{y}<br>R=%{z:.4g}<extra>" + name + "</extra>"}


def _grey_trace(image: np.ndarray, name: str = "input") -> dict[str, Any]:
    return {"type": "heatmap", "z": _grid(image), "colorscale": _colorscale("Greys"),
            "reversescale": True, "showscale": False, "name": name,
            "hovertemplate": "x=%{x}, y=%{y}<br>pixel=%{z:.3g}<extra>" + name + "</extra>"}


def heatmap_figure(r: Any, title: str | None = None, image: Any = None,
                   opacity: float = 0.7, vmax: float | None = None,
                   height: int = 340) -> go.Figure:
    """One relevance heatmap with hover values: ``seismic`` over ``±max|R|`` (or ``±vmax``)
    with a colour bar; with ``image`` (same size) the map is drawn over the grey image,
    transparent where relevance is zero."""
    a = as_map(r)
    m = max_abs(a) if vmax is None else float(vmax)
    if image is not None:
        traces = [_grey_trace(grey_unit(image)),
                  _heatmap_trace(a, m, "relevance", True, overlay_colorscale(opacity))]
    else:
        traces = [_heatmap_trace(a, m, "relevance", True)]
    return _figure(traces, {
        **_square_axes(), "title": {"text": title} if title else None, "height": height,
        "margin": {"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
        "plot_bgcolor": "white"})


def _row_layout(titles: Sequence[str], gap: float = 0.012) -> dict[str, Any]:
    """Layout of ``len(titles)`` square panels side by side (no ``make_subplots``: building
    it costs ~60 ms per figure, too much for an interactive rerun)."""
    n = len(titles)
    w = (1 - gap * (n - 1)) / n
    layout: dict[str, Any] = {"annotations": []}
    for i, title in enumerate(titles):
        sfx = "" if i == 0 else str(i + 1)
        x0 = i * (w + gap)
        layout[f"xaxis{sfx}"] = {**_CONFIG_AXES, "domain": [x0, x0 + w], "anchor": f"y{sfx}",
                                 "scaleanchor": f"y{sfx}", "constrain": "domain"}
        layout[f"yaxis{sfx}"] = {**_CONFIG_AXES, "domain": [0, 1], "anchor": f"x{sfx}",
                                 "autorange": "reversed", "constrain": "domain"}
        layout["annotations"].append({"text": title, "x": x0 + w / 2, "y": 1.0, "xref": "paper",
                                      "yref": "paper", "showarrow": False,
                                      "yanchor": "bottom", "font": {"size": 12}})
    return layout


def panels_figure(maps: Sequence[Any], titles: Sequence[str], image: Any = None,
                  image_title: str = "input", scale: PanelScale = "panel",
                  colorscales: Sequence[Any] | None = None,
                  ranges: Sequence[tuple[float, float] | None] | None = None,
                  height: int = 230) -> go.Figure:
    """A row of heatmaps (e.g. input / standard LRP / B-LRP α = 5 … 95).

    ``scale="panel"``: each map over its own ``±max|R|`` (per-panel normalisation);
    ``"shared"``: one range for all, so magnitudes compare. ``image`` adds a
    grey first panel. ``colorscales``/``ranges`` override a panel's colours and (min, max)
    for maps that are not relevance (std, sign agreement). Hover shows the raw values.
    """
    if scale not in PANEL_SCALES:
        raise ValueError(f"scale must be 'panel' or 'shared', got {scale!r}")
    arrays = [as_map(r) for r in maps]
    if len(titles) != len(arrays):
        raise ValueError(f"{len(arrays)} maps but {len(titles)} titles")
    all_titles = ([image_title] if image is not None else []) + list(titles)
    traces: list[dict[str, Any]] = []
    if image is not None:
        traces.append(_grey_trace(grey_unit(image), image_title))
    shared = max((max_abs(a) for a in arrays), default=0.0)
    for i, a in enumerate(arrays):
        cs = colorscales[i] if colorscales is not None else None
        rng = ranges[i] if ranges is not None else None
        if rng is not None:
            tr = {"type": "heatmap", "z": _grid(a), "zmin": rng[0], "zmax": rng[1],
                  "colorscale": _colorscale(cs or "Viridis"), "showscale": False,
                  "name": titles[i],
                  "hovertemplate": "x=%{x}, y=%{y}<br>%{z:.4g}<extra>" + titles[i]
                  + "</extra>"}
        else:
            m = shared if scale == "shared" else max_abs(a)
            tr = _heatmap_trace(a, m, titles[i], False, cs)
        traces.append(tr)
    for k, tr in enumerate(traces):
        sfx = "" if k == 0 else str(k + 1)
        tr.update(xaxis=f"x{sfx}", yaxis=f"y{sfx}")
    layout = _row_layout(all_titles)
    layout.update(height=height, margin={"l": 5, "r": 5, "t": 30, "b": 5},
                  plot_bgcolor="white", showlegend=False)
    return _figure(traces, layout)


def blrp_stats_figure(mean: Any, std: Any, agreement: Any, height: int = 230) -> go.Figure:
    """B-LRP's summary row: the posterior-mean relevance (diverging), the std over samples
    (greys, 0…max) and the sign agreement (share of samples with positive relevance, 0…1)."""
    return panels_figure([mean, std, agreement],
                         ["posterior mean", "std over samples", "sign agreement (share > 0)"],
                         ranges=[None, (0.0, float(np.asarray(std).max()) or 1.0), (0.0, 1.0)],
                         colorscales=[None, "Greys", "RdBu_r"], height=height)


def probability_figure(probs: Sequence[float], classes: Sequence[str] | None = None,
                       highlight: int | None = None, height: int = 260) -> go.Figure:
    """Bar chart of class probabilities; the ``highlight`` class (the prediction) in red."""
    p = np.nan_to_num(np.asarray(probs, dtype=np.float64).reshape(-1))
    labels = list(classes) if classes is not None else [str(i) for i in range(len(p))]
    colours = ["#d62728" if i == highlight else "#1f77b4" for i in range(len(p))]
    return _figure([{"type": "bar", "x": labels, "y": np.round(p, 6).tolist(),
                     "marker": {"color": colours},
                     "hovertemplate": "class %{x}: %{y:.2%}<extra></extra>"}],
                   {"height": height, "margin": {"l": 10, "r": 10, "t": 10, "b": 10},
                    "yaxis": {"range": [0, 1], "tickformat": ".0%",
                              "title": {"text": "probability"}},
                    "xaxis": {"type": "category", "title": {"text": "class"}},
                    "plot_bgcolor": "white"})


def conservation_figure(report: Any, height: int = 300) -> go.Figure:
    """Relevance sum per layer vs the output score, from a
    :class:`lrp_engine.ConservationReport`.

    Read from left to right, relevance flows from the output score down to the input: one
    bar per rule layer (the relevance leaving it towards its input), a dashed line at the
    score. A conservative composite keeps every bar at the line.
    """
    import plotly.graph_objects as go

    rows = list(report.rows)[::-1]
    x = ["output score"] + [f"{r.name.split('.')[-1]} in" for r in rows]
    y = [report.output_score] + [r.relevance_in for r in rows]
    text = ["what LRP distributes"] + [
        f"{r.kind}, {r.rule}: in/out = {r.ratio:.4f}" if r.ratio == r.ratio
        else f"{r.kind}, {r.rule}" for r in rows]
    colours = ["#7f7f7f"] + ["#1f77b4" if r.ratio == r.ratio and abs(r.ratio - 1) <= 1e-3
                             else "#ff7f0e" for r in rows]
    fig = go.Figure(go.Bar(x=x, y=_round(np.nan_to_num(y), 6), marker_color=colours,
                           customdata=text,
                           hovertemplate="%{x}: ΣR = %{y:.4g}<br>%{customdata}<extra></extra>"))
    fig.add_hline(y=float(np.nan_to_num(report.output_score)), line_dash="dash",
                  line_color="#d62728", annotation_text="output score",
                  annotation_position="top left")
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 20, "b": 10},
                      yaxis_title="relevance sum", plot_bgcolor="white")
    return fig


_CURVE_STYLES = {
    "lrp": {"line": {"width": 3, "color": "#1f77b4"}, "marker": {"symbol": "star", "size": 8}},
    "random": {"line": {"width": 2, "dash": "dash", "color": "#7f7f7f"}},
    "gradient_x_input": {"line": {"width": 2, "dash": "dot", "color": "#2ca02c"}},
}


def curves_figure(x_percent: Sequence[float] | np.ndarray,
                  curves: Mapping[str, Sequence[float] | np.ndarray],
                  labels: Mapping[str, str] | None = None, title: str | None = None,
                  y_title: str = "mean output score (logit)", height: int = 420,
                  x_title: str = "pixels flipped") -> go.Figure:
    """Pixel-flipping curves: mean score vs percentage of pixels flipped, one line per
    method key (``lrp``, ``blrp_5`` …, ``gradient_x_input``, ``random``)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for key, y in curves.items():
        name = (labels or {}).get(key, key)
        style = _CURVE_STYLES.get(key, {"line": {"width": 1.5}})
        fig.add_trace(go.Scatter(x=np.round(np.asarray(x_percent, dtype=float), 4).tolist(),
                                 y=_round(np.nan_to_num(np.asarray(y, dtype=float))),
                                 name=name, mode="lines+markers" if "marker" in style
                                 else "lines", **style,
                                 hovertemplate="%{x:.1f}% flipped: %{y:.3f}<extra>" + name
                                 + "</extra>"))
    fig.update_layout(title=title, height=height, xaxis_title=x_title,
                      yaxis_title=y_title, template="plotly_white", hovermode="x unified",
                      margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10})
    fig.update_xaxes(ticksuffix="%")
    return fig


def tiles_figure(tiles: Any, ncols: int = 8, diverging: bool = True,
                 titles: str = "filter", height: int | None = None) -> go.Figure:
    """A grid of small maps in one heatmap (filters or activation maps).

    ``tiles`` [N, h, w] (or [N, 1, h, w]); each tile is scaled by its own ``max|value|``
    (diverging ``seismic``) or its own maximum (``diverging=False``: non-negative
    activations in ``Viridis``). Hover shows the tile number and the raw value.
    """
    import plotly.graph_objects as go

    if hasattr(tiles, "detach"):
        tiles = tiles.detach().cpu().numpy()
    t = np.nan_to_num(np.asarray(tiles, dtype=np.float64))
    if t.ndim == 4:
        t = t.sum(1)
    if t.ndim != 3:
        raise ValueError(f"expected tiles [N, h, w], got {t.shape}")
    flat = t.reshape(t.shape[0], -1)
    if diverging:
        m = np.abs(flat).max(1)
    else:
        m = flat.max(1)
    m = np.where(m > 0, m, 1.0)
    scaled = t / m[:, None, None]
    big, idx = mosaic(scaled, ncols)
    raw, _ = mosaic(t, ncols)
    custom = np.stack([idx, np.asarray(_round(np.nan_to_num(raw)))], -1)
    z = np.round(big, 4).astype(object)
    z[np.isnan(big)] = None  # gaps: no tile there
    tr = go.Heatmap(z=z.tolist(),
                    customdata=custom.tolist(), colorscale=SEISMIC_COLORSCALE if diverging
                    else "Viridis", zmin=-1 if diverging else 0, zmax=1,
                    zmid=0 if diverging else None, showscale=False, hoverongaps=False,
                    hovertemplate=titles + " %{customdata[0]}<br>value=%{customdata[1]:.4g}"
                    "<extra></extra>")
    rows = -(-t.shape[0] // max(1, min(ncols, t.shape[0])))
    return go.Figure(tr, layout={**_square_axes(), "height": height or 60 + 90 * rows,
                                 "plot_bgcolor": "white",
                                 "margin": {"l": 5, "r": 5, "t": 5, "b": 5}})
