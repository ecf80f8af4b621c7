"""A plain-numpy reference implementation of LRP for small sequential networks (tests only).

Everything here is float64 numpy in *explicit matrix form*: every layer that gets a rule is
turned into a dense weight matrix ``W[i, j]`` (flattened input ``i`` → flattened output ``j``)
plus a bias ``b[j]`` and a 0/1 connection mask ``M[i, j]``, and each rule is written out as
the textbook formula over these matrices, one sample at a time. No torch autograd, no torch
convolutions: torch is only used to read the modules' hyper-parameters and weights.

Supported modules (an ``nn.Sequential`` or a list of ``(name, module)`` pairs):
Conv2d (any stride / padding / dilation / groups, ``padding_mode="zeros"``), Linear,
AvgPool2d (``ceil_mode=False``), AdaptiveAvgPool2d, MaxPool2d (``ceil_mode=False``), ReLU,
Flatten, Dropout / Dropout2d (eval: identity) and Identity.

Conventions (the engine's specification, see the tests):

* stabiliser ``stab(d) = d + s·sign(d)`` with ``sign(0) := +1``;
* relevance at the output is ``logits ⊙ T`` (``T`` the target weights, [N, K]);
* ReLU / Flatten / Dropout pass relevance unchanged;
* MaxPool2d with ``maxpool="avg"`` is the linear map of an average pool with the same
  kernel / stride / padding whose window size counts only real (non-padding) inputs, under
  the layer's rule; with ``maxpool="winner"`` all of an output's relevance goes to the
  window's argmax input (first maximal element in row-major window order).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from torch import nn

# --------------------------------------------------------------------------------------------
# rules (pure descriptions; the formulas live in :func:`apply_rule`)
# --------------------------------------------------------------------------------------------

RULE_KINDS = ("zero", "epsilon", "epsilon-std", "gamma", "gamma-plain", "alpha-beta", "zbox",
              "flat", "w2")
#: rules that compute relevance from the input bounds / structure only: first layer only
INPUT_LAYER_RULES = ("zbox", "flat", "w2")


@dataclass(frozen=True)
class RefRule:
    """A rule for the reference: ``kind`` (one of :data:`RULE_KINDS`) and its parameters.

    Use the constructors below (:func:`zero`, :func:`epsilon`, …) rather than building one
    by hand.
    """

    kind: str
    params: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in RULE_KINDS:
            raise ValueError(f"unknown reference rule {self.kind!r}")

    def p(self, key: str) -> object:
        return self.params[key]


def zero(stabilizer: float = 1e-9) -> RefRule:
    """LRP-0: ``R_i = Σ_j a_i W_ij / stab(z_j) R_j`` (bias inside ``z``)."""
    return RefRule("zero", {"s": float(stabilizer)})


def epsilon(eps: float = 1e-6) -> RefRule:
    """LRP-ε: LRP-0 with stabiliser ``s = ε``."""
    return RefRule("epsilon", {"s": float(eps)})


def epsilon_std(factor: float = 0.25) -> RefRule:
    """LRP-ε with ``s = factor · sqrt(mean(z²))`` over the layer's whole output, per sample."""
    return RefRule("epsilon-std", {"factor": float(factor)})


def gamma(g: float = 0.25, stabilizer: float = 1e-9) -> RefRule:
    """Generalised LRP-γ: for an output ``z_j > 0`` every positive product ``a_i W_ij`` (and
    a positive bias) counts ``1 + γ`` times, for ``z_j < 0`` every negative one does."""
    return RefRule("gamma", {"gamma": float(g), "s": float(stabilizer)})


def gamma_plain(g: float = 0.25, stabilizer: float = 1e-9) -> RefRule:
    """Plain LRP-γ: ``ρ(W) = W + γW⁺``, ``ρ(b) = b + γb⁺``; inputs used as given."""
    return RefRule("gamma-plain", {"gamma": float(g), "s": float(stabilizer)})


def alpha_beta(alpha: float = 2.0, beta: float = 1.0, bias: bool = True,
               stabilizer: float = 1e-9) -> RefRule:
    """LRP-αβ on the signs of the products ``a_i W_ij`` (bias split by sign if ``bias``)."""
    return RefRule("alpha-beta", {"alpha": float(alpha), "beta": float(beta),
                                  "bias": bool(bias), "s": float(stabilizer)})


