"""The engine against the plain-numpy reference (tests/reference_lrp.py).

First the reference is checked on its own (forward against torch, LRP-0 against a
finite-difference gradient × input, conservation, a hand-computed two-input example for every
rule); then ``le.analyze`` must reproduce it for every rule, a mixed composite, both max-pool
modes, several targets and three small networks (strided/padded/grouped convolutions, average,
adaptive-average and max pooling, an MLP on [N, D] inputs), relevance and per-layer sums alike.
Everything runs in float64.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

import lrp_engine as le
from lrp_engine.rule_spec import INPUT_RULES
from tests import reference_lrp as ref

RTOL = 1e-5


# --------------------------------------------------------------------------------------------
# networks
# --------------------------------------------------------------------------------------------

def _cnn_a() -> tuple[nn.Sequential, tuple[int, ...]]:
    """Strided + padded conv, grouped conv, padded max pool, avg pool, two dense layers."""
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=2, padding=1),   # "0": 2×9×9 → 4×5×5
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, padding=1, groups=2),   # "2": → 6×5×5
        nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1),      # "4": → 6×3×3 (edge windows are smaller)
        nn.AvgPool2d(2, stride=1),                 # "5": → 6×2×2 (overlapping windows)
        nn.Flatten(),
        nn.Linear(24, 10),                         # "7"
        nn.ReLU(),
        nn.Linear(10, 5),                          # "9"
    )
    return net, (2, 9, 9)


def _cnn_b() -> tuple[nn.Sequential, tuple[int, ...]]:
    """Plain max pool, padded conv, avg pool counting padding, adaptive avg pool."""
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3),                        # "0": 3×8×8 → 6×6×6
        nn.ReLU(),
        nn.MaxPool2d(2),                           # "2": → 6×3×3
        nn.Conv2d(6, 8, 2, padding=1),             # "3": → 8×4×4
        nn.ReLU(),
        nn.AvgPool2d(3, stride=2, padding=1),      # "5": → 8×2×2, count_include_pad=True
        nn.Dropout(0.5),
        nn.AdaptiveAvgPool2d((3, 3)),              # "7": 2×2 → 3×3, overlapping windows
        nn.Flatten(),
        nn.Linear(72, 4),                          # "9"
    )
    return net, (3, 8, 8)


def _mlp() -> tuple[nn.Sequential, tuple[int, ...]]:
    """Dense layers on [N, D] inputs, with an (eval) dropout."""
    net = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 8),
                        nn.ReLU(), nn.Linear(8, 4))
    return net, (12,)


def _direct() -> tuple[nn.Sequential, tuple[int, ...]]:
    """Rule layers feeding each other directly (no activation in between): each layer's
    output tensor is the next layer's input tensor."""
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3),                        # "0": 2×8×8 → 3×6×6
        nn.AvgPool2d(2),                           # "1": → 3×3×3
        nn.Conv2d(3, 4, 1),                        # "2": → 4×3×3
        nn.Flatten(),
        nn.Linear(36, 6),                          # "4"
        nn.Linear(6, 3),                           # "5"
    )
    return net, (2, 8, 8)


NETS: dict[str, Callable[[], tuple[nn.Sequential, tuple[int, ...]]]] = {
    "cnn_a": _cnn_a, "cnn_b": _cnn_b, "mlp": _mlp, "direct": _direct}


def make_net(name: str, seed: int = 0) -> tuple[nn.Sequential, torch.Tensor]:
    """A float64 eval-mode network with default-initialised weights and random (non-zero)
    biases, and a batch of 4 inputs."""
    torch.manual_seed(seed)
    net, shape = NETS[name]()
    net = net.double().eval()
    with torch.no_grad():
        for m in net.modules():
            if getattr(m, "bias", None) is not None:
                m.bias.normal_(0.0, 0.1)
    x = torch.randn(4, *shape, dtype=torch.float64)
    return net, x


def _bounds(x: torch.Tensor) -> tuple[object, object]:
    """zB bounds: per channel ([C], below/above the data) for images, floats for vectors."""
    if x.dim() == 4:
        c = x.shape[1]
        lo = x.amin(dim=(0, 2, 3)) - 0.1 * torch.arange(1, c + 1, dtype=x.dtype)
        hi = x.amax(dim=(0, 2, 3)) + 0.2 * torch.arange(1, c + 1, dtype=x.dtype)
        return lo, hi
    return float(x.min()) - 0.3, float(x.max()) + 0.4


# --------------------------------------------------------------------------------------------
# rule pairs: (engine rule, reference rule)
# --------------------------------------------------------------------------------------------

