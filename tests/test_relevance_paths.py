"""The relevance pass's paths agree: the plain pass, each fast path of
:mod:`lrp_engine.fusions` alone and all of them together, with and without the recorder of
per-layer sums, give the same relevance on random networks (conv, linear, BatchNorm, ReLU
and pass-activations in place or not, pooling, residual sums) under every preset.

Examples are bounded and derandomised (as in test_properties.py); everything runs in
float64, so "the same" is float rounding: 1e-9 relative to the largest relevance.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import lrp_engine as le
from lrp_engine.fusions import FUSED, PLAIN, Fusions
from lrp_engine.recorder import LayerRecorder
from lrp_engine.relevance_pass import InputReferences, RelevancePass

SETTINGS = settings(max_examples=12, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.LeakyReLU, nn.Hardtanh)
#: each fast path on its own, then all of them
SINGLE_FUSIONS = {
    "regrad": Fusions(regrad=True, merge_scalings=False, native_sums=False),
    "merge": Fusions(regrad=False, merge_scalings=True, native_sums=False),
    "native-sums": Fusions(regrad=False, merge_scalings=False, native_sums=True),
    "all": FUSED,
}


@dataclass
class Stage:
    """One stage of a drawn network: a conv block (maybe residual) or a pooling layer."""

    kind: str                  # "conv", "residual" or "pool"
    act: type[nn.Module]
    inplace: bool
    bn: bool
    reread: bool               # residual: the activation's input z is summed as well
    pool: str                  # pool: "max", "avg" or "adaptive"


class Residual(nn.Module):
    """``x + act(bn(conv(x)))`` or ``x + act(z) + z``; in place, torchvision's way:
    ``z += x`` then the activation."""

    def __init__(self, c: int, stage: Stage) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c) if stage.bn else nn.Identity()
        self.act = stage.act(inplace=stage.inplace)
        self.inplace, self.reread = stage.inplace, stage.reread

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.bn(self.conv(x))
        if self.inplace:
            z += x
            return self.act(z)
        h = self.act(z)
        return x + (h + z if self.reread else h)


@st.composite
def stages(draw: st.DrawFn) -> Stage:
    return Stage(kind=draw(st.sampled_from(["conv", "residual", "residual", "pool"])),
                 act=draw(st.sampled_from(ACTIVATIONS)), inplace=draw(st.booleans()),
                 bn=draw(st.booleans()), reread=draw(st.booleans()),
                 pool=draw(st.sampled_from(["max", "avg", "adaptive"])))


def build(seed: int, channels: int, plan: list[Stage], hidden: int | None,
          classes: int) -> tuple[nn.Module, tuple[int, ...]]:
    """The float64 eval-mode network of a drawn plan (a 1×1 or 3×3 stem first) and its
    per-sample input shape; BatchNorm statistics random, so activations pass their kinks."""
    torch.manual_seed(seed)
    side = 9
    c = 4
    k = 3 if seed % 2 else 1  # few taps either way: the stem takes the im2col gradient
    layers: list[nn.Module] = [nn.Conv2d(channels, c, k, padding=k // 2)]
    for s in plan:
        if s.kind == "conv":
            layers += [nn.Conv2d(c, c, 3, padding=1)]
            layers += [nn.BatchNorm2d(c)] if s.bn else []
            layers += [s.act(inplace=s.inplace)]
        elif s.kind == "residual":
            layers.append(Residual(c, s))
        elif s.pool == "adaptive":
            layers.append(nn.AdaptiveAvgPool2d(max(side // 2, 1)))
            side = max(side // 2, 1)
        elif side >= 2:
            layers.append(nn.MaxPool2d(2) if s.pool == "max" else nn.AvgPool2d(2))
            side //= 2
    layers.append(nn.Flatten())
    width = c * side * side
    if hidden is not None:
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, classes))
    net = nn.Sequential(*layers).double().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.05, 0.5)
                m.weight.normal_(1, 0.5)
                m.bias.normal_(0, 0.3)
    return net, (channels, 9, 9)


def assert_rel(got: torch.Tensor, want: torch.Tensor, rtol: float = 1e-9) -> None:
    """Equal to ``rtol`` relative to the largest |want|."""
    scale = float(want.abs().max())
    torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * max(scale, 1e-300))


@pytest.mark.parametrize("preset", list(le.PRESETS))
@SETTINGS
@given(seed=st.integers(0, 10_000), channels=st.integers(1, 3),
       plan=st.lists(stages(), min_size=1, max_size=4),
       hidden=st.one_of(st.none(), st.integers(5, 9)), classes=st.integers(2, 4),
       batch=st.integers(1, 3))
def test_fused_plain_and_recorded_paths_agree(preset: str, seed: int, channels: int,
                                              plan: list[Stage], hidden: int | None,
                                              classes: int, batch: int) -> None:
    """Every fast path alone and all together give the plain pass's relevance; recording
    (which takes the fast paths it can follow) gives the same relevance and, fused or
    plain, the same per-layer sums."""
    net, shape = build(seed, channels, plan, hidden, classes)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *shape, generator=g, dtype=torch.float64)
    plain = le.analyze(net, x, composite=preset, record=False, fusions=PLAIN)
    assert torch.isfinite(plain.relevance).all()
    for name, fusions in SINGLE_FUSIONS.items():
        got = le.analyze(net, x, composite=preset, record=False, fusions=fusions)
        torch.testing.assert_close(got.logits, plain.logits, rtol=0, atol=0, msg=name)
        assert_rel(got.relevance, plain.relevance)
    recorded = le.analyze(net, x, composite=preset, record=True)
    recorded_plain = le.analyze(net, x, composite=preset, record=True, fusions=PLAIN)
    assert_rel(recorded.relevance, plain.relevance)
    assert_rel(recorded_plain.relevance, plain.relevance)
    assert [lr.name for lr in recorded.layers] == [lr.name for lr in recorded_plain.layers]
    for a, b in zip(recorded.layers, recorded_plain.layers, strict=True):
        scale = float(plain.output_relevance.abs().max())
        for got, want in ((a.input_relevance, b.input_relevance),
                          (a.output_relevance, b.output_relevance)):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9 * max(scale, 1e-300))


def test_a_recorded_pass_keeps_only_the_fusions_the_recorder_can_follow() -> None:
    assert FUSED.for_recording() == Fusions(regrad=True, merge_scalings=False,
                                            native_sums=False)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 2))
    x = torch.randn(1, 1, 6, 6)
    table = le.layer_table(net, x)
    comp = le.get_composite("epsilon")
    rp = RelevancePass(net, table, comp, recorder=LayerRecorder())
    assert rp.record and rp.fuser.fusions == FUSED.for_recording()


@pytest.mark.parametrize(("fusions", "relu_hooked"), [(FUSED, True), (PLAIN, False)])
def test_the_plain_pass_hooks_no_fast_path(fusions: Fusions, relu_hooked: bool) -> None:
    """Switched off, the fusions attach nothing: a ReLU reading a conv alone is left to its
    own gradient (fused, it takes the conv's ε scaling over)."""
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 2))
    net.eval()
    x = torch.randn(2, 1, 6, 6)
    table = le.layer_table(net, x)
    assert table.by_name("0").feeds == "1"
    with RelevancePass(net, table, le.get_composite("epsilon"), fusions=fusions):
        assert bool(net[1]._forward_hooks) is relu_hooked
    assert not net[1]._forward_hooks


