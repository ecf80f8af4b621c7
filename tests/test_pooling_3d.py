"""1-d and 3-d pooling: explained exactly like their 2-d counterparts.

* LRP-0 and ε (tiny ε) conserve relevance, in total and layer by layer, on a bias-free
  Conv3d-BatchNorm3d-ReLU-MaxPool3d-AdaptiveAvgPool3d-Linear network (both max-pool modes);
* a 3-d network on depth-1 input with depth-1 kernels gives the relevance of the same 2-d
  network (hypothesis: random sizes, pools and composites), and a 2-d network on height-1
  input with height-1 kernels that of the same 1-d network;
* average pools are ``w · avgpool`` with weight 1, max pools (``maxpool="avg"``) the average
  pool over their windows, for every dimension; a dilated max pool says "winner".

Everything runs in float64; examples are bounded and derandomised.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import lrp_engine as le
from lrp_engine.ops import pool_op

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def _bias_free_bn(bn: nn.Module, gen: torch.Generator) -> None:
    """Random scale, zero shift: a BatchNorm that folds into a bias-free conv."""
    with torch.no_grad():
        bn.weight.copy_(torch.rand(bn.weight.shape, generator=gen, dtype=bn.weight.dtype) + 0.5)
        bn.bias.zero_()
        bn.running_mean.zero_()
        bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=gen,
                                        dtype=bn.running_var.dtype) + 0.5)


def conv3d_net(seed: int = 0) -> nn.Sequential:
    """Bias-free [N, 2, 6, 8, 8] → [N, 3] network (float64, eval mode)."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv3d(2, 4, 3, padding=1, bias=False), nn.BatchNorm3d(4), nn.ReLU(),
        nn.MaxPool3d(2),
        nn.Conv3d(4, 5, 3, padding=1, bias=False), nn.BatchNorm3d(5), nn.ReLU(),
        nn.AdaptiveAvgPool3d((1, 2, 2)), nn.Flatten(), nn.Linear(20, 3, bias=False),
    ).double()
    gen = torch.Generator().manual_seed(seed)
    for m in net:
        if isinstance(m, nn.BatchNorm3d):
            _bias_free_bn(m, gen)
    return net.eval()


@pytest.mark.parametrize("preset", ["zero", "epsilon"])
@pytest.mark.parametrize("maxpool", ["avg", "winner"])
def test_conservation_on_a_bias_free_conv3d_net(preset: str, maxpool: str) -> None:
    net = conv3d_net()
    x = torch.randn(3, 2, 6, 8, 8, generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64)
    res = le.analyze(net, x, composite=le.get_composite(preset, maxpool=maxpool))
    assert res.relevance.shape == x.shape
    total = res.relevance.flatten(1).sum(1)
    # not to 1e-12: the stabiliser (1e-9) absorbs a share s / (z + s) where a unit's z is small
    torch.testing.assert_close(total, res.output_relevance, rtol=1e-6, atol=1e-8)
    kinds = [lr.kind for lr in res.layers]
    assert "AdaptiveAvgPool3d" in kinds and ("MaxPool3d" in kinds) == (maxpool == "avg")
    assert "Conv3d+BatchNorm" in kinds  # the BatchNorm3d is folded into its conv
    for lr in res.layers:  # each layer hands on what it received
        torch.testing.assert_close(lr.input_relevance, lr.output_relevance, rtol=1e-6,
                                   atol=1e-8)


def test_layer_table_roles_for_1d_and_3d_pools() -> None:
    net = nn.Sequential(nn.Conv1d(1, 2, 3), nn.MaxPool1d(2), nn.AvgPool1d(2),
                        nn.AdaptiveAvgPool1d(2), nn.Flatten(), nn.Linear(4, 2))
    roles = {i.kind: i.role for i in le.layer_table(net, torch.zeros(1, 1, 16))}
    assert roles["MaxPool1d"] == "maxpool" and roles["AvgPool1d"] == "pool"
    assert roles["AdaptiveAvgPool1d"] == "pool"
    net3 = nn.Sequential(nn.Conv3d(1, 2, 1), nn.MaxPool3d(2), nn.AvgPool3d(2),
                         nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(2, 2))
    roles = {i.kind: i.role for i in le.layer_table(net3, torch.zeros(1, 1, 4, 4, 4))}
    assert roles["MaxPool3d"] == "maxpool" and roles["AvgPool3d"] == "pool"
    assert roles["AdaptiveAvgPool3d"] == "pool"


