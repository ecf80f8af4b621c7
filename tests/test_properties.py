"""Properties of the engine on random networks, weights and inputs (hypothesis).

* LRP-0 with winner-take-all max pooling is Gradient × Input on ReLU networks with biases;
* LRP-0, z⁺, αβ and the generalised γ conserve relevance layer by layer on bias-free networks
  (γ also for inputs and outputs of either sign);
* an all-zero target gives exactly zero relevance;
* a sample's relevance does not depend on the rest of the batch (nor its order);
* random architectures and rules agree with the numpy reference (tests/reference_lrp.py);
* the model is left exactly as it was, also when explain() raises.

Examples are bounded (25 per property) and derandomised, so the file runs in seconds and
always tests the same networks. Everything runs in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

import lrp_engine as le
from tests import reference_lrp as ref

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------------------------
# random networks
# --------------------------------------------------------------------------------------------

@dataclass
class Arch:
    """A drawn architecture: an optional conv trunk, then dense layers."""

    seed: int
    image: tuple[int, int] | None       # (channels, side) of image inputs, None: vectors
    convs: list[tuple[int, int, int, int, int]]  # (out_ch, kernel, stride, padding, groups)
    pool: str                            # "max", "avg", "adaptive" or "none" after the trunk
    relu_between: bool                   # ReLU after every conv / hidden dense layer
    dense: list[int]                     # hidden widths
    in_features: int                     # vector inputs only
    classes: int
    batch: int


@st.composite
def archs(draw: st.DrawFn, image: bool | None = None, relu: bool | None = None) -> Arch:
    """Small random architectures (image or vector inputs)."""
    is_image = draw(st.booleans()) if image is None else image
    convs: list[tuple[int, int, int, int, int]] = []
    img = None
    if is_image:
        c = draw(st.integers(1, 3))
        side = draw(st.integers(7, 10))
        img = (c, side)
        for _ in range(draw(st.integers(1, 2))):
            groups = draw(st.sampled_from([1, 2])) if c % 2 == 0 else 1
            out = draw(st.integers(1, 3)) * 2 if groups == 2 else draw(st.integers(2, 5))
            convs.append((out, draw(st.integers(1, 3)), draw(st.integers(1, 2)),
                          draw(st.integers(0, 1)), groups))
            c = out
    return Arch(
        seed=draw(st.integers(0, 2**31 - 1)),
        image=img,
        convs=convs,
        pool=draw(st.sampled_from(["max", "avg", "adaptive", "none"])) if is_image else "none",
        relu_between=draw(st.booleans()) if relu is None else relu,
        dense=draw(st.lists(st.integers(6, 16), min_size=0, max_size=2)),
        in_features=draw(st.integers(4, 12)),
        classes=draw(st.integers(2, 5)),
        batch=draw(st.integers(1, 4)),
    )


def build(arch: Arch, bias: bool = True) -> tuple[nn.Sequential, tuple[int, ...]]:
    """The float64 eval-mode network of ``arch`` and its per-sample input shape."""
    torch.manual_seed(arch.seed)
    layers: list[nn.Module] = []
    if arch.image is not None:
        c, side = arch.image
        shape: tuple[int, ...] = (c, side, side)
        for out, k, s, p, g in arch.convs:
            layers.append(nn.Conv2d(c, out, k, stride=s, padding=p, groups=g, bias=bias))
            if arch.relu_between:
                layers.append(nn.ReLU())
            c = out
        probe = nn.Sequential(*layers)(torch.zeros(1, *shape))
        h = probe.shape[-1]
        if arch.pool == "max" and h >= 2:
            layers.append(nn.MaxPool2d(2))
        elif arch.pool == "avg" and h >= 2:
            layers.append(nn.AvgPool2d(2, stride=1))
        elif arch.pool == "adaptive":
            layers.append(nn.AdaptiveAvgPool2d(2))
        layers.append(nn.Flatten())
        width = int(nn.Sequential(*layers)(torch.zeros(1, *shape)).shape[1])
    else:
        shape = (arch.in_features,)
        width = arch.in_features
    for w in arch.dense:
        layers.append(nn.Linear(width, w, bias=bias))
        if arch.relu_between:
            layers.append(nn.ReLU())
        width = w
    layers.append(nn.Linear(width, arch.classes, bias=bias))
    net = nn.Sequential(*layers).double().eval()
    if bias:
        with torch.no_grad():
            for m in net.modules():
                if getattr(m, "bias", None) is not None:
                    m.bias.normal_(0.0, 0.1)
    return net, shape


def inputs(arch: Arch, shape: tuple[int, ...], positive: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(arch.seed + 1)
    if positive:
        return torch.rand(arch.batch, *shape, generator=g, dtype=torch.float64) + 0.1
    return torch.randn(arch.batch, *shape, generator=g, dtype=torch.float64)


def assert_rel(got: torch.Tensor, want: torch.Tensor, rtol: float = 1e-5) -> None:
    """Equal to ``rtol`` relative to the largest |want| (elementwise and overall)."""
    scale = float(want.abs().max())
    torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * max(scale, 1e-300))


# --------------------------------------------------------------------------------------------
# LRP-0 = Gradient × Input
# --------------------------------------------------------------------------------------------

@SETTINGS
@given(arch=archs(relu=True), cls=st.integers(0, 4))
def test_lrp0_is_gradient_x_input(arch: Arch, cls: int) -> None:
    """On ReLU networks with biases, LRP-0 (winner-take-all max pooling, a negligible
    stabiliser) equals Gradient × Input; average pools are linear, so they need nothing."""
    net, shape = build(arch)
    x = inputs(arch, shape)
    target = cls % arch.classes
    comp = le.Composite(default=le.Zero(stabilizer=1e-12), maxpool="winner")
    r = le.explain(net, x, target=target, composite=comp)
    g = le.gradient_x_input(net, x, target=target)
    assert torch.isfinite(r).all()
    assert_rel(r, g)
    # and Gradient × Input is what it says (autograd on a fresh copy of x)
    xx = x.clone().requires_grad_(True)
    net(xx)[:, target].sum().backward()
    assert_rel(g, (xx * xx.grad).detach(), rtol=1e-12)


# --------------------------------------------------------------------------------------------
# conservation on bias-free networks
# --------------------------------------------------------------------------------------------

def _parts_nonzero(net: nn.Sequential, x: torch.Tensor, target: int, need_neg: bool) -> bool:
    """Whether every conv/dense output that can carry relevance has a positive part
    (z⁺_j > 0) and, if ``need_neg``, a negative part (z⁻_j < 0), by a margin; computed with
    the reference's explicit matrices. Outputs that can carry relevance: hidden outputs
    active after their ReLU (all of them if no ReLU follows) and the target logit."""
    steps = ref.build_steps(net, tuple(x.shape[1:]))
    for xi in x.numpy():
        acts = ref.forward(steps, xi)
        for i, step in enumerate(steps):
            if step.role != "affine" or step.kind not in ("Conv2d", "Linear"):
                continue
            contrib = acts[i][:, None] * step.W
            zp = np.maximum(contrib, 0).sum(0)
            zn = np.minimum(contrib, 0).sum(0)
            z = acts[i + 1]
            if i == len(steps) - 1:
                live = np.zeros_like(z, dtype=bool)
                live[target] = True
            elif steps[i + 1].role == "relu":
                live = z > 0
            else:
                live = np.ones_like(z, dtype=bool)
            margin = 1e-6 * (np.abs(contrib).max() + 1e-300)
            bad = zp <= margin
            if need_neg:
                bad |= zn >= -margin
            if np.any(live & bad):
                return False
    return True


#: rule for convolutions and dense layers (pools keep LRP-0, see the test's docstring); the
#: stabiliser is negligible so that conservation can be checked relative to small outputs
CONSERVING: dict[str, le.Rule] = {
    "zero": le.Zero(stabilizer=1e-13),
    "zplus": le.ZPlus(stabilizer=1e-13),
    "alpha2-beta1": le.AlphaBeta(2.0, 1.0, stabilizer=1e-13),
    "alpha1-beta0": le.AlphaBeta(1.0, 0.0, stabilizer=1e-13),
    "gamma": le.Gamma(0.5, stabilizer=1e-13),
}


@pytest.mark.parametrize("rule", list(CONSERVING))
@pytest.mark.parametrize("maxpool", ["avg", "winner"])
@SETTINGS
@given(arch=archs(relu=True), cls=st.integers(0, 4))
def test_conservation_layer_by_layer_without_bias(rule: str, maxpool: str, arch: Arch,
                                                  cls: int) -> None:
    """Bias-free: every layer's input relevance equals the output relevance.

    z⁺ / αβ act on convolutions and dense layers; pools keep LRP-0 (a pool's weights are all
    positive, so on the non-negative activations after a ReLU its z⁻ is 0 and αβ's β share
    would be lost — legitimately, not a bug). An output that carries relevance but whose z⁺
    (or, for β > 0, z⁻) is exactly 0 also loses its α (β) share legitimately, e.g. a
    negative target logit made of negative contributions only under z⁺: inputs are positive
    and such cases are assume()d away (see :func:`_parts_nonzero`); LRP-0 needs no such
    assumption. Outputs below 1e-6 in size are assumed away too: the (tiny) stabiliser's
    absolute loss is not small relative to them.
    """
    net, shape = build(arch, bias=False)
    x = inputs(arch, shape, positive=True)
    target = cls % arch.classes
    rule_obj = CONSERVING[rule]
    if isinstance(rule_obj, le.AlphaBeta):
        assume(_parts_nonzero(net, x, target, need_neg=rule_obj.beta > 0))
    comp = le.Composite([(le.ByType(nn.Conv2d, nn.Linear), rule_obj)],
                        default=le.Zero(stabilizer=1e-13), maxpool=maxpool)
    res = le.analyze(net, x, target=target, composite=comp)
    out = res.output_relevance
    assume(bool((out.abs() > 1e-6).all()))
    assert len(res.layers) >= 1
    for lr in res.layers:
        assert_rel(lr.input_relevance, out)
    assert_rel(res.relevance.flatten(1).sum(1), out)


@pytest.mark.parametrize("maxpool", ["avg", "winner"])
@SETTINGS
@given(arch=archs(relu=False), cls=st.integers(0, 4), gamma=st.sampled_from([0.1, 0.25, 1.0]))
def test_generalised_gamma_conserves_for_inputs_and_outputs_of_either_sign(
        maxpool: str, arch: Arch, cls: int, gamma: float) -> None:
    """Bias-free, inputs of both signs, no ReLU after some layers: the generalised γ keeps
    every layer's sum (each output's denominator is the sum of its numerators, and has z's
    sign), where plain γ's denominator may cross zero."""
    net, shape = build(arch, bias=False)
    x = inputs(arch, shape, positive=False)
    comp = le.Composite([(le.ByType(nn.Conv2d, nn.Linear), le.Gamma(gamma, stabilizer=1e-13))],
                        default=le.Zero(stabilizer=1e-13), maxpool=maxpool)
    res = le.analyze(net, x, target=cls % arch.classes, composite=comp)
    out = res.output_relevance
    assume(bool((out.abs() > 1e-6).all()))
    for lr in res.layers:
        assert_rel(lr.input_relevance, out)
    assert_rel(res.relevance.flatten(1).sum(1), out)


