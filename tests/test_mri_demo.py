"""The synthetic MRI demo: deterministic data whose masks cover the drawn lesions, and the
bundled model's accuracy on the fixed held-out slices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lrp_engine as le
from lrp_engine import mri_demo as md


@pytest.fixture(scope="module")
def model() -> md.MRIDemoNet:
    return md.load_mri_demo_model()


@pytest.fixture(scope="module")
def held_out() -> md.LesionBatch:
    return md.held_out_set(200)


def test_bundled_slices() -> None:
    t = md.load_slices()
    assert t.images.shape == (32, 96, 96) and t.brain.shape == (32, 96, 96)
    assert t.midline == 47.5 and t.mm_per_pixel == pytest.approx(189 / 96)
    assert 0.0 <= t.images.min() and t.images.max() <= md.WM_LEVEL + 1e-6
    assert set(t.split("train")).isdisjoint(t.split("test"))
    assert len(t.split("test")) == 8
    np.testing.assert_array_equal(t.images, t.images[:, :, ::-1])  # a symmetric template


def test_generation_is_deterministic_and_balanced() -> None:
    a, b = md.generate(40, seed=5), md.generate(40, seed=5)
    torch.testing.assert_close(a.images, b.images)
    assert torch.equal(a.masks, b.masks) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, md.generate(40, seed=6).images)
    assert torch.bincount(a.labels, minlength=4).tolist() == [10, 10, 10, 10]
    assert a.images.dtype == torch.float32 and a.images.shape == (40, 1, 96, 96)
    assert 0.0 <= float(a.images.min()) and float(a.images.max()) <= 1.0
    test_slices = set(md.load_slices().split("test").tolist())
    assert set(md.held_out_set(50).slice_index.tolist()) <= test_slices


def test_masks_are_where_the_lesions_are() -> None:
    batch = md.generate(80, seed=11, augment=False)
    t = md.load_slices()
    for img, mask, label, k in zip(batch.images[:, 0].numpy(), batch.masks.numpy(),
                                   batch.labels.tolist(), batch.slice_index.tolist(),
                                   strict=True):
        changed = np.abs(img - t.images[k]) > 1e-6
        assert not (changed & ~mask).any()  # every drawn pixel lies inside the mask
        if label == 0:
            assert not mask.any() and not changed.any()
            continue
        assert changed[mask].mean() > 0.9 and (mask & t.brain[k]).mean() == mask.mean()
        ys, xs = np.nonzero(mask)
        cx = xs.mean()
        if label == 1:
            assert xs.max() < t.midline  # the subject's left = the image's left
        elif label == 2:
            assert xs.min() > t.midline
        else:
            assert abs(cx - t.midline) < 2.0
            assert np.ptp(ys) > 2 * np.ptp(xs)  # elongated along the midline
        assert img[mask].max() >= 0.85  # brighter than white matter


def test_bundled_model_accuracy_on_the_held_out_slices(model, held_out) -> None:
    acc = md.accuracy(model, held_out)
    assert acc >= 0.97  # 0.995 when trained (see lrp_engine/assets/README.md)
    conf = md.confusion(model, held_out)
    assert conf.sum() == 200 and np.diag(conf).min() >= 45


def test_model_is_explainable(model, held_out) -> None:
    x = held_out.images[:4]
    r = le.explain(model, x, target=held_out.labels[:4], composite="epsilon-gamma-box")
    assert r.shape == x.shape and torch.isfinite(r).all()
    res = le.blrp(model, x[:1], composite="epsilon", n_samples=8)
    assert res.mean.shape == x[:1].shape and res.n_samples == 8


def test_training_runs() -> None:
    model, acc = md.train(out=None, epochs=1, per_epoch=64, batch_size=32, log=False)
    assert not model.training and 0.0 <= acc <= 1.0
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_cli_evaluate(capsys) -> None:
    assert md.main(["evaluate"]) == 0
    out = capsys.readouterr().out
    assert "not diagnostic" in out and "held-out accuracy: 0.99" in out
