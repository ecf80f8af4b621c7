"""The per-layer relevance sums of one relevance pass (what :mod:`lrp_engine.conservation`
reports): an observer the pass hands each rule layer to, apart from the pass itself.

For a rule layer with input ``a``, native output ``z`` and the output ``out`` the pass uses,
the relevance leaving the layer is ``z ⊙ g_out`` (the gradient arriving at ``out``) and the
relevance entering it is ``a ⊙ g_a`` (the gradient arriving at ``a``), both summed per
sample. Input-layer rules (zB, flat, w²) get theirs from their references' gradients after
the backward (:meth:`LayerRecorder.input_relevance`).

The recorder needs two things the fused paths (:mod:`lrp_engine.fusions`) do not keep: the
denominator d of every rescaled layer (it forms that layer's ratio z / d itself, see
:meth:`LayerRecorder.ratio`) and the summands of every residual sum; a recorded pass
therefore runs without those fusions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .rules import Rule

if TYPE_CHECKING:  # pragma: no cover
    from .layers import LayerTable
    from .relevance_pass import InputReferences


@dataclass(frozen=True)
class LayerRelevance:
    """Relevance sums of one rule layer, per sample ([N] tensors)."""

    index: int
    name: str
    kind: str
    rule: str
    input_relevance: Tensor
    output_relevance: Tensor


class LayerRecorder:
    """Collects ``sums_in`` and ``sums_out`` (layer name → [N]) during one pass's backward.

    One recorder serves one pass: the pass calls :meth:`on_layer` for each rule layer as
    the forward reaches it, :meth:`ratio` for each layer it rescales, and
    :meth:`end_forward` when its forward is over."""

    def __init__(self) -> None:
        self.sums_in: dict[str, Tensor] = {}
        self.sums_out: dict[str, Tensor] = {}
        #: id(z) → (z, d) of each rescaled layer's native output (z kept: ids stay unique)
        self._denominators: dict[int, tuple[Tensor, Tensor]] = {}

    def ratio(self, rule: Rule, z: Tensor) -> Tensor:
        """The ratio z / d by which the pass scales the gradient arriving at a rescaled
        layer's output ``z``, formed from d, which is kept for the layer reading ``z``."""
        d = rule.native_denominator(z)
        ratio = z.detach() / d  # d never 0
        # a later layer reading z sees the scaled gradient; where d = inf (a dead unit, no
        # stabiliser) z = 0, and so is z·g
        d_finite = torch.where(torch.isinf(d), 0.0, d)
        self._denominators[id(z)] = (z, d_finite)
        return ratio

    def on_layer(self, name: str, rule: Rule, a: Tensor, z: Tensor, out: Tensor) -> None:
        """Register the hooks summing the layer's output and (unless its rule reads
        references instead) input relevance. ``a`` may be a residual sum's stacked
        summands [2, N, …]; ``out`` is what the pass uses in place of ``z``."""
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

    def end_forward(self) -> None:
        """Let go of the native outputs kept for :meth:`on_layer` (the hooks hold what
        they need)."""
        self._denominators.clear()

    def input_relevance(self, references: InputReferences,
                        grads: Sequence[Tensor | None]) -> None:
        """Add the input-layer rules' input relevance ``ref ⊙ grad``, from the gradients
        of the pass's references (in their order)."""
        for ref, owner, g in zip(references.tensors, references.owners, grads, strict=True):
            if g is not None:
                self._accumulate(self.sums_in, owner, ref.detach() * g)

    def layers(self, table: LayerTable, rules: dict[str, Rule], avg_maxpool: bool,
               zeros: Tensor) -> tuple[LayerRelevance, ...]:
        """The sums of every rule layer of ``table`` in execution order (``zeros`` [N] where
        nothing arrived); max pools only when treated as average pools."""
        return tuple(
            LayerRelevance(index=info.index, name=info.name, kind=info.label,
                           rule=rules[info.name].describe(),
                           input_relevance=self.sums_in.get(info.name, zeros),
                           output_relevance=self.sums_out.get(info.name, zeros))
            for info in table.rule_layers
            if info.role != "maxpool" or avg_maxpool)

    @staticmethod
    def _accumulate(store: dict[str, Tensor], name: str, r: Tensor) -> None:
        s = r.detach().flatten(1).sum(1)
        store[name] = store[name] + s if name in store else s


__all__ = ["LayerRecorder", "LayerRelevance"]