# --------------------------------------------------------------------------------------------
# zero target, batch independence, random rules against the reference
# --------------------------------------------------------------------------------------------

RULE_CHOICES = [le.Zero(), le.Epsilon(0.1), le.EpsilonStd(0.25), le.Gamma(0.25),
                le.AlphaBeta(2.0, 1.0), le.AlphaBeta(1.0, 0.0, bias=False), le.ZPlus()]
FIRST_CHOICES = [None, le.ZBox(-3.0, 3.0), le.ZBox(None, None), le.Flat(), le.WSquare()]


def mixed_composite(draw: st.DrawFn, maxpool: str | None = None) -> le.Composite:
    """A random composite: optional input-layer rule on the first layer, random rules on
    convolutions, pools and dense layers, a random rule on the last layer."""
    first = draw(st.sampled_from(FIRST_CHOICES))
    pairs: list[tuple[le.Selector, le.Rule]] = []
    if first is not None:
        pairs.append((le.First(), first))
    pairs += [(le.Last(), draw(st.sampled_from(RULE_CHOICES))),
              (le.ByType(nn.Conv2d), draw(st.sampled_from(RULE_CHOICES))),
              (le.ByType(nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d),
               draw(st.sampled_from(RULE_CHOICES)))]
    return le.Composite(pairs, default=draw(st.sampled_from(RULE_CHOICES)),
                        maxpool=maxpool or draw(st.sampled_from(["avg", "winner"])))


