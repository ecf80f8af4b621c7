"""LRP rules: small objects that say how one linear layer redistributes relevance.

Every rule is expressed through one mechanism (the "gradient trick"). For a layer with input
``a`` and native output ``z`` the rule builds a tensor

    m = sum_t  c_t * z_t(a) * [z / stab(d_t)]_detached

whose gradient with respect to ``a`` (times ``a``) is the rule's input relevance when the
gradient arriving at the output is ``R_out / z``. The engine then uses ``m + (z - m).detach()``
as the layer's output, so the forward value is exactly ``z`` and only the backward pass changes.

``op`` is an :class:`lrp_engine.ops.AffineOp`: it knows how to evaluate the layer with
modified parameters, ``op(a, weight, bias)``, and carries ``op.weight`` and ``op.bias``.

Rules marked ``needs_input`` (zB, flat, w²) compute relevance at their input directly from
reference tensors (bounds, ones); they must be assigned to the first layer, whose input is the
model's input.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    from .ops import AffineOp


class PassContext(Protocol):
    """What a rule may ask of the running relevance pass."""

    def reference(self, tensor: Tensor) -> Tensor:
        """Register ``tensor`` as a leaf whose ``tensor * grad`` is input relevance."""


def stabilize(d: Tensor, s: float | Tensor) -> Tensor:
    """``d + s * sign(d)`` with sign(0) = +1: pushes denominators away from zero.
    ``s`` is a float or a tensor broadcastable to ``d`` (e.g. one value per sample). Where
    the result is still 0 (``s`` = 0) it is +inf, so that ``z / d`` gives 0, never NaN."""
    positive = not isinstance(s, Tensor) and s > 0
    if not isinstance(s, Tensor):
        s = torch.tensor(s, dtype=d.dtype, device=d.device)
    # copysign(s, d) is +s for d >= +0; map -0 to +s as well so that sign(0) = +1 always
    out = d + torch.copysign(s, d + 0.0)
    return out if positive else nonzero(out)


def nonzero(d: Tensor) -> Tensor:
    """``d`` with zeros replaced by +inf: a denominator for which ``z / d`` is 0 there (a
    dead unit with an unstabilised rule passes nothing on instead of NaN)."""
    return torch.where(d == 0, torch.inf, d)


def _ratio(z: Tensor, d: Tensor) -> Tensor:
    """The detached factor ``z / d`` that carries the output relevance into a rule's term
    (``d`` comes from :func:`stabilize` or :func:`nonzero`: never 0)."""
    return (z / d).detach()


#: rule classes by their short name (what the UI's per-layer table stores), in the order
#: they were defined; filled by :func:`register` as each :class:`Rule` subclass with its own
#: ``name`` is defined
RULES: dict[str, type[Rule]] = {}


def register(cls: type[Rule]) -> type[Rule]:
    """Add ``cls`` to :data:`RULES` under ``cls.name`` (done for every subclass of
    :class:`Rule` that sets its own ``name``). A name already taken by another rule is an
    error; the same class defined again (a module reloaded) replaces its old entry."""
    old = RULES.get(cls.name)
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__,
                                                                  cls.__qualname__):
        raise ValueError(f"rule name {cls.name!r} is taken by {old.__qualname__}")
    RULES[cls.name] = cls
    return cls


class Rule:
    """Base class. Subclasses implement :meth:`modified`.

    A rule carries its own facts: ``name`` (short, what a rule table stores), ``label``
    (shown to users), ``param`` (the attribute holding its one main parameter, or None) with
    ``param_label`` and ``default_param``, ``needs_input`` (input-layer rules: zB, flat, w²)
    and ``loss_reason`` (why it may not conserve relevance, for the conservation report).

    Defining a subclass that sets its own ``name`` registers it in :data:`RULES` under that
    name; everything keyed by rule name (``make_rule``, the rule table's rows and labels,
    the conservation report) then knows it. A subclass without its own ``name`` (a base
    such as :class:`BasicRule`, or a variant of a rule) is not registered.
    """

    name: str = "rule"
    label: str = "rule"
    param: str | None = None
    param_label: str | None = None
    default_param: float | None = None
    needs_input: bool = False
    loss_reason: str = "the bias absorbs (or creates) its share of the relevance"
    #: whether :meth:`native_ratio` maps each element of z on its own (not, e.g., through
    #: z's RMS): a ReLU may then form it from its output, which equals z where it passes
    elementwise_ratio: bool = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            register(cls)

    def rescales(self, op: AffineOp) -> bool:
        """Whether the rule, on this layer, only rescales the gradient arriving at the
        layer's native output ``z`` by ``z / native_denominator(z)`` (no extra forward).
        If not, the engine uses :meth:`modified`."""
        return False

    def native_denominator(self, z: Tensor) -> Tensor:
        """For a layer it :meth:`rescales`: the detached denominator d, shaped like ``z``
        and never 0 (+inf where nothing passes)."""
        raise NotImplementedError

    def native_ratio(self, z: Tensor) -> Tensor:
        """The detached factor ``z / native_denominator(z)``. Rules may compute it in
        fewer operations."""
        return z.detach() / self.native_denominator(z)  # d never 0

    def modified(self, op: AffineOp, a: Tensor, z: Tensor, ctx: PassContext) -> Tensor:
        raise NotImplementedError

    @classmethod
    def from_param(cls, value: float | None = None) -> Rule:
        """The rule with its main parameter set to ``value`` (None: the default)."""
        if cls.param is None:
            return cls()
        return cls(**{cls.param: cls.default_param if value is None else float(value)})

    @classmethod
    def check_param(cls, value: float) -> None:
        """Raise ValueError unless ``value`` is a valid main parameter (finite, ≥ 0)."""
        p = float(value)
        if not math.isfinite(p) or p < 0:
            raise ValueError(f"{cls.param_label} of {cls.label} must be a finite number ≥ 0, "
                             f"got {value}")

    @classmethod
    def from_row(cls, value: float | None = None, low: float | Tensor | None = None,
                 high: float | Tensor | None = None) -> Rule:
        """The rule a rule-table row gives: main parameter ``value`` (None: the default;
        checked by :meth:`check_param`, ignored by a rule without one) and the model's input
        bounds ``low``/``high`` (used by rules that need them: zB)."""
        if cls.param is None:
            return cls.from_param()
        value = cls.default_param if value is None else value
        if value is None:
            raise TypeError(f"{cls.__name__} names its parameter {cls.param!r} but no default")
        cls.check_param(value)
        return cls.from_param(float(value))

    def main_param(self) -> float | None:
        """The value of the main parameter, or None for a rule without one."""
        return None if self.param is None else getattr(self, self.param)

    def describe(self) -> str:
        """Short human-readable form, e.g. ``γ=0.25``."""
        return self.name

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and _params_equal(vars(self), vars(other))

    def __hash__(self) -> int:
        return hash((type(self).__name__, repr(self)))


def _params_equal(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, Tensor) or isinstance(y, Tensor):
            if not (isinstance(x, Tensor) and isinstance(y, Tensor) and torch.equal(x, y)):
                return False
        elif x != y:
            return False
    return True


def _signed_parts(a: Tensor) -> tuple[Tensor | None, Tensor | None]:
    """(a⁺, a⁻), a part being None when it is all zero (after a ReLU there is no a⁻; an
    all-zero ``a`` keeps a⁺)."""
    lo, hi = torch.aminmax(a.detach())
    ap = a.clamp(min=0) if hi > 0 or lo >= 0 else None
    an = a.clamp(max=0) if lo < 0 else None
    return ap, an


def _signed_sum(op: AffineOp, ap: Tensor | None, an: Tensor | None, w_for_pos: Tensor,
                w_for_neg: Tensor, b: Tensor | None) -> Tensor:
    """``op(a⁺, w_for_pos, b) + op(a⁻, w_for_neg)``, skipping a part that is None (one
    evaluation of the layer instead of two after a ReLU)."""
    if an is None:
        assert ap is not None, "_signed_parts keeps a⁺ when there is no a⁻"
        return op(ap, w_for_pos, b)
    if ap is None:
        return op(an, w_for_neg, b)
    return op(ap, w_for_pos, b) + op(an, w_for_neg, None)


class BasicRule(Rule):
    """A rule given by a parameter map ρ, an input map and a stabiliser (LRP-0, ε, γ).

    R_i = Σ_j a_i ρ(w_ij) / stab(Σ_i a_i ρ(w_ij) + ρ(b_j)) · R_j
    """

    identity_params = True

    def __init__(self, stabilizer: float = 1e-9) -> None:
        self.stabilizer = float(stabilizer)

    def weight(self, w: Tensor) -> Tensor:
        return w

    def bias(self, b: Tensor | None) -> Tensor | None:
        return b

    def stab(self, d: Tensor) -> Tensor:
        return stabilize(d, self.stabilizer)

    def rescales(self, op: AffineOp) -> bool:
        """When ρ is the identity and the layer's own output is available, the rule only
        rescales the gradient arriving at the output by z / stab(z)."""
        return self.identity_params and op.native is not None

    def native_denominator(self, z: Tensor) -> Tensor:
        return self.stab(z.detach())

    def native_ratio(self, z: Tensor) -> Tensor:
        """With the plain stabiliser s > 0, z / (z + s·sign z) = |z| / (|z| + s) (z and its
        denominator share a sign; 0 ↦ 0): three elementwise ops instead of five."""
        if self.stabilizer > 0 and type(self).stab is BasicRule.stab:
            m = z.detach().abs()
            return m / (m + self.stabilizer)
        return super().native_ratio(z)

    def modified(self, op: AffineOp, a: Tensor, z: Tensor, ctx: PassContext) -> Tensor:
        zr = op(a, self.weight(op.weight), self.bias(op.bias))
        return zr * _ratio(z, self.stab(zr))


class Zero(BasicRule):
    """LRP-0: redistribute in proportion to the contributions a_i w_ij (bias included)."""

    name = "0"
    label = "LRP-0"

    def describe(self) -> str:
        return "LRP-0"


class Epsilon(BasicRule):
    """LRP-ε: the denominator is pushed away from zero by ε, absorbing weak/contradictory
    relevance (not conservative: the absorbed share is lost)."""

    name = "epsilon"
    label = "LRP-ε"
    param, param_label, default_param = "epsilon", "ε", 0.25
    loss_reason = ("ε absorbs the relevance of weak or contradictory contributions, and the "
                   "bias takes its share")

    def __init__(self, epsilon: float = 1e-6) -> None:
        super().__init__(stabilizer=epsilon)
        self.epsilon = float(epsilon)

    def describe(self) -> str:
        return f"ε={self.epsilon:g}"


class EpsilonStd(BasicRule):
    """LRP-ε with an ε that follows the size of the layer's output: ε = factor · RMS(z),
    per sample, so one factor suits layers of any scale (an absolute ε is negligible in one
    layer and swamps another). Montavon et al. 2019 set ε relative to the activations in
    the same way (0.25 of their standard deviation), hence the default factor 0.25."""

    name = "epsilon-std"
    label = "LRP-ε·rms(z)"
    param, param_label, default_param = "factor", "factor", 0.25
    loss_reason = Epsilon.loss_reason
    elementwise_ratio = False

    def __init__(self, factor: float = 0.25) -> None:
        super().__init__(stabilizer=0.0)
        self.factor = float(factor)

    def stab(self, d: Tensor) -> Tensor:
        rms = d.detach().pow(2).flatten(1).mean(1).sqrt()
        s = (self.factor * rms).view(-1, *([1] * (d.dim() - 1)))
        return stabilize(d, s)

    def describe(self) -> str:
        return f"ε={self.factor:g}·rms(z)"


class Gamma(Rule):
    """Generalised LRP-γ (Montavon et al. 2019; Andéol et al. 2021; zennit's ``Gamma``): each
    output's contributions of its own sign are boosted by (1 + γ).

    With contributions c_ij = a_i w_ij, z_j = Σ_i c_ij + b_j:

        z_j > 0:  R_i = Σ_j (c_ij + γ c_ij⁺) / (z_j + γ (Σ_i c_ij⁺ + b_j⁺)) · R_j
        z_j < 0:  R_i = Σ_j (c_ij + γ c_ij⁻) / (z_j + γ (Σ_i c_ij⁻ + b_j⁻)) · R_j

    The denominator has z's sign and at least its size, so it never crosses zero. For
    inputs a ≥ 0 and z > 0 this is plain γ (:class:`GammaPlain`). With P = Σ c⁺ (the
    positive contributions) and N = z − b − P, both numerators are combinations of z and
    P, so the rule costs one extra evaluation of the layer (two when inputs have both
    signs)."""

    name = "gamma"
    label = "LRP-γ"
    param, param_label, default_param = "gamma", "γ", 0.25

    def __init__(self, gamma: float = 0.25, stabilizer: float = 1e-9) -> None:
        self.gamma = float(gamma)
        self.stabilizer = float(stabilizer)

    def modified(self, op: AffineOp, a: Tensor, z: Tensor, ctx: PassContext) -> Tensor:
        ap, an = _signed_parts(a)
        w = op.weight
        zc = op.native if op.native is not None else op(a, w, op.bias)  # affine value
        positive = _signed_sum(op, ap, an, w.clamp(min=0), w.clamp(max=0), None)  # P = Σ c⁺
        b = op.bias
        zd, pd = zc.detach(), positive.detach()
        up = zd > 0
        if b is None:
            boost = torch.where(up, pd, zd - pd)  # P or N
        else:
            bd = b.detach().view(1, -1, *([1] * (zd.dim() - 2)))
            boost = torch.where(up, pd + bd.clamp(min=0), zd - bd - pd + bd.clamp(max=0))
        r = _ratio(z, stabilize(zd + self.gamma * boost, self.stabilizer))
        r = torch.where(zd == 0, 0.0, r)
        # z > 0: (z + γP)·r;  z < 0: (z + γN)·r = ((1 + γ) z − γ P − γ b)·r
        c_z = torch.where(up, r, (1 + self.gamma) * r)
        c_p = torch.where(up, self.gamma * r, -self.gamma * r)
        return c_z * zc + c_p * positive

    def describe(self) -> str:
        return f"γ={self.gamma:g}"


class GammaPlain(BasicRule):
    """Plain LRP-γ: ρ(w) = w + γ w⁺ (bias likewise), the same for every output.

    Valid only where its assumptions hold: non-negative inputs (after a ReLU) and a
    positive output. Elsewhere (after BatchNorm folding, in residual branches, linear
    bottlenecks) the denominator Σ a ρ(w) + ρ(b) can cross zero while z does not, and the
    relevance explodes; use :class:`Gamma`, which equals this rule where the assumptions
    hold."""

    name = "gamma-plain"
    label = "LRP-γ plain (inputs ≥ 0)"
    param, param_label, default_param = "gamma", "γ", 0.25
    identity_params = False

    def __init__(self, gamma: float = 0.25, stabilizer: float = 1e-9) -> None:
        super().__init__(stabilizer)
        self.gamma = float(gamma)

    def weight(self, w: Tensor) -> Tensor:
        return w + self.gamma * w.clamp(min=0)

    def bias(self, b: Tensor | None) -> Tensor | None:
        return None if b is None else b + self.gamma * b.clamp(min=0)

    def describe(self) -> str:
        return f"γ={self.gamma:g} plain"


class AlphaBeta(Rule):
    """LRP-αβ: positive and negative contributions redistributed separately, weighted α and
    β (α − β = 1 keeps the total when both parts are non-zero). ``bias=False`` ignores the
    bias in both denominators."""

    name = "alpha-beta"
    label = "LRP-αβ (β = α−1)"
    # typed as in Rule: ZPlus, a subclass, has no parameter
    param: str | None = "alpha"
    param_label: str | None = "α"
    default_param: float | None = 2.0
    loss_reason = ("αβ drops the bias's share and an output's positive/negative part when "
                   "that part is empty")

    def __init__(self, alpha: float = 2.0, beta: float = 1.0, bias: bool = True,
                 stabilizer: float = 1e-9) -> None:
        if alpha < 0 or beta < 0:
            raise ValueError("alpha and beta must be non-negative")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.bias = bool(bias)
        self.stabilizer = float(stabilizer)

    @classmethod
    def check_param(cls, value: float) -> None:
        """α must also be ≥ 1, so that β = α − 1 ≥ 0."""
        super().check_param(value)
        if float(value) < 1:
            raise ValueError(f"α of LRP-αβ must be ≥ 1 (β = α − 1 ≥ 0), got {float(value):g}")

    @classmethod
    def from_param(cls, value: float | None = None) -> Rule:
        """αβ with α = ``value`` and β = α − 1 (α − β = 1 keeps the total); a subclass
        with no parameter (z⁺) is its own fixed α and β."""
        if cls.param is None or cls.default_param is None:
            return cls()
        alpha = cls.default_param if value is None else float(value)
        return cls(alpha, alpha - 1.0)

    def modified(self, op: AffineOp, a: Tensor, z: Tensor, ctx: PassContext) -> Tensor:
        ap, an = _signed_parts(a)
        wp, wn = op.weight.clamp(min=0), op.weight.clamp(max=0)
        b = op.bias if self.bias else None
        bp = None if b is None else b.clamp(min=0)
        bn = None if b is None else b.clamp(max=0)
        zp = _signed_sum(op, ap, an, wp, wn, bp)  # Σ (a w)⁺ (+ b⁺)
        m = self.alpha * zp * _ratio(z, nonzero(zp + self.stabilizer))
        if self.beta:
            zn = _signed_sum(op, ap, an, wn, wp, bn)  # Σ (a w)⁻ (+ b⁻)
            m = m - self.beta * zn * _ratio(z, nonzero(zn - self.stabilizer))
        return m

    def describe(self) -> str:
        return f"α={self.alpha:g},β={self.beta:g}" + ("" if self.bias else ",no bias")


class ZPlus(AlphaBeta):
    """z⁺: only positive contributions, bias ignored (αβ with α=1, β=0)."""

    name = "zplus"
    label = "z⁺"
    param = param_label = default_param = None
    loss_reason = ("the rule ignores the bias, so the bias's share of the output is "
                   "redistributed or lost")

    def __init__(self, stabilizer: float = 1e-9) -> None:
        super().__init__(alpha=1.0, beta=0.0, bias=False, stabilizer=stabilizer)

    def describe(self) -> str:
        return "z⁺"


def _broadcast_bound(v: float | Tensor | None, a: Tensor, reduce: str) -> Tensor:
    """Bounds as a tensor shaped like ``a``: a float, a per-channel vector [C] or any
    broadcastable tensor; ``None`` takes each sample's per-channel min/max of ``a``."""
    if v is None:
        dims = tuple(range(2, a.dim()))
        if not dims:
            r = a.amin(1, keepdim=True) if reduce == "min" else a.amax(1, keepdim=True)
        else:
            r = a.amin(dims, keepdim=True) if reduce == "min" else a.amax(dims, keepdim=True)
        return r.detach().expand_as(a)
    t = torch.as_tensor(v, dtype=a.dtype, device=a.device)
    if t.dim() == 1 and a.dim() > 2 and t.numel() == a.shape[1]:
        t = t.view(1, -1, *([1] * (a.dim() - 2)))
    return t.expand_as(a)


class ZBox(Rule):
    """zB / box rule for the input layer: pixels bounded by [low, high] (normalised units).

    R_i = Σ_j (x_i w_ij − l_i w⁺_ij − h_i w⁻_ij) / Σ_i(…) · R_j. ``low``/``high`` are floats,
    per-channel vectors [C], or ``None`` (each sample's per-channel min/max).
    """

    name = "zbox"
    label = "zB (box)"
    needs_input = True
    loss_reason = ZPlus.loss_reason

    def __init__(self, low: float | Tensor | None = None, high: float | Tensor | None = None,
                 stabilizer: float = 1e-9) -> None:
        self.low = low
        self.high = high
        self.stabilizer = float(stabilizer)

    @classmethod
    def from_row(cls, value: float | None = None, low: float | Tensor | None = None,
                 high: float | Tensor | None = None) -> Rule:
        """zB with the model's input bounds (it has no main parameter)."""
        return cls(low, high)

    def modified(self, op: AffineOp, a: Tensor, z: Tensor, ctx: PassContext) -> Tensor:
        x = ctx.reference(a)
        lo = ctx.reference(_broadcast_bound(self.low, a, "min"))
        hi = ctx.reference(_broadcast_bound(self.high, a, "max"))
        w = op.weight
        zr = op(x, w, None) - op(lo, w.clamp(min=0), None) - op(hi, w.clamp(max=0), None)
        return zr * _ratio(z, stabilize(zr, self.stabilizer))

    def describe(self) -> str:
        def fmt(v: float | Tensor | None) -> str:
            if v is None:
                return "auto"
            if isinstance(v, Tensor):
                return "[" + ",".join(f"{float(t):.3g}" for t in v.flatten()[:4]) + "]"
            return f"{v:.3g}"
        return f"zB[{fmt(self.low)},{fmt(self.high)}]"


class Flat(Rule):
    """Flat: every input in an output's receptive field gets an equal share (input layer)."""

    name = "flat"
    label = "flat"
    needs_input = True
    loss_reason = ZPlus.loss_reason

    def __init__(self, stabilizer: float = 1e-9) -> None:
        self.stabilizer = float(stabilizer)

    def modified(self, op: AffineOp, a: Tensor, z: Tensor, ctx: PassContext) -> Tensor:
        ones = ctx.reference(torch.ones_like(a))
        zr = op(ones, torch.ones_like(op.weight), None)
        return zr * _ratio(z, stabilize(zr, self.stabilizer))

    def describe(self) -> str:
        return "flat"


class WSquare(Rule):
    """w²: shares proportional to squared weights, independent of the input (input layer)."""

    name = "w2"
    label = "w²"
    needs_input = True
    loss_reason = ZPlus.loss_reason

    def __init__(self, stabilizer: float = 1e-9) -> None:
        self.stabilizer = float(stabilizer)

    def modified(self, op: AffineOp, a: Tensor, z: Tensor, ctx: PassContext) -> Tensor:
        ones = ctx.reference(torch.ones_like(a))
        zr = op(ones, op.weight.pow(2), None)
        return zr * _ratio(z, stabilize(zr, self.stabilizer))

    def describe(self) -> str:
        return "w²"


class Pass(Rule):
    """Pass-through: the output relevance goes unchanged to the input at the same position
    (only for layers whose input and output have the same shape)."""

    name = "pass"
    label = "pass-through"

    def modified(self, op: AffineOp, a: Tensor, z: Tensor, ctx: PassContext) -> Tensor:
        if a.shape != z.shape:
            raise ValueError(
                f"the pass rule needs a layer whose input and output shapes agree, "
                f"got {tuple(a.shape)} → {tuple(z.shape)}")
        return pass_through(a, z)

    def describe(self) -> str:
        return "pass"


class _PassThrough(torch.autograd.Function):
    """``out``, unchanged (a copy: the model may write to it in place), whose gradient
    reaches ``a`` scaled by out / d, with d = a by default (then 0 where that is not finite,
    e.g. a = 0): relevance ``out ⊙ g`` arrives unchanged as ``a ⊙ g'``. The ratio is formed
    in the backward only (EfficientNet has 33 activations that use it)."""

    @staticmethod
    def forward(ctx: Any, a: Tensor, out: Tensor, d: Tensor | None) -> Tensor:
        ctx.own_denominator = d is not None
        ctx.save_for_backward(out, a if d is None else d)
        return out.clone()

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, None, None]:
        out, d = ctx.saved_tensors
        ratio = out / d
        if not ctx.own_denominator:
            ratio = torch.nan_to_num(ratio, nan=0.0, posinf=0.0, neginf=0.0)
        return g * ratio, None, None


def pass_through(a: Tensor, out: Tensor, denominator: Tensor | None = None) -> Tensor:
    """The pass rule for a map ``a ↦ out`` of the same shape (the :class:`Pass` rule, and
    the engine's treatment of ReLU6, SiLU, … whatever their own derivative): ``out``'s
    values, with ``out``'s own backward replaced by the relevance-preserving one.

    ``denominator``: a detached stand-in for ``a`` (never 0), for an ``a`` that is a rule
    layer's output z whose rule rescales by z / d: the two ratios out / z and z / d merge
    into one, out / d, applied once."""
    return _PassThrough.apply(a, out.detach(), denominator)


def make_rule(name: str, **params: float | bool | Tensor | None) -> Rule:
    """Build a rule from its short name and parameters, e.g. ``make_rule("gamma", gamma=.1)``."""
    try:
        cls = RULES[name]
    except KeyError:
        raise ValueError(f"unknown rule {name!r}; known: {', '.join(RULES)}") from None
    return cls(**params)