def to_engine(rule: ref.RefRule) -> le.Rule:
    """The engine rule that should implement a reference rule."""
    p = rule.params
    k = rule.kind
    if k == "zero":
        return le.Zero(stabilizer=p["s"])
    if k == "epsilon":
        return le.Epsilon(epsilon=p["s"])
    if k == "epsilon-std":
        return le.EpsilonStd(factor=p["factor"])
    if k == "gamma":
        return le.Gamma(gamma=p["gamma"], stabilizer=p["s"])
    if k == "gamma-plain":
        return le.GammaPlain(gamma=p["gamma"], stabilizer=p["s"])
    if k == "alpha-beta":
        if p["alpha"] == 1.0 and p["beta"] == 0.0 and not p["bias"]:
            return le.ZPlus(stabilizer=p["s"])
        return le.AlphaBeta(alpha=p["alpha"], beta=p["beta"], bias=p["bias"],
                            stabilizer=p["s"])
    if k == "zbox":
        lo, hi = p["low"], p["high"]
        return le.ZBox(torch.as_tensor(lo) if isinstance(lo, np.ndarray) else lo,
                       torch.as_tensor(hi) if isinstance(hi, np.ndarray) else hi,
                       stabilizer=p["s"])
    if k == "flat":
        return le.Flat(stabilizer=p["s"])
    if k == "w2":
        return le.WSquare(stabilizer=p["s"])
    raise ValueError(k)


#: rules applied to every explained layer (pools and max pools in "avg" mode included)
EVERYWHERE: dict[str, ref.RefRule] = {
    "zero": ref.zero(),
    "epsilon": ref.epsilon(0.05),
    "epsilon-std": ref.epsilon_std(0.25),
    "gamma": ref.gamma(0.25),
    "alpha2-beta1": ref.alpha_beta(2.0, 1.0),
    "alpha1-beta0-nobias": ref.alpha_beta(1.0, 0.0, bias=False),
    "alpha1-beta0-bias": ref.alpha_beta(1.0, 0.0, bias=True),
    "zplus": ref.zplus(),
}
#: input-layer rules: on layer 0 only, ε = 0.01 elsewhere
FIRST_ONLY = ref.INPUT_LAYER_RULES


def test_the_engine_and_the_reference_have_the_same_input_layer_rules() -> None:
    assert set(INPUT_RULES) == set(FIRST_ONLY)


def _first_rule(kind: str, x: torch.Tensor) -> ref.RefRule:
    if kind == "zbox":
        lo, hi = _bounds(x)
        if isinstance(lo, torch.Tensor):
            return ref.zbox(lo.numpy(), hi.numpy())
        return ref.zbox(lo, hi)
    return ref.flat() if kind == "flat" else ref.wsquare()


def composite_for(case: str, net: nn.Sequential, x: torch.Tensor, maxpool: str
                  ) -> tuple[le.Composite, dict[str, ref.RefRule]]:
    """The engine composite of a test case and the same assignment for the reference."""
    steps = ref.build_steps(net, tuple(x.shape[1:]))
    explained = [s for s in steps if s.explained]
    if case in EVERYWHERE:
        rule = EVERYWHERE[case]
        return (le.Composite(default=to_engine(rule), maxpool=maxpool),
                {s.name: rule for s in explained})
    if case in FIRST_ONLY:
        first = _first_rule(case, x)
        rest = ref.epsilon(0.01)
        rules = {s.name: (first if i == 0 else rest) for i, s in enumerate(explained)}
        comp = le.Composite([(le.First(), to_engine(first))], default=to_engine(rest),
                            maxpool=maxpool)
        return comp, rules
    if case == "mixed":
        # zB first, LRP-0 last, γ on the other convolutions, z⁺ on max pools, ε·rms on
        # average pools, αβ on adaptive pools, ε on the remaining (dense) layers; the
        # selectors First, Last, ByName and ByType, first match winning
        zb = _first_rule("zbox", x)
        pairs: list[tuple[le.Selector, ref.RefRule]] = [
            (le.First(), zb),
            (le.Last(), ref.zero()),
            (le.ByType(nn.Conv2d), ref.gamma(0.5)),
        ]
        by_kind = {"MaxPool2d": ref.zplus(), "AvgPool2d": ref.epsilon_std(0.3),
                   "AdaptiveAvgPool2d": ref.alpha_beta(2.0, 1.0)}
        default = ref.epsilon(0.02)
        rules: dict[str, ref.RefRule] = {}
        for i, s in enumerate(explained):
            if i == 0:
                rules[s.name] = zb
            elif s is explained[-1]:
                rules[s.name] = ref.zero()
            elif s.kind == "Conv2d":
                rules[s.name] = ref.gamma(0.5)
            else:
                rules[s.name] = by_kind.get(s.kind, default)
        pools = [(le.ByName(*[s.name for s in explained if s.kind == kind]), to_engine(r))
                 for kind, r in by_kind.items()]
        comp = le.Composite([(sel, to_engine(r)) for sel, r in pairs] + pools,
                            default=to_engine(default), maxpool=maxpool)
        return comp, rules
    raise ValueError(case)


