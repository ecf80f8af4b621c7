"""Cached explanations, keyed by input bytes, model id and the rule choice.

Every function takes the model as ``_model`` (not hashed: models are shared, cached
resources) together with ``model_key``, a string that names it, and the input as a numpy
array (hashed by content). Results are plain numpy arrays and floats, bounded in number by
``max_entries`` so a classroom of sessions cannot grow memory without limit.

Targets are ``"predicted"``, a class index, or ``"none"`` (all-zero target weights: "no
class", which gives zero relevance everywhere).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
import streamlit as st
import torch
from torch import nn

import lrp_engine as le

from .rule_table import RuleChoice

#: the class explained: ``"predicted"``, ``"none"`` (no class: zero relevance) or an index
TargetKey = Literal["predicted", "none"] | int


@dataclass(frozen=True)
class Analysis:
    """One explained image. Maps are float32 [C, H, W]; ``probs`` [K]."""

    relevance: np.ndarray
    gradient_x_input: np.ndarray
    probs: np.ndarray
    prediction: int
    target: int | None  # the explained class (None: "no class")
    conservation: le.ConservationReport


@dataclass(frozen=True)
class BLRPMaps:
    """B-LRP of one image: ``percentiles`` {α: [C, H, W]}, ``std``, ``agreement`` (fraction of
    samples with positive relevance, 0…1), posterior-mean ``probs`` [K]."""

    percentiles: dict[float, np.ndarray]
    mean: np.ndarray
    std: np.ndarray
    agreement: np.ndarray
    probs: np.ndarray
    target: int
    n_samples: int


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s parameters are (the CPU for a model without any)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def model_input(model: nn.Module, x: np.ndarray) -> torch.Tensor:
    """``x`` as a float32 tensor on ``model``'s device."""
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(model_device(model))


def _target(key: TargetKey, k: int, like: torch.Tensor) -> object:
    if key == "predicted":
        return None
    if key == "none":
        return torch.zeros(like.shape[0], k, dtype=like.dtype, device=like.device)
    return int(key)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


#: below this much work per call (multiply-accumulates over the batch), a CPU computation
#: runs on one intra-op thread: its ops are short (LeNet: ~0.1 ms), and a second OpenMP
#: thread costs more than it saves while the browser beside the server, or another
#: session, holds the other core (benchmarks/bench_ui_latency.py measures it in the real
#: browser). Bigger work (VGG-16, EfficientNet B-LRP) keeps all threads.
ONE_THREAD_BELOW_MACS = 1e9


@contextmanager
def cpu_threads_for(model: nn.Module, x: torch.Tensor, batch: int = 1) -> Iterator[int]:
    """Set this thread's torch intra-op threads for ``batch`` passes of ``model`` over an
    input shaped like ``x`` (see :data:`ONE_THREAD_BELOW_MACS`); yields the number used and
    restores the previous one. Per thread: other sessions' computations are untouched."""
    before = torch.get_num_threads()
    n = before
    if x.device.type == "cpu" and before > 1:
        try:
            macs = le.model_macs(model, le.layer_table(model, x)) * batch
        except Exception:  # noqa: BLE001 - the engine call itself will say what is wrong
            macs = float("inf")
        if macs < ONE_THREAD_BELOW_MACS:
            n = 1
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


@st.cache_data(max_entries=256, show_spinner=False)
def cached_analysis(_model: nn.Module, model_key: str, x: np.ndarray, choice: RuleChoice,
                    target: TargetKey = "predicted", low: tuple[float, ...] | None = None,
                    high: tuple[float, ...] | None = None) -> Analysis:
    """LRP with ``choice`` (plus conservation sums) and Gradient×Input of ``x`` [1, C, H, W],
    cached by model key, input bytes, rows and target (Streamlit's ``cache_data``; the
    engine call itself is :func:`lrp_engine.conservation`).

    ``low``/``high``: per-channel zB bounds in model-input units (None: the image's range).
    """
    xt = model_input(_model, x)
    comp = choice.composite(None if low is None else torch.tensor(low),
                            None if high is None else torch.tensor(high))
    with cpu_threads_for(_model, xt):
        with torch.no_grad():
            logits = _model(xt)
        k = logits.shape[1]
        t = _target(target, k, logits)
        report = le.conservation(_model, xt, t, comp)
        gxi = le.gradient_x_input(_model, xt, t)
    probs = torch.softmax(logits.float(), 1)[0]
    pred = int(probs.argmax())
    return Analysis(relevance=_np(report.explanation.relevance[0]),
                    gradient_x_input=_np(gxi[0]), probs=_np(probs), prediction=pred,
                    target=None if target == "none" else (pred if target == "predicted"
                                                          else int(target)),
                    conservation=report)


