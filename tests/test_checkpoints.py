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
    with pytest.raises(CheckpointError, match=r"`posix.system`|`nt.system`"):
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


# -- torchvision architectures -------------------------------------------------------------

@pytest.fixture(scope="module")
def tv():
    from lrp_engine.torchvision_compat import import_torchvision

    return import_torchvision()


def zeros_state(arch: str, num_classes: int) -> dict[str, torch.Tensor]:
    """A state dict of ``arch`` full of zeros (no random init: fast for the big ones)."""
    return {k: torch.zeros(v.shape, dtype=v.dtype)
            for k, v in zoo.build_empty(arch, num_classes).state_dict().items()}


@pytest.mark.parametrize("arch,size", [
    ("resnet18", 64), ("densenet121", 64), ("efficientnet_b0", 64), ("mobilenet_v3_small", 64),
    ("convnext_tiny", 64), ("vit_b_16", 224), ("swin_t", 64), ("squeezenet1_1", 64),
    ("googlenet", 64), ("regnet_y_400mf", 64)])
def test_torchvision_state_dicts_load_to_the_same_logits(tv, arch, size) -> None:
    torch.manual_seed(0)
    extra = {"aux_logits": False, "init_weights": False} if arch == "googlenet" else {}
    ref = tv.models.get_model(arch, weights=None, num_classes=7, **extra).eval()
    loaded = load_checkpoint(torch_bytes(ref.state_dict()), arch)
    assert loaded.num_classes == 7 and loaded.class_names[6] == "class 6"
    assert not loaded.model.training
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), ref(x))


@pytest.mark.parametrize("arch,key", [
    ("alexnet", "classifier.6.weight"), ("vgg16_bn", "classifier.6.weight"),
    ("wide_resnet50_2", "fc.weight"), ("squeezenet1_0", "classifier.1.weight"),
    ("inception_v3", "fc.weight"), ("mobilenet_v2", "classifier.1.weight"),
    ("mnasnet0_5", "classifier.1.weight"), ("shufflenet_v2_x0_5", "fc.weight"),
    ("efficientnet_v2_s", "classifier.1.weight"), ("regnet_x_400mf", "fc.weight"),
    ("vit_b_32", "heads.head.weight"), ("swin_v2_t", "head.weight"),
    ("maxvit_t", "classifier.5.weight"), ("lenet", "model.final.weight"),
    ("efficientnet_lite0", "_fc.weight")])
def test_the_output_layer_of_every_family(arch, key) -> None:
    from lrp_engine.checkpoints import output_weight_key

    assert output_weight_key(arch) == key


def test_seed_003_vgg16_wrapper_with_four_classes(tv) -> None:
    """The fine-tuning notebook saves ``CNNModel`` whose VGG sits in ``self.vgg16``
    (``models.vgg16()``, classifier[6] replaced by 4 classes): its keys start with
    ``vgg16.``; it loads into torchvision's ``vgg16`` and gives the same logits."""
    class CNNModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vgg16 = tv.models.vgg16()
            self.vgg16.classifier[6] = torch.nn.Linear(4096, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.vgg16(x)

    torch.manual_seed(1)
    ref = CNNModel().eval()
    state = torch_bytes(ref.state_dict())
    assert all(k.startswith("vgg16.") for k in ref.state_dict())
    loaded = load_checkpoint(state, "vgg16", class_names=list("ABCD"))
    assert loaded.num_classes == 4 and loaded.class_names == ["A", "B", "C", "D"]
    assert "removed key prefix 'vgg16.'" in loaded.notes
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), ref(x))
    with pytest.raises(CheckpointError, match="the checkpoint has 4 output classes, you "
                                              "chose 10"):
        load_checkpoint(state, "vgg16", num_classes=10)


def test_a_checkpoint_of_a_sibling_architecture_is_named() -> None:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(torch_bytes(zeros_state("resnet18", 7)), "resnet50")
    msg = str(info.value)
    assert msg.startswith("the checkpoint does not fit the ResNet-50 architecture")
    assert "wrong shape" in msg and "It fits ResNet-18 ('resnet18'): choose that" in msg


def test_other_family_and_class_count_mismatch_for_torchvision_names(lenet_state) -> None:
    with pytest.raises(CheckpointError, match=r"does not fit the DenseNet-121 architecture; "
                                              r"\d+ missing key\(s\): features.conv0.weight"):
        load_checkpoint(torch_bytes(lenet_state), "densenet121")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(torch_bytes(zeros_state("mobilenet_v3_small", 7)),
                        "mobilenet_v3_small", num_classes=1000)
    assert str(info.value) == "the checkpoint has 7 output classes, you chose 1000"


def test_auxiliary_classifiers_are_dropped_and_the_class_count_is_fc_s(tv) -> None:
    with zoo._weights_on_meta():
        full = tv.models.inception_v3(weights=None, aux_logits=True, init_weights=False,
                                      num_classes=5)
    state = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in full.state_dict().items()}
    state["AuxLogits.fc.weight"] = torch.zeros(1000, 768)  # an untouched ImageNet aux head
    state["AuxLogits.fc.bias"] = torch.zeros(1000)
    loaded = load_checkpoint(torch_bytes(state), "inception_v3")
    assert loaded.num_classes == 5
    assert any("auxiliary classifier (AuxLogits" in n for n in loaded.notes)
    assert loaded.model.AuxLogits is None


def test_safetensors_without_module_versions_load_into_mnasnet() -> None:
    """torchvision's MNASNet refuses a state dict without its recorded version; safetensors
    files record none, so the model's own version is used."""
    loaded = load_checkpoint(safetensors_bytes(zeros_state("mnasnet0_5", 3)), "mnasnet0_5")
    assert loaded.num_classes == 3 and "read as safetensors" in loaded.notes


def test_1000_torchvision_outputs_get_the_weights_categories() -> None:
    loaded = load_checkpoint(torch_bytes(zeros_state("squeezenet1_1", 1000)), "squeezenet1_1")
    assert loaded.class_names[281] == "tabby" and len(loaded.class_names) == 1000
    assert "1000 outputs: using the ImageNet class names" in loaded.notes
