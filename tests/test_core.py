"""Engine mechanics: BatchNorm folding, residual splits, activations, dropout, targets,
errors, thread safety. (Agreement with the numpy reference lives in
test_reference_agreement.py; random-network properties in test_properties.py.)"""

from __future__ import annotations

import math
import threading

import pytest
import torch
from torch import nn

import lrp_engine as le
from lrp_engine.ops import bn_scale_shift

RULES = [le.Zero(), le.Epsilon(0.1), le.EpsilonStd(0.25), le.Gamma(0.5), le.AlphaBeta(2, 1),
         le.ZPlus()]


def _bn(c: int, seed: int) -> nn.BatchNorm2d:
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(c).double()
    bn.running_mean.copy_(torch.randn(c, generator=g, dtype=torch.float64))
    bn.running_var.copy_(torch.rand(c, generator=g, dtype=torch.float64) + 0.5)
    with torch.no_grad():
        bn.weight.copy_(torch.randn(c, generator=g, dtype=torch.float64))
        bn.bias.copy_(torch.randn(c, generator=g, dtype=torch.float64))
    return bn.eval()


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """An explicitly folded copy: the unfolded reference for the engine's implicit fold."""
    scale, shift = bn_scale_shift(bn)
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                    conv.padding).double()
    with torch.no_grad():
        out.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        out.bias.copy_(conv.bias * scale + shift)
    return out


@pytest.fixture
def bn_pair() -> tuple[nn.Module, nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    c1, c2 = nn.Conv2d(2, 5, 3, padding=1).double(), nn.Conv2d(5, 6, 3, stride=2).double()
    bn1, bn2 = _bn(5, 1), _bn(6, 2)
    head = nn.Linear(6 * 3 * 3, 4).double()
    with_bn = nn.Sequential(c1, bn1, nn.ReLU(), c2, bn2, nn.ReLU(), nn.Flatten(), head).eval()
    folded = nn.Sequential(_fold(c1, bn1), nn.ReLU(), _fold(c2, bn2), nn.ReLU(), nn.Flatten(),
                           head).eval()
    x = torch.randn(4, 2, 8, 8, dtype=torch.float64)
    return with_bn, folded, x


@pytest.mark.parametrize("rule", RULES, ids=lambda r: type(r).__name__)
def test_batchnorm_folding_matches_explicitly_folded_model(bn_pair, rule) -> None:
    with_bn, folded, x = bn_pair
    torch.testing.assert_close(with_bn(x), folded(x))
    comp = le.Composite(default=rule)
    r_bn = le.explain(with_bn, x, composite=comp)
    r_folded = le.explain(folded, x, composite=comp)
    torch.testing.assert_close(r_bn, r_folded, rtol=1e-9, atol=1e-12)


def test_folded_layers_show_in_table(bn_pair) -> None:
    with_bn, _, x = bn_pair
    table = le.layer_table(with_bn, x)
    assert [i.name for i in table.rule_layers] == ["0", "3", "7"]
    assert table.by_name("0").fold == "1" and table.by_name("1").folded_into == "0"
    assert table.by_name("0").label == "Conv2d+BatchNorm"


class Residual(nn.Module):
    """y = a + conv(a), then a linear head: the add is in forward, not a module."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.head = nn.Linear(3 * 5 * 5, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x + self.conv(x)
        return self.head(torch.flatten(y, 1))


def test_residual_add_splits_in_proportion() -> None:
    """Under LRP-0, a + conv(a) must equal one merged linear layer with weight I + W."""
    torch.manual_seed(1)
    res = Residual().double().eval()
    merged = nn.Conv2d(3, 3, 3, padding=1).double()
    with torch.no_grad():
        eye = torch.zeros_like(merged.weight)
        for c in range(3):
            eye[c, c, 1, 1] = 1.0
        merged.weight.copy_(res.conv.weight + eye)
        merged.bias.copy_(res.conv.bias)
    ref_model = nn.Sequential(merged, nn.Flatten(), res.head).eval()
    x = torch.randn(3, 3, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(res(x), ref_model(x))
    comp = le.Composite(default=le.Zero(stabilizer=0.0))
    torch.testing.assert_close(le.explain(res, x, composite=comp),
                               le.explain(ref_model, x, composite=comp), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("act", [nn.ReLU6(), nn.LeakyReLU(0.1), nn.Hardtanh(-1, 0.5)],
                         ids=lambda a: type(a).__name__)
def test_activations_pass_relevance_unchanged(act) -> None:
    """Relevance leaving the layer above equals relevance entering the layer below (no
    relevance lost in saturated ReLU6/Hardtanh regions)."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(6, 8, bias=False), act, nn.Linear(8, 3, bias=False))
    model = model.double().eval()
    x = 3 * torch.randn(5, 6, dtype=torch.float64)
    res = le.analyze(model, x, composite=le.Composite(default=le.Zero(stabilizer=0.0)))
    top, bottom = res.layers[1], res.layers[0]
    torch.testing.assert_close(top.input_relevance, bottom.output_relevance)
    torch.testing.assert_close(res.relevance.sum(1), res.output_relevance)


def test_pass_activation_at_zero_input_passes_nothing_and_no_nan() -> None:
    """Softplus(0) = log 2: a unit whose input is exactly 0 has an undefined ratio
    output / input; it passes no relevance on (and never NaN), the others pass theirs."""
    lin = nn.Linear(4, 3, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.0, 0, 0, 0], [1, -1, 0, 2], [0.5, 0, 1, 0]]))
    model = nn.Sequential(lin, nn.Softplus(), nn.Linear(3, 2, bias=False)).double().eval()
    x = torch.tensor([[1.0, 2.0, -1.0, 1.5]], dtype=torch.float64)  # pre-activations 0, 2, -0.5
    res = le.analyze(model, x, target=0, composite=le.Composite(default=le.Zero(stabilizer=0.0)))
    above, below = res.layers[1].input_relevance, res.layers[0].output_relevance  # sums
    assert torch.isfinite(res.relevance).all() and torch.isfinite(below).all()
    lost = math.log(2) * model[2].weight[0, 0]  # LRP-0 relevance of the unit with input 0
    torch.testing.assert_close(below, above - lost)


