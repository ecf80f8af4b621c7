"""Faithfulness and localisation metrics for relevance maps, batched.

Pixel flipping (Bach et al. 2015; region perturbation: Samek et al. 2017): the score of the
target class is recorded, then ``pixels_per_step`` pixels
(the most relevant first) are replaced by a fill value, and so on; ``steps`` evaluations in
total, so evaluation ``s`` (0-based) sees ``s · pixels_per_step`` flipped pixels (patches).

Everything is vectorised: one sort per heatmap gives every pixel its rank; the image of
step ``s`` is ``where(rank < s · pps, fill, x)``; all N · steps images are evaluated in
chunks of ``batch_size`` by plain batched forwards. Random draws (uniform fill values, the
random order) come from a generator seeded per image by ``(seed, image id)``, so results do
not depend on ``batch_size`` nor on how a data set is split into calls (pass ``image_ids``).

:func:`region_perturbation` is the same with k×k patches as units (Samek et al. 2017).

Summaries: :func:`auc` (area under the curve on the normalised x-axis; lower for
most-relevant-first = more faithful) and :func:`aopc` (average drop from the unperturbed
score; higher for most-relevant-first = more faithful).

Localisation metrics (relevance mass accuracy, pointing game) live in
:mod:`lrp_engine.localisation`.
"""

from __future__ import annotations

import copy
import threading
import weakref
from collections.abc import Sequence
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .core import check_eval_mode, class_indices

#: what flipped pixels become (see :func:`fill_values`)
Fill = Literal["uniform", "zero", "mean", "blur"]
#: flipping order: most relevant first (MoRF), least relevant first (LeRF), or random
Order = Literal["most", "least", "random"]
#: the recorded score: the target logit or its softmax probability
Score = Literal["logit", "softmax"]
FILLS: tuple[Fill, ...] = get_args(Fill)
ORDERS: tuple[Order, ...] = get_args(Order)
SCORES: tuple[Score, ...] = get_args(Score)

#: per-image random streams (see :func:`image_generator`)
_FILL_STREAM, _ORDER_STREAM = 0, 1

Normalise = tuple[float | Sequence[float], float | Sequence[float]]


# -- random streams ------------------------------------------------------------------------

def image_generator(seed: int, image_id: int, stream: int) -> torch.Generator:
    """A CPU generator for one image and purpose, seeded from ``(seed, image_id, stream)``.

    A simple 64-bit mix (splitmix64 constants) keeps streams of different images, seeds and
    purposes apart; the same triple always gives the same draws.
    """
    mask = (1 << 64) - 1
    z = (seed * 0x9E3779B97F4A7C15 + image_id * 0xBF58476D1CE4E5B9 + stream * 0x94D049BB133111EB
         + 0x2545F4914F6CDD1D) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    z ^= z >> 31
    return torch.Generator().manual_seed(z)


def _image_ids(n: int, image_ids: Tensor | Sequence[int] | None) -> list[int]:
    if image_ids is None:
        return list(range(n))
    ids = [int(i) for i in (image_ids.tolist() if isinstance(image_ids, Tensor) else image_ids)]
    if len(ids) != n:
        raise ValueError(f"image_ids has {len(ids)} entries for a batch of {n}")
    return ids


# -- fill values -----------------------------------------------------------------------------

def _per_channel(v: float | Sequence[float], c: int, like: Tensor) -> Tensor:
    """A scalar or per-channel value as a [1, C, 1, 1] tensor."""
    t = torch.as_tensor(v, dtype=like.dtype, device=like.device).reshape(-1)
    if t.numel() not in (1, c):
        raise ValueError(f"normalise values need 1 or {c} entries, got {t.numel()}")
    return t.expand(c).reshape(1, c, 1, 1)


def _normalise(raw: Tensor, normalise: Normalise | None) -> Tensor:
    """Raw data units → model input units: ``(raw − mean) / std`` per channel."""
    if normalise is None:
        return raw
    c = raw.shape[1]
    return (raw - _per_channel(normalise[0], c, raw)) / _per_channel(normalise[1], c, raw)


