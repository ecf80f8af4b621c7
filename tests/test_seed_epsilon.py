"""The engine's "epsilon" preset reproduces the seed notebook's ``LRP_epsilon`` on LeNet.

The seed (tests/seed_reference.py) adds ``+ε`` to every denominator without looking at its
sign, while the engine uses ``z + ε·sign(z)``; with ε = 1e-9 the two differ only where a
denominator is within a few ε of zero. The comparison therefore runs in float64, where such
denominators do not occur for these inputs, and asks for 1e-5 relative agreement (measured
against the largest |relevance| of each image; measured: ~1e-7). Dropout is off (eval mode),
as in the notebook's standard-LRP branch. float32, the notebook's dtype, agrees too.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import lrp_engine as le
from lrp_engine.models import LeNet
from tests.seed_reference import seed_lrp_epsilon

RTOL = 1e-5


def _assert_rel(got: torch.Tensor, want: torch.Tensor, what: str) -> float:
    """``got`` ≈ ``want`` to RTOL relative to max|want|; returns the max relative error."""
    scale = float(want.abs().max())
    assert scale > 0, what
    err = float((got - want).abs().max()) / scale
    assert err <= RTOL, f"{what}: max |engine − seed| / max|seed| = {err:.3g}"
    return err


def _seed_batch(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The seed, one image at a time (as the notebook calls it), on a copy of the model."""
    m = copy.deepcopy(model)
    return torch.cat([seed_lrp_epsilon(x[i], int(target[i]), m) for i in range(len(x))])


def _random_lenet(seed: int) -> LeNet:
    torch.manual_seed(seed)
    return LeNet().double().eval()


def test_epsilon_preset_is_epsilon_1e9_with_avg_maxpool() -> None:
    comp = le.get_composite("epsilon", maxpool="avg")
    assert comp.maxpool == "avg"
    assert comp.default == le.Epsilon(1e-9)
    table = le.layer_table(LeNet().eval(), torch.zeros(1, 1, 32, 32))
    rules = comp.assign(table)
    assert set(rules) == {"model.conv1", "model.maxpool1", "model.conv2", "model.maxpool2",
                          "model.dense3", "model.final"}
    assert all(r == le.Epsilon(1e-9) for r in rules.values())


@pytest.mark.parametrize("seed", [0, 1])
def test_engine_matches_seed_on_random_lenet(seed: int) -> None:
    model = _random_lenet(seed)
    g = torch.Generator().manual_seed(100 + seed)
    x = torch.randn(3, 1, 32, 32, generator=g, dtype=torch.float64)
    target = torch.tensor([seed % 10, 3, 7])
    want = _seed_batch(model, x, target)
    got = le.explain(model, x, target=target,
                     composite=le.get_composite("epsilon", maxpool="avg"))
    assert got.shape == x.shape
    for i in range(len(x)):
        _assert_rel(got[i], want[i], f"random LeNet {seed}, image {i}")
    # the comparison can fail: winner-take-all max pooling is a different explanation
    other = le.explain(model, x, target=target,
                       composite=le.get_composite("epsilon", maxpool="winner"))
    assert float((other - want).abs().max()) > 1e-3 * float(want.abs().max())


def test_seed_reference_leaves_inputs_and_model_alone() -> None:
    model = _random_lenet(3)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 1, 32, 32, dtype=torch.float64)
    x0 = x.clone()
    seed_lrp_epsilon(x[0], 2, model)
    assert torch.equal(x, x0) and not x.requires_grad
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k])


def _bundled() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    try:
        from lrp_engine.data import load_bundled_mnist, mnist_to_tensor
        from lrp_engine.models import load_bundled

        model = load_bundled("lenet")
        images, labels = load_bundled_mnist("test")
    except (FileNotFoundError, ImportError) as e:  # pragma: no cover - assets missing
        pytest.skip(f"bundled LeNet / MNIST not available: {e}")
    pick = np.array([0, 1, 2, 3, 4, 5, 17, 250, 999])
    x = mnist_to_tensor(images[pick], size=32).double()
    return model.double().eval(), x, torch.as_tensor(labels[pick])


def test_engine_matches_seed_on_bundled_lenet_with_real_digits() -> None:
    model, x, labels = _bundled()
    assert (model(x).argmax(1) == labels).float().mean() >= 0.75  # a trained network
    comp = le.get_composite("epsilon", maxpool="avg")
    for target in (labels, (labels + 1) % 10):  # the true class and a wrong one
        want = _seed_batch(model, x, target)
        got = le.explain(model, x, target=target, composite=comp)
        for i in range(len(x)):
            _assert_rel(got[i], want[i], f"bundled LeNet, digit {i}, class {int(target[i])}")


def test_float32_agreement() -> None:
    """In float32 (what the notebook used) the two agree as well (measured: ~4e-7 relative;
    rounding differs between one batched pass and the seed's per-layer steps)."""
    model = _random_lenet(5).float()
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(5))
    target = torch.tensor([1, 8])
    want = _seed_batch(model, x, target)
    got = le.explain(model, x, target=target, composite="epsilon")
    assert got.dtype == torch.float32
    for i in range(len(x)):
        err = float((got[i] - want[i]).abs().max()) / float(want[i].abs().max())
        assert err <= RTOL, f"float32 image {i}: {err:.3g}"