@pytest.mark.parametrize(("pool", "avg", "shape"), [
    (nn.MaxPool1d(3, stride=2, padding=1), nn.AvgPool1d(3, 2, 1, count_include_pad=False),
     (2, 3, 9)),
    (nn.MaxPool3d((1, 2, 2)), nn.AvgPool3d((1, 2, 2)), (2, 3, 3, 6, 6)),
    (nn.MaxPool3d(3, stride=2, padding=1, ceil_mode=True),
     nn.AvgPool3d(3, 2, 1, ceil_mode=True, count_include_pad=False), (1, 2, 5, 7, 7)),
    (nn.AvgPool3d(2, stride=1, divisor_override=3), None, (1, 2, 4, 4, 4)),
    (nn.AvgPool1d(2, ceil_mode=True), None, (1, 2, 7)),
    (nn.AdaptiveAvgPool3d((2, 3, None)), None, (1, 2, 5, 7, 4)),
    (nn.AdaptiveAvgPool1d(3), None, (1, 2, 8)),
])
def test_pool_op_is_the_average_pool_with_weight_one(pool: nn.Module, avg: nn.Module | None,
                                                     shape: tuple[int, ...]) -> None:
    a = torch.randn(*shape, dtype=torch.float64)
    op = pool_op(pool, pool(a), a)
    assert op.weight.item() == 1.0 and op.bias is None
    want = (avg or pool)(a)
    torch.testing.assert_close(op(a, op.weight, None), want)
    torch.testing.assert_close(op(a, 2 * op.weight, None), 2 * want)  # linear in w
    assert (op.native is None) == (avg is not None)  # a max pool's own output is no average


def test_dilated_max_pool_asks_for_winner_mode() -> None:
    net = nn.Sequential(nn.Conv3d(1, 2, 1), nn.MaxPool3d(2, dilation=2), nn.Flatten(),
                        nn.Linear(2, 2))
    x = torch.randn(1, 1, 4, 4, 4)
    with pytest.raises(ValueError, match=r"MaxPool3d with dilation.*winner"):
        le.explain(net, x)
    r = le.explain(net, x, composite=le.get_composite("epsilon", maxpool="winner"))
    assert r.shape == x.shape


# --------------------------------------------------------------------------------------------
# depth-1 3-d networks = 2-d networks; height-1 2-d networks = 1-d networks
# --------------------------------------------------------------------------------------------

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
MAXPOOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
AVGPOOL = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
ADAPTIVE = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}


def _lift(k: int | None, dims: int) -> int | tuple | None:
    """A 2-d layer's square size ``k`` for a ``dims``-d layer with a leading size-1 (3-d)
    or without the height (1-d): the 2-d layer's ``k`` then reads the same numbers."""
    if k is None:
        return None
    return {1: k, 2: k, 3: (1, k, k)}[dims]


def _lift_pad(p: int, dims: int) -> int | tuple:
    return {1: p, 2: p, 3: (0, p, p)}[dims]


