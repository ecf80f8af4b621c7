"""Pixel flipping against a slow per-pixel reference loop (the B-LRP notebook's algorithm),
its random draws, an oracle check on a linear model, the curve summaries, and the
localisation metrics."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lrp_engine.evaluation import (
    aopc,
    auc,
    blur,
    fill_values,
    fraction_flipped,
    pixel_flipping,
    pixel_ranks,
)

NORM = (0.1307, 0.3081)


def reference_curves(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                     relevance: torch.Tensor, steps: int, pps: int, fill: torch.Tensor,
                     order: str = "most", patch: int = 1) -> torch.Tensor:
    """The notebook's loop, one image and one pixel (patch) at a time: evaluate, then flip
    ``pps`` times the argmax of the (patch-summed) relevance and mark it −inf."""
    n, _, h, w = x.shape
    hp, wp = -(-h // patch), -(-w // patch)
    out = torch.zeros(n, steps, dtype=x.dtype)
    for i in range(n):
        img = x[i].clone()
        heat = relevance[i].sum(0)
        r = torch.zeros(hp, wp, dtype=heat.dtype)
        for py in range(h):
            for px in range(w):
                r[py // patch, px // patch] += heat[py, px]
        if order == "least":
            r = -r
        for s in range(steps):
            with torch.no_grad():
                out[i, s] = model(img[None])[0, target[i]]
            for _ in range(pps):
                k = int(torch.argmax(r))
                uy, ux = divmod(k, wp)
                ys = slice(uy * patch, min((uy + 1) * patch, h))
                xs = slice(ux * patch, min((ux + 1) * patch, w))
                img[:, ys, xs] = fill[i][:, ys, xs]
                r[uy, ux] = -math.inf
    return out


def tiny_net(c: int = 1, k: int = 3, size: int = 8) -> nn.Module:
    torch.manual_seed(0)
    side = size // 2
    return nn.Sequential(nn.Conv2d(c, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * side * side, k)).double().eval()


def data(n: int = 2, c: int = 1, size: int = 8, seed: int = 1
         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, size, size, generator=g, dtype=torch.float64)
    # many exact zeros: ties must be broken like repeated argmax (lowest index first)
    rel = torch.randn(n, c, size, size, generator=g, dtype=torch.float64).relu()
    target = torch.randint(0, 3, (n,), generator=g)
    return x, rel, target


@pytest.mark.parametrize("order", ["most", "least"])
@pytest.mark.parametrize("patch", [1, 2])
@pytest.mark.parametrize("fill", ["zero", "uniform"])
@pytest.mark.parametrize("channels", [1, 3])
def test_matches_reference_loop(order: str, patch: int, fill: str, channels: int) -> None:
    model = tiny_net(channels)
    x, rel, target = data(c=channels)
    steps, pps = (9, 7) if patch == 1 else (6, 3)
    values = fill_values(x, fill, normalise=NORM, seed=5)
    ref = reference_curves(model, x, target, rel, steps, pps, values, order, patch)
    got = pixel_flipping(model, x, target, rel, steps=steps, pixels_per_step=pps, fill=fill,
                         order=order, patch=patch, normalise=NORM, seed=5, batch_size=5)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    given = pixel_flipping(model, x, target, rel, steps=steps, pixels_per_step=pps,
                           fill=values, order=order, patch=patch, batch_size=5)
    torch.testing.assert_close(given, ref, rtol=1e-10, atol=1e-10)
    assert not torch.equal(ref[:, 0], ref[:, -1])  # the flips really changed the scores


def test_patches_at_a_ragged_border_match_reference() -> None:
    """9×9 image, 2×2 patches: the last row/column of patches is 1 pixel wide."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(81, 3)).double().eval()
    x, rel, target = data(size=9)
    values = fill_values(x, "zero")
    ref = reference_curves(model, x, target, rel, 10, 2, values, "most", patch=2)
    got = pixel_flipping(model, x, target, rel, steps=10, pixels_per_step=2, fill="zero",
                         patch=2)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)


def test_step_zero_is_the_unperturbed_score_and_steps_count_flips() -> None:
    model = tiny_net()
    x, rel, target = data()
    curves = pixel_flipping(model, x, target, rel, steps=5, pixels_per_step=16, fill="zero")
    with torch.no_grad():
        logits = model(x)
    torch.testing.assert_close(curves[:, 0], logits[torch.arange(2), target])
    # the last evaluation has (steps-1)*pps = 64 = all pixels flipped: a constant image
    flat = fill_values(x, "zero")
    with torch.no_grad():
        torch.testing.assert_close(curves[:, -1], model(flat)[torch.arange(2), target])
    torch.testing.assert_close(fraction_flipped(5, 16, 64),
                               torch.tensor([0, .25, .5, .75, 1], dtype=torch.float64))


