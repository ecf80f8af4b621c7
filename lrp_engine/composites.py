"""Composites: which rule each layer gets, plus the named presets.

A :class:`Composite` is an ordered list of (selector, rule) pairs and a default rule; the first
selector that matches a layer decides. Selectors see a :class:`~lrp_engine.layers.LayerInfo`
and the whole :class:`~lrp_engine.layers.LayerTable`, so they can select by type, by module
name, by execution position (``ByIndex(0, 17)``: layers 0…16), first/last of a
type, VGG-style blocks, or a depth fraction. Presets are builders in :data:`PRESETS`.

Type selectors match classes by ``issubclass`` of the layer's module class
(``ByType(nn.Conv2d)`` selects a subclass of ``nn.Conv2d`` too, ``ByType(Sum)`` the residual
sums); a string names a class exactly (``ByType("Conv2d")``), for forms written as text.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

from torch import Tensor, nn

from .layers import LayerInfo, LayerTable, Role
from .ops import AVGPOOL_TYPES, CONV_TYPES, MAXPOOL_TYPES
from .rules import (
    AlphaBeta,
    Epsilon,
    EpsilonStd,
    Flat,
    Gamma,
    Rule,
    WSquare,
    ZBox,
    Zero,
    ZPlus,
)

#: MaxPool treatment: ``"avg"`` (as average pooling under the layer's rule) or
#: ``"winner"`` (winner takes all, the plain gradient)
MaxPoolMode = Literal["avg", "winner"]
MAXPOOL_MODES: tuple[MaxPoolMode, ...] = get_args(MaxPoolMode)

#: what type selectors take: a class (matched with its subclasses) or an exact class name
LayerType = type | str


def is_of_type(info: LayerInfo, types: Sequence[LayerType]) -> bool:
    """Whether the layer's module class is a subclass of one of the classes in ``types``, or
    is named exactly like one of its strings."""
    classes = tuple(t for t in types if isinstance(t, type))
    if classes and info.module_type is not None and issubclass(info.module_type, classes):
        return True
    return any(isinstance(t, str) and t == info.kind for t in types)


class Selector:
    """Decides whether a layer is selected; subclasses implement :meth:`__call__`."""

    def __call__(self, info: LayerInfo, table: LayerTable) -> bool:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True)
class ByType(Selector):
    """Layers whose module is an instance of one of the classes (subclasses included), or
    whose class has one of the given names exactly."""

    types: tuple[LayerType, ...]

    def __init__(self, *types: LayerType) -> None:
        object.__setattr__(self, "types", tuple(types))

    def __call__(self, info: LayerInfo, table: LayerTable) -> bool:
        return is_of_type(info, self.types)


@dataclass(frozen=True)
class ByName(Selector):
    """Layers whose module name matches one of the names (shell-style wildcards allowed)."""

    names: tuple

    def __init__(self, *names: str) -> None:
        object.__setattr__(self, "names", tuple(names))

    def __call__(self, info: LayerInfo, table: LayerTable) -> bool:
        return any(fnmatch.fnmatchcase(info.name, n) for n in self.names)


@dataclass(frozen=True)
class ByIndex(Selector):
    """Layers with ``start <= index < stop`` (execution-order index over all leaf layers)."""

    start: int = 0
    stop: int | None = None

    def __call__(self, info: LayerInfo, table: LayerTable) -> bool:
        return info.index >= self.start and (self.stop is None or info.index < self.stop)


def _of_type(table: LayerTable, types: Sequence[LayerType]) -> list[LayerInfo]:
    return [i for i in table if i.takes_rule and is_of_type(i, types)]


@dataclass(frozen=True)
class First(Selector):
    """The first rule layer of the given types (default: any conv or linear layer)."""

    types: tuple[LayerType, ...] = ()

    def __init__(self, *types: LayerType) -> None:
        object.__setattr__(self, "types", tuple(types) or (*CONV_TYPES, nn.Linear))

    def __call__(self, info: LayerInfo, table: LayerTable) -> bool:
        found = _of_type(table, self.types)
        return bool(found) and found[0].name == info.name


@dataclass(frozen=True)
class Last(Selector):
    """The last rule layer of the given types (default: any conv or linear layer)."""

    types: tuple[LayerType, ...] = ()

    def __init__(self, *types: LayerType) -> None:
        object.__setattr__(self, "types", tuple(types) or (*CONV_TYPES, nn.Linear))

    def __call__(self, info: LayerInfo, table: LayerTable) -> bool:
        found = _of_type(table, self.types)
        return bool(found) and found[-1].name == info.name


@dataclass(frozen=True)
class ByBlock(Selector):
    """Convolutions in block ``block`` (0-based), blocks being separated by pooling layers
    (VGG's structure); ``block=None`` with ``at_least`` selects every block ≥ at_least."""

    block: int | None = None
    at_least: int | None = None

    def __call__(self, info: LayerInfo, table: LayerTable) -> bool:
        if not is_of_type(info, CONV_TYPES):
            return False
        pools = (*MAXPOOL_TYPES, *AVGPOOL_TYPES)
        b = sum(1 for i in table if i.index < info.index and is_of_type(i, pools))
        if self.block is not None:
            return b == self.block
        return self.at_least is not None and b >= self.at_least


@dataclass(frozen=True)
class ByDepth(Selector):
    """Layers of the given types whose rank among them, as a fraction of their count, lies
    in [lo, hi): ``ByDepth(0, .5, Conv2d)`` is the lower half of the convolutions."""

    lo: float
    hi: float
    types: tuple[LayerType, ...] = ()

    def __init__(self, lo: float, hi: float, *types: LayerType) -> None:
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)
        object.__setattr__(self, "types", tuple(types) or CONV_TYPES)

    def __call__(self, info: LayerInfo, table: LayerTable) -> bool:
        found = [i.name for i in _of_type(table, self.types)]
        if info.name not in found:
            return False
        frac = found.index(info.name) / len(found)
        return self.lo <= frac < self.hi or (self.hi >= 1.0 and frac >= self.lo)