@SETTINGS
@given(arch=archs(), data=st.data())
def test_zero_target_gives_exactly_zero_relevance(arch: Arch, data: st.DataObject) -> None:
    net, shape = build(arch)
    x = inputs(arch, shape)
    comp = mixed_composite(data.draw)
    res = le.analyze(net, x, target=torch.zeros(arch.batch, arch.classes, dtype=x.dtype),
                     composite=comp)
    assert torch.count_nonzero(res.relevance) == 0
    assert torch.count_nonzero(res.output_relevance) == 0
    for lr in res.layers:
        assert torch.count_nonzero(lr.input_relevance) == 0
    # a non-zero target on the same network does give relevance (the test can fail)
    r = le.explain(net, x, target=torch.ones(arch.batch, arch.classes, dtype=x.dtype),
                   composite=le.Composite(default=le.Epsilon(1e-9)))
    assert torch.count_nonzero(r) > 0


@SETTINGS
@given(arch=archs(), data=st.data())
def test_relevance_does_not_depend_on_the_batch(arch: Arch, data: st.DataObject) -> None:
    """Explaining x[i] alone equals row i of explaining the batch, and of a shuffled batch
    (per-sample quantities such as ε·rms(z) and automatic zB bounds included)."""
    arch.batch = max(arch.batch, 2)
    net, shape = build(arch)
    x = inputs(arch, shape)
    comp = mixed_composite(data.draw)
    cls = torch.arange(arch.batch) % arch.classes
    full = le.analyze(net, x, target=cls, composite=comp)
    perm = torch.randperm(arch.batch, generator=torch.Generator().manual_seed(arch.seed))
    shuffled = le.explain(net, x[perm], target=cls[perm], composite=comp)
    assert_rel(shuffled, full.relevance[perm], rtol=1e-9)
    for i in range(arch.batch):
        one = le.analyze(net, x[i:i + 1], target=int(cls[i]), composite=comp)
        assert_rel(one.relevance[0], full.relevance[i], rtol=1e-9)
        for a, b in zip(one.layers, full.layers, strict=True):
            assert a.name == b.name
            assert_rel(a.input_relevance[0], b.input_relevance[i], rtol=1e-9)