def test_random_order_is_seeded_and_independent_of_batching() -> None:
    model = tiny_net()
    x, rel, target = data(n=4)
    kw = dict(steps=8, pixels_per_step=4, order="random", fill="uniform", normalise=NORM)
    a = pixel_flipping(model, x, target, rel, seed=3, **kw)
    b = pixel_flipping(model, x, target, torch.randn_like(rel), seed=3, **kw)  # ignored
    c = pixel_flipping(model, x, target, rel, seed=4, **kw)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)
    # the same images split over two calls, with their global ids
    parts = torch.cat([pixel_flipping(model, x[:1], target[:1], rel[:1], seed=3,
                                      image_ids=[0], **kw),
                       pixel_flipping(model, x[1:], target[1:], rel[1:], seed=3,
                                      image_ids=[1, 2, 3], **kw)])
    torch.testing.assert_close(parts, a, rtol=1e-12, atol=1e-12)
    ranks, units = pixel_ranks(rel, x.shape, "random", seed=3)
    assert units == 64
    assert all(sorted(r.flatten().tolist()) == list(range(64)) for r in ranks)
    assert not torch.equal(ranks[0], ranks[1])  # each image has its own permutation


@pytest.mark.parametrize("batch_size", [1, 7, 1024])
def test_batch_size_does_not_change_results(batch_size: int) -> None:
    model = tiny_net()
    x, rel, target = data(n=3)
    kw = dict(steps=9, pixels_per_step=3, fill="uniform", normalise=NORM, seed=2)
    ref = pixel_flipping(model, x, target, rel, batch_size=27, **kw)
    got = pixel_flipping(model, x, target, rel, batch_size=batch_size, **kw)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_channels_last_copy_gives_the_same_curves_and_tracks_weight_updates() -> None:
    model = tiny_net()
    x, rel, target = data()
    kw = dict(steps=6, pixels_per_step=5, fill="blur")
    fast = pixel_flipping(model, x, target, rel, channels_last=True, **kw)
    plain = pixel_flipping(model, x, target, rel, channels_last=False, **kw)
    torch.testing.assert_close(fast, plain, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        model[0].weight.mul_(2.0)  # in place: the cached copy must notice
    again = pixel_flipping(model, x, target, rel, channels_last=True, **kw)
    torch.testing.assert_close(again, pixel_flipping(model, x, target, rel,
                                                     channels_last=False, **kw))
    assert not torch.allclose(again, fast)


def test_oracle_relevance_degrades_fastest_on_a_linear_model() -> None:
    """For logit = w·x + b and zero fill, flipping pixel i removes exactly w_i·x_i, so the
    relevance w ⊙ x (most relevant first) gives the lowest possible score at every step."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).double().eval()
    g = torch.Generator().manual_seed(7)
    x = torch.randn(8, 1, 8, 8, generator=g, dtype=torch.float64)
    target = torch.randint(0, 3, (8,), generator=g)
    oracle = (model[1].weight[target].view(8, 1, 8, 8) * x).detach()
    kw = dict(steps=16, pixels_per_step=4, fill="zero")
    most = pixel_flipping(model, x, target, oracle, order="most", **kw)
    least = pixel_flipping(model, x, target, oracle, order="least", **kw)
    rand = pixel_flipping(model, x, target, oracle, order="random", seed=1, **kw)
    assert (most <= rand + 1e-12).all() and (most <= least + 1e-12).all()
    assert (auc(most) < auc(rand)).all() and (auc(rand) < auc(least)).all()
    assert (aopc(most) > aopc(rand)).all()


def test_auc_and_aopc_on_hand_computed_curves() -> None:
    const = torch.full((1, 5), 3.0)
    linear = torch.tensor([[1.0, 0.75, 0.5, 0.25, 0.0]])
    cliff = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(auc(const), torch.tensor([3.0]))
    torch.testing.assert_close(aopc(const), torch.tensor([0.0]))
    torch.testing.assert_close(auc(linear), torch.tensor([0.5]))
    torch.testing.assert_close(aopc(linear), torch.tensor([0.5]))
    # a cliff: trapezoids give 1/4 · 1/2; AOPC averages the drops 0, 1, 1, 1, 1
    torch.testing.assert_close(auc(cliff), torch.tensor([0.125]))
    torch.testing.assert_close(aopc(cliff), torch.tensor([0.8]))
    torch.testing.assert_close(auc(cliff, dx=1.0), torch.tensor([0.5]))
    # AOPC is relative to each curve's own start; AUC is not
    torch.testing.assert_close(aopc(linear + 10), aopc(linear))
    torch.testing.assert_close(auc(linear + 10), auc(linear) + 10)


def test_model_mode_and_parameters_are_untouched() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Dropout(0.5),
                          nn.Flatten(), nn.Linear(256, 3)).double().eval()
    x, rel, target = data()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    strides = [p.stride() for p in model.parameters()]
    pixel_flipping(model, x, target, rel, steps=4, pixels_per_step=2)
    assert not any(m.training for m in model.modules())
    assert [p.stride() for p in model.parameters()] == strides
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    model.train()
    with pytest.raises(ValueError, match="training mode"):
        pixel_flipping(model, x, target, rel, steps=4, pixels_per_step=2)
    assert all(m.training for m in model.modules())


def test_softmax_score_and_default_target() -> None:
    model = tiny_net()
    x, rel, _ = data(n=3)
    with torch.no_grad():
        probs = model(x).softmax(1)
    pred = probs.argmax(1)
    kw = dict(steps=5, pixels_per_step=6, fill="zero")
    p = pixel_flipping(model, x, None, rel, score="softmax", **kw)
    torch.testing.assert_close(p[:, 0], probs[torch.arange(3), pred])
    assert ((p >= 0) & (p <= 1)).all()
    torch.testing.assert_close(pixel_flipping(model, x, None, rel, **kw),
                               pixel_flipping(model, x, pred, rel, **kw))
    torch.testing.assert_close(pixel_flipping(model, x, 1, rel, **kw),
                               pixel_flipping(model, x, torch.ones(3, dtype=torch.long), rel,
                                              **kw))


def test_fill_values() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 6, 6, generator=g, dtype=torch.float64)
    zero = fill_values(x, "zero", normalise=((0.5, 0.4, 0.3), (0.2, 0.25, 0.5)))
    torch.testing.assert_close(zero[0, :, 0, 0], torch.tensor([-2.5, -1.6, -0.6],
                                                              dtype=torch.float64))
    u = fill_values(x, "uniform", normalise=NORM, seed=1)
    lo, hi = (0 - NORM[0]) / NORM[1], (1 - NORM[0]) / NORM[1]
    assert u.min() >= lo and u.max() <= hi and u.std() > 0.5
    torch.testing.assert_close(fill_values(x, "uniform", normalise=NORM, seed=1), u)
    assert not torch.equal(fill_values(x, "uniform", normalise=NORM, seed=2), u)
    torch.testing.assert_close(fill_values(x, "mean")[:, :, 2, 3], x.mean((2, 3)))
    const = torch.full((1, 2, 7, 7), 0.3, dtype=torch.float64)
    torch.testing.assert_close(blur(const), const)
    spike = torch.zeros(1, 1, 9, 9, dtype=torch.float64)
    spike[0, 0, 4, 4] = 1.0
    b = blur(spike)
    assert math.isclose(float(b.sum()), 1.0) and b[0, 0, 4, 4] < 0.2 and b[0, 0, 0, 0] == 0


def test_invalid_arguments() -> None:
    model = tiny_net()
    x, rel, target = data()
    with pytest.raises(ValueError, match="at most 17 steps"):
        pixel_flipping(model, x, target, rel, steps=18, pixels_per_step=4)
    pixel_flipping(model, x, target, rel, steps=17, pixels_per_step=4)  # exactly all pixels
    with pytest.raises(ValueError, match="unknown fill"):
        pixel_flipping(model, x, target, rel, fill="noise", steps=2)
    with pytest.raises(ValueError, match="unknown order"):
        pixel_flipping(model, x, target, rel, order="best", steps=2)
    with pytest.raises(ValueError, match="relevance must have shape"):
        pixel_flipping(model, x, target, rel[:, :, :4], steps=2)
    with pytest.raises(ValueError, match="NaN"):
        pixel_flipping(model, x, target, rel * float("nan"), steps=2)
    with pytest.raises(ValueError, match="out of range"):
        pixel_flipping(model, x, torch.tensor([0, 5]), rel, steps=2)
