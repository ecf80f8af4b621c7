"""Bayesian LRP (B-LRP): relevance under the MC-dropout posterior, batched.

Each posterior sample is one network: every dropout layer gets a mask drawn once per sample
(shared by all images, so a sample is the same network for every image) and the same mask is
used in that sample's forward and relevance pass. Only dropout is stochastic; everything else
keeps the model's eval behaviour, and the model itself is never modified.

Speed: the layers before the first dropout (the "trunk") do not depend on the sample, so the
trunk's forward runs on c copies of each image only (c ≤ S, see :func:`trunk_copies`); at
the first dropout the activation is copied for all S samples, the head runs batched, and the
trunk's relevance backward runs on its graph once per group of c samples (``is_grads_batched``
/vmap is no help: several of these backward ops have no batching rule and fall back to a
per-sample loop). c balances the trunk's forward on c copies against the fixed cost of S/c
backward calls: 1 for VGG-16's heavy trunk, about 15 for LeNet's light one. Where no trunk can
be shared (e.g. a skip connection around a dropout) or c reaches S, the input is replicated
for all samples instead; all give the same numbers.

Percentiles per pixel over samples use numpy's default definition (linear interpolation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from .composites import Composite, get_composite
from .core import (
    RelevancePass,
    Target,
    _prepare_input,
    check_batchnorm_eval,
    input_shaped,
    resolve_target,
)
from .layers import DROPOUT_TYPES, LayerTable, layer_table, model_macs

DEFAULT_ALPHAS = (5, 25, 50, 75, 95)
#: B-LRP's trunk sharing: always, never, or ``"auto"`` (by the trunk's size)
ShareTrunk = bool | Literal["auto"]


@dataclass(frozen=True)
class BLRPResult:
    """B-LRP maps for N images from S posterior samples.

    ``percentiles``: [A, N, *x.shape[1:]], one map per α in ``alphas`` (α = 5: relevance
    nearly all samples agree on; α = 95: relevance some sample gives). ``mean``, ``std``
    (population, ddof=0), ``sign_agreement`` (fraction of samples with positive relevance,
    0…1): [N, ...]. ``target``: [N] classes explained; ``probabilities``: [N, K] posterior
    mean softmax. ``samples``: [S, N, ...] when kept.
    """

    percentiles: Tensor
    alphas: tuple[float, ...]
    mean: Tensor
    std: Tensor
    sign_agreement: Tensor
    target: Tensor
    probabilities: Tensor
    n_samples: int
    samples: Tensor | None = None

    def percentile(self, alpha: float) -> Tensor:
        """The [N, ...] map for one of the computed α."""
        return self.percentiles[self.alphas.index(alpha)]


def has_dropout(model: nn.Module) -> bool:
    """Whether ``model`` has a dropout layer: what B-LRP samples (without one, every sample
    is the same network)."""
    return any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules())


def percentiles(samples: Tensor, alphas: Sequence[float]) -> Tensor:
    """Per-element percentiles over dim 0, numpy's "linear" method: [S, ...] → [A, ...]."""
    s = samples.shape[0]
    for a in alphas:
        if not 0 <= a <= 100:
            raise ValueError(f"percentile α must lie in [0, 100], got {a}")
    # sort along a contiguous last dimension (faster than sorting along dim 0)
    srt = samples.reshape(s, -1).t().contiguous().sort(dim=1).values
    pos = torch.tensor([a / 100 * (s - 1) for a in alphas], dtype=torch.float64)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=s - 1)
    frac = (pos - lo).to(samples.dtype).to(samples.device)
    lo, hi = lo.to(samples.device), hi.to(samples.device)
    out = srt[:, lo] + (srt[:, hi] - srt[:, lo]) * frac
    return out.t().reshape(len(alphas), *samples.shape[1:])


