"""Operations a model's ``forward()`` runs outside of modules: residual sums and attention.

A torchvision ResNet adds its shortcut with ``out += identity``; a ViT's attention runs
``softmax(q kᵀ) v`` inside ``F.multi_head_attention_forward``. No module hook sees these,
so a :class:`~torch.overrides.TorchFunctionMode` does, for one forward (modes are per
thread, like the relevance pass's hooks):

* **Residual sums**: ``a + b`` (``torch.add``, ``Tensor.add``/``add_``, ``+``, ``+=``) of
  two activations of the same shape (both computed from the input, not parameters or
  constants). The probe gives each one a row in the layer table (kind :class:`Sum`); the
  relevance pass splits relevance between the summands under the row's rule (a stabilised
  proportional split by default: LRP-ε with a tiny ε).
* **Attention** (CP-LRP, Ali et al. 2022, "conservative propagation"): attention weights
  are constants for relevance, so relevance flows through the values only. Every softmax
  over a tensor of 3 or more dimensions (attention maps are [batch, heads, queries, keys];
  a classifier's own class softmax is [N, K]) returns its values detached, and
  ``scaled_dot_product_attention`` and ``multi_head_attention_forward`` are computed
  explicitly with the detached softmax (forward values stay the native kernels'). Why
  CP-LRP and not AttnLRP (Achtibat et al. 2024): it needs no rule for the softmax and the
  query-key product, only constants, so every other layer keeps the rules a composite
  gives it; the in- and out-projections inside ``nn.MultiheadAttention`` pass relevance as
  LRP-0 (their biases absorb their share).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode


class Sum:
    """Marker type of the layer-table rows for residual sums: select them with
    ``ByType(Sum)`` (or ``ByType("Sum")``) in a composite."""


SUM_KIND = Sum.__name__

_ADDS = {torch.add, Tensor.add, Tensor.add_, Tensor.__add__, Tensor.__iadd__,
         Tensor.__radd__}
_INPLACE = {Tensor.add_, Tensor.__iadd__}
_SOFTMAX = {torch.softmax, Tensor.softmax, F.softmax}
_SDPA = {F.scaled_dot_product_attention}
_MHA = {F.multi_head_attention_forward}
_MHA_SIGNATURE = inspect.signature(F.multi_head_attention_forward)

#: ``on_sum(a, b, inplace, native)``: the output to use for the residual sum ``a + b``,
#: where ``native()`` computes the sum as the model wrote it
SumHandler = Callable[[Tensor, Tensor, bool, Callable[[], Tensor]], Tensor]


def residual_operands(func: Any, args: tuple, kwargs: dict | None) -> tuple[Tensor, Tensor] | None:
    """``(a, b)`` if the call is a residual sum (see the module docstring), else None."""
    if func not in _ADDS or len(args) != 2 or (kwargs and kwargs.get("alpha", 1) != 1):
        return None
    a, b = args
    if not (isinstance(a, Tensor) and isinstance(b, Tensor)):
        return None
    if a.grad_fn is None or b.grad_fn is None or a.shape != b.shape:
        return None
    if not (a.is_floating_point() and b.is_floating_point()):
        return None
    return a, b


def _is_attention_softmax(func: Any, args: tuple) -> bool:
    return func in _SOFTMAX and bool(args) and isinstance(args[0], Tensor) and args[0].dim() >= 3


def attention_with_constant_weights(query: Tensor, key: Tensor, value: Tensor,
                                    attn_mask: Tensor | None = None, dropout_p: float = 0.0,
                                    is_causal: bool = False, scale: float | None = None,
                                    enable_gqa: bool = False) -> Tensor:
    """``softmax(q kᵀ · scale + mask) v`` with the softmax detached (no dropout: the
    relevance pass explains the model in eval mode). Shapes as
    :func:`torch.nn.functional.scaled_dot_product_attention`: [..., L, E] queries,
    [..., S, E] keys, [..., S, Ev] values → [..., L, Ev]."""
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        rep = query.shape[-3] // key.shape[-3]
        key = key.repeat_interleave(rep, dim=-3)
        value = value.repeat_interleave(rep, dim=-3)
    s = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    logits = (query @ key.transpose(-2, -1)) * s
    if is_causal:
        lq, lk = query.shape[-2], key.shape[-2]
        keep = torch.ones(lq, lk, dtype=torch.bool, device=query.device).tril()
        logits = logits.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        logits = (logits.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool
                  else logits + attn_mask)
    weights = torch.softmax(logits, dim=-1).detach()
    return weights @ value


def multi_head_attention_with_constant_weights(*args: Any, **kwargs: Any) -> Tensor:
    """The output of :func:`torch.nn.functional.multi_head_attention_forward` (what
    ``nn.MultiheadAttention`` runs) computed explicitly with detached softmax weights: the
    in- and out-projections are linear maps, the attention a constant mixing of the values.
    Same arguments; [L, N, E] (or unbatched [L, E]) → [L, N, E]."""
    p = _MHA_SIGNATURE.bind(*args, **kwargs)
    p.apply_defaults()
    a = p.arguments
    if a["bias_k"] is not None or a["bias_v"] is not None or a["add_zero_attn"] \
            or a["static_k"] is not None or a["static_v"] is not None:
        raise NotImplementedError("multi-head attention with bias_k/bias_v, add_zero_attn or "
                                  "static keys cannot be explained")
    q, k, v = a["query"], a["key"], a["value"]
    unbatched = q.dim() == 2
    if unbatched:
        q, k, v = q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)
    (n_q, n, e), n_k, h = q.shape, k.shape[0], a["num_heads"]
    if a["use_separate_proj_weight"]:
        weights = (a["q_proj_weight"], a["k_proj_weight"], a["v_proj_weight"])
    else:
        weights = a["in_proj_weight"].chunk(3)
    biases = (None,) * 3 if a["in_proj_bias"] is None else a["in_proj_bias"].chunk(3)

    def heads(t: Tensor, w: Tensor, b: Tensor | None) -> Tensor:  # [L, N, E] → [N, h, L, d]
        t = F.linear(t, w, b)
        return t.reshape(t.shape[0], n, h, -1).permute(1, 2, 0, 3)

    qh, kh, vh = (heads(t, w, b) for t, w, b in zip((q, k, v), weights, biases, strict=True))
    logits = qh @ kh.transpose(-2, -1) / math.sqrt(qh.shape[-1])
    mask = a["attn_mask"]
    if mask is not None:
        mask = mask.view(n, h, n_q, n_k) if mask.dim() == 3 else mask
        logits = (logits.masked_fill(mask, float("-inf")) if mask.dtype == torch.bool
                  else logits + mask)
    padding = a["key_padding_mask"]
    if padding is not None:
        padding = padding.view(n, 1, 1, n_k)
        logits = (logits.masked_fill(padding, float("-inf")) if padding.dtype == torch.bool
                  else logits + padding)
    out = (torch.softmax(logits, -1).detach() @ vh).permute(2, 0, 1, 3).reshape(n_q, n, e)
    out = F.linear(out, a["out_proj_weight"], a["out_proj_bias"])
    return out.squeeze(1) if unbatched else out


class ProbeMode(TorchFunctionMode):
    """Records, in execution order, each residual sum with the name of the innermost module
    running it (``context()``), and whether attention was seen."""

    def __init__(self, context: Callable[[], str]) -> None:
        super().__init__()
        self.context = context
        self.sums: list[tuple[str, tuple[int, ...]]] = []  # (module name, per-sample shape)
        self.attention = False

    def __torch_function__(self, func: Any, types: tuple, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        operands = residual_operands(func, args, kwargs)
        if operands is not None:
            self.sums.append((self.context(), tuple(operands[0].shape[1:])))
        elif func in _SDPA or func in _MHA or _is_attention_softmax(func, args):
            self.attention = True
        return func(*args, **kwargs)


class PassMode(TorchFunctionMode):
    """During a relevance pass: hands each residual sum to ``on_sum`` and makes attention
    weights constants (see the module docstring). The engine's own hooks run ``paused``:
    the additions inside a rule (γ's terms, αβ's parts) are not residual sums."""

    def __init__(self, on_sum: SumHandler) -> None:
        super().__init__()
        self.on_sum = on_sum
        #: > 0 while the engine's own hooks run (their tensor ops are not the model's)
        self.paused = 0

    def __torch_function__(self, func: Any, types: tuple, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if self.paused:
            return func(*args, **kwargs)
        operands = residual_operands(func, args, kwargs)
        if operands is not None:
            return self.on_sum(*operands, func in _INPLACE, lambda: func(*args, **kwargs))
        if _is_attention_softmax(func, args):
            return func(*args, **kwargs).detach()
        if func in _SDPA:
            native = func(*args, **kwargs)
            out = attention_with_constant_weights(*args, **kwargs)
            return out + (native - out).detach()
        if func in _MHA:  # a Python function: the calls inside it are not seen here
            native, weights = func(*args, **kwargs)
            out = multi_head_attention_with_constant_weights(*args, **kwargs)
            return out + (native - out).detach(), weights
        return func(*args, **kwargs)


__all__ = ["PassMode", "ProbeMode", "SUM_KIND", "Sum", "attention_with_constant_weights",
           "multi_head_attention_with_constant_weights", "residual_operands"]