def test_references_need_no_running_layer() -> None:
    """A reference can be registered at any time, for a named layer or none; a rule's
    context registers its references for its own layer."""
    refs = InputReferences()
    t = torch.ones(2, 3)
    r = refs.add(t, "first")
    assert r.requires_grad and r.is_leaf and torch.equal(r, t) and r is not t
    r2 = refs.for_layer("conv").reference(2 * t)
    assert refs.tensors == [r, r2] and refs.owners == ["first", "conv"]
    net = nn.Sequential(nn.Linear(3, 2)).eval()
    rp = RelevancePass(net, le.layer_table(net, t), le.get_composite("zero"))
    ref = rp.reference(t)  # before the pass ever ran
    assert rp.references == [ref] and rp.input_refs.owners == [""]


def test_recorded_input_layer_sums_come_from_their_references() -> None:
    """zB on the first layer: its input relevance (from the references' gradients, owned
    by that layer) is the relevance at the input."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(),
                        nn.Linear(3 * 4 * 4, 2)).double().eval()
    x = torch.randn(2, 1, 6, 6, dtype=torch.float64)
    res = le.analyze(net, x, composite="epsilon-gamma-box")
    first = res.layers[0]
    assert first.rule.startswith("zB")
    torch.testing.assert_close(first.input_relevance, res.relevance.flatten(1).sum(1))
