"""LeNet / MLP definitions, the registry, and the bundled trained weights."""

from __future__ import annotations

import pytest
import torch

from lrp_engine.models import BUNDLED, MLP, LeNet, build_model, bundled_path, load_bundled
from lrp_engine.train import bundled_test_accuracy

LENET_KEYS = [f"model.{n}.{p}" for n in ("conv1", "conv2", "dense3", "final")
              for p in ("weight", "bias")]
MLP_KEYS = [f"model.{n}.{p}" for n in ("dense1", "dense2", "final") for p in ("weight", "bias")]


def test_lenet_structure_and_shapes() -> None:
    m = LeNet().eval()
    names = [n for n, _ in m.model.named_children()]
    assert names == ["conv1", "relu1", "maxpool1", "conv2", "relu2", "dropout2", "maxpool2",
                     "flatten", "dense3", "relu3", "dropout3", "final"]
    assert isinstance(m.model.dropout2, torch.nn.Dropout2d)
    assert isinstance(m.model.dropout3, torch.nn.Dropout)
    assert list(m.state_dict()) == LENET_KEYS
    assert m(torch.randn(3, 1, 32, 32)).shape == (3, 10)
    assert LeNet(num_classes=4)(torch.randn(2, 1, 32, 32)).shape == (2, 4)
    assert LeNet(dropout=0.25).model.dropout3.p == 0.25


def test_mlp_structure_and_shapes() -> None:
    m = MLP().eval()
    assert [n for n, _ in m.model.named_children()] == ["flatten", "dense1", "relu1", "dense2",
                                                        "relu2", "final"]
    assert list(m.state_dict()) == MLP_KEYS
    assert m(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert m(torch.randn(3, 784)).shape == (3, 10)


def test_build_model_registry() -> None:
    assert isinstance(build_model("lenet"), LeNet)
    assert isinstance(build_model("mlp", num_classes=3), MLP)
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("resnet-9000")
    with pytest.raises(ValueError, match="no bundled model"):
        load_bundled("resnet-9000")


@pytest.mark.parametrize(("name", "keys"), [("lenet", LENET_KEYS), ("mlp", MLP_KEYS)])
def test_bundled_weights_are_plain_tensors_and_strict(name: str, keys: list[str]) -> None:
    state = torch.load(bundled_path(name), map_location="cpu", weights_only=True)
    assert list(state) == keys
    assert all(isinstance(v, torch.Tensor) and v.dtype == torch.float32 for v in state.values())
    model = load_bundled(name)
    assert not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k])


@pytest.mark.parametrize(("name", "minimum"), [("lenet", 0.97), ("mlp", 0.95)])
def test_bundled_accuracy_on_held_out_digits(name: str, minimum: float) -> None:
    meta = BUNDLED[name]
    acc = bundled_test_accuracy(load_bundled(name), meta["input_size"])
    assert acc >= minimum
    assert acc == pytest.approx(meta["accuracy"], abs=1e-3)  # the recorded number is true
    assert meta["classes"] == tuple("0123456789")