# --------------------------------------------------------------------------------------------
# targets
# --------------------------------------------------------------------------------------------

TARGETS = ("argmax", "int", "long", "weights")


def make_target(kind: str, n: int, k: int) -> object:
    """A target of the given kind for a batch of ``n`` and ``k`` classes; the weight target
    has mixed signs and one all-zero row ("no class")."""
    if kind == "argmax":
        return None
    if kind == "int":
        return 1
    if kind == "long":
        return torch.arange(n, dtype=torch.long) % k
    g = torch.Generator().manual_seed(7)
    w = torch.randn(n, k, generator=g, dtype=torch.float64)
    w[1] = 0.0
    return w


def target_matrix(target: object, logits: np.ndarray) -> np.ndarray:
    """The target as [N, K] weights, computed independently of the engine."""
    n, k = logits.shape
    if target is None:
        return ref.one_hot(logits.argmax(1), k)
    if isinstance(target, int):
        return ref.one_hot([target] * n, k)
    assert isinstance(target, torch.Tensor)
    if target.is_floating_point():
        return target.numpy().copy()
    return ref.one_hot(target.numpy(), k)


def assert_rel_close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """``got`` equals ``want`` to 1e-5 relative, measured against the largest |want|."""
    scale = float(np.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * max(scale, 1e-300),
                               err_msg=what)


# --------------------------------------------------------------------------------------------
# the reference on its own
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(NETS))
def test_reference_forward_matches_torch(name: str) -> None:
    net, x = make_net(name)
    steps = ref.build_steps(net, tuple(x.shape[1:]))
    np.testing.assert_allclose(ref.logits(steps, x.numpy()), net(x).detach().numpy(),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["cnn_a", "cnn_b"])
def test_reference_lrp0_is_numerical_gradient_x_input(name: str) -> None:
    """LRP-0 (no stabiliser) with winner-take-all max pooling equals gradient × input on a
    ReLU network with biases; the gradient is a finite difference of the numpy forward, so
    this validates the reference without the engine or autograd."""
    net, x = make_net(name, seed=3)
    x = x[:2]
    lg = ref.logits(ref.build_steps(net, tuple(x.shape[1:])), x.numpy())
    t = ref.one_hot(lg.argmax(1), lg.shape[1])
    n_rules = sum(s.explained for s in ref.build_steps(net, tuple(x.shape[1:])))
    got = ref.reference_lrp(net, x.numpy(), t, [ref.zero(0.0)] * n_rules, maxpool="winner")
    gxi = ref.numerical_gradient_x_input(net, x.numpy(), t)
    np.testing.assert_allclose(got.relevance, gxi, rtol=0, atol=1e-8 * np.abs(gxi).max())
    assert np.abs(gxi).max() > 1e-3


@pytest.mark.parametrize("rule", [ref.zero(0.0), ref.zplus(stabilizer=0.0),
                                  ref.alpha_beta(2, 1, bias=False, stabilizer=0.0)],
                         ids=["zero", "zplus", "alpha2-beta1"])
def test_reference_conserves_on_bias_free_net(rule: ref.RefRule) -> None:
    """Bias-free, positive inputs, one dense layer pair: every layer's input relevance sums
    to the output relevance (αβ: every output has both positive and negative parts here)."""
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(10, 12, bias=False), nn.ReLU(),
                        nn.Linear(12, 3, bias=False)).double()
    x = torch.rand(3, 10, dtype=torch.float64) + 0.1
    lg = net(x).detach().numpy()
    t = ref.one_hot(lg.argmax(1), 3)
    out = ref.reference_lrp(net, x.numpy(), t, [rule, rule])
    for name in out.layer_names:
        np.testing.assert_allclose(out.layer_sums[name], out.output_relevance, rtol=1e-12)
    np.testing.assert_allclose(out.relevance.sum(1), out.output_relevance, rtol=1e-12)


