"""Loading users' checkpoints: formats, wrappers, prefixes, class counts, and every error,
including a malicious pickle that must never run."""

from __future__ import annotations

import io
import os
import pickle
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as safetensors_bytes

from lrp_engine.checkpoints import CheckpointError, load_checkpoint, match_prefixes
from lrp_engine.models import zoo
from lrp_engine.models.lenet import LeNet
from lrp_engine.mri_demo import CLASS_NAMES, MRIDemoNet

ROOT = Path(__file__).resolve().parents[1]


def torch_bytes(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def lenet_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return LeNet(num_classes=10).state_dict()


def assert_same_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    got = model.state_dict()
    assert got.keys() == state.keys()
    for k, v in state.items():
        torch.testing.assert_close(got[k], v.to(got[k].dtype))


# -- formats and wrappers ------------------------------------------------------------------

def test_plain_state_dict_bytes(lenet_state) -> None:
    loaded = load_checkpoint(torch_bytes(lenet_state), "lenet")
    assert loaded.arch == "lenet" and loaded.num_classes == 10
    assert loaded.class_names == [str(d) for d in range(10)]
    assert not loaded.model.training
    assert_same_weights(loaded.model, lenet_state)
    assert any("model.final.weight" in n for n in loaded.notes)


def test_our_lenet_keys_keep_their_model_prefix(lenet_state) -> None:
    assert all(k.startswith("model.") for k in lenet_state)
    stripped, prefixes = match_prefixes(lenet_state, set(lenet_state))
    assert prefixes == [] and stripped.keys() == lenet_state.keys()


@pytest.mark.parametrize("wrap", ["state_dict", "model", "model_state_dict"])
def test_common_wrappers(lenet_state, wrap) -> None:
    blob = torch_bytes({wrap: lenet_state, "epoch": 7, "optimizer": {"lr": 0.1}})
    loaded = load_checkpoint(blob, "lenet")
    assert_same_weights(loaded.model, lenet_state)
    assert any(wrap in n for n in loaded.notes)


@pytest.mark.parametrize("prefix", ["module.", "net.", "backbone.", "module.model."])
def test_prefixes_are_stripped(lenet_state, prefix) -> None:
    # "module.model." → strip "module." only: our LeNet's own keys start with "model."
    state = {prefix + k.removeprefix("model.") if prefix.endswith("model.") else prefix + k: v
             for k, v in lenet_state.items()}
    loaded = load_checkpoint(torch_bytes(state), "lenet")
    assert_same_weights(loaded.model, lenet_state)
    assert any("prefix" in n for n in loaded.notes)


def test_safetensors_by_content_not_name(lenet_state, tmp_path) -> None:
    data = safetensors_bytes(lenet_state)
    path = tmp_path / "weights.bin"  # misleading extension
    path.write_bytes(data)
    for source in (data, path, str(path)):
        loaded = load_checkpoint(source, "lenet")
        assert_same_weights(loaded.model, lenet_state)
        assert "read as safetensors" in loaded.notes


def test_half_precision_weights_are_converted(lenet_state) -> None:
    loaded = load_checkpoint(torch_bytes({k: v.half() for k, v in lenet_state.items()}),
                             "lenet")
    assert loaded.model.model.conv1.weight.dtype == torch.float32
    assert any("float16" in n for n in loaded.notes)


def test_seed_003_vgg16_wrapper_with_four_classes() -> None:
    """The fine-tuning notebook saves ``CNNModel`` whose VGG sits in ``self.vgg16``."""
    model = zoo.build("vgg16", num_classes=4)
    state = {"vgg16." + k: v for k, v in model.state_dict().items()}
    loaded = load_checkpoint(torch_bytes(state), "vgg16", class_names=list("ABCD"))
    assert loaded.num_classes == 4 and loaded.class_names == ["A", "B", "C", "D"]
    assert "removed key prefix 'vgg16.'" in loaded.notes
    torch.testing.assert_close(loaded.model.classifier[6].weight, model.classifier[6].weight)
    with pytest.raises(CheckpointError, match="the checkpoint has 4 output classes, you "
                                              "chose 10"):
        load_checkpoint(torch_bytes(state), "vgg16", num_classes=10)


def test_bundled_efficientnet_file_through_the_loader() -> None:
    loaded = load_checkpoint(zoo.EFFICIENTNET_LITE0_FILE, "efficientnet_lite0")
    assert loaded.num_classes == 1000 and loaded.class_names[285] == "Egyptian cat"
    assert any("ImageNet" in n for n in loaded.notes)


def test_missing_batchnorm_counters_are_tolerated() -> None:
    state = MRIDemoNet().state_dict()
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    loaded = load_checkpoint(torch_bytes(old), "mri_demo")
    assert loaded.class_names == list(CLASS_NAMES)
    assert any("num_batches_tracked" in n for n in loaded.notes)


# -- errors --------------------------------------------------------------------------------

def test_wrong_number_of_classes(lenet_state) -> None:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(torch_bytes(lenet_state), "lenet", num_classes=4)
    assert str(info.value) == "the checkpoint has 10 output classes, you chose 4"


def test_class_names_must_match(lenet_state) -> None:
    with pytest.raises(CheckpointError, match="3 class names given for a model with 10"):
        load_checkpoint(torch_bytes(lenet_state), "lenet", class_names=["a", "b", "c"])


def test_other_architecture_lists_missing_and_unexpected_keys(lenet_state) -> None:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(torch_bytes(lenet_state), "mri_demo")
    msg = str(info.value)
    assert "missing key(s): features.0.weight" in msg
    assert "unexpected key(s): model.conv1.weight" in msg
    assert "and 19 more" in msg  # 24 missing, five shown


def test_wrong_shapes_are_named(lenet_state) -> None:
    bad = dict(lenet_state)
    bad["model.conv2.weight"] = torch.zeros(48, 24, 3, 3)
    with pytest.raises(CheckpointError, match=r"model.conv2.weight \[48, 24, 3, 3\] "
                                              r"\(expected \[48, 24, 5, 5\]\)"):
        load_checkpoint(torch_bytes(bad), "lenet")


def test_pickled_whole_model_is_refused() -> None:
    blob = torch_bytes(LeNet())
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(blob, "lenet")
    msg = str(info.value)
    assert msg.startswith("this file contains a pickled Python object, not a state dict")
    assert "lrp_engine.models.lenet.LeNet" in msg and "model.state_dict()" in msg


class _Evil:
    """Unpickling this would run ``open(marker, "w")``, creating the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


class _EvilShell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("make", [
    lambda m: pickle.dumps(_Evil(m), protocol=2),
    lambda m: pickle.dumps(_EvilShell(m), protocol=2),
    lambda m: pickle.dumps(_EvilShell(m)),  # newest protocol
    lambda m: torch_bytes({"state_dict": _Evil(m)}),  # inside a torch zip
    lambda m: torch_bytes(_EvilShell(m)),
], ids=["open-p2", "system-p2", "system-latest", "zip-open", "zip-system"])
def test_malicious_pickle_never_runs(tmp_path, make) -> None:
    marker = tmp_path / "pwned"
    blob = make(marker)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="pickled Python object"):
        load_checkpoint(blob, "lenet")
    assert not marker.exists()
    path = tmp_path / "evil.pt"
    path.write_bytes(blob)
    with pytest.raises(CheckpointError):
        load_checkpoint(path, "lenet")
    assert not marker.exists()


def test_system_call_is_named() -> None:
    with pytest.raises(CheckpointError, match="`posix.system`|`nt.system`"):
        load_checkpoint(pickle.dumps(_EvilShell(Path("x")), protocol=2), "lenet")


@pytest.mark.parametrize("data,match", [
    (b"", "the file is empty"),
    (b"epoch,loss\n1,0.5\n2,0.3\n", "looks like a text file"),
    (bytes(range(7, 250)) * 4, "binary data of an unknown kind"),
    (b"PK\x03\x04" + bytes(100), "not a readable PyTorch checkpoint"),
])
def test_not_a_checkpoint(data, match) -> None:
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(data, "lenet")


def test_random_bytes_are_not_a_checkpoint() -> None:
    g = torch.Generator().manual_seed(3)
    data = bytes(torch.randint(0, 256, (4096,), generator=g, dtype=torch.uint8).tolist())
    with pytest.raises(CheckpointError, match="not a"):
        load_checkpoint(data, "lenet")


def test_not_a_state_dict() -> None:
    with pytest.raises(CheckpointError, match="single tensor"):
        load_checkpoint(torch_bytes(torch.zeros(3)), "lenet")
    with pytest.raises(CheckpointError, match="holds a list"):
        load_checkpoint(torch_bytes([1, 2, 3]), "lenet")


def test_broken_safetensors_headers(lenet_state) -> None:
    data = safetensors_bytes(lenet_state)
    (n,) = struct.unpack("<Q", data[:8])
    with pytest.raises(CheckpointError, match="header is not valid JSON"):
        load_checkpoint(data[:8] + b"{not json" + data[17:], "lenet")
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(data[: 8 + n // 2], "lenet")
    with pytest.raises(CheckpointError, match="broken safetensors file"):
        load_checkpoint(data[: 8 + n + 10], "lenet")  # header fine, tensors cut off
    with pytest.raises(CheckpointError, match="does not start with a safetensors header"):
        load_checkpoint(b"\x00" * 64, "lenet", filename="model.safetensors")


def test_missing_file_and_unknown_arch(tmp_path, lenet_state) -> None:
    with pytest.raises(CheckpointError, match="file not found"):
        load_checkpoint(tmp_path / "nope.pt", "lenet")
    with pytest.raises(ValueError, match="unknown architecture"):
        load_checkpoint(torch_bytes(lenet_state), "resnet")