@pytest.mark.parametrize("op", ["relu_", "mul_"])
def test_in_place_ops_after_a_pass_activation(op: str) -> None:
    """A model that writes in place to an activation's output (an in-place ReLU after
    ReLU6, or ``mul_`` in its forward) is explained like the same model without in-place
    ops."""
    class After(nn.Module):
        def __init__(self, inplace: bool) -> None:
            super().__init__()
            self.inplace = inplace
            self.a, self.act = nn.Linear(4, 5, bias=False), nn.ReLU6()
            self.b = nn.Linear(5, 2, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.act(self.a(x))
            if op == "relu_":
                h = torch.relu_(h) if self.inplace else torch.relu(h)
            else:
                h = h.mul_(2.0) if self.inplace else h * 2.0
            return self.b(h)

    torch.manual_seed(3)
    plain, inplace = After(False).double().eval(), After(True).double().eval()
    inplace.load_state_dict(plain.state_dict())
    x = 4 * torch.randn(3, 4, dtype=torch.float64)
    comp = le.Composite(default=le.Zero(stabilizer=0.0))
    torch.testing.assert_close(le.explain(inplace, x, composite=comp),
                               le.explain(plain, x, composite=comp))


@pytest.mark.parametrize("act", [nn.ReLU6, nn.Hardtanh, nn.SiLU, nn.ELU])
@pytest.mark.parametrize("rule", ["epsilon", "gamma", "0"])
def test_in_place_pass_activations_are_explained_like_out_of_place_ones(act, rule) -> None:
    """``ReLU6(inplace=True)`` (torchvision's MobileNets) overwrites its input: the pass
    rule must still see the values before activation, with BatchNorm folded or not, and
    whether ε's gradient scaling is merged into the activation or not."""
    def net(inplace: bool) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), act(inplace=inplace),
            nn.Conv2d(6, 4, 3), act(inplace=inplace), nn.Flatten(),
            nn.Linear(4 * 4 * 4, 3)).double().eval()

    torch.manual_seed(5)
    plain, inplace = net(False), net(True)
    with torch.no_grad():
        plain[1].running_var.uniform_(0.01, 0.1)  # activations well beyond 6
        plain[1].running_mean.normal_()
    inplace.load_state_dict(plain.state_dict())
    x = 3 * torch.randn(2, 3, 8, 8, dtype=torch.float64)
    for model in (plain, inplace):  # ε's and LRP-0's scaling is merged into the activation
        feeds = {i.name: i.feeds for i in le.layer_table(model, x) if i.feeds}
        assert feeds == {"1": "2", "3": "4"}
    comp = le.Composite(default=le.make_rule(rule))
    torch.testing.assert_close(le.explain(inplace, x, composite=comp),
                               le.explain(plain, x, composite=comp))
    torch.testing.assert_close(le.analyze(inplace, x, composite=comp).relevance,
                               le.explain(plain, x, composite=comp))


