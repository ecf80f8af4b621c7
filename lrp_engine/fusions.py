"""Fast paths of a relevance pass: the same relevance (up to float rounding) in less time
and memory, each optional (:class:`Fusions`), all taken by :class:`Fuser`.

The plain pass (:mod:`lrp_engine.relevance_pass`) scales the gradient at a rescaled layer's
output ``z`` by z / d, formed in the forward, and evaluates every layer as the model does.
The fusions change where and when that happens:

* ``regrad``: a few-tap or pointwise Conv2d's output keeps its values but gets the im2col
  gradient (:func:`lrp_engine.ops.linear_op`'s ``regrad``), faster than oneDNN's kernel.
* ``merge_scalings``: when an activation is the only reader of ``z`` (the layer table's
  ``feeds``), the activation takes z / d over: a pass-activation applies one ratio
  out / d instead of out / z then z / d; a ReLU forms the ratio in the backward from its
  own output (equal to z where it passes) instead of a ratio map held from the forward; an
  in-place activation, which overwrites z, has the ratio formed before it runs.
* ``native_sums``: a residual sum whose rule rescales is scaled at the model's own sum
  instead of at a sum of the stacked summands [2, N, …].

A recorded pass (:mod:`lrp_engine.recorder`) needs each rescaled layer's d and each sum's
summands, so it keeps ``regrad`` only (:meth:`Fusions.for_recording`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from torch import Tensor, nn

from .layers import LayerTable
from .ops import AffineOp, sum_op
from .rules import Rule
from .scaling import scale_gradient


@dataclass(frozen=True)
class Fusions:
    """Which fast paths a relevance pass takes (see the module docstring)."""

    regrad: bool = True
    merge_scalings: bool = True
    native_sums: bool = True

    def for_recording(self) -> Fusions:
        """These fusions less the ones a recorded pass cannot take."""
        return replace(self, merge_scalings=False, native_sums=False)


#: every fast path (what :func:`lrp_engine.explain` takes)
FUSED = Fusions()
#: none: the plain relevance pass
PLAIN = Fusions(regrad=False, merge_scalings=False, native_sums=False)


class Fuser:
    """The fast paths of one relevance pass, with the state they share between hooks.

    ``keep_ratios``: as the pass's ``reuse_ratios`` (the graph may run backward again)."""

    def __init__(self, fusions: Fusions, keep_ratios: bool = False) -> None:
        self.fusions = fusions
        self.keep_ratios = keep_ratios
        #: id(z) → (z, its scaling hook's handle, rule): scalings an activation may take over
        self._mergeable: dict[int, tuple[Tensor, Any, Rule]] = {}

    # -- regrad --------------------------------------------------------------------------
    def regrad(self, op: AffineOp, a: Tensor, z: Tensor) -> Tensor:
        """The layer's output to use: ``z``, or ``z``'s values with ``op``'s faster gradient
        to ``a`` (then also ``op.native``, for the rules that reuse it)."""
        if self.fusions.regrad and op.regrad is not None and z.requires_grad:
            z = op.native = op.regrad(a, z)
        return z

    # -- residual sums -------------------------------------------------------------------
    def native_sum(self, rule: Rule, a: Tensor) -> bool:
        """Whether a residual sum with summand ``a`` and ``rule`` is scaled at the model's
        own sum."""
        return self.fusions.native_sums and rule.rescales(sum_op(a))

    # -- merged scalings -----------------------------------------------------------------
    def merging_activations(self, table: LayerTable) -> set[str]:
        """Names of the activations of ``table`` that may take a scaling over (the pass
        hooks :meth:`relu_hook` on the ``nn.ReLU`` among them)."""
        if not self.fusions.merge_scalings:
            return set()
        return {info.feeds for info in table if info.feeds}

    def defer_scaling(self, z: Tensor, rule: Rule) -> bool:
        """For a rescaled layer whose output ``z`` only an activation reads: scale the
        gradient at ``z`` by a ratio formed in the backward, which that activation may take
        over instead; False (nothing done) where this fusion is off or the rule's ratio is
        not elementwise."""
        if not (self.fusions.merge_scalings and rule.elementwise_ratio):
            return False
        # should the activation not take it over, the ratio comes from z's values then
        # (only the activation could change them); zd, not z: z → its hook → z is a cycle
        zd = z.detach()
        handle = scale_gradient(z, lambda: rule.native_ratio(zd), self.keep_ratios)
        self._mergeable[id(z)] = (z, handle, rule)
        return True

    def _take_over(self, a: Tensor) -> Rule | None:
        """If ``a`` is a deferred scaling's z (still holding the layer's values): remove
        its hook and return the rule, whose scaling the caller then applies itself."""
        merge = self._mergeable.pop(id(a), None)
        if merge is None or merge[0] is not a:
            return None
        _, handle, rule = merge
        handle.remove()
        return rule

    def merged_denominator(self, a: Tensor) -> Tensor | None:
        """For a pass-activation reading ``a``: the denominator d of the scaling it takes
        over, if any (its pass rule then applies out / d)."""
        rule = self._take_over(a)
        return None if rule is None else rule.native_denominator(a)

    def before_in_place(self, a: Tensor) -> None:
        """An in-place activation is about to overwrite ``a``: a scaling deferred at ``a``
        gets its ratio formed now, from the values it is formed from."""
        rule = self._take_over(a)
        if rule is not None:
            scale_gradient(a, rule.native_ratio(a), self.keep_ratios)

    def relu_hook(self, module: nn.Module, inputs: tuple, output: Tensor) -> None:
        """A ReLU reading z alone takes z's scaling z / d over, as out / d(out) at its own
        output: the same where z > 0 (out = z), and the ReLU passes nothing elsewhere. The
        ratio is formed in the backward from ``out``, which the ReLU keeps anyway, instead
        of a ratio map per layer held from the forward (VGG-16: ~50 MB per image)."""
        rule = self._take_over(inputs[0])  # works in place too: inputs[0] is out
        if rule is not None:
            out = output.detach()  # not output itself: output → its hook → output
            scale_gradient(output, lambda: rule.native_ratio(out), self.keep_ratios)

    def clear(self) -> None:
        """Forget the pass's deferred scalings (their hooks stay on the graph)."""
        self._mergeable.clear()


__all__ = ["FUSED", "PLAIN", "Fuser", "Fusions"]
