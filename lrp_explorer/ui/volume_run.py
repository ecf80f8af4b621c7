"""Explaining every slice of a volume on the MRI inspector: a range of slices through a 2-D
classifier in batched passes, with a progress bar and a stop button, and the strip plot of
relevance per slice that leads the reader to the slices that drove the decision.

A run keeps what it has done in ``st.session_state`` after every batch. "Stop" (or any
other click) starts a new script run at once; the old one finishes the batch in progress,
stores it and ends at its next Streamlit call (the progress bar). The slices done stay, and
"Explain" carries on with the rest. Results are keyed by the model, the scan, the plane,
the rules and the target: change any of them and the strip starts afresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch
from torch import nn

from lrp_engine.volume_explain import explain_slices

from . import report, resources
from .compute import model_input
from .rule_table import RuleChoice

STATE = "mri_volume_run"
PLOT = {"displayModeBar": False}


@dataclass
class SliceRun:
    """A volume explanation in progress or done: the settings ``key``, the slices asked
    for (``first``…``last``, 0-based, inclusive), each done slice's Σ R (``scores``) and
    predicted class, and the seconds spent."""

    key: tuple
    first: int
    last: int
    scores: dict[int, float] = field(default_factory=dict)
    predicted: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def todo(self) -> list[int]:
        """The asked-for slices not explained yet."""
        return [k for k in range(self.first, self.last + 1) if k not in self.scores]

    @property
    def complete(self) -> bool:
        return not self.todo


def batch_size(x: np.ndarray) -> int:
    """Slices per engine pass for inputs like ``x`` [1, C, H, W]: 32 for small slices (the
    demo's 96 × 96: 2.8× faster per slice than one at a time, benchmarks/bench_volume.py),
    8 for ImageNet-sized inputs, whose activations for a backward pass take ~0.1 GB each."""
    return 32 if x[0].size <= 3 * 128 * 128 else 8


def _jump(axis: int, k: int) -> None:
    st.session_state[f"mri_slice_{axis}"] = int(k)


def _on_strip_select(axis: int) -> None:
    sel = st.session_state.get("mri_strip")
    points = getattr(getattr(sel, "selection", None), "points", None) or (
        (sel or {}).get("selection", {}).get("points") if isinstance(sel, dict) else None)
    if points:
        _jump(axis, round(float(points[0]["x"])) - 1)


def strip_figure(scores: np.ndarray, current: int, title: str) -> go.Figure:
    """Relevance per slice (NaN: not explained) as bars over slice numbers (1-based), the
    slice on screen outlined."""
    n = len(scores)
    x = np.arange(1, n + 1)
    y = np.nan_to_num(scores, nan=0.0)
    colours = np.where(y >= 0, "#c0392b", "#2e6fb7").astype(object)
    colours[np.isnan(scores)] = "#d0d0d0"
    fig = go.Figure(go.Bar(x=x, y=y, marker={"color": colours.tolist()}, name="Σ R",
                           hovertemplate="slice %{x}: Σ R = %{y:.4g}<extra></extra>"),
                    layout={"height": 200, "margin": {"l": 40, "r": 10, "t": 30, "b": 30},
                            "title": {"text": title, "font": {"size": 13}},
                            "xaxis": {"title": {"text": "slice"}},
                            "yaxis": {"title": {"text": "Σ R"}}, "bargap": 0.05,
                            "clickmode": "event+select"})
    fig.add_vline(x=current + 1, line={"color": "#222", "width": 1, "dash": "dot"})
    return fig


def show_strip(scores: np.ndarray, axis: int, current: int, title: str) -> None:
    """The strip plot (click a bar to go to that slice) and a button to the slice with the
    most relevance for the class."""
    st.plotly_chart(strip_figure(scores, current, title), config=PLOT, key="mri_strip",
                    on_select=lambda: _on_strip_select(axis), selection_mode="points")
    if np.isfinite(scores).any():
        best = int(np.nanargmax(scores))
        st.button(f"Go to the most relevant slice ({best + 1})", key="mri_strip_best",
                  on_click=_jump, args=(axis, best))


def slice_runs(model: nn.Module, model_key: str, n: int, make_input: Callable[[int], np.ndarray],
               choice: RuleChoice, target: object, key: tuple, bounds: dict) -> SliceRun | None:
    """The range chooser, "Explain" and "Stop", and the run itself for a 2-D classifier
    over the ``n`` slices of the plane on screen; ``make_input(k)`` gives slice k's model
    input [1, C, H, W]. Returns the current (possibly partial) run, or None before one."""
    run: SliceRun | None = st.session_state.get(STATE)
    if run is not None and run.key != key:
        run = None
    first, last = st.slider("Slices to explain", 1, max(n, 2), (1, n), key=f"mri_vol_range_{n}",
                            disabled=n == 1, help="A range of slices of the plane on screen.")
    first, last = min(first, n) - 1, min(last, n) - 1
    x0 = make_input(first)
    bs = batch_size(x0)
    tm = report.explain_timing(model, model_key, tuple(x0.shape))
    count = last - first + 1
    st.caption(f"Estimated time for {count} slices: "
               f"{report.duration_text(tm.estimate(count))} on {resources.device_label()} "
               f"({bs} slices per pass).")
    c1, c2 = st.columns(2)
    go_clicked = c1.button("Explain these slices", type="primary", key="mri_vol_run")
    stop_clicked = c2.button("Stop", key="mri_vol_stop")
    if run is not None and (run.first, run.last) != (first, last):
        run = SliceRun(key, first, last, dict(run.scores), dict(run.predicted), run.seconds)
        st.session_state[STATE] = run
    if stop_clicked and run is not None and not run.complete:
        st.info(f"Stopped after {len(run.scores)} of {count} slices (a batch in progress "
                "finishes and is kept). \"Explain these slices\" carries on with the rest.")
    if not go_clicked:
        return run
    run = run or SliceRun(key, first, last)
    st.session_state[STATE] = run
    todo = run.todo
    bar = st.progress(0.0, text=f"Explaining {len(todo)} slices…")
    for i in range(0, len(todo), bs):
        chunk = todo[i:i + bs]
        t0 = time.perf_counter()
        xs = model_input(model, np.concatenate([make_input(k) for k in chunk]))
        res = explain_slices(model, xs, choice.composite(*bounds_tensors(bounds)),
                             "predicted" if target == "predicted" else int(target),
                             batch_size=len(chunk))
        for k, s, p in zip(chunk, res.slice_score, res.predicted, strict=True):
            run.scores[k] = float(s)
            run.predicted[k] = int(p)
        run.seconds += time.perf_counter() - t0
        done = len(todo) - len(run.todo) if run.todo else len(todo)
        bar.progress(min(1.0, done / max(len(todo), 1)),
                     text=f"{len(run.scores)} of {count} slices explained")
    bar.empty()
    st.success(f"{count} slices explained in {run.seconds:.1f} s.")
    return run


def bounds_tensors(bounds: dict) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The zB bounds (``low``/``high`` per channel, or None) as tensors for a composite."""
    low, high = bounds.get("low"), bounds.get("high")
    return (None if low is None else torch.tensor(low),
            None if high is None else torch.tensor(high))


def scores_array(run: SliceRun | None, n: int) -> np.ndarray:
    """The strip's values [n]: Σ R of each explained slice, NaN elsewhere."""
    out = np.full(n, np.nan)
    if run is not None:
        for k, s in run.scores.items():
            if 0 <= k < n:
                out[k] = s
    return out


__all__ = ["SliceRun", "batch_size", "bounds_tensors", "scores_array", "show_strip",
           "slice_runs", "strip_figure"]
