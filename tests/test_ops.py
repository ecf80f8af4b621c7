"""The relevance pass's functional forwards (``lrp_engine.ops``) and CPU kernels
(``lrp_engine.kernels``) equal the layers' own."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrp_engine.kernels import IM2COL_MAX_TAPS, fold
from lrp_engine.ops import _im2col_forward, folded_op, linear_op, pool_op


@pytest.mark.parametrize("cin,k,stride,padding,dilation,bias", [
    (1, 5, 1, 0, 1, True),     # LeNet's first layer
    (3, 3, 1, 1, 1, True),     # VGG-16's first layer
    (3, 3, 2, 1, 1, False),    # a strided stem without bias
    (2, (3, 5), (2, 1), (0, 2), (2, 1), True),  # rectangular, dilated
    (20, 1, 1, 0, 1, False),   # pointwise with few taps (EfficientNet's 16/24-channel 1×1)
])
def test_im2col_forward_equals_conv2d(cin, k, stride, padding, dilation, bias) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, 7, k, stride=stride, padding=padding, dilation=dilation,
                     bias=bias).double()
    fn = _im2col_forward(conv)
    assert fn is not None
    x = torch.randn(4, cin, 19, 23, dtype=torch.double, requires_grad=True)
    z_ref = conv(x)
    z = fn(x, conv.weight.detach(), None if conv.bias is None else conv.bias.detach())
    torch.testing.assert_close(z, z_ref)
    g = torch.randn_like(z)
    (gx,) = torch.autograd.grad(z, x, g)
    (gx_ref,) = torch.autograd.grad(z_ref, x, g)
    torch.testing.assert_close(gx, gx_ref)


def test_im2col_only_for_plain_few_tap_convs() -> None:
    many = nn.Conv2d(IM2COL_MAX_TAPS, 4, 3)           # too many taps: oneDNN is faster
    strided_1x1 = nn.Conv2d(IM2COL_MAX_TAPS + 1, 4, 1, stride=2)  # not a plain matmul
    grouped = nn.Conv2d(2, 4, 3, groups=2)
    reflect = nn.Conv2d(1, 4, 3, padding=1, padding_mode="reflect")
    same = nn.Conv2d(1, 4, 3, padding="same")

    class OwnForward(nn.Conv2d):  # e.g. TensorFlow SAME padding inside _conv_forward
        def _conv_forward(self, input, weight, bias):  # torch's signature
            return super()._conv_forward(nn.functional.pad(input, (1, 1, 1, 1)), weight, bias)

    for conv in (many, strided_1x1, grouped, reflect, same, OwnForward(1, 4, 3)):
        assert _im2col_forward(conv) is None, conv


def test_only_a_few_tap_layer_gets_the_im2col_gradient() -> None:
    """Only a few-tap or pointwise layer asks the relevance pass to use the im2col gradient
    (the relevance pass's hot spot) in its place."""
    few, many = nn.Conv2d(1, 4, 5), nn.Conv2d(8, 4, 5)
    assert linear_op(few, few(torch.randn(1, 1, 9, 9))).regrad is not None
    assert linear_op(many, many(torch.randn(1, 8, 9, 9))).regrad is None
    pointwise = nn.Conv2d(IM2COL_MAX_TAPS + 8, 4, 1)  # its gradient is a matmul, any taps
    op = linear_op(pointwise, pointwise(torch.randn(1, IM2COL_MAX_TAPS + 8, 5, 5)))
    assert op.regrad is not None
    assert _im2col_forward(pointwise) is None  # its forward stays oneDNN's


@pytest.mark.parametrize("folded", [False, True], ids=["conv", "conv+bn"])
@pytest.mark.parametrize("cin,k,stride,padding", [(3, 3, 2, 1), (40, 1, 1, 0)],
                         ids=["few-tap", "pointwise"])
def test_im2col_gradient_keeps_values_and_equals_the_layers_gradient(
        folded: bool, cin: int, k: int, stride: int, padding: int) -> None:
    """``regrad(a, z)`` has z's values (a copy, safe for in-place activations) and the
    gradient to ``a`` of the layer itself (BatchNorm folded into the weight), nothing to z."""
    torch.manual_seed(1)
    conv = nn.Conv2d(cin, 6, k, stride=stride, padding=padding).double()
    bn = nn.BatchNorm2d(6).double().eval()
    with torch.no_grad():
        bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2), bn.weight.normal_()
    a = torch.randn(2, cin, 11, 9, dtype=torch.double, requires_grad=True)
    z = bn(conv(a)) if folded else conv(a)
    op = folded_op(conv, bn, z) if folded else linear_op(conv, z)
    out = op.regrad(a, z)
    torch.testing.assert_close(out, z)
    assert out.data_ptr() != z.data_ptr()
    g = torch.randn_like(z)
    (ga,) = torch.autograd.grad(out, a, g)
    (ga_ref,) = torch.autograd.grad(z, a, g)
    torch.testing.assert_close(ga, ga_ref)


def test_epsilon_ratio_equals_z_over_its_stabilised_denominator() -> None:
    """ε's three-op ratio |z| / (|z| + ε) is z / stab(z) (zeros of either sign map to 0);
    a rule with its own stabiliser (ε·rms) keeps the general ratio."""
    import lrp_engine as le
    from lrp_engine.rules import stabilize

    z = torch.tensor([[-2.0, -1e-7, -0.0, 0.0, 1e-7, 3.0, 1e9]], dtype=torch.float64)
    op = linear_op(nn.Linear(2, 7), z)
    for eps in (1e-6, 0.25):
        assert le.Epsilon(eps).rescales(op)
        k = le.Epsilon(eps).native_ratio(z)
        torch.testing.assert_close(k, z / stabilize(z, eps), rtol=1e-15, atol=0)
    std = le.EpsilonStd(0.5)
    torch.testing.assert_close(std.native_ratio(z), z / std.stab(z))
    assert not le.Gamma(0.25).rescales(op)  # ρ is not the identity
    assert not le.Epsilon(0.25).rescales(linear_op(nn.Linear(2, 7), None))  # no own output


