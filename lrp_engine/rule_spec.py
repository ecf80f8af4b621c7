"""Per-layer rule assignments as plain, hashable rows: what the UI's rule table edits.

A :class:`LayerRule` names one rule layer, its rule (a short name from
:data:`lrp_engine.RULES`) and the rule's one main parameter. :func:`rows_from_composite`
turns any composite (a preset) into rows for a model; :func:`composite_from_rows` turns
edited rows back into a :class:`Composite`. Rows are frozen dataclasses, so a tuple of them
is a cache key.

Main parameters (each rule class says which: ``param``): ε for ``epsilon``, the factor for
``epsilon-std`` (ε = factor · rms(z)), γ for ``gamma`` and ``gamma-plain``, α for
``alpha-beta`` (β = α − 1, so α − β = 1 keeps the total); the other rules have none. zB's
pixel bounds are not a row parameter: they come from the model's input range
(``low``/``high``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from .composites import Composite, MaxPoolMode, get_composite
from .layers import LayerTable
from .rules import RULES, Rule


class _Derived(Mapping):
    """A read-only view of :data:`lrp_engine.rules.RULES`: rule name → ``value(cls)`` for
    the rules ``keep(cls)`` selects, in registry order, always up to date (a rule class
    defined later, anywhere, appears)."""

    def __init__(self, value: Callable[[type[Rule]], Any],
                 keep: Callable[[type[Rule]], bool] = lambda cls: True) -> None:
        self._value, self._keep = value, keep

    def __getitem__(self, name: str) -> Any:
        cls = RULES[name]
        if not self._keep(cls):
            raise KeyError(name)
        return self._value(cls)

    def __iter__(self) -> Iterator[str]:
        return (name for name, cls in RULES.items() if self._keep(cls))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return repr(dict(self))


#: rule short name → (label shown to users, name of its main parameter or None)
RULE_LABELS: Mapping[str, tuple[str, str | None]] = _Derived(
    lambda cls: (cls.label, cls.param_label))
#: rules that only make sense on the first layer (their input must be the model's input)
INPUT_RULES: Set[str] = _Derived(lambda cls: cls, keep=lambda cls: cls.needs_input).keys()
#: default main parameter of each rule that has one
DEFAULT_PARAMS: Mapping[str, float | None] = _Derived(
    lambda cls: cls.default_param, keep=lambda cls: cls.param is not None)


@dataclass(frozen=True)
class LayerRule:
    """One row of the rule table: layer ``name`` gets rule ``rule`` with ``param``."""

    index: int
    name: str
    kind: str
    out_shape: tuple[int, ...]
    rule: str
    param: float | None = None


def main_param(rule: Rule) -> float | None:
    """The main parameter of a rule object (see the module docstring), or None."""
    return rule.main_param()


def rule_from_row(rule: str, param: float | None = None, low: float | Tensor | None = None,
                  high: float | Tensor | None = None) -> Rule:
    """A rule object from a short name and its main parameter (None or NaN: the default);
    the rule class builds it (:meth:`lrp_engine.rules.Rule.from_row`)."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; known: {', '.join(RULES)}")
    if isinstance(param, float) and math.isnan(param):
        param = None
    return RULES[rule].from_row(param, low, high)


def rows_from_composite(composite: str | Composite, table: LayerTable) -> tuple[LayerRule, ...]:
    """The rows a composite (or preset name) gives the rule layers of ``table``."""
    comp = get_composite(composite)
    rules = comp.assign(table)
    return tuple(LayerRule(index=info.index, name=info.name, kind=info.label,
                           out_shape=tuple(info.out_shape), rule=rules[info.name].name,
                           param=main_param(rules[info.name]))
                 for info in table.rule_layers)


def composite_from_rows(rows: Iterable[LayerRule], maxpool: MaxPoolMode = "avg",
                        low: float | Tensor | None = None, high: float | Tensor | None = None,
                        name: str = "custom") -> Composite:
    """A composite that gives every row's layer its rule; input rules must be on row 0."""
    rows = tuple(rows)
    for i, row in enumerate(rows):
        if row.rule in INPUT_RULES and i != 0:
            raise ValueError(f"{RULE_LABELS[row.rule][0]} is an input-layer rule: it can only "
                             f"be used on the first layer, not on {row.name} ({row.kind})")
    rules = {row.name: rule_from_row(row.rule, row.param, low, high) for row in rows}
    return Composite.from_rules(rules, maxpool=maxpool, name=name)


def follow_globals(rows: Sequence[LayerRule], follow: Sequence[bool], gamma: float,
                   epsilon: float) -> tuple[LayerRule, ...]:
    """Rows whose ``follow`` flag is set take the global γ (γ rows) or ε (ε rows)."""
    out = []
    for row, f in zip(rows, follow, strict=True):
        if f and row.rule == "gamma":
            row = LayerRule(row.index, row.name, row.kind, row.out_shape, row.rule, gamma)
        elif f and row.rule == "epsilon":
            row = LayerRule(row.index, row.name, row.kind, row.out_shape, row.rule, epsilon)
        out.append(row)
    return tuple(out)