def _ref_rule(rule: le.Rule, x: torch.Tensor) -> ref.RefRule:
    """The reference rule for an engine rule from the lists above."""
    if isinstance(rule, le.ZPlus):
        return ref.zplus(rule.stabilizer)
    if isinstance(rule, le.AlphaBeta):
        return ref.alpha_beta(rule.alpha, rule.beta, rule.bias, rule.stabilizer)
    if isinstance(rule, le.Gamma):
        return ref.gamma(rule.gamma, rule.stabilizer)
    if isinstance(rule, le.EpsilonStd):
        return ref.epsilon_std(rule.factor)
    if isinstance(rule, le.Epsilon):
        return ref.epsilon(rule.epsilon)
    if isinstance(rule, le.Zero):
        return ref.zero(rule.stabilizer)
    if isinstance(rule, le.ZBox):
        if rule.low is None:  # per-sample, per-channel min/max: one sample at a time below
            dims = tuple(range(2, x.dim())) or (1,)
            return ref.zbox(x.amin(dims).numpy()[0] if x.dim() > 2 else float(x.min()),
                            x.amax(dims).numpy()[0] if x.dim() > 2 else float(x.max()),
                            rule.stabilizer)
        return ref.zbox(rule.low, rule.high, rule.stabilizer)
    if isinstance(rule, le.Flat):
        return ref.flat(rule.stabilizer)
    if isinstance(rule, le.WSquare):
        return ref.wsquare(rule.stabilizer)
    raise TypeError(rule)


