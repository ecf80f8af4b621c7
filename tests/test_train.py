"""A short seeded training run: it learns, and it is repeatable."""

from __future__ import annotations

import torch

from lrp_engine.train import train_mnist


def test_short_seeded_run_learns_and_repeats() -> None:
    lines: list[str] = []
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    model_a, acc_a = train_mnist("lenet", epochs=2, seed=0, limit=800, log=lines.append)
    model_b, acc_b = train_mnist("lenet", epochs=2, seed=0, limit=800, log=lambda s: None)
    assert len(lines) == 2 and all("test acc" in line for line in lines)
    assert not model_a.training
    assert acc_a > 0.5  # chance is 0.1; this run reaches about 0.8
    assert acc_a == acc_b
    sa, sb = model_a.state_dict(), model_b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.get_num_threads() == threads  # global settings restored
    assert torch.are_deterministic_algorithms_enabled() == det


def test_different_seed_gives_different_weights() -> None:
    m1, _ = train_mnist("mlp", epochs=1, seed=0, limit=256, log=lambda s: None)
    m2, _ = train_mnist("mlp", epochs=1, seed=1, limit=256, log=lambda s: None)
    assert not torch.equal(m1.model.dense1.weight, m2.model.dense1.weight)