def test_an_output_read_twice_keeps_its_own_scaling() -> None:
    """A BatchNorm output read by its activation and by a residual sum: the activation
    must not take ε's scaling over (the sum's path needs it too); the result equals the
    recording pass's, which never merges."""
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn, self.act = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3), \
                nn.SiLU()
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = self.bn(self.conv(x))
            return self.head(self.act(z) + z)

    torch.manual_seed(6)
    model = Residual().double().eval()
    x = torch.randn(3, 3, 6, 6, dtype=torch.float64)
    assert all(info.feeds is None for info in le.layer_table(model, x))
    comp = le.Composite(default=le.Epsilon(0.5))  # a large ε: its scaling shows
    torch.testing.assert_close(le.explain(model, x, composite=comp),
                               le.analyze(model, x, composite=comp).relevance)


def test_a_reused_activation_takes_over_each_callers_scaling() -> None:
    """One ReLU6 module applied twice (as in MBConv blocks): both BatchNorms it reads get
    their ε scaling merged into it, with the recording pass's result."""
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4)
            self.c2, self.b2 = nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.BatchNorm2d(4)
            self.act = nn.ReLU6()
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 5 * 5, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.act(self.b2(self.c2(self.act(self.b1(self.c1(x)))))))

    torch.manual_seed(7)
    model = Twice().double().eval()
    with torch.no_grad():
        model.b1.running_var.fill_(0.02)  # values beyond 6
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    assert {i.name: i.feeds for i in le.layer_table(model, x) if i.feeds} == \
        {"b1": "act", "b2": "act"}
    comp = le.Composite(default=le.Epsilon(0.5))
    torch.testing.assert_close(le.explain(model, x, composite=comp),
                               le.analyze(model, x, composite=comp).relevance)


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("rule", [le.Epsilon(0.5), le.EpsilonStd(0.5)], ids=["eps", "eps-std"])
def test_a_relu_takes_over_the_scaling_of_the_layer_it_reads(inplace: bool, rule) -> None:
    """A ReLU that alone reads a conv's or a linear layer's output applies ε's z / (z + ε)
    itself, from its output (equal to z where it passes), in place or not; ε·rms(z), which
    is not elementwise, stays with its layer. Both give the recording pass's relevance."""
    torch.manual_seed(8)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(inplace=inplace), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 6), nn.ReLU(inplace=inplace),
                          nn.Linear(6, 3)).double().eval()
    x = torch.randn(3, 2, 6, 6, dtype=torch.float64)
    assert {i.name: i.feeds for i in le.layer_table(model, x) if i.feeds} == \
        {"0": "1", "3": "4"}
    comp = le.Composite(default=rule)
    torch.testing.assert_close(le.explain(model, x, composite=comp),
                               le.analyze(model, x, composite=comp).relevance)


