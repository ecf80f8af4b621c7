"""explain(): one relevance pass = one forward with rule hooks + one backward.

The pass itself (hooks, rules, BatchNorm folding, residual sums) is
:class:`~lrp_engine.relevance_pass.RelevancePass`; its optional fast paths are
:mod:`lrp_engine.fusions`, its per-layer sums :mod:`lrp_engine.recorder`. This module runs
it: checks the model and the input, resolves the target, runs the backward and assembles
the :class:`Explanation`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .composites import Composite, get_composite
from .fusions import FUSED, Fusions
from .layers import layer_table
from .recorder import LayerRecorder, LayerRelevance
from .relevance_pass import DropoutFn, RelevancePass

Target = int | Tensor | None


@dataclass(frozen=True)
class Explanation:
    """Everything one relevance pass produced.

    ``relevance``: like ``x``; ``logits``: [N, K]; ``target``: [N, K] weights used;
    ``output_relevance``: [N] = Σ_k logits·target (what LRP distributes); ``layers``: sums per
    rule layer in execution order (empty unless recorded).
    """

    relevance: Tensor
    logits: Tensor
    target: Tensor
    output_relevance: Tensor
    layers: tuple[LayerRelevance, ...]
    composite: str

    @property
    def prediction(self) -> Tensor:
        return self.logits.argmax(1)


def class_indices(target: int | Tensor, n: int, device: torch.device) -> Tensor:
    """Target classes [N] long on ``device``: one class for every row (an int, or a tensor
    of one element), or one per row. The classes are not checked against a model's."""
    t = torch.as_tensor(target, device=device).to(torch.long).reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise ValueError(f"target has {t.numel()} entries for a batch of {n}")
    return t


def resolve_target(target: Target, logits: Tensor) -> Tensor:
    """Target as float weights [N, K]: None → predicted class, int or LongTensor [N] →
    one-hot, float [N, K] or [K] → as given (all zeros = "no class")."""
    n, k = logits.shape
    if target is None:
        idx = logits.detach().argmax(1)
    elif isinstance(target, int) or (isinstance(target, Tensor) and target.dim() == 0
                                     and not target.is_floating_point()):
        idx = class_indices(target, n, logits.device)
    elif isinstance(target, Tensor) and target.is_floating_point():
        w = target.to(device=logits.device, dtype=logits.dtype)
        if w.dim() == 1:
            w = w.expand(n, -1)
        if w.shape != (n, k):
            raise ValueError(f"target weights must have shape [N, {k}] = {[n, k]}, "
                             f"got {list(target.shape)}")
        if not torch.isfinite(w).all():
            raise ValueError("target weights contain NaN or Inf")
        return w
    elif isinstance(target, Tensor):  # one class per row: [N], not broadcast from [1]
        if target.numel() != n:
            raise ValueError(f"target has {target.numel()} entries for a batch of {n}")
        idx = class_indices(target, n, logits.device)
    else:
        raise TypeError(f"target must be None, an int or a tensor, got {type(target).__name__}")
    if ((idx < 0) | (idx >= k)).any():
        raise ValueError(f"target class out of range: the model has {k} classes (0…{k - 1})")
    return torch.nn.functional.one_hot(idx, k).to(logits.dtype)


def check_batchnorm_eval(model: nn.Module) -> None:
    """What a relevance pass needs: every BatchNorm in eval mode (its running statistics
    make it affine). Dropout may be in either mode: B-LRP samples it itself."""
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
            raise ValueError(
                f"BatchNorm layer {name!r} is in training mode: call model.eval() first "
                "(B-LRP samples dropout itself and keeps BatchNorm in eval mode)")


def check_eval_mode(model: nn.Module) -> None:
    """What scoring a deterministic network needs (pixel flipping): every module in eval
    mode, dropout included."""
    training = [name or type(model).__name__ for name, m in model.named_modules() if m.training]
    if training:
        raise ValueError(
            f"the model is in training mode (module {training[0]!r}"
            f"{f' and {len(training) - 1} more' if len(training) > 1 else ''}): call "
            "model.eval() first. Pixel flipping scores the deterministic network and does not "
            "change the model's mode itself.")


@contextmanager
def _eval_grad() -> Iterator[None]:
    with torch.enable_grad():
        yield


def _prepare_input(x: Tensor) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
    if x.dim() < 2:
        raise ValueError(f"x must be batched ([N, C, H, W] or [N, D]), got shape "
                         f"{list(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or Inf")
    return x.detach().clone().requires_grad_(True)


