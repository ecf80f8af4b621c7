"""B-LRP: posterior samples, shared trunk, percentiles, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import lrp_engine as le


class TinyLeNet(nn.Module):
    """The seed LeNet's structure at a smaller size (dropout after a conv and a dense)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3), nn.ReLU(),
            nn.Dropout2d(p), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(6 * 2 * 2, 12),
            nn.ReLU(), nn.Dropout(p), nn.Linear(12, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


@pytest.fixture
def net() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return TinyLeNet().double().eval(), torch.randn(3, 1, 14, 14, dtype=torch.float64)


def test_no_dropout_equals_standard_lrp(net) -> None:
    _, x = net
    torch.manual_seed(0)
    model = TinyLeNet(p=0.0).double().eval()
    res = le.blrp(model, x, target=2, n_samples=7)
    ref = le.explain(model, x, target=2)
    for a in range(len(res.alphas)):
        torch.testing.assert_close(res.percentiles[a], ref)
    torch.testing.assert_close(res.mean, ref)
    assert res.std.abs().max() <= 1e-12 * ref.abs().max()


def _draw_masks(model: TinyLeNet, n: int, seed: int) -> list[torch.Tensor]:
    """The documented protocol, re-implemented: one CPU generator seeded with ``seed``;
    for each dropout layer in execution order, keep = U[0,1) >= p over [S, *shape],
    channel dropout drawing one value per channel."""
    g = torch.Generator().manual_seed(seed)
    conv_mask = (torch.rand((n, 6, 1, 1), generator=g) >= 0.5).double() * 2
    dense_mask = (torch.rand((n, 12), generator=g) >= 0.5).double() * 2
    return [conv_mask, dense_mask]


def _baked(model: TinyLeNet, conv_mask: torch.Tensor, dense_mask: torch.Tensor) -> nn.Module:
    """The network of one posterior sample: masks folded into the preceding layers'
    weights (relu(z)·m = relu(z·m) for m >= 0), dropout layers removed."""
    seq = model.model
    conv, dense = nn.Conv2d(4, 6, 3).double(), nn.Linear(24, 12).double()
    with torch.no_grad():
        conv.weight.copy_(seq[3].weight * conv_mask.view(-1, 1, 1, 1))
        conv.bias.copy_(seq[3].bias * conv_mask.view(-1))
        dense.weight.copy_(seq[8].weight * dense_mask.view(-1, 1))
        dense.bias.copy_(seq[8].bias * dense_mask)
    return nn.Sequential(seq[0], seq[1], seq[2], conv, seq[4], seq[6], seq[7], dense, seq[9],
                         seq[11]).eval()


@pytest.mark.parametrize("share_trunk", [True, False])
def test_samples_equal_explicit_single_sample_runs(net, share_trunk: bool) -> None:
    model, x = net
    # a negligible stabiliser: the baked network's z differ by the mask factor 2
    comp = le.Composite(default=le.Zero(stabilizer=1e-30), maxpool="winner")
    res = le.blrp(model, x, target=1, n_samples=3, seed=11, keep_samples=True,
                  share_trunk=share_trunk, composite=comp)
    conv_m, dense_m = _draw_masks(model, 3, seed=11)
    for s in range(3):
        ref = le.explain(_baked(model, conv_m[s], dense_m[s]), x, target=1, composite=comp)
        torch.testing.assert_close(res.samples[s], ref, rtol=1e-9, atol=1e-12)


def test_percentiles_match_numpy_and_chunking(net) -> None:
    model, x = net
    res = le.blrp(model, x, n_samples=17, keep_samples=True, share_trunk=True)
    ref = np.percentile(res.samples.numpy(), res.alphas, axis=0)
    np.testing.assert_allclose(res.percentiles.numpy(), ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(res.std.numpy(), res.samples.numpy().std(0), atol=1e-15)
    np.testing.assert_allclose(res.sign_agreement.numpy(), (res.samples.numpy() > 0).mean(0))
    for kwargs in ({"chunk_size": 4, "share_trunk": True}, {"share_trunk": False},
                   {"share_trunk": False, "chunk_size": 5}, {}):
        other = le.blrp(model, x, n_samples=17, keep_samples=True, **kwargs)
        torch.testing.assert_close(other.samples, res.samples, rtol=1e-12, atol=1e-15)
        assert torch.equal(other.target, res.target)


def test_independent_of_batch_composition_and_deterministic(net) -> None:
    model, x = net
    a = le.blrp(model, x, n_samples=9, seed=3)
    b = le.blrp(model, x[1:2], n_samples=9, seed=3)
    torch.testing.assert_close(a.percentiles[:, 1:2], b.percentiles)
    c = le.blrp(model, x, n_samples=9, seed=3)
    assert torch.equal(a.percentiles, c.percentiles)
    d = le.blrp(model, x, n_samples=9, seed=4)
    assert not torch.equal(a.percentiles, d.percentiles)


def test_target_is_posterior_mean_prediction(net) -> None:
    model, x = net
    res = le.blrp(model, x, n_samples=25, keep_samples=True)
    assert torch.equal(res.target, res.probabilities.argmax(1))
    torch.testing.assert_close(res.probabilities.sum(1), torch.ones(3, dtype=torch.float64))
    explicit = le.blrp(model, x, target=res.target, n_samples=25, keep_samples=True)
    torch.testing.assert_close(explicit.samples, res.samples)


def test_model_untouched_and_modes_respected(net) -> None:
    model, x = net
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [(m.training) for m in model.modules()]
    le.blrp(model, x, n_samples=4)
    assert [(m.training) for m in model.modules()] == flags
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    for m in model.modules():
        assert not m._forward_hooks
    with pytest.raises(ValueError, match="n_samples"):
        le.blrp(model, x, n_samples=0)


def test_input_layer_rules_work_in_blrp(net) -> None:
    model, x = net
    comp = le.get_composite("epsilon-gamma-box", low=-3.0, high=3.0)
    res = le.blrp(model, x, n_samples=5, composite=comp, keep_samples=True, share_trunk=True)
    rep = le.blrp(model, x, n_samples=5, composite=comp, keep_samples=True, share_trunk=False)
    torch.testing.assert_close(res.samples, rep.samples)
    assert res.samples.abs().sum() > 0


def test_trunk_copies_balance_forward_and_backward_calls() -> None:
    """A heavy trunk (VGG-16's, 15 GMAC) runs once, its backward once per sample; a light
    one (LeNet's, 3.4 MMAC) on a dozen or so copies; groups of samples are even."""
    from lrp_engine.bayes import trunk_copies

    assert trunk_copies(15.4e9, 32) == 1
    c = trunk_copies(3.35e6, 100)
    assert 10 <= c <= 25
    calls = -(-100 // c)
    assert calls * c - 100 < calls  # the last group is padded by fewer than one per call
    assert trunk_copies(1.0, 7) == 7  # never more copies than samples
    for s in range(1, 40):
        assert 1 <= trunk_copies(3.35e6, s) <= s


@pytest.mark.parametrize("inplace", [False, True])
def test_shared_trunk_with_merged_scalings_equals_replication(inplace: bool) -> None:
    """A trunk of conv → BatchNorm → ReLU6 / ReLU blocks (whose activations take ε's
    scaling over) shared over samples, in groups of any size, gives the replicated
    input's samples."""
    torch.manual_seed(4)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU6(inplace=inplace),
        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(inplace=inplace), nn.Dropout2d(0.5),
        nn.Conv2d(4, 3, 3), nn.BatchNorm2d(3), nn.SiLU(), nn.Flatten(),
        nn.Linear(3 * 4 * 4, 5)).double().eval()
    with torch.no_grad():
        model[1].running_var.uniform_(0.01, 0.1)  # values beyond ReLU6's kink
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    assert len([i for i in le.layer_table(model, x) if i.feeds]) == 3
    comp = le.Composite(default=le.Epsilon(0.3))
    rep = le.blrp(model, x, n_samples=7, composite=comp, keep_samples=True, share_trunk=False)
    for chunk in (1, 3, 7):
        shared = le.blrp(model, x, n_samples=7, composite=comp, keep_samples=True,
                         share_trunk=True, chunk_size=chunk)
        torch.testing.assert_close(shared.samples, rep.samples, rtol=1e-10, atol=1e-12)