@SETTINGS
@given(arch=archs(), data=st.data())
def test_random_networks_and_rules_match_the_reference(arch: Arch,
                                                       data: st.DataObject) -> None:
    """Random architecture (with or without ReLUs between layers), random composite,
    random target weights: engine relevance and per-layer sums equal the reference's."""
    net, shape = build(arch)
    x = inputs(arch, shape)
    comp = mixed_composite(data.draw)
    g = torch.Generator().manual_seed(arch.seed + 2)
    target = torch.randn(arch.batch, arch.classes, generator=g, dtype=torch.float64)
    res = le.analyze(net, x, target=target, composite=comp)
    table = le.layer_table(net, x)
    steps = ref.build_steps(net, shape)
    for i in range(arch.batch):  # one sample at a time: the automatic zB bounds are per sample
        xi = x[i:i + 1]
        rules = {s.name: _ref_rule(comp.rule_for(table.by_name(s.name), table), xi)
                 for s in steps if s.explained}
        want = ref.reference_lrp(net, xi.numpy(), target[i:i + 1].numpy(), rules,
                                 maxpool=comp.maxpool)
        assert_rel(res.relevance[i:i + 1], torch.from_numpy(want.relevance))
        for lr in res.layers:
            assert_rel(lr.input_relevance[i:i + 1], torch.from_numpy(want.layer_sums[lr.name]))


# --------------------------------------------------------------------------------------------
# the model is left as it was
# --------------------------------------------------------------------------------------------

def _snapshot(model: nn.Module) -> dict[str, object]:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "training": {n: m.training for n, m in model.named_modules()},
        "grads": {n: p.grad for n, p in model.named_parameters()},
    }


def assert_untouched(model: nn.Module, snap: dict[str, object]) -> None:
    """State dict identical, flags unchanged, no gradients, no hooks left on any module."""
    state = model.state_dict()
    assert state.keys() == snap["state"].keys()  # type: ignore[union-attr]
    for k, v in snap["state"].items():  # type: ignore[union-attr]
        assert torch.equal(state[k], v), k
    assert {n: p.requires_grad for n, p in model.named_parameters()} == snap["requires_grad"]
    assert {n: m.training for n, m in model.named_modules()} == snap["training"]
    for n, p in model.named_parameters():
        assert p.grad is None and snap["grads"][n] is None, n  # type: ignore[index]
    for n, m in model.named_modules():
        assert not m._forward_hooks, n
        assert not m._forward_pre_hooks, n
        assert not m._backward_hooks, n
        assert not getattr(m, "_backward_pre_hooks", {}), n