@pytest.mark.parametrize("cin,k,stride,padding,dilation,size", [
    (1, (5, 5), (1, 1), (0, 0), (1, 1), (32, 32)),   # LeNet's first layer
    (3, (3, 3), (1, 1), (1, 1), (1, 1), (20, 17)),   # VGG-16's
    (2, (3, 5), (2, 3), (1, 2), (2, 1), (19, 23)),   # strided, padded, dilated, rectangular
])
def test_fold_equals_torch_fold(cin, k, stride, padding, dilation, size) -> None:
    """The strided-add fold sums the columns back exactly as ``F.fold`` does."""
    h, w = size
    ho = (h + 2 * padding[0] - dilation[0] * (k[0] - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (k[1] - 1) - 1) // stride[1] + 1
    cols = torch.randn(3, cin * k[0] * k[1], ho * wo, dtype=torch.float64)
    torch.testing.assert_close(fold(cols, size, (k, dilation, padding, stride)),
                               nn.functional.fold(cols, size, k, dilation, padding, stride))


@pytest.mark.parametrize("pool,size", [
    (nn.MaxPool2d(2), (8, 6)),                       # LeNet's pools, as average pools
    (nn.AvgPool2d((2, 3)), (6, 9)),                  # rectangular windows
    (nn.MaxPool2d(3, stride=2, padding=1), (7, 7)),  # overlapping, padded
    (nn.AvgPool2d(3, stride=2, padding=1), (7, 7)),
])
def test_pool_op_values_and_gradient_equal_avg_pool(pool, size) -> None:
    """The pooling layers' affine form has avg_pool2d's values and gradient (max pooling
    as an average over its windows, without padded cells)."""
    a = torch.randn(2, 3, *size, dtype=torch.float64, requires_grad=True)
    op = pool_op(pool, None, a)
    z = op(a, op.weight, None)
    z_ref = pool(a) if isinstance(pool, nn.AvgPool2d) else nn.functional.avg_pool2d(
        a, pool.kernel_size, pool.stride, pool.padding, count_include_pad=False)
    torch.testing.assert_close(z, z_ref)
    g = torch.randn_like(z)
    torch.testing.assert_close(torch.autograd.grad(z, a, g)[0],
                               torch.autograd.grad(z_ref, a, g)[0])


def test_alpha_beta_skips_the_inputs_sign_that_is_absent() -> None:
    """αβ / z⁺ evaluate the layer once for an input without negative (or positive) entries,
    as after a ReLU, and give what both parts, always evaluated, give."""
    import lrp_engine as le
    from lrp_engine.ops import AffineOp

    lin = nn.functional.linear
    torch.manual_seed(2)
    layer = nn.Linear(4, 3).double()
    w, bias = layer.weight.detach(), layer.bias.detach()
    calls: list[int] = []

    def counted(a: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        calls.append(1)
        return lin(a, w, b)

    def both_parts(rule: le.AlphaBeta, a: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        ap, an, wp, wn = a.clamp(min=0), a.clamp(max=0), w.clamp(min=0), w.clamp(max=0)
        b = bias if rule.bias else torch.zeros_like(bias)
        zp = lin(ap, wp, b.clamp(min=0)) + lin(an, wn)
        zn = lin(ap, wn, b.clamp(max=0)) + lin(an, wp)
        return (rule.alpha * zp * (z / (zp + rule.stabilizer)).detach()
                - rule.beta * zn * (z / (zn - rule.stabilizer)).detach())

    for sign, n_calls in ((1.0, 1), (-1.0, 1), (0.0, 2)):
        a = (sign * torch.rand(2, 4, dtype=torch.float64) if sign
             else torch.randn(2, 4, dtype=torch.float64)).requires_grad_(True)
        z = layer(a).detach()
        for rule in (le.ZPlus(), le.AlphaBeta(2.0, 1.0)):
            calls.clear()
            m = rule.modified(AffineOp(counted, w, bias), a, z, None)
            assert len(calls) == n_calls * (2 if rule.beta else 1)
            ref = both_parts(rule, a, z)
            torch.testing.assert_close(m, ref)
            torch.testing.assert_close(torch.autograd.grad(m.sum(), a)[0],
                                       torch.autograd.grad(ref.sum(), a)[0])


def test_folded_op_is_complete_when_built_and_folds_once(monkeypatch) -> None:
    """A conv+BN op is built with its im2col gradient; BatchNorm is folded once, on the
    first read of the weight or bias, and an op :meth:`with_native` gives shares it."""
    import lrp_engine.ops as ops

    calls: list[int] = []
    real = ops.bn_scale_shift

    def counted(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(1)
        return real(bn)

    monkeypatch.setattr(ops, "bn_scale_shift", counted)
    conv, bn = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4).eval()
    z = bn(conv(torch.randn(1, 1, 6, 6)))
    op = folded_op(conv, bn, z)
    assert op.regrad is not None and not calls
    other = op.with_native(z.clone())
    assert other.native is not z and other.regrad is op.regrad
    torch.testing.assert_close(op.weight, other.weight)
    _ = op.bias, other.bias
    assert len(calls) == 1