@dataclass
class Composite:
    """Maps each rule layer of a model to a rule.

    ``assignments``: (selector, rule) pairs, first match wins; ``default``: the rule for the
    other layers, except residual sums, which no selector picked: they get ``sums`` (a
    stabilised proportional split between the summands; select them with ``ByType(Sum)``
    to give them another rule); ``maxpool``: ``"avg"`` (MaxPool treated as average pooling
    under the layer's rule) or ``"winner"`` (winner takes all, the plain
    gradient).
    """

    assignments: Sequence[tuple[Selector, Rule]] = ()
    default: Rule = field(default_factory=Zero)
    maxpool: MaxPoolMode = "avg"
    name: str = "custom"
    sums: Rule = field(default_factory=lambda: Epsilon(1e-9))

    def __post_init__(self) -> None:
        if self.maxpool not in MAXPOOL_MODES:
            raise ValueError(f"maxpool must be one of {MAXPOOL_MODES}, got {self.maxpool!r}")
        self.assignments = tuple(self.assignments)

    def rule_for(self, info: LayerInfo, table: LayerTable) -> Rule:
        for selector, rule in self.assignments:
            if selector(info, table):
                return rule
        return self.sums if info.role == Role.SUM else self.default

    def assign(self, table: LayerTable) -> dict[str, Rule]:
        """Rule per rule-layer name (folded BatchNorms are covered by their layer)."""
        return {info.name: self.rule_for(info, table) for info in table.rule_layers}

    @classmethod
    def from_rules(cls, rules: dict[str, Rule], default: Rule | None = None,
                   maxpool: MaxPoolMode = "avg", name: str = "custom") -> Composite:
        """A composite from an explicit layer-name → rule map (the UI's per-layer table)."""
        return cls([(ByName(n), r) for n, r in rules.items()],
                   default=default if default is not None else Zero(), maxpool=maxpool,
                   name=name)


Bound = float | Tensor | None
PresetBuilder = Callable[..., Composite]
PRESETS: dict[str, PresetBuilder] = {}
PRESET_DOCS: dict[str, str] = {}


def preset(name: str, doc: str) -> Callable[[PresetBuilder], PresetBuilder]:
    """Register a preset builder under ``name`` (keyword parameters only)."""

    def register(fn: PresetBuilder) -> PresetBuilder:
        PRESETS[name] = fn
        PRESET_DOCS[name] = doc
        return fn

    return register


def get_composite(spec: str | Composite, **params: object) -> Composite:
    """A preset by name (with parameter overrides), or a :class:`Composite` as given."""
    if isinstance(spec, Composite):
        if params:
            raise ValueError("parameters can only be given with a preset name")
        return spec
    try:
        builder = PRESETS[spec]
    except KeyError:
        raise ValueError(f"unknown composite {spec!r}; presets: {', '.join(PRESETS)}") from None
    return builder(**params)


@preset("epsilon", "LRP-ε everywhere (Bach et al. 2015; ε = 1e-9, max pooling as average "
        "pooling)")
