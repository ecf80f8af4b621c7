"""One relevance pass: a forward with rule hooks whose backward gives the relevance.

During the forward, each rule layer's output ``z`` is replaced by ``m + (z − m).detach()``
where ``m`` is built by the layer's rule (see :mod:`lrp_engine.rules`), or, for a rule that
only rescales (LRP-0, ε on the layer's native output), ``z`` is kept and the gradient
arriving at it is scaled by z / d (:func:`lrp_engine.scaling.scale_gradient`). The forward
values are unchanged; the gradient of the target score with respect to the input, times
the input, is then the LRP relevance. Besides the rule layers the pass

* folds a BatchNorm into the conv or linear layer before it (the layer's input is kept
  until the BatchNorm runs);
* gives pass-activations (ReLU6, SiLU, …) the pass rule, with a copy of the input of an
  in-place one (which overwrites it); gates and LayerNorm/GroupNorm statistics become
  constants;
* hands residual sums (a :class:`~lrp_engine.graph_ops.PassMode` sees them) to their rule
  as a layer over the stacked summands [2, N, …];
* replaces dropout outputs by the ``dropout`` callback's (B-LRP's sampled masks).

ReLU, max pooling ("winner"), reshapes need nothing: their plain gradient already carries
relevance. Two optional parts sit on top: the fast paths (:mod:`lrp_engine.fusions`,
``fusions``) and the per-layer sums (:mod:`lrp_engine.recorder`, ``recorder``). Hooks are
attached for one pass and removed on exit; they act only in the thread (context) that
registered them, so a model shared between sessions is safe.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import Tensor, nn

from .composites import Composite
from .fusions import FUSED, Fuser, Fusions
from .graph_ops import PassMode
from .layers import LayerInfo, LayerTable
from .norms import NormLayer, constant_statistics
from .ops import (
    AffineOp,
    BatchNormLayer,
    LinearLayer,
    PoolLayer,
    batchnorm_op,
    folded_op,
    linear_op,
    pool_op,
    sum_op,
)
from .recorder import LayerRecorder
from .rules import Rule, pass_through
from .scaling import scale_gradient

_ACTIVE_PASS: contextvars.ContextVar[object | None] = contextvars.ContextVar(
    "lrp_active_pass", default=None)

#: ``dropout(name, module, input) -> output or None``: replaces a dropout layer's output
DropoutFn = Callable[[str, nn.Module, Tensor], "Tensor | None"]


class InputReferences:
    """The leaves input-layer rules create (zB's bounds, flat's ones), each with the layer
    that created it: ``ref ⊙ grad`` is relevance at the input."""

    def __init__(self) -> None:
        self.tensors: list[Tensor] = []
        self.owners: list[str] = []

    def add(self, tensor: Tensor, owner: str = "") -> Tensor:
        """A detached differentiable copy of ``tensor``, registered for layer ``owner``."""
        ref = tensor.detach().clone().requires_grad_(True)
        self.tensors.append(ref)
        self.owners.append(owner)
        return ref

    def for_layer(self, owner: str) -> LayerReferences:
        """The :class:`~lrp_engine.rules.PassContext` a rule of layer ``owner`` gets."""
        return LayerReferences(self, owner)


class LayerReferences:
    """What a rule of one layer may ask of the pass: references owned by that layer."""

    def __init__(self, store: InputReferences, owner: str) -> None:
        self.store, self.owner = store, owner

    def reference(self, tensor: Tensor) -> Tensor:
        """Register ``tensor`` as a leaf whose ``tensor * grad`` is input relevance."""
        return self.store.add(tensor, self.owner)


class RelevancePass:
    """Context manager: attaches the hooks of one relevance pass and always removes them.

    Inside it, ``model(x)`` computes the usual forward values while recording the modified
    graph. ``references`` lists the leaves created by input-layer rules; their
    ``ref * grad`` is relevance at the input. ``fusions``: the fast paths to take
    (:data:`~lrp_engine.fusions.PLAIN`: none). ``recorder`` (or ``record=True``, a fresh
    :class:`~lrp_engine.recorder.LayerRecorder`) collects the per-layer sums; it runs
    without the fusions it cannot follow. ``reuse_ratios``: the graph may run backward more
    than once (B-LRP's shared trunk).
    """

    def __init__(self, model: nn.Module, table: LayerTable, composite: Composite,
                 record: bool = False, dropout: DropoutFn | None = None,
                 reuse_ratios: bool = False, fusions: Fusions = FUSED,
                 recorder: LayerRecorder | None = None) -> None:
        self.model = model
        self.table = table
        self.composite = composite
        self.rules = composite.assign(table)
        self.recorder = LayerRecorder() if record and recorder is None else recorder
        self.dropout = dropout
        self.reuse_ratios = reuse_ratios
        if self.recorder is not None:
            fusions = fusions.for_recording()
        self.fuser = Fuser(fusions, reuse_ratios)
        self.input_refs = InputReferences()
        self._stash: dict[int, Tensor] = {}  # id(conv output) → conv input (BatchNorm fold)
        self._kept: dict[int, Tensor] = {}  # id(in-place activation) → its input, copied
        self._handles: list = []
        self._sum_rows = [info for info in table if info.role == "sum"]
        self._sums_run = 0
        self._mode: PassMode | None = None
        self._token = object()
        self._ctx_token: contextvars.Token | None = None

    @property
    def record(self) -> bool:
        return self.recorder is not None

    @property
    def references(self) -> list[Tensor]:
        """The input-layer rules' references, in creation order."""
        return self.input_refs.tensors

    def reference(self, tensor: Tensor, layer: str = "") -> Tensor:
        """Register ``tensor`` as a reference of ``layer`` (see :class:`InputReferences`);
        any time, inside the pass or not."""
        return self.input_refs.add(tensor, layer)

    # -- hooks ---------------------------------------------------------------------------
    def __enter__(self) -> RelevancePass:
        self._ctx_token = _ACTIVE_PASS.set(self._token)
        try:
            modules = dict(self.model.named_modules())
            merging = self.fuser.merging_activations(self.table)
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
                if info.name in merging and type(module) is nn.ReLU:
                    self._handles.append(
                        module.register_forward_hook(self._engine(self.fuser.relu_hook)))
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
        self._kept.clear()
        self.fuser.clear()
        if self.recorder is not None:
            self.recorder.end_forward()
        if self._ctx_token is not None:
            _ACTIVE_PASS.reset(self._ctx_token)
            self._ctx_token = None

    def _engine(self, hook: Callable) -> Callable:
        """``hook`` as the engine's own code, in this pass's context only (None elsewhere):
        the tensors it adds (a rule's terms) are not the model's residual sums, so
        :class:`PassMode` lets them through."""
        def run(*args: Any) -> Any:
            if _ACTIVE_PASS.get() is not self._token:
                return None
            mode = self._mode
            if mode is None:
                return hook(*args)
            mode.paused += 1
            try:
                return hook(*args)
            finally:
                mode.paused -= 1
        return run

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
        self._stash[id(output)] = inputs[0]

    def _keep_input(self, module: nn.Module, inputs: tuple) -> None:
        """An in-place activation overwrites its input: keep a (differentiable) copy for
        the pass rule, which needs the values before activation."""
        a = inputs[0]
        self.fuser.before_in_place(a)
        self._kept[id(module)] = a.clone()

    def _pass_hook(self, module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
        kept = self._kept.pop(id(module), None)
        if kept is not None:  # in place: ``inputs[0]`` already holds the activated values
            return pass_through(kept, output)
        a = inputs[0]
        return pass_through(a, output, self.fuser.merged_denominator(a))

    def _gate_hook(self, module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
        """A gate (x · σ(…)) is a constant for relevance: relevance flows through x only."""
        return output.detach()

    def _norm_hook(self, module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
        """LayerNorm/GroupNorm with its standard deviation a constant: a linear map."""
        return constant_statistics(cast(NormLayer, module), inputs[0], output)  # its role

    def _dropout_hook(self, name: str) -> Callable:
        dropout = self.dropout
        assert dropout is not None

        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor | None:
            return dropout(name, module, inputs[0])
        return hook

    def _on_sum(self, a: Tensor, b: Tensor, inplace: bool, native: Callable[[], Tensor]
                ) -> Tensor:
        """A residual sum a + b as a rule layer over the stacked summands [2, N, …], the
        input of ``Σ_k w·A_k`` (or, fused, at the model's own sum for a rescaling rule)."""
        info = self._sum_rows[self._sums_run % len(self._sum_rows)]
        self._sums_run += 1
        rule = self.rules[info.name]
        if self.fuser.native_sum(rule, a):
            z = native()
            self._apply(info.name, rule, sum_op(z), z, z)
            return z
        stacked = torch.stack((a, b))
        z = stacked.sum(0)
        replaced = self._apply(info.name, rule, sum_op(z), stacked, z)
        out = z if replaced is None else replaced
        return a.copy_(out) if inplace else out

    def _rule_hook(self, info: LayerInfo) -> Callable:
        folded_from = info.folded_into  # this BatchNorm closes a folded conv/linear
        rule_name = folded_from or info.name
        rule = self.rules[rule_name]
        feeds_activation = info.feeds is not None

        # the layer's role says its type (layers.role_of): the casts only tell the checker
        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
            a = inputs[0]
            if folded_from is not None:
                bn = cast(BatchNormLayer, module)
                a_conv = self._stash.pop(id(a), None)
                if a_conv is None:  # the conv ran elsewhere: treat BN on its own
                    op: AffineOp = batchnorm_op(bn, output)
                else:
                    layer = cast(LinearLayer, self.model.get_submodule(folded_from))
                    op = folded_op(layer, bn, output)
                    a = a_conv
            elif info.role == "linear":
                op = linear_op(cast(LinearLayer, module), output)
            elif info.role == "batchnorm":
                op = batchnorm_op(cast(BatchNormLayer, module), output)
            else:
                op = pool_op(cast(PoolLayer, module), output, a)
            output = self.fuser.regrad(op, a, output)
            replaced = self._apply(rule_name, rule, op, a, output, feeds_activation)
            return output if replaced is None else replaced

        return hook

    def _apply(self, name: str, rule: Rule, op: AffineOp, a: Tensor, z: Tensor,
               feeds_activation: bool = False) -> Tensor | None:
        """Apply ``rule`` to the layer with input ``a`` and native output ``z``; return the
        output to use instead of ``z`` (None: keep ``z``). A rule that only rescales keeps
        ``z`` and scales the gradient arriving at it by z / d, formed now (a later reader
        may write to ``z`` in place), unless the fusions defer it to the activation that
        alone reads ``z`` (``feeds_activation``, from the layer table)."""
        rescale = z.requires_grad and rule.rescales(op)
        if rescale:
            out = z  # forward untouched
        else:
            m = rule.modified(op, a, z, self.input_refs.for_layer(name))
            out = m + (z - m).detach()
        if self.recorder is not None:
            self.recorder.on_layer(name, rule, a, z, out)
        if not rescale:
            return out
        if not (feeds_activation and self.fuser.defer_scaling(z, rule)):
            ratio = (rule.native_ratio(z) if self.recorder is None
                     else self.recorder.ratio(rule, z))  # the recorder keeps d
            scale_gradient(z, ratio, self.reuse_ratios)
        return None


__all__ = ["DropoutFn", "InputReferences", "LayerReferences", "RelevancePass"]