def blur(x: Tensor, size: int = 5, sigma: float = 1.0) -> Tensor:
    """Gaussian-blurred copy of ``x`` [N, C, H, W] (per channel, ``size``×``size`` kernel,
    border replicated). The kernel sums to 1, so blurring commutes with normalisation."""
    ax = torch.arange(size, dtype=x.dtype, device=x.device) - (size - 1) / 2
    k1 = torch.exp(-ax**2 / (2 * sigma**2))
    k1 = k1 / k1.sum()
    c = x.shape[1]
    k2 = (k1[:, None] * k1[None, :]).expand(c, 1, size, size)
    pad = size // 2
    xp = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    return F.conv2d(xp, k2, groups=c)


def fill_values(x: Tensor, fill: Fill = "uniform", data_range: tuple[float, float] = (0.0, 1.0),
                normalise: Normalise | None = None, seed: int = 0,
                image_ids: Tensor | Sequence[int] | None = None) -> Tensor:
    """The values flipped pixels take, like ``x`` [N, C, H, W] (model input units).

    ``"uniform"``: U(data_range) in raw units, drawn per image, channel and pixel from the
    image's own generator, then normalised (MNIST: ``(U(0, 1) − MNIST_MEAN) / MNIST_STD``);
    ``"zero"``: raw 0, normalised; ``"mean"``: the image's per-channel mean; ``"blur"``: a
    Gaussian-blurred copy (5×5, σ = 1) of the image.
    """
    n, c, h, w = x.shape
    if fill == "uniform":
        lo, hi = data_range
        ids = _image_ids(n, image_ids)
        u = torch.stack([torch.rand(c, h, w, generator=image_generator(seed, i, _FILL_STREAM))
                         for i in ids]) if n else torch.empty(0, c, h, w)
        raw = (u.to(device=x.device, dtype=x.dtype) * (hi - lo) + lo)
        return _normalise(raw, normalise)
    if fill == "zero":
        return _normalise(torch.zeros_like(x), normalise)
    if fill == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()
    if fill == "blur":
        return blur(x)
    raise ValueError(f"unknown fill {fill!r}: choose one of {', '.join(FILLS)} or a tensor")


# -- ranking -------------------------------------------------------------------------------