def _epsilon(epsilon: float = 1e-9, maxpool: MaxPoolMode = "avg") -> Composite:
    return Composite(default=Epsilon(epsilon), maxpool=maxpool, name="epsilon")


@preset("zero", "LRP-0 everywhere (equals Gradient×Input on ReLU nets with maxpool='winner')")
def _zero(maxpool: MaxPoolMode = "avg") -> Composite:
    return Composite(default=Zero(), maxpool=maxpool, name="zero")


@preset("epsilon-plus-flat", "flat on the first layer, z⁺ on convolutions, ε on dense layers")
def _epsilon_plus_flat(epsilon: float = 0.25, maxpool: MaxPoolMode = "avg") -> Composite:
    return Composite([(First(), Flat()), (ByType(*CONV_TYPES), ZPlus())],
                     default=Epsilon(epsilon), maxpool=maxpool, name="epsilon-plus-flat")


@preset("epsilon-gamma-box",
        "zB (box) on the first layer, γ on convolutions, ε on dense layers")
def _epsilon_gamma_box(low: Bound = None, high: Bound = None, gamma: float = 0.25,
                       epsilon: float = 0.25, maxpool: MaxPoolMode = "avg") -> Composite:
    return Composite([(First(), ZBox(low, high)), (ByType(*CONV_TYPES), Gamma(gamma))],
                     default=Epsilon(epsilon), maxpool=maxpool, name="epsilon-gamma-box")


@preset("deep-taylor", "Deep Taylor decomposition (Montavon et al. 2017): zB on the first "
        "layer, then αβ with α=1, β=0")
def _deep_taylor(low: Bound = None, high: Bound = None, maxpool: MaxPoolMode = "avg") -> Composite:
    return Composite([(First(), ZBox(low, high))], default=AlphaBeta(1.0, 0.0),
                     maxpool=maxpool, name="deep-taylor")


@preset("w2-alpha-beta", "w² on the first layer (Montavon et al. 2017), LRP-0 on pooling "
        "layers, then αβ (Bach et al. 2015)")
def _w2_alpha_beta(alpha: float = 2.0, beta: float = 1.0,
                   maxpool: MaxPoolMode = "avg") -> Composite:
    # a pool's weights are all positive and its inputs (after a ReLU) too: αβ would find no
    # negative part and hand on α·R, doubling the relevance at every pool; LRP-0 conserves
    pools = ByType(*MAXPOOL_TYPES, *AVGPOOL_TYPES)
    return Composite([(First(), WSquare()), (pools, Zero())], default=AlphaBeta(alpha, beta),
                     maxpool=maxpool, name="w2-alpha-beta")


VGG_BLOCK_GAMMAS = (1.0, 10 ** -0.5, 10 ** -1.0, 10 ** -1.5, 10 ** -2.0)


@preset("vgg-gamma-blocks",
        "γ falling by block, a composite after Montavon et al. 2019: zB on the first conv, "
        "γ = 1, 10^-0.5, 10^-1, 10^-1.5, 10^-2 per block, dense layers LRP-0")
def _vgg_gamma_blocks(low: Bound = None, high: Bound = None,
                      gammas: Sequence[float] = VGG_BLOCK_GAMMAS,
                      maxpool: MaxPoolMode = "avg") -> Composite:
    pairs: list[tuple[Selector, Rule]] = [(First(*CONV_TYPES), ZBox(low, high))]
    pairs += [(ByBlock(block=b), Gamma(g)) for b, g in enumerate(gammas[:-1])]
    pairs.append((ByBlock(at_least=len(gammas) - 1), Gamma(gammas[-1])))
    return Composite(pairs, default=Zero(), maxpool=maxpool, name="vgg-gamma-blocks")


@preset("depth-gamma-epsilon-zero",
        "the composite of Montavon et al. 2019 by depth: γ on the lower half of the "
        "convolutions, ε = factor·rms(z) on the upper half, LRP-0 on dense layers")
def _depth_gamma_epsilon_zero(gamma: float = 0.25, factor: float = 0.25,
                              maxpool: MaxPoolMode = "avg") -> Composite:
    # rank/count < 0.5: 7 of VGG-16's 13 convolutions (layers 0…16 of its features)
    return Composite([(ByDepth(0.0, 0.5), Gamma(gamma)), (ByDepth(0.5, 1.0), EpsilonStd(factor))],
                     default=Zero(), maxpool=maxpool, name="depth-gamma-epsilon-zero")