def input_shaped(ref: Tensor, g: Tensor, x: Tensor, lead: tuple[int, ...] = ()
                 ) -> tuple[Tensor, Tensor]:
    """An input-layer rule's reference and its gradient (with ``lead`` extra leading dims)
    viewed in the shape of the model input ``x``: the first layer may read a reshaped input
    (an MLP's Flatten); any other input is an error, said in plain words."""
    if ref.shape != x.shape and ref.numel() == x.numel() and ref.shape[0] == x.shape[0]:
        ref, g = ref.reshape(x.shape), g.reshape(*lead, *x.shape)
    if ref.shape != x.shape:
        raise ValueError(
            "an input-layer rule (zB, flat, w²) was assigned to a layer whose input is "
            f"not the model input (shape {list(ref.shape)} vs. {list(x.shape)}); "
            "assign it to the first layer only")
    return ref, g


def relevance_backward(logits: Tensor, target: Tensor, x: Tensor,
                       references: list[Tensor]) -> tuple[Tensor, list[Tensor | None]]:
    """Backward of the modified graph: relevance at ``x`` plus the input-layer rules'
    reference contributions; also returns the references' gradients."""
    grads = torch.autograd.grad(logits, [x, *references], grad_outputs=target,
                                allow_unused=True)
    # allow_unused: an input the graph does not reach has the gradient None
    gx: Tensor | None = grads[0]
    gref: list[Tensor | None] = list(grads[1:])
    rel = x.detach() * gx if gx is not None else torch.zeros_like(x)
    for ref, g in zip(references, gref, strict=True):
        if g is not None:
            ref, g = input_shaped(ref, g, x)
            rel = rel + ref.detach() * g
    return rel.detach(), gref


def analyze(model: nn.Module, x: Tensor, target: Target = None,
            composite: str | Composite = "epsilon", record: bool = True,
            dropout: DropoutFn | None = None, fusions: Fusions = FUSED) -> Explanation:
    """Run one relevance pass and return the relevance with its diagnostics.

    ``x``: float [N, C, H, W] (or [N, D]) on any device; the model is used in its current
    mode and left unchanged. ``record`` collects per-layer relevance sums (conservation).
    ``fusions``: the pass's fast paths (:data:`lrp_engine.fusions.PLAIN`: none); the
    relevance is the same up to float rounding.
    """
    comp = get_composite(composite)
    check_batchnorm_eval(model)
    x = _prepare_input(x)
    table = layer_table(model, x)
    recorder = LayerRecorder() if record else None
    with RelevancePass(model, table, comp, dropout=dropout, fusions=fusions,
                       recorder=recorder) as rp, _eval_grad():
        logits = model(x)
    t = resolve_target(target, logits)
    with _eval_grad():
        rel, gref = relevance_backward(logits, t, x, rp.references)
    layers: tuple[LayerRelevance, ...] = ()
    if recorder is not None:
        recorder.input_relevance(rp.input_refs, gref)
        zeros = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        layers = recorder.layers(table, rp.rules, comp.maxpool == "avg", zeros)
    logits = logits.detach()
    return Explanation(relevance=rel, logits=logits, target=t,
                       output_relevance=(logits * t).sum(1), layers=layers,
                       composite=comp.name)


def explain(model: nn.Module, x: Tensor, target: Target = None,
            composite: str | Composite = "epsilon") -> Tensor:
    """LRP relevance of ``x`` for ``target``, same shape as ``x``.

    ``composite``: a preset name (see :data:`lrp_engine.PRESETS`) or a :class:`Composite`.
    One batched forward and one backward, whatever N.
    """
    return analyze(model, x, target, composite, record=False).relevance


def gradient_x_input(model: nn.Module, x: Tensor, target: Target = None) -> Tensor:
    """Gradient × Input: ``x ⊙ ∂(Σ_k logits_k·T_k)/∂x``, same shape as ``x``."""
    x = _prepare_input(x)
    with _eval_grad():
        logits = model(x)
        if logits.dim() != 2:
            raise ValueError(f"the model must return logits [N, classes], got "
                             f"{list(logits.shape)}")
        t = resolve_target(target, logits)
        (g,) = torch.autograd.grad(logits, x, grad_outputs=t)
    return (x * g).detach()


__all__ = ["DropoutFn", "Explanation", "LayerRelevance", "RelevancePass", "Target",
           "analyze", "check_batchnorm_eval", "check_eval_mode", "class_indices", "explain",
           "gradient_x_input", "input_shaped", "relevance_backward", "resolve_target"]