@st.cache_data(max_entries=64, show_spinner=False)
def class_maps(_model: nn.Module, model_key: str, x: np.ndarray, choice: RuleChoice,
               low: tuple[float, ...] | None = None, high: tuple[float, ...] | None = None
               ) -> np.ndarray:
    """Relevance of ``x`` [1, C, H, W] for every class: one batched pass, [K, C, H, W]."""
    xt = model_input(_model, x)
    comp = choice.composite(None if low is None else torch.tensor(low),
                            None if high is None else torch.tensor(high))
    with torch.no_grad():
        k = _model(xt).shape[1]
    with cpu_threads_for(_model, xt, k):
        r = le.explain(_model, xt.expand(k, *xt.shape[1:]), torch.arange(k, device=xt.device),
                       comp)
    return _np(r)


def compute_blrp(model: nn.Module, x: np.ndarray, choice: RuleChoice, n_samples: int,
                 alphas: Sequence[float], target: TargetKey = "predicted",
                 low: tuple[float, ...] | None = None, high: tuple[float, ...] | None = None,
                 seed: int = 0, chunk: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> BLRPMaps:
    """B-LRP of ``x`` [1, C, H, W] with ``n_samples`` dropout networks and the α-percentiles
    (uncached; ``chunk``: samples per batched backward, ``progress(done, total)``)."""
    xt = model_input(model, x)
    comp = choice.composite(None if low is None else torch.tensor(low),
                            None if high is None else torch.tensor(high))
    if target == "none":
        raise ValueError("B-LRP explains a class: choose 'predicted' or a class, not 'no class'")
    with cpu_threads_for(model, xt, n_samples):
        res = le.blrp(model, xt, None if target == "predicted" else int(target), comp,
                      n_samples=n_samples, alphas=tuple(alphas), seed=seed, chunk_size=chunk,
                      progress=progress)
    return BLRPMaps(percentiles={a: _np(res.percentile(a)[0]) for a in res.alphas},
                    mean=_np(res.mean[0]), std=_np(res.std[0]),
                    agreement=_np(res.sign_agreement[0]), probs=_np(res.probabilities[0]),
                    target=int(res.target[0]), n_samples=res.n_samples)


def _with_progress_bar(n_samples: int,
                       run: Callable[[Callable[[int, int], None]], BLRPMaps]) -> BLRPMaps:
    """``run(progress)`` with an ``st.progress`` bar that ``progress(done, total)`` moves."""
    bar = st.progress(0.0, text=f"Explaining {n_samples} sampled networks…")

    def progress(done: int, total: int) -> None:
        bar.progress(min(1.0, done / max(total, 1)),
                     text=f"{done} of {total} sampled networks explained")

    try:
        return run(progress)
    finally:
        bar.empty()


#: finished B-LRP results, process-wide and bounded: one store for :func:`blrp_maps` and
#: ``ui.report.blrp_with_progress`` (st.cache_data cannot hold the latter's: it would record
#: the progress bar's updates and fail replaying them on a cache hit)
_BLRP_RESULTS: OrderedDict[tuple, BLRPMaps] = OrderedDict()
_BLRP_LOCK = threading.Lock()
BLRP_MAX_ENTRIES = 16


def blrp_maps(model: nn.Module, model_key: str, x: np.ndarray, choice: RuleChoice,
              n_samples: int, alphas: Sequence[float], target: TargetKey = "predicted",
              low: tuple[float, ...] | None = None, high: tuple[float, ...] | None = None,
              seed: int = 0, chunk: int | None = None, progress_bar: bool = False
              ) -> BLRPMaps:
    """:func:`compute_blrp`, kept (the last :data:`BLRP_MAX_ENTRIES`) by model key, input
    bytes and settings; ``chunk`` (samples per batched backward) and ``progress_bar`` (an
    ``st.progress`` bar while it runs) change how it runs, not the result."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    args = (choice, int(n_samples), tuple(float(a) for a in alphas), target, low, high,
            int(seed))
    key = (model_key, x.shape, hashlib.sha256(x.tobytes()).hexdigest(), *args)
    with _BLRP_LOCK:
        hit = _BLRP_RESULTS.get(key)
        if hit is not None:
            _BLRP_RESULTS.move_to_end(key)
            return hit
    if progress_bar:
        res = _with_progress_bar(int(n_samples), lambda progress: compute_blrp(
            model, x, *args, chunk=chunk, progress=progress))
    else:
        res = compute_blrp(model, x, *args, chunk=chunk)
    with _BLRP_LOCK:
        _BLRP_RESULTS[key] = res
        while len(_BLRP_RESULTS) > BLRP_MAX_ENTRIES:
            _BLRP_RESULTS.popitem(last=False)
    return res
