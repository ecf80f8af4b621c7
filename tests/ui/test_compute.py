"""ui.compute's thread policy: small CPU work on one intra-op thread, big work on all, the
previous setting restored, other threads untouched."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from lrp_engine.models import load_bundled
from lrp_explorer.ui import compute


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _big_convnet() -> nn.Module:
    """~2.5 G multiply-accumulates per 256×256 image: above the one-thread bound."""
    return nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)).eval()


def test_lenet_runs_on_one_thread_and_restores(two_threads) -> None:
    model = load_bundled("lenet").eval()
    x = torch.zeros(1, 1, 32, 32)
    with compute.cpu_threads_for(model, x, batch=10) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_big_work_keeps_all_threads(two_threads) -> None:
    model, x = _big_convnet(), torch.zeros(1, 3, 256, 256)
    with compute.cpu_threads_for(model, x) as n:
        assert n == 2 == torch.get_num_threads()
    # the same small model, batched far enough, is big work too
    lenet = load_bundled("lenet").eval()
    with compute.cpu_threads_for(lenet, torch.zeros(1, 1, 32, 32), batch=1000) as n:  # 3.6 G
        assert n == 2


def test_unsupported_model_is_left_to_the_engine(two_threads) -> None:
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)[:, :4] * self.w

    with compute.cpu_threads_for(Odd(), torch.zeros(1, 1, 2, 2)) as n:
        assert n == 2


def test_setting_is_per_thread(two_threads) -> None:
    """A session's one-thread section does not change another session's threads."""
    inside, other = threading.Event(), []
    release = threading.Event()

    def session() -> None:
        with compute.cpu_threads_for(load_bundled("lenet").eval(), torch.zeros(1, 1, 32, 32)):
            inside.set()
            release.wait(10)

    t = threading.Thread(target=session)
    t.start()
    assert inside.wait(10)
    other.append(torch.get_num_threads())
    release.set()
    t.join()
    assert other == [2]
