"""explain(): one relevance pass = one forward with rule hooks + one backward.

The mechanism (design.md): during the forward pass, each rule layer's output ``z`` is
replaced by ``m + (z − m).detach()`` where ``m`` is built by the layer's rule (see
:mod:`lrp_engine.rules`). The forward values are unchanged; the gradient of the target score
with respect to the input, times the input, is then the LRP relevance. ReLU, max pooling
("winner"), dropout, reshapes and residual additions need nothing: their plain gradient
already carries relevance correctly (a residual sum splits it in proportion to the
summands). Hooks are attached for one pass and removed in ``finally``; they act only in the
thread (context) that registered them, so a model shared between sessions is safe.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .composites import Composite, get_composite
from .graph_ops import PassMode
from .layers import LayerInfo, LayerTable, layer_table
from .norms import constant_statistics
from .ops import AffineOp, batchnorm_op, folded_op, linear_op, pool_op, sum_op
from .rules import Rule, pass_through

_ACTIVE_PASS: contextvars.ContextVar[object | None] = contextvars.ContextVar(
    "lrp_active_pass", default=None)

Target = int | Tensor | None
#: ``dropout(name, module, input) -> output or None``: replaces a dropout layer's output
DropoutFn = Callable[[str, nn.Module, Tensor], "Tensor | None"]


@dataclass(frozen=True)
class LayerRelevance:
    """Relevance sums of one rule layer, per sample ([N] tensors)."""

    index: int
    name: str
    kind: str
    rule: str
    input_relevance: Tensor
    output_relevance: Tensor


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


def resolve_target(target: Target, logits: Tensor) -> Tensor:
    """Target as float weights [N, K]: None → predicted class, int or LongTensor [N] →
    one-hot, float [N, K] or [K] → as given (all zeros = "no class")."""
    n, k = logits.shape
    if target is None:
        idx = logits.detach().argmax(1)
    elif isinstance(target, int) or (isinstance(target, Tensor) and target.dim() == 0
                                     and not target.is_floating_point()):
        idx = torch.full((n,), int(target), dtype=torch.long, device=logits.device)
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
    elif isinstance(target, Tensor):
        idx = target.to(device=logits.device, dtype=torch.long).reshape(-1)
        if idx.numel() != n:
            raise ValueError(f"target has {idx.numel()} entries for a batch of {n}")
    else:
        raise TypeError(f"target must be None, an int or a tensor, got {type(target).__name__}")
    if ((idx < 0) | (idx >= k)).any():
        raise ValueError(f"target class out of range: the model has {k} classes (0…{k - 1})")
    return torch.nn.functional.one_hot(idx, k).to(logits.dtype)


def _check_model(model: nn.Module) -> None:
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
            raise ValueError(
                f"BatchNorm layer {name!r} is in training mode: call model.eval() first "
                "(B-LRP samples dropout itself and keeps BatchNorm in eval mode)")


class RelevancePass:
    """Context manager: attaches the hooks of one relevance pass and always removes them.

    Inside it, ``model(x)`` computes the usual forward values while recording the modified
    graph. ``references`` collects the leaves created by input-layer rules (zB bounds, flat
    ones); their ``ref * grad`` is relevance at the input.
    """

    def __init__(self, model: nn.Module, table: LayerTable, composite: Composite,
                 record: bool = False, dropout: DropoutFn | None = None,
                 reuse_ratios: bool = False) -> None:
        self.model = model
        self.table = table
        self.composite = composite
        self.rules = composite.assign(table)
        self.record = record
        self.dropout = dropout
        self.reuse_ratios = reuse_ratios
        self.references: list[Tensor] = []
        self._ref_owner: list[str] = []
        self._current: str = ""
        self._stash: dict[int, Tensor] = {}
        self._denominators: dict[int, tuple[Tensor, Tensor]] = {}  # id(z) → (z, d)
        self._mergeable: dict[int, tuple] = {}  # id(z) → (z, its hook's handle, rule)
        self._kept: dict[int, Tensor] = {}  # id(in-place activation) → its input, copied
        self._handles: list = []
        self._sum_rows = [info for info in table if info.role == "sum"]
        self._sums_run = 0
        self._mode: PassMode | None = None
        self._token = object()
        self._ctx_token: contextvars.Token | None = None
        self.sums_in: dict[str, Tensor] = {}
        self.sums_out: dict[str, Tensor] = {}

    # -- PassContext ---------------------------------------------------------------------
    def reference(self, tensor: Tensor) -> Tensor:
        ref = tensor.detach().clone().requires_grad_(True)
        self.references.append(ref)
        self._ref_owner.append(self._current)
        return ref

    # -- hooks ---------------------------------------------------------------------------
    def __enter__(self) -> RelevancePass:
        self._ctx_token = _ACTIVE_PASS.set(self._token)
        try:
            modules = dict(self.model.named_modules())
            fed = {info.feeds for info in self.table if info.feeds} if not self.record else ()
            for info in self.table:
                if info.role == "sum":  # not a module: PassMode hands it to _on_sum
                    continue
                module = modules[info.name]
                hook = self._hook_for(info)
                if hook is not None:
                    self._handles.append(module.register_forward_hook(self._engine(hook)))
                if info.role == "pass-activation" and getattr(module, "inplace", False):
                    self._handles.append(
                        module.register_forward_pre_hook(self._engine(self._keep_input)))
                if info.name in fed and type(module) is nn.ReLU:
                    self._handles.append(
                        module.register_forward_hook(self._engine(self._relu_hook)))
            if self.table.graph_ops:
                self._mode = PassMode(self._on_sum)
                self._mode.__enter__()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self._mode = None
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._stash.clear()
        self._denominators.clear()
        self._mergeable.clear()
        self._kept.clear()
        if self._ctx_token is not None:
            _ACTIVE_PASS.reset(self._ctx_token)
            self._ctx_token = None

    def _engine(self, hook: Callable) -> Callable:
        """``hook`` running as the engine's own code: the tensors it adds (a rule's terms)
        are not the model's residual sums, so :class:`PassMode` lets them through."""
        def run(*args: Any) -> Any:
            mode = self._mode
            if mode is None:
                return hook(*args)
            mode.paused += 1
            try:
                return hook(*args)
            finally:
                mode.paused -= 1
        return run

    def _active(self) -> bool:
        return _ACTIVE_PASS.get() is self._token

    def _hook_for(self, info: LayerInfo) -> Callable | None:
        role = info.role
        if role == "linear" and info.fold:
            return self._stash_input
        if role in ("linear", "pool", "batchnorm"):
            return self._rule_hook(info)
        if role == "maxpool":
            return self._rule_hook(info) if self.composite.maxpool == "avg" else None
        if role == "pass-activation":
            return self._pass_hook
        if role == "gate":
            return self._gate_hook
        if role == "norm":
            return self._norm_hook
        if role == "dropout" and self.dropout is not None:
            return self._dropout_hook(info.name)
        return None

    def _stash_input(self, module: nn.Module, inputs: tuple, output: Tensor) -> None:
        if self._active():
            self._stash[id(output)] = inputs[0]

    def _take_over_scaling(self, a: Tensor) -> Rule | None:
        """If ``a`` is a rescaling rule's output z whose only reader is this activation
        (and z still holds the layer's values): remove z's gradient hook and return the
        rule, whose scaling the activation then applies itself."""
        merge = self._mergeable.pop(id(a), None)
        if merge is None or merge[0] is not a:
            return None
        _, handle, rule = merge
        handle.remove()
        return rule

    def _merged_denominator(self, a: Tensor) -> Tensor | None:
        """For a pass-activation: the denominator d of the scaling it takes over, if any
        (the pass rule then applies one ratio out / d instead of out / z and then z / d)."""
        rule = self._take_over_scaling(a)
        return None if rule is None else rule.native_denominator(a)

    def _keep_input(self, module: nn.Module, inputs: tuple) -> None:
        """An in-place activation overwrites its input: keep a (differentiable) copy for
        the pass rule, which needs the values before activation. It takes no scaling over
        (what reads the overwritten tensor later reaches z through the activation's own
        gradient), and z's ratio is formed now, while z still holds the layer's values."""
        if self._active():
            a = inputs[0]
            rule = self._take_over_scaling(a)
            if rule is not None:
                _scale_gradient(a, rule.native_ratio(a), self.reuse_ratios)
            self._kept[id(module)] = a.clone()

    def _pass_hook(self, module: nn.Module, inputs: tuple, output: Tensor) -> Tensor | None:
        if not self._active():
            return None
        kept = self._kept.pop(id(module), None)
        if kept is not None:  # in place: ``inputs[0]`` already holds the activated values
            return pass_through(kept, output)
        a = inputs[0]
        return pass_through(a, output, self._merged_denominator(a))

    def _gate_hook(self, module: nn.Module, inputs: tuple, output: Tensor) -> Tensor | None:
        """A gate (x · σ(…)) is a constant for relevance: relevance flows through x only."""
        return output.detach() if self._active() else None

    def _norm_hook(self, module: nn.Module, inputs: tuple, output: Tensor) -> Tensor | None:
        """LayerNorm/GroupNorm with its standard deviation a constant: a linear map."""
        return constant_statistics(module, inputs[0], output) if self._active() else None

    def _on_sum(self, a: Tensor, b: Tensor, inplace: bool, native: Callable[[], Tensor]
                ) -> Tensor:
        """A residual sum a + b as a rule layer: a rescaling rule scales the gradient at the
        native sum; other rules (and the recording pass, which needs the summands'
        relevance) see the summands stacked, [2, N, …], as the input of ``Σ_k w·A_k``."""
        info = self._sum_rows[self._sums_run % len(self._sum_rows)]
        self._sums_run += 1
        rule = self.rules[info.name]
        if not self.record and rule.rescales(sum_op(a)):
            z = native()
            self._apply(info.name, rule, sum_op(z), z, z)
            return z
        stacked = torch.stack((a, b))
        z = stacked.sum(0)
        replaced = self._apply(info.name, rule, sum_op(z), stacked, z)
        out = z if replaced is None else replaced
        return a.copy_(out) if inplace else out

    def _relu_hook(self, module: nn.Module, inputs: tuple, output: Tensor) -> None:
        """A ReLU reading z alone takes z's scaling z / d over, as out / d(out) at its own
        output: the same where z > 0 (out = z), and the ReLU passes nothing elsewhere. The
        ratio is formed in the backward from ``out``, which the ReLU keeps anyway, instead
        of a ratio map per layer held from the forward (VGG-16: ~50 MB per image)."""
        if self._active():
            rule = self._take_over_scaling(inputs[0])  # works in place too: inputs[0] is out
            if rule is not None:
                out = output.detach()  # not output itself: output → its hook → output
                _scale_gradient(output, lambda: rule.native_ratio(out), self.reuse_ratios)

    def _dropout_hook(self, name: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor | None:
            if not self._active():
                return None
            return self.dropout(name, module, inputs[0])
        return hook

    def _rule_hook(self, info: LayerInfo) -> Callable:
        folded_from = info.folded_into  # this BatchNorm closes a folded conv/linear
        rule_name = folded_from or info.name
        rule = self.rules[rule_name]
        feeds_activation = info.feeds is not None

        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor | None:
            if not self._active():
                return None
            a = inputs[0]
            if folded_from is not None:
                a_conv = self._stash.pop(id(a), None)
                if a_conv is None:  # the conv ran elsewhere: treat BN on its own
                    op: AffineOp = batchnorm_op(module, output)
                else:
                    op = folded_op(self._module(folded_from), module, output)
                    a = a_conv
            elif info.role == "linear":
                op = linear_op(module, output)
            elif info.role == "batchnorm":
                op = batchnorm_op(module, output)
            else:
                op = pool_op(module, output, a)
            if op.regrad is not None and output.requires_grad:  # same values, faster gradient
                output = op.native = op.regrad(a, output)
                replaced = self._apply(rule_name, rule, op, a, output, feeds_activation)
                return output if replaced is None else replaced
            return self._apply(rule_name, rule, op, a, output, feeds_activation)

        return hook

    def _module(self, name: str) -> nn.Module:
        return self.model.get_submodule(name)

    def _apply(self, name: str, rule: Rule, op: AffineOp, a: Tensor, z: Tensor,
               feeds_activation: bool = False) -> Tensor | None:
        """Apply ``rule`` to the layer with input ``a`` and native output ``z``; return the
        output to use instead of ``z`` (None: keep ``z``). A rule that only rescales keeps
        ``z`` and scales the gradient arriving at it by z / d; if an activation (a
        pass-activation or a ReLU) is ``z``'s only reader (``feeds_activation``, from the
        layer table), the activation takes that scaling over (:meth:`_take_over_scaling`)."""
        self._current = name
        rescale = z.requires_grad and rule.rescales(op)
        if rescale:
            out = z  # forward untouched
        else:
            m = rule.modified(op, a, z, self)
            out = m + (z - m).detach()
        if self.record:
            self._record(name, rule, a, z, out)
        if not rescale:
            return out
        if self.record:  # the conservation sums need d itself
            d = rule.native_denominator(z)
            _scale_gradient(z, z.detach() / d, self.reuse_ratios)  # d never 0
            # a later layer reading z sees the scaled gradient; where d = inf (a dead
            # unit, no stabiliser) z = 0, and so is z·g
            d_finite = torch.where(torch.isinf(d), 0.0, d)
            self._denominators[id(z)] = (z, d_finite)  # z kept alive: ids stay unique
        elif feeds_activation and rule.elementwise_ratio:
            # only the activation reads z, and it removes this hook; should it not run, the
            # ratio comes from z's values then (only the activation could change them)
            zd = z.detach()  # not z itself: z → its hook → z would be a reference cycle
            handle = _scale_gradient(z, lambda: rule.native_ratio(zd), self.reuse_ratios)
            self._mergeable[id(z)] = (z, handle, rule)
        else:  # formed now: a later reader may write to z in place
            _scale_gradient(z, rule.native_ratio(z), self.reuse_ratios)
        return None

    def _record(self, name: str, rule: Rule, a: Tensor, z: Tensor, out: Tensor) -> None:
        zd = z.detach()

        def on_out(g: Tensor) -> None:
            self._accumulate(self.sums_out, name, zd * g)

        if out.requires_grad:
            out.register_hook(on_out)
        if not rule.needs_input and a.requires_grad:
            # a·g with the plain gradient g; when ``a`` is the native output of a rescaled
            # layer, its hooks ran first and g arrives as g·a/d, so a·g = (g·a/d)·d
            z_prev, d_prev = self._denominators.get(id(a), (None, None))
            ad = d_prev if z_prev is a else a.detach()
            stacked = a.dim() == z.dim() + 1  # a residual sum's summands, [2, N, …]
            a.register_hook(lambda g: self._accumulate(
                self.sums_in, name, (ad * g).sum(0) if stacked else ad * g))

    @staticmethod
    def _accumulate(store: dict[str, Tensor], name: str, r: Tensor) -> None:
        s = r.detach().flatten(1).sum(1)
        store[name] = store[name] + s if name in store else s

    def input_relevance_from_refs(self, grads: list[Tensor | None]) -> None:
        """Record input-layer rules' input relevance from their references' gradients."""
        for ref, owner, g in zip(self.references, self._ref_owner, grads, strict=True):
            if g is not None:
                self._accumulate(self.sums_in, owner, ref.detach() * g)


def _scale_gradient(t: Tensor, ratio: Tensor | Callable[[], Tensor], keep: bool = False
                    ) -> Any:
    """Scale the gradient arriving at ``t`` by ``ratio``: a tensor, or a function forming it
    in the backward (from values the graph keeps anyway: nothing held from the forward).
    Unless ``keep`` (B-LRP's shared trunk runs several backward passes), the hook lets go
    of the ratio and what it is formed from once used, so that they are freed as the
    backward goes, like the graph's own saved tensors, not when its last node dies (VGG-16:
    every ReLU output was held to the end). Returns the hook's handle."""
    box: list = [ratio]

    def hook(g: Tensor) -> Tensor:
        if not box:
            raise RuntimeError("a relevance pass's graph was run backward twice; "
                               "create the RelevancePass with reuse_ratios=True")
        r = box[0]
        if callable(r):
            r = r()
        if keep:
            box[0] = r
        else:
            box.clear()
        return g * r

    return t.register_hook(hook)


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
    gx, gref = grads[0], list(grads[1:])
    rel = x.detach() * gx if gx is not None else torch.zeros_like(x)
    for ref, g in zip(references, gref, strict=True):
        if g is not None:
            ref, g = input_shaped(ref, g, x)
            rel = rel + ref.detach() * g
    return rel.detach(), gref


def analyze(model: nn.Module, x: Tensor, target: Target = None,
            composite: str | Composite = "epsilon", record: bool = True,
            dropout: DropoutFn | None = None) -> Explanation:
    """Run one relevance pass and return the relevance with its diagnostics.

    ``x``: float [N, C, H, W] (or [N, D]) on any device; the model is used in its current
    mode and left unchanged. ``record`` collects per-layer relevance sums (conservation).
    """
    comp = get_composite(composite)
    _check_model(model)
    x = _prepare_input(x)
    table = layer_table(model, x)
    with RelevancePass(model, table, comp, record=record, dropout=dropout) as rp, \
            _eval_grad():
        logits = model(x)
    t = resolve_target(target, logits)
    with _eval_grad():
        rel, gref = relevance_backward(logits, t, x, rp.references)
    layers: tuple[LayerRelevance, ...] = ()
    if record:
        rp.input_relevance_from_refs(gref)
        zeros = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        layers = tuple(
            LayerRelevance(index=info.index, name=info.name, kind=info.label,
                           rule=rp.rules[info.name].describe(),
                           input_relevance=rp.sums_in.get(info.name, zeros),
                           output_relevance=rp.sums_out.get(info.name, zeros))
            for info in table.rule_layers
            if info.role != "maxpool" or comp.maxpool == "avg")
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