def _unit_map(h: int, w: int, patch: int, device: torch.device) -> tuple[Tensor, int]:
    """Unit (patch) index of every pixel, [H·W] long, and the number of units."""
    hp, wp = -(-h // patch), -(-w // patch)
    rows = torch.arange(h, device=device) // patch
    cols = torch.arange(w, device=device) // patch
    return (rows[:, None] * wp + cols[None, :]).reshape(-1), hp * wp


def _unit_relevance(relevance: Tensor, n: int, h: int, w: int, unit: Tensor,
                    n_units: int) -> Tensor:
    """Relevance summed over channels and over each unit's pixels: [N, units]."""
    if relevance.dim() == 4:
        relevance = relevance.sum(1)
    if tuple(relevance.shape) != (n, h, w):
        raise ValueError(f"relevance must have shape [N, C, H, W] or [N, H, W] with "
                         f"N, H, W = {n}, {h}, {w}; got {list(relevance.shape)}")
    if not torch.isfinite(relevance).all():
        raise ValueError("relevance contains NaN or Inf")
    r = relevance.reshape(n, h * w)
    out = torch.zeros(n, n_units, dtype=r.dtype, device=r.device)
    return out.index_add_(1, unit, r)


def flip_order(unit_relevance: Tensor, order: Order = "most", seed: int = 0,
               image_ids: Tensor | Sequence[int] | None = None) -> Tensor:
    """Units in flipping order, [N, units] long.

    ``"most"``: decreasing relevance (MoRF), ``"least"``: increasing (LeRF); ties keep the
    lower index first (like repeated ``argmax``); ``"random"``: a per-image permutation from
    ``(seed, image id)``, relevance ignored.
    """
    n, m = unit_relevance.shape
    if order == "most":
        return torch.sort(unit_relevance, dim=1, descending=True, stable=True).indices
    if order == "least":
        return torch.sort(unit_relevance, dim=1, stable=True).indices
    if order == "random":
        perms = [torch.randperm(m, generator=image_generator(seed, i, _ORDER_STREAM))
                 for i in _image_ids(n, image_ids)]
        out = torch.stack(perms) if perms else torch.empty(0, m, dtype=torch.long)
        return out.to(unit_relevance.device)
    raise ValueError(f"unknown order {order!r}: choose one of {', '.join(ORDERS)}")


def pixel_ranks(relevance: Tensor, x_shape: Sequence[int], order: Order = "most", patch: int = 1,
                seed: int = 0, image_ids: Tensor | Sequence[int] | None = None
                ) -> tuple[Tensor, int]:
    """Flip rank of every pixel, [N, 1, H, W] long (0 = flipped first; the pixels of one
    patch share their patch's rank), and the number of units (pixels or patches)."""
    n, _, h, w = x_shape
    if patch < 1:
        raise ValueError(f"patch must be at least 1, got {patch}")
    unit, n_units = _unit_map(h, w, patch, relevance.device)
    ur = _unit_relevance(relevance, n, h, w, unit, n_units)
    srt = flip_order(ur, order, seed, image_ids)
    rank = torch.empty_like(srt).scatter_(
        1, srt, torch.arange(n_units, device=srt.device).expand(n, n_units))
    return rank[:, unit].reshape(n, 1, h, w), n_units


# -- model evaluation ---------------------------------------------------------------------

def channels_last_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose 4-D weights are channels-last (the other parameters and
    buffers are shared, not copied). On the CPU, convolutions and pooling run about 2× faster
    on channels-last inputs; the model itself is left untouched."""
    memo = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    twin = copy.deepcopy(model, memo)
    for module in twin.modules():
        for name, p in list(module._parameters.items()):
            if p is not None and p.dim() == 4:
                module._parameters[name] = nn.Parameter(to_channels_last(p.detach()),
                                                        requires_grad=False)
    return twin


def to_channels_last(t: Tensor) -> Tensor:
    """``t`` [N, C, H, W] with exactly channels-last strides, also when C = 1 (where
    ``contiguous(memory_format=...)`` keeps the ambiguous default strides, and convolutions
    then fall back to the slower channels-first layout)."""
    _, c, h, w = t.shape
    strides = (h * w * c, 1, w * c, c)
    if t.stride() == strides:
        return t
    return torch.empty_strided(t.shape, strides, dtype=t.dtype, device=t.device).copy_(t)


_TWINS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, nn.Module]] = \
    weakref.WeakKeyDictionary()
_TWINS_LOCK = threading.Lock()


def _signature(model: nn.Module) -> tuple:
    """Changes when the model's modules, or any 4-D weight (identity or in-place version),
    change: then a cached channels-last copy is stale."""
    mods = tuple(id(m) for m in model.modules())
    weights = tuple((id(p), p.data_ptr(), p._version) for p in model.parameters()
                    if p.dim() == 4)
    return mods, weights


def channels_last_twin(model: nn.Module) -> nn.Module:
    """:func:`channels_last_copy` of ``model``, kept per model while its modules and 4-D
    weights are unchanged; ``model`` itself when it has no 4-D weights or cannot be copied.
    For CPU runs: the caller decides that the device is the CPU."""
    if not any(p.dim() == 4 for p in model.parameters()):
        return model
    sig = _signature(model)
    with _TWINS_LOCK:
        hit = _TWINS.get(model)
        if hit is not None and hit[0] == sig:
            return hit[1]
        try:
            twin = channels_last_copy(model)
        except Exception:  # noqa: BLE001 - an uncopyable model is simply run as it is
            return model
        _TWINS[model] = (sig, twin)
        return twin


def _evaluation_model(model: nn.Module, x: Tensor, channels_last: bool | None
                      ) -> tuple[nn.Module, bool]:
    """The model to run and whether to feed channels-last inputs (auto: on the CPU, for a
    model with 4-D weights: :func:`channels_last_twin`)."""
    use = x.device.type == "cpu" if channels_last is None else channels_last
    return (channels_last_twin(model) if use else model), use


def _scores(logits: Tensor, target: Tensor, score: Score) -> Tensor:
    """Target-class score per row: logit or softmax probability, [B]."""
    if logits.dim() != 2:
        raise ValueError(f"the model must return logits [N, classes], got {list(logits.shape)}")
    if score == "softmax":
        logits = logits.log_softmax(1).exp()
    return logits.gather(1, target[:, None])[:, 0]


def _check_classes(t: Tensor, logits: Tensor) -> Tensor:
    """``t`` itself, after checking its classes exist in ``logits`` [B, K]."""
    k = logits.shape[-1]
    if ((t < 0) | (t >= k)).any():
        raise ValueError(f"target class out of range: the model has {k} classes")
    return t


def _check_inputs(x: Tensor, steps: int, pixels_per_step: int, score: Score) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() != 4:
        raise ValueError("x must be a float tensor [N, C, H, W]")
    if steps < 1 or pixels_per_step < 1:
        raise ValueError("steps and pixels_per_step must be at least 1")
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}: choose one of {', '.join(SCORES)}")


def pixel_flipping(model: nn.Module, x: Tensor, target: int | Tensor | None, relevance: Tensor,
                   steps: int = 64, pixels_per_step: int = 4, fill: Fill | Tensor = "uniform",
                   order: Order = "most", score: Score = "logit", patch: int = 1,
                   data_range: tuple[float, float] = (0.0, 1.0),
                   normalise: Normalise | None = None, seed: int = 0, batch_size: int = 1024,
                   image_ids: Tensor | Sequence[int] | None = None,
                   channels_last: bool | None = None) -> Tensor:
    """Pixel-flipping curves: the target score after 0, pps, 2·pps, … flipped pixels, [N, steps].

    ``x``: [N, C, H, W] model input; ``relevance``: [N, C, H, W] or [N, H, W] (summed over
    channels to rank pixels; all channels of a pixel are flipped together); ``target``: int,
    [N] classes, or None (the unperturbed prediction). ``curves[:, 0]`` is the unperturbed
    score; ``curves[:, s]`` the score with ``s · pixels_per_step`` units flipped, where a unit
    is a pixel, or with ``patch = k > 1`` a k×k patch ranked by its summed relevance.
    ``fill``: see :func:`fill_values`, or a tensor like ``x`` of ready values. ``order``:
    ``"most"`` relevant first (MoRF), ``"least"`` (LeRF) or ``"random"``. ``score``:
    ``"logit"`` or ``"softmax"`` (the target probability). ``seed`` and ``image_ids`` (global
    image indices, default 0…N−1) seed the per-image random draws. ``batch_size``: images per
    forward (results do not depend on it beyond float rounding). ``channels_last``: run a
    channels-last copy of the model (None: on the CPU). The model must be in eval mode and is
    not modified.
    """
    _check_inputs(x, steps, pixels_per_step, score)
    check_eval_mode(model)
    x = x.detach()
    ranks, n_units = pixel_ranks(relevance.detach().to(x.device), x.shape, order, patch, seed,
                                 image_ids)
    if (steps - 1) * pixels_per_step > n_units:
        raise ValueError(f"{steps} steps of {pixels_per_step} would flip "
                         f"{(steps - 1) * pixels_per_step} units, but the image has only "
                         f"{n_units}: use at most {n_units // pixels_per_step + 1} steps")
    if isinstance(fill, Tensor):
        if fill.shape != x.shape:
            raise ValueError(f"a fill tensor must be shaped like x {list(x.shape)}")
        values = fill.detach().to(device=x.device, dtype=x.dtype)
    else:
        values = fill_values(x, fill, data_range, normalise, seed, image_ids)
    net, cl = _evaluation_model(model, x, channels_last)
    return _evaluate_curves(net, x, values, ranks, target, steps, pixels_per_step, score,
                            batch_size, cl)


def _evaluate_curves(net: nn.Module, x: Tensor, values: Tensor, ranks: Tensor,
                     target: int | Tensor | None, steps: int, pps: int, score: Score,
                     batch_size: int, cl: bool) -> Tensor:
    """Evaluate the N·steps perturbed images in chunks of ``batch_size`` rows, image-major
    (row j = image j // steps at step j % steps), so an image's step 0, which gives its
    target when ``target`` is None, comes before its other steps."""
    n = x.shape[0]
    out = torch.empty(n * steps, dtype=x.dtype, device=x.device)
    t = None if target is None else class_indices(target, n, x.device)
    t_pred = torch.zeros(n, dtype=torch.long, device=x.device)
    thresholds = (torch.arange(steps, device=x.device) * pps).view(1, steps, 1, 1, 1)
    total = n * steps
    with torch.no_grad():
        for j0 in range(0, total, batch_size):
            j1 = min(j0 + batch_size, total)
            i0, i1 = j0 // steps, (j1 - 1) // steps + 1
            batch = _perturbed(x[i0:i1], values[i0:i1], ranks[i0:i1], thresholds, cl)
            logits = net(batch[j0 - i0 * steps:j1 - i0 * steps])
            j = torch.arange(j0, j1, device=x.device)
            img = j // steps
            if t is None:
                first = j % steps == 0
                t_pred[img[first]] = logits[first].argmax(1)
                tb = t_pred[img]
            else:
                tb = _check_classes(t, logits)[img]
            out[j0:j1] = _scores(logits, tb, score)
    return out.view(n, steps)


def region_perturbation(model: nn.Module, x: Tensor, target: int | Tensor | None,
                        relevance: Tensor, region: int = 9, steps: int | None = None,
                        regions_per_step: int = 1, fill: Fill | Tensor = "uniform",
                        order: Order = "most", score: Score = "logit",
                        data_range: tuple[float, float] = (0.0, 1.0),
                        normalise: Normalise | None = None, seed: int = 0,
                        batch_size: int = 1024,
                        image_ids: Tensor | Sequence[int] | None = None,
                        channels_last: bool | None = None) -> Tensor:
    """Region-perturbation curves (Samek et al. 2017), [N, steps]: :func:`pixel_flipping`
    with ``region``×``region`` patches (ranked by their summed relevance; edge patches are
    cut by the border) as units, ``regions_per_step`` of them replaced per step.

    ``steps``: evaluations including the unperturbed one; None: until every region is
    replaced (``⌈H/region⌉·⌈W/region⌉ // regions_per_step + 1``). The other arguments as
    for :func:`pixel_flipping` (the paper's fill: ``"uniform"`` noise).
    """
    if steps is None:  # a bad x, region or regions_per_step: pixel_flipping says so
        h, w = x.shape[-2:] if isinstance(x, Tensor) and x.dim() == 4 else (1, 1)
        k = max(region, 1)
        steps = (-(-h // k) * -(-w // k)) // max(regions_per_step, 1) + 1
    return pixel_flipping(model, x, target, relevance, steps=steps,
                          pixels_per_step=regions_per_step, fill=fill, order=order,
                          score=score, patch=region, data_range=data_range,
                          normalise=normalise, seed=seed, batch_size=batch_size,
                          image_ids=image_ids, channels_last=channels_last)


def _perturbed(x: Tensor, values: Tensor, ranks: Tensor, thresholds: Tensor, cl: bool
               ) -> Tensor:
    """All steps of k images, [k·steps, C, H, W] (channels-last if ``cl``): pixel p of
    image i at step s is ``values`` where ``rank < s · pps``, else ``x``."""
    k, c, h, w = x.shape
    steps = thresholds.shape[1]
    flat = (k * steps, c, h, w)
    buf = (torch.empty_strided(flat, (h * w * c, 1, w * c, c), dtype=x.dtype, device=x.device)
           if cl else torch.empty(flat, dtype=x.dtype, device=x.device))
    view5 = buf.as_strided((k, steps, c, h, w), (steps * buf.stride(0), *buf.stride()))
    torch.where(ranks[:, None] < thresholds, values[:, None], x[:, None], out=view5)
    return buf


def fraction_flipped(steps: int, pixels_per_step: int, n_units: int) -> Tensor:
    """The x-axis of a curve: fraction of units flipped at each evaluation, [steps]."""
    return torch.arange(steps, dtype=torch.float64) * pixels_per_step / n_units


# -- summaries ----------------------------------------------------------------------------

def auc(curves: Tensor, dx: float | None = None) -> Tensor:
    """Area under each curve by the trapezoidal rule, [N] from [N, steps].

    The x-axis is normalised to [0, 1] (``dx = 1 / (steps − 1)``) unless ``dx`` is given
    (e.g. the fraction of pixels per step), so a constant curve c has AUC c. For
    most-relevant-first flipping, LOWER is better (the score collapses sooner = the
    relevance found what the model uses); for least-relevant-first, higher is better.
    """
    steps = curves.shape[-1]
    if steps < 2:
        raise ValueError("a curve needs at least 2 points for an area")
    return torch.trapezoid(curves, dx=1.0 / (steps - 1) if dx is None else dx, dim=-1)


def aopc(curves: Tensor) -> Tensor:
    """Area over the perturbation curve (Samek et al. 2017), [N] from [N, L+1]:

    ``AOPC = 1/(L+1) · Σ_{k=0..L} (f(x⁰) − f(x^k))``, the average drop from the unperturbed
    score (k = 0 contributes 0). For most-relevant-first flipping, HIGHER is better; a
    constant curve has AOPC 0. Not the same as ``1 − AUC``: no x-axis, no trapezoids, and it
    is relative to each image's own starting score.
    """
    return (curves[..., :1] - curves).mean(-1)
