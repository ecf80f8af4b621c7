"""Explaining a volume: every slice of a series with a 2-D classifier, or the whole volume
with a 3-D one.

* :func:`explain_slices`: a series of S slices [S, C, H, W] through a 2-D model in batches,
  one relevance pass (one forward, one backward) per batch, with a progress callback after
  each batch and a cooperative stop between batches (a UI can show the slices done so far
  and cancel the rest). Each slice's relevance is what ``explain`` gives it alone: the
  rules treat the samples of a batch independently.
* :func:`explain_volume`: one volume [1, C, D, H, W] through a 3-D model (Conv3d, pooling
  in 3-d, see :mod:`lrp_engine.ops`).

Both sum relevance over channels and report each slice's total, ``slice_score``: its share
of the explained score (LRP distributes the target logit; on a conservative composite the
slice scores add up to about it), so a series can be ranked by where the "why" lies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from .composites import Composite, get_composite
from .core import analyze

__all__ = ["PREDICTED", "Predicted", "SliceExplanation", "SliceTarget", "VolumeExplanation",
           "explain_slices", "explain_volume"]

#: ``target="predicted"``: each slice (or the volume) is explained for its own top class
Predicted = Literal["predicted"]
PREDICTED: Predicted = "predicted"
#: what :func:`explain_slices` explains: each slice's top class, one class for all slices,
#: or one class per slice ([S] ints)
SliceTarget = Predicted | int | Sequence[int] | Tensor


@dataclass(frozen=True)
class SliceExplanation:
    """Per-slice explanations of a series of S slices (a 2-D model, K classes).

    ``relevance``: float32 [S, H, W], summed over input channels (input units × logit
    units: it sums to the explained logit); rows from ``done`` on are zeros (never NaN).
    ``logits``: float32 [S, K] (zeros from ``done`` on). ``predicted``, ``target``: int64 [S],
    each slice's top class and the class explained (−1 from ``done`` on: not run).
    ``slice_score``: float64 [S], Σ relevance of each slice (0 from ``done`` on).
    ``done``: slices explained (a multiple of the batch size unless all are done);
    ``stopped``: whether ``should_stop`` ended the run before the last slice.
    """

    relevance: np.ndarray
    logits: np.ndarray
    predicted: np.ndarray
    target: np.ndarray
    slice_score: np.ndarray
    done: int
    stopped: bool
    composite: str

    @property
    def total(self) -> int:
        """Slices in the series, S."""
        return int(self.relevance.shape[0])


@dataclass(frozen=True)
class VolumeExplanation:
    """The explanation of one volume by a 3-D model (K classes).

    ``relevance``: float32 [D, H, W], summed over input channels; ``logits``: float32 [K];
    ``predicted``: the top class; ``target``: the class explained; ``slice_score``: float64
    [D], Σ relevance of each depth slice; ``output_relevance``: the explained logit
    (what LRP distributes; ``slice_score.sum()`` equals it on a conservative composite).
    """

    relevance: np.ndarray
    logits: np.ndarray
    predicted: int
    target: int
    slice_score: np.ndarray
    output_relevance: float
    composite: str


def _composite(composite: str | Composite, bounds: dict[str, object]) -> Composite:
    """The composite as ``get_composite`` builds it: a preset name with its parameters
    (``low``/``high`` for zB, …), or a :class:`Composite` as given (then no parameters)."""
    return get_composite(composite, **bounds)


def _check_target(target: Predicted | int) -> None:
    if isinstance(target, str):
        if target != PREDICTED:
            raise ValueError(f"target must be {PREDICTED!r} or a class index, got {target!r}")
    elif isinstance(target, bool) or not isinstance(target, (int, np.integer)):
        raise TypeError(f"target must be {PREDICTED!r} or an int, got {type(target).__name__}")


def _engine_target(target: SliceTarget, start: int, stop: int
                   ) -> int | Tensor | None:
    """The engine's target for slices ``start:stop``: None (predicted), an int, or the
    slices' own classes from a per-slice sequence."""
    if isinstance(target, str):
        return None
    if isinstance(target, (int, np.integer)):
        return int(target)
    return torch.as_tensor(np.asarray(target)[start:stop], dtype=torch.long)