@pytest.mark.parametrize("reuse", [False, True])
def test_a_relevance_graph_runs_backward_again_only_with_kept_ratios(reuse: bool) -> None:
    """The scaling hooks free their ratios once used (memory), so a second backward
    through the same pass needs ``reuse_ratios=True`` (as B-LRP's shared trunk sets) and
    then gives the same gradient; without it, a clear error instead of a wrong one."""
    from lrp_engine.core import RelevancePass

    torch.manual_seed(9)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).double().eval()
    x = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    comp = le.get_composite("epsilon")
    with RelevancePass(model, le.layer_table(model, x), comp, reuse_ratios=reuse):
        out = model(x)
    (first,) = torch.autograd.grad(out.sum(), x, retain_graph=True)
    if reuse:
        torch.testing.assert_close(torch.autograd.grad(out.sum(), x)[0], first)
    else:
        with pytest.raises(RuntimeError, match="reuse_ratios"):
            torch.autograd.grad(out.sum(), x)


def test_pass_rule_on_a_same_shape_layer_passes_relevance_unchanged() -> None:
    """The Pass rule (the activations' pass-through, as a rule) hands a square layer's
    output relevance to its input position by position."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(5, 5), nn.Linear(5, 3, bias=False)).double().eval()
    x = torch.randn(4, 5, dtype=torch.float64)
    comp = le.Composite([(le.ByName("0"), le.Pass())], default=le.Zero(stabilizer=0.0))
    res = le.analyze(model, x, composite=comp)
    first = res.layers[0]
    torch.testing.assert_close(first.input_relevance, first.output_relevance)
    with torch.no_grad():  # LRP-0 above: R_j = z_j · w_tj at the square layer's output
        z = model[0](x)
        target = model(x).argmax(1)
        expected = z * model[1].weight[target]
    torch.testing.assert_close(res.relevance, expected)


def test_reused_activation_module() -> None:
    relu = nn.ReLU6()
    model = nn.Sequential(nn.Linear(4, 6, bias=False), relu, nn.Linear(6, 6, bias=False), relu,
                          nn.Linear(6, 2, bias=False)).double().eval()
    x = 4 * torch.randn(3, 4, dtype=torch.float64)
    res = le.analyze(model, x, composite=le.Composite(default=le.Zero(stabilizer=0.0)))
    torch.testing.assert_close(res.relevance.sum(1), res.output_relevance)


def test_dropout_train_mode_uses_the_sampled_mask() -> None:
    """In train mode, one pass = one network from the dropout posterior: the relevance equals
    that of the same network with the mask baked into the weights."""
    torch.manual_seed(3)
    lin1, lin2 = nn.Linear(5, 7).double(), nn.Linear(7, 3).double()
    model = nn.Sequential(lin1, nn.ReLU(), nn.Dropout(0.5), lin2).train()
    x = torch.randn(1, 5, dtype=torch.float64)
    torch.manual_seed(10)
    r = le.explain(model, x, target=1, composite="zero")
    torch.manual_seed(10)
    mask = nn.functional.dropout(torch.ones(1, 7, dtype=torch.float64), 0.5, training=True)
    baked = nn.Linear(7, 3).double()
    with torch.no_grad():
        baked.weight.copy_(lin2.weight * mask)
        baked.bias.copy_(lin2.bias)
    ref = le.explain(nn.Sequential(lin1, nn.ReLU(), baked).eval(), x, target=1,
                     composite="zero")
    torch.testing.assert_close(r, ref)
    assert model.training  # mode untouched


def test_targets() -> None:
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(4, 3)).double().eval()
    x = torch.randn(2, 4, dtype=torch.float64)
    logits = model(x)
    r_none = le.explain(model, x)
    r_int = le.explain(model, x, target=int(logits[0].argmax()))
    r_vec = le.explain(model, x, target=logits.argmax(1))
    torch.testing.assert_close(r_none, r_vec)
    torch.testing.assert_close(r_none[0], r_int[0])
    w = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]], dtype=torch.float64)
    r_w = le.explain(model, x, target=w, composite="zero")
    r0 = le.explain(model, x, target=0, composite="zero")
    r1 = le.explain(model, x, target=1, composite="zero")
    r2 = le.explain(model, x, target=2, composite="zero")
    torch.testing.assert_close(r_w[0], r0[0])
    torch.testing.assert_close(r_w[1], 0.5 * (r1[1] + r2[1]))
    assert torch.count_nonzero(le.explain(model, x, target=torch.zeros(3).double())) == 0
    with pytest.raises(ValueError, match="out of range"):
        le.explain(model, x, target=3)
    with pytest.raises(ValueError, match="shape"):
        le.explain(model, x, target=torch.ones(2, 5).double())


def test_bad_inputs_raise_clear_errors() -> None:
    model = nn.Sequential(nn.Linear(4, 3)).eval()
    with pytest.raises(ValueError, match="NaN"):
        le.explain(model, torch.tensor([[0.0, float("nan"), 1.0, 2.0]]))
    with pytest.raises(TypeError, match="floating"):
        le.explain(model, torch.ones(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="unknown composite"):
        le.explain(model, torch.ones(1, 4), composite="nope")


def test_unsupported_layer_is_named() -> None:
    class Weird(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2

    model = nn.Sequential(nn.Linear(4, 4), Weird(), nn.Linear(4, 2)).eval()
    with pytest.raises(le.UnsupportedLayerError, match=r"'1'.*Weird"):
        le.explain(model, torch.ones(1, 4))
    with pytest.raises(le.UnsupportedLayerError, match=r"Softmax"):
        le.explain(nn.Sequential(nn.Linear(4, 2), nn.Softmax(1)).eval(), torch.ones(1, 4))
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks


def test_input_layer_rule_on_inner_layer_is_refused() -> None:
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2)).eval()
    comp = le.Composite([(le.ByName("2"), le.Flat())])
    with pytest.raises(ValueError, match="first layer"):
        le.explain(model, torch.ones(1, 4), composite=comp)
    for m in model.modules():
        assert not m._forward_hooks


def test_training_batchnorm_is_refused() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(),
                          nn.Linear(2 * 4 * 4, 2))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="eval"):
        le.explain(model, torch.randn(2, 1, 6, 6))
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k])


def test_inference_mode_and_no_grad_inputs() -> None:
    model = nn.Sequential(nn.Linear(4, 3)).eval()
    with torch.inference_mode():
        x = torch.randn(2, 4)
    with torch.no_grad():
        r = le.explain(model, x)
    assert r.shape == x.shape and torch.isfinite(r).all()


def test_concurrent_passes_on_one_shared_model_do_not_interfere() -> None:
    """Streamlit serves sessions from threads sharing one cached model: each pass's hooks
    must act in its own thread only."""
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(4 * 3 * 3, 5)).eval()
    x = torch.randn(6, 1, 8, 8)
    expected = {name: le.explain(model, x, composite=name)
                for name in ("epsilon", "epsilon-gamma-box", "deep-taylor")}
    expected["gxi"] = le.gradient_x_input(model, x)
    failures: list[str] = []

    def work(name: str) -> None:
        for _ in range(30):
            got = (le.gradient_x_input(model, x) if name == "gxi"
                   else le.explain(model, x, composite=name))
            if not torch.allclose(got, expected[name], rtol=1e-5, atol=1e-7):
                failures.append(name)

    threads = [threading.Thread(target=work, args=(n,)) for n in expected for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures



def test_layer_probe_ignores_other_threads_forwards() -> None:
    """Probing a model's layers (once per model and input shape, then cached) while another
    session's thread runs the same model must record only the probe's own forward: a
    recorded foreign call made the table start at a later layer, and every later pass on
    that model then failed (seen under the 20-session load test)."""
    from lrp_engine.layers import _probe

    torch.manual_seed(7)
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(8 * 7 * 7, 32), nn.ReLU(), nn.Linear(32, 5)).eval()
    x = torch.randn(1, 1, 16, 16)
    want = [(info.name, info.in_shape) for info in _probe(model, x)]
    stop = threading.Event()

    def busy() -> None:
        other = torch.randn(3, 1, 16, 16)
        with torch.no_grad():
            while not stop.is_set():
                model(other)

    t = threading.Thread(target=busy)
    t.start()
    try:
        tables = [[(info.name, info.in_shape) for info in _probe(model, x)]
                  for _ in range(300)]
    finally:
        stop.set()
        t.join()
    assert all(table == want for table in tables)

def test_presets_run_and_are_documented() -> None:
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3),
                          nn.ReLU(), nn.Flatten(), nn.Linear(4 * 2 * 2, 3)).eval()
    x = torch.randn(2, 3, 10, 10)
    for name in le.PRESETS:
        assert le.PRESET_DOCS[name]
        r = le.explain(model, x, composite=name)
        assert r.shape == x.shape and torch.isfinite(r).all() and r.abs().sum() > 0


def test_vgg_gamma_blocks_assigns_seed_002_rules() -> None:
    from lrp_engine.models.vgg import VGG16

    model = VGG16(num_classes=4).eval()
    table = le.layer_table(model, torch.zeros(1, 3, 32, 32))
    rules = le.get_composite("vgg-gamma-blocks", low=-2.0, high=2.0).assign(table)
    assert isinstance(rules["features.0"], le.ZBox)
    gammas = {n: r.gamma for n, r in rules.items() if isinstance(r, le.Gamma)}
    assert gammas["features.2"] == 1.0
    assert gammas["features.5"] == gammas["features.7"] == pytest.approx(10 ** -0.5)
    assert gammas["features.14"] == pytest.approx(0.1)
    assert gammas["features.21"] == pytest.approx(10 ** -1.5)
    assert gammas["features.28"] == pytest.approx(0.01)
    assert all(isinstance(rules[f"classifier.{i}"], le.Zero) for i in (0, 3, 6))
    depth = le.get_composite("depth-gamma-epsilon-zero").assign(table)
    convs = [n for n in depth if n.startswith("features") and "Conv" in
             table.by_name(n).kind]
    kinds = [type(depth[n]).__name__ for n in convs]
    assert kinds == ["Gamma"] * 7 + ["EpsilonStd"] * 6  # the seed's l <= 16 split


def test_by_index_matches_seed_numbering() -> None:
    from lrp_engine.models.vgg import VGG16

    table = le.layer_table(VGG16().eval(), torch.zeros(1, 3, 32, 32))
    assert table.by_name("features.16").index == 16
    assert table.by_name("avgpool").index == 31
    assert table.by_name("classifier.0").index == 32
    comp = le.Composite([(le.ByIndex(0, 17), le.Gamma(0.25))], default=le.Zero())
    rules = comp.assign(table)
    assert isinstance(rules["features.14"], le.Gamma)
    assert isinstance(rules["features.17"], le.Zero)


@pytest.mark.parametrize("preset", ["epsilon-plus-flat", "epsilon-gamma-box", "deep-taylor",
                                    "w2-alpha-beta"])
def test_input_rules_on_a_flattened_first_layer(preset: str) -> None:
    """An MLP reads its image through Flatten: input-layer rules apply to the flattened
    pixels, and the relevance equals that of the same MLP fed the flat vector."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3)).eval()
    image_mlp = nn.Sequential(nn.Flatten(), mlp).eval()
    x = torch.randn(5, 1, 4, 4)
    r_img = le.explain(image_mlp, x, composite=preset)
    r_flat = le.explain(mlp, x.flatten(1), composite=preset)
    assert r_img.shape == x.shape and torch.isfinite(r_img).all()
    torch.testing.assert_close(r_img.flatten(1), r_flat)
    b = le.blrp(image_mlp, x, composite=preset, n_samples=4, alphas=(50,))
    assert b.percentiles.shape == (1, *x.shape) and torch.isfinite(b.percentiles).all()