def dropout_masks(model: nn.Module, table: LayerTable, n_samples: int, seed: int,
                  dtype: torch.dtype, device: torch.device) -> dict[str, Tensor]:
    """One mask per dropout layer and sample, drawn on the CPU from ``seed`` (the same masks
    on CPU and GPU): [S, *shape] with shape = the layer's output shape without the batch
    dimension, or [C, 1, …] for channel dropout. Values are 0 or 1/(1-p)."""
    g = torch.Generator().manual_seed(seed)
    masks = {}
    for info in table:
        if info.role != "dropout":
            continue
        module = model.get_submodule(info.name)
        if isinstance(module, nn.AlphaDropout):
            raise ValueError(f"B-LRP does not support AlphaDropout ({info.name!r})")
        assert isinstance(module, DROPOUT_TYPES)  # what the role "dropout" means
        p = float(module.p)
        shape = tuple(info.out_shape)
        if isinstance(module, (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)):
            shape = (shape[0],) + (1,) * (len(shape) - 1)
        keep = torch.rand((n_samples, *shape), generator=g) >= p
        scale = 1.0 / (1.0 - p) if p < 1 else 0.0
        masks[info.name] = (keep.to(dtype) * scale).to(device)
    return masks


class _Sampler:
    """The dropout callback of one B-LRP pass over ``s`` samples × ``n`` images.

    ``share_trunk``: the trunk ran on the input's copies (any number); the first dropout
    takes the first copy's activation [n, ...], replicates it for all samples and starts the
    head from a fresh leaf ``head_input``; otherwise the input was replicated for all
    samples already and dropout only applies masks. Batches are sample-major: row = s·n + i.
    """

    def __init__(self, masks: dict[str, Tensor], s: int, n: int, share_trunk: bool) -> None:
        self.masks, self.s, self.n = masks, s, n
        self.share_trunk = share_trunk
        self.trunk_output: Tensor | None = None
        self.head_input: Tensor | None = None

    def __call__(self, name: str, module: nn.Module, a: Tensor) -> Tensor:
        if self.share_trunk and self.head_input is None:
            if a.shape[0] % self.n:
                raise _NotShareable(f"dropout {name!r} saw batch {a.shape[0]}")
            self.trunk_output = a
            first = a.detach()[:self.n]
            rep = first.unsqueeze(0).expand(self.s, *first.shape).reshape(-1, *a.shape[1:])
            self.head_input = rep.clone().requires_grad_(True)
            a = self.head_input
        if a.shape[0] != self.s * self.n:
            raise _NotShareable(f"dropout {name!r} saw batch {a.shape[0]}")
        mask = self.masks[name]
        full = mask.unsqueeze(1).expand(self.s, self.n, *mask.shape[1:])
        return a * full.reshape(self.s * self.n, *mask.shape[1:])


class _NotShareable(RuntimeError):
    """The model's layers after the first dropout also use trunk activations."""


def _posterior_target(logits: Tensor, s: int, n: int, target: Target) -> tuple[Tensor, Tensor]:
    """Target weights for all rows [S·N, K], and the posterior mean softmax [N, K]."""
    probs = logits.detach().softmax(1).view(s, n, -1).mean(0)
    if target is None:
        t = resolve_target(probs.argmax(1), probs)
    else:
        t = resolve_target(target, probs)
    return t.repeat(s, 1), probs


def _finish(rel: Tensor, alphas: Sequence[float], target: Tensor, probs: Tensor,
            keep: bool) -> BLRPResult:
    return BLRPResult(
        percentiles=percentiles(rel, alphas), alphas=tuple(float(a) for a in alphas),
        mean=rel.mean(0), std=rel.std(0, correction=0) if rel.shape[0] > 1
        else torch.zeros_like(rel[0]), sign_agreement=(rel > 0).to(rel.dtype).mean(0),
        target=target, probabilities=probs, n_samples=rel.shape[0],
        samples=rel if keep else None)


