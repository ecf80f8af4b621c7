"""Conservation diagnostics: where relevance is lost or created, and why.

LRP-0, z⁺ and αβ (α − β = 1) conserve relevance layer by layer when layers have no bias; a
bias absorbs (or creates) its share, LRP-ε absorbs the share of weak or contradictory
contributions, and αβ drops the bias's share and an output's positive or negative part when
that part is empty (so αβ does not conserve relevance in general).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from .composites import Composite, get_composite
from .core import Explanation, Target, analyze
from .layers import layer_table
from .rules import Rule


@dataclass(frozen=True)
class ConservationRow:
    """One rule layer: mean relevance entering and leaving it, over the batch. ``rule``:
    the rule's description (``Rule.describe()``); ``loss_reason``: the rule's own
    ``Rule.loss_reason``, why it may lose or create relevance."""

    index: int
    name: str
    kind: str
    rule: str
    relevance_out: float
    relevance_in: float
    loss_reason: str = Rule.loss_reason

    @property
    def ratio(self) -> float:
        """In/out; 1 means conserved. NaN when nothing arrives."""
        return self.relevance_in / self.relevance_out if self.relevance_out else float("nan")


@dataclass(frozen=True)
class ConservationReport:
    """Per-layer relevance sums from the output score down to the input."""

    output_score: float
    input_relevance: float
    rows: tuple[ConservationRow, ...]
    explanation: Explanation

    @property
    def relative_error(self) -> float:
        """|Σ R_input − score| / |score| (0 for a perfectly conservative composite)."""
        if self.output_score == 0:
            return 0.0 if self.input_relevance == 0 else float("inf")
        return abs(self.input_relevance - self.output_score) / abs(self.output_score)

    def reasons(self, tolerance: float = 1e-3) -> list[str]:
        """One plain sentence per layer that loses or creates more than ``tolerance``."""
        out = []
        for row in self.rows:
            r = row.ratio
            if r == r and abs(r - 1) > tolerance:
                out.append(f"{row.name} ({row.kind}, {row.rule}): "
                           f"{100 * (r - 1):+.1f}% — {row.loss_reason}")
        return out


def conservation(model: nn.Module, x: Tensor, target: Target = None,
                 composite: str | Composite = "epsilon") -> ConservationReport:
    """Explain ``x`` and report the relevance sum at every rule layer (batch mean)."""
    comp = get_composite(composite)
    res = analyze(model, x, target, comp, record=True)
    rules = comp.assign(layer_table(model, x))  # the pass's rules (the table is cached)
    rows = tuple(
        ConservationRow(index=lr.index, name=lr.name, kind=lr.kind, rule=lr.rule,
                        relevance_out=float(lr.output_relevance.mean()),
                        relevance_in=float(lr.input_relevance.mean()),
                        loss_reason=rules[lr.name].loss_reason)
        for lr in res.layers)
    return ConservationReport(output_score=float(res.output_relevance.mean()),
                              input_relevance=float(res.relevance.flatten(1).sum(1).mean()),
                              rows=rows, explanation=res)