def _freeze_some(net: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for p in net.parameters():
        if torch.rand(1, generator=g) < 0.5:
            p.requires_grad_(False)


@SETTINGS
@given(arch=archs(), data=st.data(), train=st.booleans())
def test_model_left_unchanged(arch: Arch, data: st.DataObject, train: bool) -> None:
    net, shape = build(arch)
    _freeze_some(net, arch.seed)
    net.train(train)
    x = inputs(arch, shape)
    x0 = x.clone()
    snap = _snapshot(net)
    comp = mixed_composite(data.draw)
    le.analyze(net, x, composite=comp)
    le.explain(net, x, composite=comp)
    le.gradient_x_input(net, x)
    assert_untouched(net, snap)
    assert torch.equal(x, x0) and not x.requires_grad and x.grad is None


class Weird(nn.Module):
    """A custom leaf module the engine cannot know."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


class ArmedReLU(nn.ReLU):
    """A ReLU (so the engine supports it) that raises once armed: an error in the middle of
    the relevance pass's forward, after the engine attached its hooks."""

    armed = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.armed:
            raise RuntimeError("boom from inside forward")
        return super().forward(x)


def _conv_net(middle: nn.Module, tail: nn.Module | None = None) -> nn.Sequential:
    torch.manual_seed(0)
    mods = [nn.Conv2d(1, 3, 3), middle, nn.Flatten(), nn.Linear(3 * 4 * 4, 3)]
    if tail is not None:
        mods.append(tail)
    return nn.Sequential(*mods).double().eval()


@pytest.mark.parametrize(("model", "pattern"), [
    (_conv_net(nn.ReLU(), nn.Softmax(dim=1)), r"'4'.*Softmax"),
    (_conv_net(Weird()), r"'1'.*Weird"),
    (_conv_net(nn.LocalResponseNorm(2)), r"'1'.*LocalResponseNorm"),
], ids=["softmax", "custom", "lrn"])
def test_unsupported_layer_error_names_it_and_leaves_model_unchanged(
        model: nn.Sequential, pattern: str) -> None:
    _freeze_some(model, 1)
    snap = _snapshot(model)
    x = torch.randn(2, 1, 6, 6, dtype=torch.float64)
    for call in (lambda: le.explain(model, x), lambda: le.analyze(model, x, composite="zero"),
                 lambda: le.explain(model, x, composite="epsilon-gamma-box")):
        with pytest.raises(le.UnsupportedLayerError, match=pattern):
            call()
        assert_untouched(model, snap)


@pytest.mark.parametrize("composite", ["epsilon", "zero", "epsilon-gamma-box", "deep-taylor",
                                       "w2-alpha-beta"])
def test_error_inside_the_pass_leaves_model_unchanged(composite: str) -> None:
    relu = ArmedReLU()
    model = _conv_net(relu)
    _freeze_some(model, 2)
    x = torch.randn(3, 1, 6, 6, dtype=torch.float64)
    snap = _snapshot(model)
    before = le.explain(model, x, composite=composite)  # probe + one clean pass
    relu.armed = True
    with pytest.raises(RuntimeError, match="boom"):
        le.analyze(model, x, composite=composite)
    with pytest.raises(RuntimeError, match="boom"):
        le.explain(model, x, composite=composite)
    relu.armed = False
    assert_untouched(model, snap)
    torch.testing.assert_close(le.explain(model, x, composite=composite), before,
                               rtol=0, atol=0)


def test_rule_error_inside_the_pass_leaves_model_unchanged() -> None:
    """A rule refused inside the pass (Pass on a shape-changing layer; an input-layer rule
    on an inner layer) raises and leaves no hooks."""
    model = _conv_net(nn.ReLU())
    snap = _snapshot(model)
    x = torch.randn(2, 1, 6, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match="shape"):
        le.explain(model, x, composite=le.Composite([(le.ByName("0"), le.Pass())]))
    assert_untouched(model, snap)
    with pytest.raises(ValueError, match="first layer"):
        le.explain(model, x, composite=le.Composite([(le.ByName("3"), le.Flat())]))
    assert_untouched(model, snap)


def test_grad_mode_is_restored() -> None:
    model = _conv_net(nn.ReLU())
    x = torch.randn(2, 1, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        r = le.explain(model, x)
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()
    assert torch.count_nonzero(r) > 0


# --------------------------------------------------------------------------------------------
# known edge case
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("maxpool", ["avg", "winner"])
def test_lrp0_without_stabiliser_survives_dead_pool_windows(maxpool: str) -> None:
    """A ReLU map that is 0 on a whole pooling window gives that window z = 0: LRP-0 with
    s = 0 must still give finite relevance, unchanged logits and equal Gradient × Input."""
    conv = nn.Conv2d(1, 1, 1).double()
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.zero_()
    model = nn.Sequential(conv, nn.ReLU(), nn.AvgPool2d(2), nn.MaxPool2d(1), nn.Flatten(),
                          nn.Linear(4, 2).double()).double().eval()
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64).abs()
    x[0, 0, :2, :2] = -1.0  # the top-left pooling window is dead after the ReLU
    comp = le.Composite(default=le.Zero(stabilizer=0.0), maxpool=maxpool)
    res = le.analyze(model, x, target=0, composite=comp)
    torch.testing.assert_close(res.logits, model(x).detach())
    assert torch.isfinite(res.relevance).all()
    for lr in res.layers:
        assert torch.isfinite(lr.input_relevance).all(), lr.name
    assert_rel(res.relevance, le.gradient_x_input(model, x, target=0))


# --------------------------------------------------------------------------------------------
# merged scalings: an activation taking its layer's z / d over changes nothing
# --------------------------------------------------------------------------------------------

ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardtanh, nn.ELU, nn.Tanh, nn.LeakyReLU)