# a = [1, 2], W = [[2], [-1]], b = 0.5, z = 0.5, R_out = 1: each rule by hand
HAND_CASES = [
    (ref.zero(0.0), [4.0, -4.0]),                        # a_i w_i / z
    (ref.epsilon(0.5), [2.0, -2.0]),                     # / (z + ε)
    (ref.epsilon_std(1.0), [2.0, -2.0]),                 # ε = 1·rms(z) = 0.5
    (ref.gamma(1.0, 0.0), [4.0 / 3.0, -2.0 / 3.0]),      # ρw = [4, -1], ρb = 1, z = 3
    (ref.alpha_beta(2.0, 1.0, True, 0.0), [1.6, -1.0]),  # 2·2/2.5, −(−2)/(−2)
    (ref.alpha_beta(1.0, 0.0, False, 0.0), [1.0, 0.0]),
    (ref.zbox(-1.0, 3.0, 0.0), [0.8, 0.2]),              # [2+2, −2+3] / 5
    (ref.flat(0.0), [0.5, 0.5]),
    (ref.wsquare(0.0), [0.8, 0.2]),                      # [4, 1] / 5
]


# the minimal case: a = [1, 1], w = [1, w2], no bias, z = 1 + w2 < 0, R_out = z
GAMMA_CASES = [
    (-1.2, ref.gamma(0.25, 0.0), [0.4, -0.6]),      # z = −0.2, D = −0.2 + 0.25·(−1.2) = −0.5
    (-1.25, ref.gamma(0.25, 0.0), [0.25 / 0.5625, -0.390625 / 0.5625]),  # D = −0.5625
    (-1.2, ref.gamma_plain(0.25, 0.0), [-5.0, 4.8]),  # D = 1.25 − 1.2 = 0.05: explodes
]


@pytest.mark.parametrize(("w2", "rule", "want"), GAMMA_CASES,
                         ids=[f"{c[1].kind}{c[0]}" for c in GAMMA_CASES])
def test_gamma_negative_output_by_hand(w2: float, rule: ref.RefRule, want: list[float]) -> None:
    """The generalised γ boosts an output's contributions of its own sign, so a negative
    output keeps its sign and size; plain γ (w + γw⁺) flips the denominator and explodes.
    Reference and engine agree with the hand computation."""
    lin = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, w2]], dtype=torch.float64))
    x = np.array([[1.0, 1.0]])
    out = ref.reference_lrp(nn.Sequential(lin), x, np.array([[1.0]]), [rule])
    np.testing.assert_allclose(out.relevance[0], want, rtol=1e-12)
    t = torch.tensor([[1.0]], dtype=torch.float64)
    eng = le.explain(nn.Sequential(lin), torch.tensor(x), target=t,
                     composite=le.Composite(default=to_engine(rule)))
    np.testing.assert_allclose(eng[0].numpy(), want, rtol=1e-9)
    if rule.kind == "gamma":
        assert eng.sum().item() == pytest.approx(1.0 + w2, rel=1e-12)  # conserved


@pytest.mark.parametrize(("rule", "want"), HAND_CASES, ids=[c[0].kind + str(i)
                                                             for i, c in enumerate(HAND_CASES)])
def test_reference_rules_by_hand(rule: ref.RefRule, want: list[float]) -> None:
    lin = nn.Linear(2, 1).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[2.0, -1.0]]))
        lin.bias.fill_(0.5)
    out = ref.reference_lrp(nn.Sequential(lin), np.array([[1.0, 2.0]]), np.array([[2.0]]),
                            [rule])
    # relevance at the output is logit · T = 0.5 · 2 = 1
    np.testing.assert_allclose(out.relevance[0], want, rtol=1e-12)


def test_reference_refuses_input_rule_on_inner_layer() -> None:
    net, x = make_net("mlp")
    with pytest.raises(ValueError, match="input-layer rule"):
        ref.reference_lrp(net, x.numpy(), np.ones((4, 4)),
                          [ref.epsilon(), ref.flat(), ref.epsilon()])


# --------------------------------------------------------------------------------------------
# the engine against the reference
# --------------------------------------------------------------------------------------------

CASES = [*EVERYWHERE, *FIRST_ONLY, "mixed"]
NET_MODES = [("cnn_a", "avg"), ("cnn_a", "winner"), ("cnn_b", "avg"), ("cnn_b", "winner"),
             ("mlp", "avg"), ("direct", "avg")]