def zplus(stabilizer: float = 1e-9) -> RefRule:
    """z⁺ = αβ with α = 1, β = 0 and no bias."""
    return alpha_beta(1.0, 0.0, bias=False, stabilizer=stabilizer)


def zbox(low: float | np.ndarray, high: float | np.ndarray,
         stabilizer: float = 1e-9) -> RefRule:
    """zB: bounds ``low``/``high`` as floats or per-channel arrays [C] (first layer only)."""
    return RefRule("zbox", {"low": low, "high": high, "s": float(stabilizer)})


def flat(stabilizer: float = 1e-9) -> RefRule:
    """Flat: uniform over the receptive field (connection mask ``M``; first layer only)."""
    return RefRule("flat", {"s": float(stabilizer)})


def wsquare(stabilizer: float = 1e-9) -> RefRule:
    """w²: shares ∝ ``W_ij²`` (first layer only)."""
    return RefRule("w2", {"s": float(stabilizer)})


# --------------------------------------------------------------------------------------------
# layers as explicit matrices
# --------------------------------------------------------------------------------------------

Shape = tuple[int, ...]


@dataclass
class Step:
    """One module of the network in reference form.

    ``role``: ``"affine"`` (Conv2d, Linear, the pools in ``W`` form), ``"maxpool"``,
    ``"relu"`` or ``"identity"`` (Flatten, Dropout, Identity). Shapes are per sample.
    ``W``/``b``/``M`` are set for affine layers and for max pools (their average-pool form);
    ``windows[j]`` lists the flat input indices of a max pool's output ``j``.
    """

    name: str
    kind: str
    role: str
    in_shape: Shape
    out_shape: Shape
    W: np.ndarray | None = None
    b: np.ndarray | None = None
    M: np.ndarray | None = None
    windows: list[np.ndarray] | None = None

    @property
    def explained(self) -> bool:
        """Whether the layer gets a rule (and a per-layer relevance sum)."""
        return self.role in ("affine", "maxpool")


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def conv2d_matrix(weight: np.ndarray, in_shape: Shape, stride: int | Sequence[int] = 1,
                  padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1,
                  groups: int = 1) -> tuple[np.ndarray, np.ndarray, Shape]:
    """Dense matrix of a 2-d cross-correlation (torch's ``Conv2d``, zero padding).

    ``weight``: [C_out, C_in / groups, kh, kw]; ``in_shape``: (C_in, H, W). Returns
    ``(W, M, out_shape)`` with ``W[i, j]`` the weight connecting flat input ``i`` to flat
    output ``j`` and ``M`` the 0/1 mask of those connections (padding positions are not
    inputs, so they connect nothing).
    """
    c_in, h, w = in_shape
    c_out, c_in_g, kh, kw = weight.shape
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    if c_in_g * groups != c_in or c_out % groups:
        raise ValueError("channels do not match groups")
    c_out_g = c_out // groups
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    W = np.zeros((c_in * h * w, c_out * oh * ow))
    M = np.zeros_like(W)
    for o in range(c_out):
        g = o // c_out_g
        for p in range(oh):
            for q in range(ow):
                j = (o * oh + p) * ow + q
                for cg in range(c_in_g):
                    c = g * c_in_g + cg
                    for u in range(kh):
                        y = p * sh - ph + u * dh
                        if not 0 <= y < h:
                            continue
                        for v in range(kw):
                            x = q * sw - pw + v * dw
                            if not 0 <= x < w:
                                continue
                            i = (c * h + y) * w + x
                            W[i, j] += weight[o, cg, u, v]
                            M[i, j] = 1.0
    return W, M, (c_out, oh, ow)


def pool_windows(in_shape: Shape, kernel: int | Sequence[int], stride: int | Sequence[int],
                 padding: int | Sequence[int] = 0,
                 dilation: int | Sequence[int] = 1) -> tuple[list[np.ndarray], list[int], Shape]:
    """Windows of a 2-d pooling (``ceil_mode=False``), channel by channel.

    Returns ``(windows, full_sizes, out_shape)``: ``windows[j]`` the flat input indices
    (real inputs only, row-major window order) of output ``j``, ``full_sizes[j]`` the window
    size including padding positions (``kh·kw``).
    """
    c, h, w = in_shape
    kh, kw = _pair(kernel)
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    windows: list[np.ndarray] = []
    for ch in range(c):
        for p in range(oh):
            for q in range(ow):
                idx = [(ch * h + y) * w + x
                       for y in (p * sh - ph + u * dh for u in range(kh)) if 0 <= y < h
                       for x in (q * sw - pw + v * dw for v in range(kw)) if 0 <= x < w]
                windows.append(np.array(idx, dtype=np.int64))
    return windows, [kh * kw] * len(windows), (c, oh, ow)