class _Block(nn.Module):
    """conv → [BatchNorm] → activation (maybe in place), optionally summed with its input z
    as well (then the activation is not z's only reader)."""

    def __init__(self, cin: int, cout: int, act: type, inplace: bool, bn: bool,
                 reread: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn = nn.BatchNorm2d(cout) if bn else nn.Identity()
        self.act = act(inplace=inplace) if act is not nn.Tanh else act()
        self.reread = reread

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.bn(self.conv(x))
        if self.reread:  # z read twice, by the activation and by the sum
            return self.act(z) + z
        return self.act(z)


@SETTINGS
@given(seed=st.integers(0, 10_000),
       blocks=st.lists(st.tuples(st.sampled_from(ACTIVATIONS), st.booleans(), st.booleans(),
                                 st.booleans()), min_size=1, max_size=3),
       rule=st.sampled_from(["epsilon", "zero", "epsilon-std"]))
def test_merged_scalings_equal_the_recording_pass(seed: int, blocks: list, rule: str) -> None:
    """On random conv nets with any activation (in place or not), BatchNorm or not and
    outputs read once or twice, ``explain`` (which lets activations take their layer's
    scaling over) equals ``analyze`` (which never does)."""
    torch.manual_seed(seed)
    layers, cin = [], 2
    for act, inplace, bn, reread in blocks:
        layers.append(_Block(cin, 3, act, inplace, bn, reread))
        cin = 3
    model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(3 * 5 * 5, 4)).double().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.05, 0.5)  # activations beyond ReLU6's and
                m.weight.normal_(1, 0.5)            # Hardtanh's kinks
    x = 2 * torch.randn(2, 2, 5, 5, dtype=torch.float64)
    rules = {"epsilon": le.Epsilon(0.3), "zero": le.Zero(), "epsilon-std": le.EpsilonStd(0.5)}
    comp = le.Composite(default=rules[rule])
    got = le.explain(model, x, composite=comp)
    assert torch.isfinite(got).all()
    assert_rel(got, le.analyze(model, x, composite=comp).relevance, rtol=1e-9)