def blrp(model: nn.Module, x: Tensor, target: Target = None,
         composite: str | Composite = "epsilon", n_samples: int = 100,
         alphas: Sequence[float] = DEFAULT_ALPHAS, seed: int = 0,
         chunk_size: int | None = None, keep_samples: bool = False,
         share_trunk: ShareTrunk = "auto",
         progress: Callable[[int, int], None] | None = None) -> BLRPResult:
    """B-LRP of ``x`` [N, C, H, W] (or [N, D]) with ``n_samples`` MC-dropout networks.

    ``target``: as in :func:`lrp_engine.explain`; None → the posterior-mean prediction.
    ``chunk_size``: samples per batched pass when the input is replicated (memory bound),
    and per progress report; results do not depend on it. ``share_trunk``: run the layers
    before the first dropout once per image (True), replicate the input for every sample
    (False), or decide by the trunk's size ("auto": the shared trunk's backward loops over
    samples, which pays off only when each step is big enough to hide the per-call
    overhead). ``progress(done, total)`` is called after each chunk of samples.
    """
    if n_samples < 1:
        raise ValueError("n_samples must be at least 1")
    comp = get_composite(composite)
    check_batchnorm_eval(model)
    x = _prepare_input(x)
    table = layer_table(model, x)
    masks = dropout_masks(model, table, n_samples, seed, x.dtype, x.device)
    n = x.shape[0]
    copies = trunk_copies(model_macs(model, table, stop_at_dropout=True) * n, n_samples)
    if chunk_size is not None:
        copies = min(copies, chunk_size)
    if share_trunk == "auto":
        share_trunk = copies < n_samples
    if share_trunk and masks:
        try:
            return _blrp_shared(model, x, table, comp, masks, target, n_samples, n, alphas,
                                copies, keep_samples, progress)
        except _NotShareable:
            pass
    return _blrp_replicated(model, x, table, comp, masks, target, n_samples, n, alphas,
                            chunk_size, keep_samples, progress)


#: the fixed cost of one backward call through a trunk, in multiply-accumulates of trunk
#: work it takes as long as (≈ 0.3 ms on this 2-core CPU: LeNet's per-sample loop, measured)
BACKWARD_CALL_MACS = 1e7


