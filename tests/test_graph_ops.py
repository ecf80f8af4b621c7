"""Residual sums, gates, LayerNorm/GroupNorm and attention, each against an independent
reference.

* a residual sum's split under LRP-ε is checked against the formula by hand
  (R_a = a / (s + ε·sign s) · R_s);
* a gate, a LayerNorm with constant σ and attention with constant weights make the model
  linear in its ReLU regions, so LRP-0 must equal Gradient×Input of a hand-written twin of
  the model whose forward detaches exactly those quantities (no engine code involved).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lrp_engine as le

torch.manual_seed(0)


def _gxi(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    model(x)[:, target].sum().backward()
    return (x * x.grad).detach()


class Residual(nn.Module):
    """x → a = W1 x, b = W2 x → s = a + b (written as given by ``how``) → ReLU → V."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 3, bias=False), nn.Linear(4, 3, bias=False)
        self.relu, self.out = nn.ReLU(), nn.Linear(3, 2, bias=False)
        self.how = how

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.a(x), self.b(x)
        if self.how == "plus":
            s = a + b
        elif self.how == "iadd":
            s = a
            s += b
        elif self.how == "add_":
            s = a.add_(b)
        else:
            s = torch.add(a, b)
        return self.out(self.relu(s))


@pytest.mark.parametrize("how", ["plus", "iadd", "add_", "torch.add"])
def test_residual_sum_is_a_rule_layer_with_a_stabilised_split(how: str) -> None:
    net = Residual(how).double().eval()
    x = torch.randn(3, 4, dtype=torch.float64)
    table = le.layer_table(net, x)
    sums = [i for i in table if i.role == "sum"]
    assert [(i.name, i.kind) for i in sums] == [("add", "Sum")]
    assert "add" in [i.name for i in table.rule_layers]
    eps = 0.5
    comp = le.Composite([(le.ByType(le.Sum), le.Epsilon(eps))], default=le.Zero(0.0))
    res = le.analyze(net, x, target=1, composite=comp)
    # by hand: R_s = s ⊙ g_s (LRP-0 above), then R_a = a/(s+ε sign s) R_s, R_b likewise,
    # then LRP-0 through W1, W2 (= their gradient × input)
    with torch.no_grad():
        a, b = net.a(x), net.b(x)
        s = a + b
        g_s = (s > 0).double() * net.out.weight[1]
        r_s = s * g_s
        d = s + eps * torch.where(s >= 0, 1.0, -1.0)
        r_a, r_b = a / d * r_s, b / d * r_s
        want = x * ((r_a / a) @ net.a.weight) + x * ((r_b / b) @ net.b.weight)
    torch.testing.assert_close(res.relevance, want, rtol=1e-9, atol=1e-12)
    row = next(lr for lr in res.layers if lr.name == "add")
    torch.testing.assert_close(row.output_relevance, r_s.sum(1))
    torch.testing.assert_close(row.input_relevance, (r_a + r_b).sum(1))
    torch.testing.assert_close(res.logits, net(x.clone()))  # forward values unchanged


@pytest.mark.parametrize("rule", [le.Gamma(0.25), le.AlphaBeta(2.0, 1.0), le.Epsilon(0.1)])
def test_the_rules_own_additions_are_not_residual_sums(rule: le.Rule) -> None:
    """γ and αβ add their terms inside the layer hooks; only the model's sum is a sum row,
    whatever the rules compute (a rule's additions once shifted every later sum's rule)."""
    net = Residual("plus").double().eval()
    x = torch.randn(3, 4, dtype=torch.float64)
    table = le.layer_table(net, x)
    comp = le.Composite(default=rule)
    with le.RelevancePass(net, table, comp) as rp, torch.enable_grad():
        net(x.clone().requires_grad_(True))
    assert rp._sums_run == 1


def test_sums_with_parameters_or_constants_are_not_residual_sums() -> None:
    class Shifted(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 2)
            self.shift = nn.Parameter(torch.ones(2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(x) + self.shift + 1.0

    with pytest.raises(le.UnsupportedLayerError):  # own parameter in forward: refused
        le.layer_table(Shifted(), torch.randn(1, 4))
    table = le.layer_table(nn.Sequential(nn.Linear(4, 2)), torch.randn(1, 4))
    assert not table.graph_ops


class SE(nn.Module):
    """A conv → squeeze-excitation (x · σ(fc(pool x))) → head, optionally with the gate
    detached by hand (the reference twin)."""

    def __init__(self, gate: type[nn.Module], detach: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, bias=False)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(4, 4, 1)
        self.gate = gate()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 6 * 6, 3, bias=False))
        self.detach = detach

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.conv(x))
        g = self.gate(self.fc(self.pool(h)))
        return self.head(h * (g.detach() if self.detach else g))