def twin_net(dims: int, c: int, width: int, kernel: int, pool: str, classes: int,
             flat: bool) -> nn.Sequential:
    """conv-BatchNorm-ReLU-pool-conv-ReLU-adaptive pool-linear in ``dims`` dimensions
    (float64, eval mode, biases zero: the twins get their parameters copied in). For
    ``flat`` 2-d twins of 1-d nets the 2-d kernels are 1 × k."""
    def size(k: int) -> int | tuple:
        return (1, k) if flat and dims == 2 else _lift(k, dims)

    def pad(p: int) -> int | tuple:
        return (0, p) if flat and dims == 2 else _lift_pad(p, dims)

    layers: list[nn.Module] = [CONV[dims](c, width, size(kernel), padding=pad(kernel // 2)),
                               BN[dims](width), nn.ReLU()]
    if pool == "max":
        layers.append(MAXPOOL[dims](size(2)))
    elif pool == "max-overlap":
        layers.append(MAXPOOL[dims](size(3), stride=size(2), padding=pad(1)))
    else:
        layers.append(AVGPOOL[dims](size(2), stride=size(1)))
    out = (1, 2) if flat and dims == 2 else {1: 2, 2: 2, 3: (1, 2, 2)}[dims]
    layers += [CONV[dims](width, width, size(3), padding=pad(1)), nn.ReLU(),
               ADAPTIVE[dims](out), nn.Flatten(),
               nn.Linear(width * (2 if flat or dims == 1 else 4), classes)]
    return nn.Sequential(*layers).double().eval()


def copy_params(src: nn.Sequential, dst: nn.Sequential) -> None:
    """``dst``'s parameters and buffers from ``src``'s, reshaped (a kernel of size 1 along
    the extra dimension)."""
    with torch.no_grad():
        for (_, p), (_, q) in zip(src.state_dict().items(), dst.state_dict().items(),
                                  strict=True):
            q.copy_(p.reshape(q.shape))


def randomise(net: nn.Sequential, seed: int) -> None:
    """Random weights, biases and BatchNorm statistics (seeded)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            r = torch.randn(t.shape, generator=gen, dtype=t.dtype)
            t.copy_(r.abs() + 0.5 if name.endswith("running_var") else 0.3 * r
                    if name.endswith("bias") or name.endswith("running_mean") else r)


COMPOSITES = ["zero", "epsilon", "epsilon-gamma-box", "epsilon-plus-flat", "w2-alpha-beta",
              "deep-taylor"]


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), c=st.integers(1, 3), side=st.integers(6, 9),
       width=st.integers(2, 4), kernel=st.sampled_from([1, 3]),
       pool=st.sampled_from(["max", "max-overlap", "avg"]), composite=st.sampled_from(COMPOSITES),
       maxpool=st.sampled_from(["avg", "winner"]), batch=st.integers(1, 3))
def test_depth_one_3d_net_equals_2d_net(seed: int, c: int, side: int, width: int,
                                        kernel: int, pool: str, composite: str,
                                        maxpool: str, batch: int) -> None:
    net2 = twin_net(2, c, width, kernel, pool, 3, flat=False)
    randomise(net2, seed)
    net3 = twin_net(3, c, width, kernel, pool, 3, flat=False)
    copy_params(net2, net3)
    x2 = torch.randn(batch, c, side, side, generator=torch.Generator().manual_seed(seed),
                     dtype=torch.float64)
    x3 = x2[:, :, None]
    torch.testing.assert_close(net3(x3), net2(x2))
    comp = le.get_composite(composite, maxpool=maxpool)
    r2 = le.analyze(net2, x2, composite=comp)
    r3 = le.analyze(net3, x3, composite=comp)
    torch.testing.assert_close(r3.relevance[:, :, 0], r2.relevance, rtol=1e-8, atol=1e-10)
    assert [lr.rule for lr in r3.layers] == [lr.rule for lr in r2.layers]
    for a, b in zip(r3.layers, r2.layers, strict=True):
        torch.testing.assert_close(a.input_relevance, b.input_relevance, rtol=1e-8,
                                   atol=1e-10)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), c=st.integers(1, 3), length=st.integers(6, 12),
       width=st.integers(2, 4), kernel=st.sampled_from([1, 3]),
       pool=st.sampled_from(["max", "max-overlap", "avg"]), composite=st.sampled_from(COMPOSITES),
       maxpool=st.sampled_from(["avg", "winner"]))
def test_height_one_2d_net_equals_1d_net(seed: int, c: int, length: int, width: int,
                                         kernel: int, pool: str, composite: str,
                                         maxpool: str) -> None:
    net1 = twin_net(1, c, width, kernel, pool, 3, flat=True)
    randomise(net1, seed)
    net2 = twin_net(2, c, width, kernel, pool, 3, flat=True)
    copy_params(net1, net2)
    x1 = torch.randn(2, c, length, generator=torch.Generator().manual_seed(seed),
                     dtype=torch.float64)
    x2 = x1[:, :, None]
    torch.testing.assert_close(net2(x2), net1(x1))
    comp = le.get_composite(composite, maxpool=maxpool)
    r1 = le.explain(net1, x1, composite=comp)
    r2 = le.explain(net2, x2, composite=comp)
    torch.testing.assert_close(r2[:, :, 0], r1, rtol=1e-8, atol=1e-10)