def trunk_copies(trunk_macs: float, n_samples: int) -> int:
    """How many copies of the input the shared trunk runs on (its backward then takes that
    many samples per call): the c minimising c·trunk + (S/c)·call overhead, i.e.
    √(S · overhead / trunk), then evened out so that the S samples split into equal groups.
    ``trunk_macs``: the trunk's multiply-accumulates for the whole input batch."""
    c = round((n_samples * BACKWARD_CALL_MACS / max(trunk_macs, 1.0)) ** 0.5)
    c = min(max(c, 1), n_samples)
    calls = -(-n_samples // c)
    return -(-n_samples // calls)


def _input_relevance(x: Tensor, refs: list[Tensor], grads: Sequence[Tensor | None],
                     lead: tuple[int, ...]) -> Tensor:
    """x ⊙ g_x + Σ ref ⊙ g_ref; ``lead`` is the grads' extra leading shape ((S,) when batched
    over samples, () otherwise)."""
    rel = torch.zeros(*lead, *x.shape, dtype=x.dtype, device=x.device)
    for t, g in zip([x, *refs], grads, strict=True):
        if g is None:
            continue
        t, g = input_shaped(t, g, x, lead)
        rel = rel + t.detach() * g
    return rel


def _blrp_shared(model, x, table, comp, masks, target, s, n, alphas, copies, keep,
                 progress) -> BLRPResult:
    """The trunk runs on ``copies`` copies of ``x``; its backward takes that many samples
    per call (the last group padded with zero gradients)."""
    sampler = _Sampler(masks, s, n, share_trunk=True)
    xr = x.detach().unsqueeze(0).expand(copies, *x.shape).reshape(-1, *x.shape[1:])
    xr = xr.clone().requires_grad_(True)
    with RelevancePass(model, table, comp, dropout=sampler, reuse_ratios=copies < s) as rp, \
            torch.enable_grad():
        logits = model(xr)
    if logits.shape[0] != s * n or sampler.head_input is None \
            or sampler.trunk_output is None or sampler.trunk_output.shape[0] != copies * n:
        raise _NotShareable("the head did not run on all samples")
    t, probs = _posterior_target(logits, s, n, target)
    with torch.enable_grad():
        (g_head,) = torch.autograd.grad(logits, sampler.head_input, grad_outputs=t)
        g_head = g_head.view(s, n, *g_head.shape[1:])
        rel = torch.empty(s, *x.shape, dtype=x.dtype, device=x.device)
        for i0 in range(0, s, copies):
            k = min(copies, s - i0)
            g = g_head[i0:i0 + k]
            if k < copies:
                g = torch.cat([g, g.new_zeros(copies - k, *g.shape[1:])])
            grads = torch.autograd.grad(
                sampler.trunk_output, [xr, *rp.references],
                grad_outputs=g.reshape(copies * n, *g.shape[2:]),
                retain_graph=i0 + copies < s, allow_unused=True)
            r = _input_relevance(xr, rp.references, grads, ()).detach()
            rel[i0:i0 + k] = r.view(copies, *x.shape)[:k]
            if progress is not None:
                progress(i0 + k, s)
    return _finish(rel, alphas, t[:n].argmax(1), probs, keep)


def _replicated_pass(model: nn.Module, x: Tensor, table: LayerTable, comp: Composite,
                     masks: dict[str, Tensor], c0: int, k: int
                     ) -> tuple[Tensor, Tensor, RelevancePass]:
    """Forward of samples c0…c0+k−1 on a replicated input [k·N, ...]: (input, logits, pass)."""
    n = x.shape[0]
    sampler = _Sampler({name: m[c0:c0 + k] for name, m in masks.items()}, k, n, False)
    xr = x.detach().unsqueeze(0).expand(k, *x.shape).reshape(-1, *x.shape[1:])
    xr = xr.clone().requires_grad_(True)
    with RelevancePass(model, table, comp, dropout=sampler) as rp, torch.enable_grad():
        logits = model(xr)
    return xr, logits, rp


def _plus(total: Tensor | None, t: Tensor) -> Tensor:
    """A running sum that starts at its first term."""
    return t if total is None else total + t


def _blrp_replicated(model, x, table, comp, masks, target, s, n, alphas, chunk_size, keep,
                     progress) -> BLRPResult:
    s_run = s if masks else 1  # without dropout every sample is the same network
    step = min(chunk_size or s_run, s_run)
    if target is None and s_run > step:  # the posterior-mean prediction needs all samples
        psum: Tensor | None = None
        for c0 in range(0, s_run, step):
            k = min(step, s_run - c0)
            logits = _replicated_pass(model, x, table, comp, masks, c0, k)[1].detach()
            psum = _plus(psum, logits.softmax(1).view(k, n, -1).sum(0))
        assert psum is not None
        target = psum.argmax(1)
    parts: list[Tensor] = []
    psum = None
    for c0 in range(0, s_run, step):
        k = min(step, s_run - c0)
        xr, logits, rp = _replicated_pass(model, x, table, comp, masks, c0, k)
        t, probs = _posterior_target(logits, k, n, target)
        with torch.enable_grad():
            grads = torch.autograd.grad(logits, [xr, *rp.references], grad_outputs=t,
                                        allow_unused=True)
        rel = _input_relevance(xr, rp.references, grads, ())
        parts.append(rel.detach().view(k, n, *x.shape[1:]))
        psum = _plus(psum, probs * k)
        if progress is not None:
            progress(min(s, round((c0 + k) * s / s_run)), s)
    rel = torch.cat(parts)
    if s_run < s:
        rel = rel.expand(s, *rel.shape[1:])
    assert psum is not None  # s_run ≥ 1: the loop ran
    probs = psum / s_run
    return _finish(rel, alphas, resolve_target(target, probs).argmax(1), probs, keep)