@pytest.mark.parametrize("gate", [nn.Sigmoid, nn.Hardsigmoid])
def test_a_gate_is_a_constant_for_relevance(gate: type[nn.Module]) -> None:
    net = SE(gate).double().eval()
    twin = SE(gate, detach=True).double().eval()
    twin.load_state_dict(net.state_dict())
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    assert le.layer_table(net, x).by_name("gate").role == "gate"
    rel = le.explain(net, x, target=2, composite=le.Composite(default=le.Zero(0.0),
                                                               maxpool="winner"))
    torch.testing.assert_close(rel, _gxi(twin, x, 2), rtol=1e-9, atol=1e-12)
    # bias-free signal path: the gate keeps the sum
    assert rel.flatten(1).sum(1).tolist() == pytest.approx(net(x)[:, 2].tolist(), rel=1e-9)


def test_a_sigmoid_that_does_not_gate_is_a_pass_activation() -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.Sigmoid(), nn.Linear(4, 2))
    assert le.layer_table(net, torch.randn(1, 3)).by_name("1").role == "pass-activation"


class Normed(nn.Module):
    """Linear → norm → ReLU → Linear; ``constant_std`` computes the norm by hand with σ
    detached (the reference twin)."""

    def __init__(self, kind: str, constant_std: bool = False) -> None:
        super().__init__()
        self.kind = kind
        self.conv = nn.Conv2d(2, 4, 3, bias=False)
        self.norm = nn.LayerNorm([6, 6]) if kind == "layer" else nn.GroupNorm(2, 4)
        with torch.no_grad():
            self.norm.weight.uniform_(0.5, 1.5)
            self.norm.bias.zero_()
        self.relu = nn.ReLU()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 6 * 6, 3, bias=False))
        self.constant_std = constant_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        if not self.constant_std:
            return self.head(self.relu(self.norm(h)))
        if self.kind == "layer":
            mu = h.mean((2, 3), keepdim=True)
            sd = (h.var((2, 3), unbiased=False, keepdim=True) + self.norm.eps).sqrt()
            y = (h - mu) / sd.detach() * self.norm.weight
        else:
            hg = h.reshape(h.shape[0], 2, -1)
            mu = hg.mean(2, keepdim=True)
            sd = (hg.var(2, unbiased=False, keepdim=True) + self.norm.eps).sqrt()
            y = ((hg - mu) / sd.detach()).reshape(h.shape) * self.norm.weight.view(1, -1, 1, 1)
        return self.head(self.relu(y))


@pytest.mark.parametrize("kind", ["layer", "group"])
def test_norms_keep_their_standard_deviation_constant(kind: str) -> None:
    net = Normed(kind).double().eval()
    twin = Normed(kind, constant_std=True).double().eval()
    twin.load_state_dict(net.state_dict())
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    rel = le.explain(net, x, target=0, composite=le.Composite(default=le.Zero(0.0)))
    torch.testing.assert_close(rel, _gxi(twin, x, 0), rtol=1e-9, atol=1e-12)
    # no bias anywhere: the centring and scale conserve
    assert rel.flatten(1).sum(1).tolist() == pytest.approx(net(x)[:, 0].tolist(), rel=1e-9)


class Attention(nn.Module):
    """Tokens → multi-head self-attention (torch's module or SDPA) → mean → head; the twin
    computes attention by hand with detached softmax weights."""

    def __init__(self, how: str, reference: bool = False) -> None:
        super().__init__()
        self.embed = nn.Linear(3, 8, bias=False)
        self.attn = nn.MultiheadAttention(8, 2, bias=False, batch_first=True)
        self.head = nn.Linear(8, 2, bias=False)
        self.how, self.reference = how, reference

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x)  # [N, L, 8]
        if self.reference or self.how == "sdpa":
            w = self.attn.in_proj_weight
            q, k, v = (F.linear(t, w[i * 8:(i + 1) * 8]) for i in range(3))
            q, k, v = (u.view(u.shape[0], -1, 2, 4).transpose(1, 2) for u in (q, k, v))
            if self.reference:
                att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(4), -1).detach()
                o = att @ v
            else:
                o = F.scaled_dot_product_attention(q, k, v)
            o = F.linear(o.transpose(1, 2).reshape(t.shape), self.attn.out_proj.weight)
        else:
            o, _ = self.attn(t, t, t, need_weights=False)
        return self.head(o.mean(1))


@pytest.mark.parametrize("how", ["module", "sdpa"])
def test_attention_weights_are_constants(how: str) -> None:
    net = Attention(how).double().eval()
    twin = Attention(how, reference=True).double().eval()
    twin.load_state_dict(net.state_dict())
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    res = le.analyze(net, x, target=1, composite=le.Composite(default=le.Zero(0.0)),
                     record=False)
    torch.testing.assert_close(res.logits, net(x))
    torch.testing.assert_close(res.relevance, _gxi(twin, x, 1), rtol=1e-9, atol=1e-12)
    # linear in the values, no bias: conserved
    torch.testing.assert_close(res.relevance.flatten(1).sum(1), res.output_relevance)