def explain_slices(model: nn.Module, slices: Tensor, composite: str | Composite,
                   target: SliceTarget = PREDICTED,
                   batch_size: int = 16,
                   progress: Callable[[int, int], None] | None = None,
                   should_stop: Callable[[], bool] | None = None,
                   **bounds: object) -> SliceExplanation:
    """Explain every slice of ``slices`` [S, C, H, W] with the 2-D classifier ``model``.

    ``composite``: a preset name or a :class:`Composite`, as ``le.explain`` takes it;
    ``**bounds``: the preset's parameters, e.g. ``low=0.0, high=1.0`` for the zB rule of
    "epsilon-gamma-box" (None or left out: each slice's own min/max). ``target``:
    ``"predicted"`` (each slice's top class), one class index for all slices, or one per
    slice ([S] ints). Slices run ``batch_size`` at a time, one engine pass per batch (the
    same relevance as one slice at a time, to float rounding); ``progress(done, S)`` is
    called after each batch, and ``should_stop()`` before each batch after the first:
    when it returns True the run ends there, with the slices done so far.
    ``model`` must be in eval mode (BatchNorm); it is left unchanged.
    """
    if not isinstance(slices, Tensor) or slices.dim() != 4:
        shape = list(slices.shape) if isinstance(slices, Tensor) else type(slices).__name__
        raise ValueError(f"slices must be a tensor [S, C, H, W], got {shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    s, _, h, w = slices.shape
    if isinstance(target, (str, int, np.integer)):
        _check_target(target)  # a bool is refused there
    elif len(target) != s:
        raise ValueError(f"{len(target)} targets for {s} slices")
    comp = _composite(composite, bounds)
    relevance = np.zeros((s, h, w), np.float32)
    logits: np.ndarray | None = None
    predicted = np.full(s, -1, np.int64)
    targets = np.full(s, -1, np.int64)
    done, stopped = 0, False
    for start in range(0, s, batch_size):
        if start > 0 and should_stop is not None and should_stop():
            stopped = True
            break
        stop = min(start + batch_size, s)
        res = analyze(model, slices[start:stop], _engine_target(target, start, stop), comp,
                      record=False)
        relevance[start:stop] = res.relevance.sum(1).float().cpu().numpy()
        out = res.logits.float().cpu().numpy()
        if logits is None:
            logits = np.zeros((s, out.shape[1]), np.float32)
        logits[start:stop] = out
        predicted[start:stop] = out.argmax(1)
        targets[start:stop] = res.target.argmax(1).cpu().numpy()
        done = stop
        if progress is not None:
            progress(done, s)
    if logits is None:  # nothing ran (an empty series)
        logits = np.zeros((s, 0), np.float32)
    return SliceExplanation(relevance=relevance, logits=logits, predicted=predicted,
                            target=targets,
                            slice_score=relevance.sum((1, 2), dtype=np.float64),
                            done=done, stopped=stopped, composite=comp.name)


def explain_volume(model: nn.Module, volume: Tensor, composite: str | Composite,
                   target: Predicted | int = PREDICTED, **bounds: object) -> VolumeExplanation:
    """Explain one volume [1, C, D, H, W] with the 3-D classifier ``model``: one relevance
    pass. ``composite``, ``**bounds`` and ``target`` (``"predicted"`` or a class index) as
    for :func:`explain_slices`. ``model`` must be in eval mode; it is left unchanged."""
    if not isinstance(volume, Tensor) or volume.dim() != 5 or volume.shape[0] != 1:
        shape = list(volume.shape) if isinstance(volume, Tensor) else type(volume).__name__
        raise ValueError(f"volume must be a tensor [1, C, D, H, W], got {shape}")
    _check_target(target)
    comp = _composite(composite, bounds)
    res = analyze(model, volume, _engine_target(target, 0, 1), comp, record=False)
    rel = res.relevance[0].sum(0).float().cpu().numpy()
    logits = res.logits[0].float().cpu().numpy()
    return VolumeExplanation(relevance=rel, logits=logits, predicted=int(logits.argmax()),
                             target=int(res.target[0].argmax()),
                             slice_score=rel.sum((1, 2), dtype=np.float64),
                             output_relevance=float(res.output_relevance[0]),
                             composite=comp.name)