def check_against_reference(net: nn.Sequential, x: torch.Tensor, comp: le.Composite,
                            rules: dict[str, ref.RefRule], target: object, label: str) -> float:
    """Assert engine == reference for one configuration; return the max relative error."""
    state = {k: v.clone() for k, v in net.state_dict().items()}
    res = le.analyze(net, x, target=target, composite=comp)
    lg = net(x).detach().numpy()
    t = target_matrix(target, lg)
    want = ref.reference_lrp(net, x.numpy(), t, rules, maxpool=comp.maxpool)

    np.testing.assert_allclose(res.logits.numpy(), want.logits, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(res.target.numpy(), t)
    assert_rel_close(res.output_relevance.numpy(), want.output_relevance, f"{label}: R_out")
    got = res.relevance.numpy()
    assert got.shape == x.shape
    assert np.isfinite(got).all(), label
    assert_rel_close(got, want.relevance, f"{label}: relevance")
    assert_rel_close(le.explain(net, x, target=target, composite=comp).numpy(), want.relevance,
                     f"{label}: explain()")

    kinds = {s.name: s.kind for s in ref.build_steps(net, tuple(x.shape[1:]))}
    expected_names = [n for n in want.layer_names
                      if not (comp.maxpool == "winner" and kinds[n] == "MaxPool2d")]
    assert [lr.name for lr in res.layers] == expected_names, label
    for lr in res.layers:
        assert lr.kind == kinds[lr.name]
        assert_rel_close(lr.input_relevance.numpy(), want.layer_sums[lr.name],
                         f"{label}: sum at input of layer {lr.name} ({lr.kind}, {lr.rule})")
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k])
    scale = np.abs(want.relevance).max()
    return float(np.abs(got - want.relevance).max() / scale) if scale > 0 else 0.0


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(("name", "maxpool"), NET_MODES, ids=[f"{n}-{m}" for n, m in NET_MODES])
def test_engine_matches_reference(name: str, maxpool: str, case: str) -> None:
    net, x = make_net(name, seed=11)
    comp, rules = composite_for(case, net, x, maxpool)
    k = net(x).shape[1]
    for tk in TARGETS:
        target = make_target(tk, len(x), k)
        check_against_reference(net, x, comp, rules, target, f"{name}/{maxpool}/{case}/{tk}")


def test_weight_target_zero_row_gives_zero_relevance_in_reference_and_engine() -> None:
    net, x = make_net("cnn_a", seed=2)
    comp, _ = composite_for("mixed", net, x, "avg")
    target = make_target("weights", len(x), 5)
    res = le.analyze(net, x, target=target, composite=comp)
    assert torch.count_nonzero(res.relevance[1]) == 0
    assert all(float(lr.input_relevance[1]) == 0.0 for lr in res.layers)
    assert torch.count_nonzero(res.relevance[0]) > 0


def test_by_index_selector_uses_the_layers_index() -> None:
    """``ByIndex`` picks layers by ``LayerRelevance.index`` (execution position among all
    leaf modules): γ on the layers with index 2…5 of cnn_a equals the name-based choice."""
    net, x = make_net("cnn_a", seed=4)
    res = le.analyze(net, x, composite=le.Composite(default=le.Epsilon(0.01)))
    idx = {lr.name: lr.index for lr in res.layers}
    assert idx["0"] < idx["2"] < idx["4"] < idx["5"] < idx["7"] < idx["9"]
    by_index = le.Composite([(le.ByIndex(idx["2"], idx["5"] + 1), le.Gamma(0.5))],
                            default=le.Epsilon(0.01))
    by_name = le.Composite([(le.ByName("2", "4", "5"), le.Gamma(0.5))],
                           default=le.Epsilon(0.01))
    rules = {"0": ref.epsilon(0.01), "2": ref.gamma(0.5), "4": ref.gamma(0.5),
             "5": ref.gamma(0.5), "7": ref.epsilon(0.01), "9": ref.epsilon(0.01)}
    for comp in (by_index, by_name):
        check_against_reference(net, x, comp, rules, None, "by-index")


def test_engine_lrp0_is_gradient_x_input_on_reference_net() -> None:
    """Engine LRP-0 (winner max pool), engine gradient × input and the reference agree."""
    net, x = make_net("cnn_a", seed=8)
    comp = le.Composite(default=le.Zero(stabilizer=1e-12), maxpool="winner")
    r = le.explain(net, x, target=2, composite=comp).numpy()
    g = le.gradient_x_input(net, x, target=2).numpy()
    n_rules = sum(s.explained for s in ref.build_steps(net, tuple(x.shape[1:])))
    want = ref.reference_lrp(net, x.numpy(), ref.one_hot([2] * len(x), 5),
                             [ref.zero(0.0)] * n_rules, maxpool="winner").relevance
    assert_rel_close(r, want, "LRP-0")
    assert_rel_close(g, want, "gradient×input")