def adaptive_windows(in_shape: Shape, output_size: int | Sequence[int | None]
                     ) -> tuple[list[np.ndarray], Shape]:
    """Windows of ``AdaptiveAvgPool2d``: rows ``floor(p·H/oh) … ceil((p+1)·H/oh) − 1``."""
    c, h, w = in_shape
    if isinstance(output_size, int):
        oh, ow = output_size, output_size
    else:
        oh = h if output_size[0] is None else int(output_size[0])
        ow = w if output_size[1] is None else int(output_size[1])
    windows = []
    for ch in range(c):
        for p in range(oh):
            y0, y1 = (p * h) // oh, math.ceil((p + 1) * h / oh)
            for q in range(ow):
                x0, x1 = (q * w) // ow, math.ceil((q + 1) * w / ow)
                windows.append(np.array([(ch * h + y) * w + x for y in range(y0, y1)
                                         for x in range(x0, x1)], dtype=np.int64))
    return windows, (c, oh, ow)


def windows_matrix(windows: Sequence[np.ndarray], divisors: Sequence[float],
                   n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """Average-pool matrix ``W[i, j] = 1 / divisors[j]`` for ``i`` in window ``j``, and its
    connection mask."""
    W = np.zeros((n_in, len(windows)))
    M = np.zeros_like(W)
    for j, (idx, d) in enumerate(zip(windows, divisors, strict=True)):
        W[idx, j] = 1.0 / d
        M[idx, j] = 1.0
    return W, M


def _np(t: object) -> np.ndarray:
    return t.detach().cpu().double().numpy()  # type: ignore[attr-defined]


def _conv_step(name: str, m: nn.Conv2d, shape: Shape) -> Step:
    if m.padding_mode != "zeros" or isinstance(m.padding, str):
        raise ValueError("reference supports numeric zero padding only")
    W, M, out = conv2d_matrix(_np(m.weight), shape, m.stride, m.padding, m.dilation, m.groups)
    n_pos = out[1] * out[2]
    b = np.repeat(_np(m.bias), n_pos) if m.bias is not None else np.zeros(W.shape[1])
    return Step(name, type(m).__name__, "affine", shape, out, W, b, M)


def _linear_step(name: str, m: nn.Linear, shape: Shape) -> Step:
    W = _np(m.weight).T.copy()
    b = _np(m.bias) if m.bias is not None else np.zeros(W.shape[1])
    return Step(name, type(m).__name__, "affine", shape, (W.shape[1],), W, b, np.ones_like(W))


def _avgpool_step(name: str, m: nn.AvgPool2d, shape: Shape) -> Step:
    if m.ceil_mode:
        raise ValueError("reference: AvgPool2d ceil_mode unsupported")
    stride = m.stride if m.stride is not None else m.kernel_size
    win, full, out = pool_windows(shape, m.kernel_size, stride, m.padding)
    if m.divisor_override:
        div = [float(m.divisor_override)] * len(win)
    elif m.count_include_pad:
        div = [float(f) for f in full]
    else:
        div = [float(len(ix)) for ix in win]
    W, M = windows_matrix(win, div, int(np.prod(shape)))
    return Step(name, type(m).__name__, "affine", shape, out, W, np.zeros(W.shape[1]), M)


def _adaptive_step(name: str, m: nn.AdaptiveAvgPool2d, shape: Shape) -> Step:
    win, out = adaptive_windows(shape, m.output_size)
    W, M = windows_matrix(win, [float(len(ix)) for ix in win], int(np.prod(shape)))
    return Step(name, type(m).__name__, "affine", shape, out, W, np.zeros(W.shape[1]), M)


def _maxpool_step(name: str, m: nn.MaxPool2d, shape: Shape) -> Step:
    if m.ceil_mode:
        raise ValueError("reference: MaxPool2d ceil_mode unsupported")
    stride = m.stride if m.stride is not None else m.kernel_size
    win, _, out = pool_windows(shape, m.kernel_size, stride, m.padding, m.dilation)
    W, M = windows_matrix(win, [float(len(ix)) for ix in win], int(np.prod(shape)))
    return Step(name, type(m).__name__, "maxpool", shape, out, W, np.zeros(W.shape[1]), M,
                windows=win)


def _relu_step(name: str, m: nn.ReLU, shape: Shape) -> Step:
    return Step(name, type(m).__name__, "relu", shape, shape)


def _flatten_step(name: str, m: nn.Flatten, shape: Shape) -> Step:
    if m.start_dim != 1 or m.end_dim != -1:
        raise ValueError("reference: Flatten(1, -1) only")
    return Step(name, type(m).__name__, "identity", shape, (int(np.prod(shape)),))


def _identity_step(name: str, m: nn.Module, shape: Shape) -> Step:
    if m.training and not isinstance(m, nn.Identity):
        raise ValueError("reference: dropout must be in eval mode")
    return Step(name, type(m).__name__, "identity", shape, shape)


#: module types (``isinstance``, first match) → their step builder
_STEPS: tuple[tuple[type | tuple[type, ...], Callable[..., Step]], ...] = (
    (nn.Conv2d, _conv_step),
    (nn.Linear, _linear_step),
    (nn.AvgPool2d, _avgpool_step),
    (nn.AdaptiveAvgPool2d, _adaptive_step),
    (nn.MaxPool2d, _maxpool_step),
    (nn.ReLU, _relu_step),
    (nn.Flatten, _flatten_step),
    ((nn.Dropout, nn.Dropout2d, nn.Identity), _identity_step),
)


def build_steps(layers: nn.Sequential | Sequence[tuple[str, nn.Module]],
                in_shape: Shape) -> list[Step]:
    """Turn the modules into :class:`Step` objects for a per-sample input of ``in_shape``.

    Names are the ``nn.Sequential`` child names (what the engine reports for such a model)
    or the names given in the pairs.
    """
    pairs = list(layers.named_children()) if isinstance(layers, nn.Module) else list(layers)
    steps: list[Step] = []
    shape = tuple(in_shape)
    for name, m in pairs:
        builder = next((b for types, b in _STEPS if isinstance(m, types)), None)
        if builder is None:
            raise ValueError(f"reference: unsupported module {name!r} ({type(m).__name__})")
        steps.append(builder(name, m, shape))
        shape = steps[-1].out_shape
    return steps


# --------------------------------------------------------------------------------------------
# forward
# --------------------------------------------------------------------------------------------

def step_forward(step: Step, a: np.ndarray) -> np.ndarray:
    """The real forward of one step on one flattened sample ``a``."""
    if step.role == "affine":
        return a @ step.W + step.b
    if step.role == "maxpool":
        assert step.windows is not None
        return np.array([a[idx].max() for idx in step.windows])
    if step.role == "relu":
        return np.maximum(a, 0.0)
    return a


def forward(steps: Sequence[Step], x: np.ndarray) -> list[np.ndarray]:
    """Activations of one sample: ``[x, out_0, out_1, …]`` (all flattened)."""
    acts = [np.asarray(x, dtype=np.float64).reshape(-1)]
    for step in steps:
        acts.append(step_forward(step, acts[-1]))
    return acts


def logits(steps: Sequence[Step], x: np.ndarray) -> np.ndarray:
    """Logits [N, K] of a batch ``x`` [N, …]."""
    return np.stack([forward(steps, xi)[-1] for xi in np.asarray(x, dtype=np.float64)])


# --------------------------------------------------------------------------------------------
# rules in matrix form
# --------------------------------------------------------------------------------------------

def stab(d: np.ndarray, s: float) -> np.ndarray:
    """``d + s·sign(d)`` with ``sign(0) = +1``."""
    return d + s * np.where(d >= 0, 1.0, -1.0)


def ratio(r: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``r / d`` with ``0`` where ``d == 0`` (only reachable with a zero stabiliser, e.g.
    LRP-0 with ``s = 0`` on an all-zero pooling window; then ``r`` is 0 there as well)."""
    ok = d != 0
    return np.where(ok, r / np.where(ok, d, 1.0), 0.0)


def _expand_bound(v: float | np.ndarray, in_shape: Shape) -> np.ndarray:
    """A bound as a flat per-input vector: a float, or a per-channel array [C] (or any array
    broadcastable to ``in_shape``)."""
    arr = np.asarray(v, dtype=np.float64)
    if arr.ndim == 1 and len(in_shape) > 1 and arr.shape[0] == in_shape[0]:
        arr = arr.reshape(-1, *([1] * (len(in_shape) - 1)))
    return np.broadcast_to(arr, in_shape).reshape(-1)


def apply_rule(rule: RefRule, step: Step, a: np.ndarray, r_out: np.ndarray) -> np.ndarray:
    """Input relevance ``R_i`` of one affine step for one sample.

    ``a``: the step's (flat) input, ``r_out``: relevance at its (flat) output. ``W``, ``b`` and
    ``M`` are the step's explicit matrices (for a max pool in ``"avg"`` mode: its average
    pool form, no bias). Every rule is written as ``R_i = Σ_j C_ij / D_j · R_j``.
    """
    W, b, M = step.W, step.b, step.M
    assert W is not None and b is not None and M is not None
    k = rule.kind
    if k in ("zero", "epsilon"):
        Z = a[:, None] * W
        return Z @ ratio(r_out, stab(Z.sum(0) + b, rule.p("s")))
    if k == "epsilon-std":
        Z = a[:, None] * W
        z = Z.sum(0) + b
        s = rule.p("factor") * np.sqrt(np.mean(z ** 2))
        return Z @ ratio(r_out, stab(z, s))
    if k == "gamma":
        g = rule.p("gamma")
        Z = a[:, None] * W
        z = Z.sum(0) + b
        up = z > 0
        # per output j: the products (and bias) of z_j's own sign, boosted
        boosted = np.where(up[None, :], np.maximum(Z, 0.0), np.minimum(Z, 0.0))
        b_boost = np.where(up, np.maximum(b, 0.0), np.minimum(b, 0.0))
        C = Z + g * boosted
        D = C.sum(0) + b + g * b_boost
        return C @ ratio(np.where(z != 0, r_out, 0.0), stab(D, rule.p("s")))
    if k == "gamma-plain":
        g = rule.p("gamma")
        Wr = W + g * np.maximum(W, 0.0)
        br = b + g * np.maximum(b, 0.0)
        Z = a[:, None] * Wr
        return Z @ ratio(r_out, stab(Z.sum(0) + br, rule.p("s")))
    if k == "alpha-beta":
        Z = a[:, None] * W
        P, N = np.maximum(Z, 0.0), np.minimum(Z, 0.0)
        use_b = rule.p("bias")
        zp = P.sum(0) + (np.maximum(b, 0.0) if use_b else 0.0)
        zn = N.sum(0) + (np.minimum(b, 0.0) if use_b else 0.0)
        s = rule.p("s")
        return (rule.p("alpha") * P @ ratio(r_out, zp + s)
                - rule.p("beta") * N @ ratio(r_out, zn - s))
    if k == "zbox":
        lo = _expand_bound(rule.p("low"), step.in_shape)
        hi = _expand_bound(rule.p("high"), step.in_shape)
        C = a[:, None] * W - lo[:, None] * np.maximum(W, 0.0) - hi[:, None] * np.minimum(W, 0.0)
        return C @ ratio(r_out, stab(C.sum(0), rule.p("s")))
    if k == "flat":
        return M @ ratio(r_out, stab(M.sum(0), rule.p("s")))
    if k == "w2":
        W2 = W ** 2
        return W2 @ ratio(r_out, stab(W2.sum(0), rule.p("s")))
    raise ValueError(k)  # pragma: no cover


def winner_take_all(step: Step, a: np.ndarray, r_out: np.ndarray) -> np.ndarray:
    """Max pool, ``maxpool="winner"``: each output's relevance to its window's argmax."""
    assert step.windows is not None
    r_in = np.zeros_like(a)
    for j, idx in enumerate(step.windows):
        r_in[idx[int(np.argmax(a[idx]))]] += r_out[j]
    return r_in


# --------------------------------------------------------------------------------------------
# the relevance pass
# --------------------------------------------------------------------------------------------

@dataclass
class RefResult:
    """Output of :func:`reference_lrp`.

    ``relevance``: [N, …] like the input; ``logits``: [N, K]; ``output_relevance``: [N];
    ``layer_names``: the explained steps in forward order (Conv2d, Linear, pools, and max
    pools in both modes); ``layer_sums[name]``: [N] total relevance at that step's input.
    """

    relevance: np.ndarray
    logits: np.ndarray
    output_relevance: np.ndarray
    layer_names: list[str]
    layer_sums: dict[str, np.ndarray]


def rules_per_step(steps: Sequence[Step],
                   rules: Sequence[RefRule] | Mapping[str, RefRule]) -> dict[str, RefRule]:
    """Normalise ``rules`` to a name → rule map over the explained steps: a sequence is
    aligned with the explained steps in forward order (max pools included), a mapping is
    keyed by step name (and must cover every explained step)."""
    explained = [s for s in steps if s.explained]
    if isinstance(rules, Mapping):
        missing = [s.name for s in explained if s.name not in rules]
        if missing:
            raise ValueError(f"no rule for steps {missing}")
        return {s.name: rules[s.name] for s in explained}
    if len(rules) != len(explained):
        raise ValueError(f"{len(rules)} rules for {len(explained)} explained steps")
    return {s.name: r for s, r in zip(explained, rules, strict=True)}


def reference_lrp(layers: nn.Sequential | Sequence[tuple[str, nn.Module]], x: np.ndarray,
                  target: np.ndarray, rules: Sequence[RefRule] | Mapping[str, RefRule],
                  maxpool: str = "avg") -> RefResult:
    """LRP of a sequential network, sample by sample, in explicit matrix form.

    ``x``: [N, …] float64; ``target``: [N, K] weights (relevance at the output is
    ``logits ⊙ target``); ``rules``: see :func:`rules_per_step`; ``maxpool``: ``"avg"`` or
    ``"winner"``. Input-layer rules (zB, flat, w²) are refused anywhere but on step 0.
    """
    if maxpool not in ("avg", "winner"):
        raise ValueError(maxpool)
    x = np.asarray(x, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    steps = build_steps(layers, tuple(x.shape[1:]))
    rule_map = rules_per_step(steps, rules)
    for i, s in enumerate(steps):
        if s.explained and rule_map[s.name].kind in INPUT_LAYER_RULES and i != 0:
            raise ValueError(f"input-layer rule on step {s.name!r}, not the first step")
    names = [s.name for s in steps if s.explained]
    sums = {n: np.zeros(len(x)) for n in names}
    rel = np.zeros((len(x), int(np.prod(x.shape[1:]))))
    outs = []
    for n, xi in enumerate(x):
        acts = forward(steps, xi)
        r = acts[-1] * target[n]
        outs.append(acts[-1])
        for i in range(len(steps) - 1, -1, -1):
            step, a = steps[i], acts[i]
            if step.role == "affine" or (step.role == "maxpool" and maxpool == "avg"):
                r = apply_rule(rule_map[step.name], step, a, r)
            elif step.role == "maxpool":
                r = winner_take_all(step, a, r)
            # relu / identity: relevance passes unchanged
            if step.explained:
                sums[step.name][n] = r.sum()
        rel[n] = r
    lg = np.stack(outs)
    return RefResult(relevance=rel.reshape(x.shape), logits=lg,
                     output_relevance=(lg * target).sum(1), layer_names=names,
                     layer_sums=sums)


def one_hot(idx: Sequence[int] | np.ndarray, k: int) -> np.ndarray:
    """Target weights [N, K] for class indices."""
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)
    t = np.zeros((len(idx), k))
    t[np.arange(len(idx)), idx] = 1.0
    return t


def numerical_gradient_x_input(layers: nn.Sequential | Sequence[tuple[str, nn.Module]],
                               x: np.ndarray, target: np.ndarray,
                               h: float = 1e-6) -> np.ndarray:
    """``x ⊙ ∂(Σ_k logits_k T_k)/∂x`` by central differences on the numpy forward."""
    x = np.asarray(x, dtype=np.float64)
    steps = build_steps(layers, tuple(x.shape[1:]))
    out = np.zeros_like(x)
    for n in range(len(x)):
        flat = x[n].reshape(-1)
        g = np.zeros_like(flat)
        for i in range(flat.size):
            e = np.zeros_like(flat)
            e[i] = h
            fp = forward(steps, flat + e)[-1] @ target[n]
            fm = forward(steps, flat - e)[-1] @ target[n]
            g[i] = (fp - fm) / (2 * h)
        out[n] = (flat * g).reshape(x.shape[1:])
    return out
