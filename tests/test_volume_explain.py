"""Explaining a volume: batched per-slice explanations (a 2-D model) equal one-by-one
``le.explain``, progress and cooperative stopping, slice scores; explain_volume (a 3-D model)
conserves relevance on a bias-free network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import lrp_engine as le
from lrp_engine import mri_demo as md
from lrp_engine.volume_explain import explain_slices, explain_volume


@pytest.fixture(scope="module")
def model() -> md.MRIDemoNet:
    return md.load_mri_demo_model()


@pytest.fixture(scope="module")
def series() -> torch.Tensor:
    """11 slices [11, 1, 96, 96] of the held-out set: batches of 4 leave a last batch of 3."""
    return md.held_out_set(11).images


def _close(got: np.ndarray, want: np.ndarray, rtol: float = 1e-5) -> None:
    """Equal to ``rtol`` relative to the largest |want|."""
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * float(np.abs(want).max()))


@pytest.mark.parametrize(("composite", "bounds"), [
    ("epsilon-gamma-box", {"low": 0.0, "high": 1.0}),
    ("epsilon-gamma-box", {}),  # zB bounds: each slice's own min/max, per slice
    ("epsilon", {}),
])
def test_batched_equals_one_by_one(model, series, composite, bounds) -> None:
    res = explain_slices(model, series, composite, batch_size=4, **bounds)
    comp = le.get_composite(composite, **bounds)
    assert res.done == 11 and not res.stopped and res.total == 11
    assert res.relevance.dtype == np.float32 and res.relevance.shape == (11, 96, 96)
    for i in range(11):
        x = series[i:i + 1]
        want = le.explain(model, x, composite=comp)[0].sum(0).numpy()
        _close(res.relevance[i], want)
        with torch.no_grad():
            logits = model(x)[0].numpy()
        np.testing.assert_allclose(res.logits[i], logits, rtol=1e-5, atol=1e-5)
        assert res.predicted[i] == res.target[i] == logits.argmax()


def test_fixed_and_per_slice_targets(model, series) -> None:
    res = explain_slices(model, series[:5], "epsilon", target=2, batch_size=2)
    assert res.target.tolist() == [2] * 5
    want = le.explain(model, series[:5], target=2, composite="epsilon").sum(1).numpy()
    _close(res.relevance, want)
    per = [0, 1, 2, 3, 1]
    res = explain_slices(model, series[:5], "epsilon", target=per, batch_size=2)
    assert res.target.tolist() == per
    want = le.explain(model, series[:5], target=torch.tensor(per), composite="epsilon")
    _close(res.relevance, want.sum(1).numpy())
    with pytest.raises(ValueError, match="3 targets for 5 slices"):
        explain_slices(model, series[:5], "epsilon", target=[0, 1, 2])
    with pytest.raises(ValueError, match="predicted"):
        explain_slices(model, series[:5], "epsilon", target="top")
    with pytest.raises(ValueError, match="only be given with a preset"):
        explain_slices(model, series[:5], le.get_composite("epsilon"), low=0.0)


def test_progress_counts_up_to_the_series_length(model, series) -> None:
    calls: list[tuple[int, int]] = []
    explain_slices(model, series, "epsilon", batch_size=4,
                   progress=lambda done, total: calls.append((done, total)))
    assert calls == [(4, 11), (8, 11), (11, 11)]
    calls.clear()
    explain_slices(model, series[:3], "epsilon", batch_size=16,
                   progress=lambda done, total: calls.append((done, total)))
    assert calls == [(3, 3)]


def test_should_stop_after_the_first_batch(model, series) -> None:
    batches = []
    res = explain_slices(model, series, "epsilon-gamma-box", batch_size=4,
                         progress=lambda done, total: batches.append(done),
                         should_stop=lambda: len(batches) >= 1, low=0.0, high=1.0)
    assert res.done == 4 and res.stopped and batches == [4]
    assert np.isfinite(res.relevance).all()
    assert np.abs(res.relevance[:4]).sum() > 0 and not res.relevance[4:].any()
    assert not res.logits[4:].any() and not res.slice_score[4:].any()
    assert (res.predicted[4:] == -1).all() and (res.target[4:] == -1).all()
    full = explain_slices(model, series[:4], "epsilon-gamma-box", low=0.0, high=1.0)
    _close(res.relevance[:4], full.relevance)
    # asked to stop with nothing left to do: not stopped
    res = explain_slices(model, series[:4], "epsilon", batch_size=4, should_stop=lambda: True)
    assert res.done == 4 and not res.stopped


def test_slice_score_sums_to_the_total_relevance(model, series) -> None:
    res = explain_slices(model, series, "epsilon", batch_size=8)
    assert res.slice_score.shape == (11,) and res.slice_score.dtype == np.float64
    np.testing.assert_allclose(res.slice_score, res.relevance.sum((1, 2), dtype=np.float64))
    np.testing.assert_allclose(res.slice_score.sum(), res.relevance.sum(dtype=np.float64),
                               rtol=1e-9)


def _bias_free_conv3d(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv3d(1, 4, 3, padding=1, bias=False), nn.BatchNorm3d(4), nn.ReLU(),
        nn.MaxPool3d(2), nn.Conv3d(4, 6, 3, padding=1, bias=False), nn.ReLU(),
        nn.AdaptiveAvgPool3d((1, 2, 2)), nn.Flatten(), nn.Linear(24, 3, bias=False)).double()
    with torch.no_grad():
        bn = net[1]
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.zero_()
        bn.running_mean.zero_()
        bn.running_var.uniform_(0.5, 1.5)
    return net.eval()


@pytest.mark.parametrize("preset", ["zero", "epsilon"])
def test_explain_volume_conserves_on_a_bias_free_net(preset: str) -> None:
    net = _bias_free_conv3d()
    vol = torch.rand(1, 1, 6, 10, 10, generator=torch.Generator().manual_seed(3),
                     dtype=torch.float64)
    res = explain_volume(net, vol, preset)
    assert res.relevance.shape == (6, 10, 10) and res.slice_score.shape == (6,)
    assert res.logits.shape == (3,) and res.target == res.predicted == int(res.logits.argmax())
    assert res.output_relevance == pytest.approx(float(res.logits[res.target]), rel=1e-6)
    # ε = 1e-9 stabilisers absorb a share s / (z + s) where z is small: 1e-6, not 1e-12
    assert res.slice_score.sum() == pytest.approx(res.output_relevance, rel=1e-6)
    want = le.explain(net, vol, composite=preset)[0, 0].numpy()
    np.testing.assert_allclose(res.relevance, want, rtol=1e-5, atol=1e-7)
    r1 = explain_volume(net, vol, preset, target=1)
    assert r1.target == 1
    assert r1.slice_score.sum() == pytest.approx(float(r1.logits[1]), rel=1e-6, abs=1e-9)


def test_explain_volume_checks_its_input() -> None:
    net = _bias_free_conv3d()
    with pytest.raises(ValueError, match=r"\[1, C, D, H, W\]"):
        explain_volume(net, torch.zeros(2, 1, 6, 10, 10, dtype=torch.float64), "epsilon")
    with pytest.raises(ValueError, match=r"\[S, C, H, W\]"):
        explain_slices(net, torch.zeros(1, 1, 6, 10, 10), "epsilon")
