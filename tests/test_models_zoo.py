"""The model zoo: the registry (bundled models and every torchvision classifier, listed
without importing torchvision, checked against torchvision's own list and weights), VGG-16's
torchvision layout, pretrained weights (a named file, the hub cache, never online),
EfficientNet-Lite0's bundled weights on a real photo, and LRP through its BatchNorm folds,
depthwise convolutions, ReLU6 and residual sums."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

import lrp_engine as le
from lrp_engine.models import torchvision_models as tvm
from lrp_engine.models import zoo
from lrp_engine.models.card import IMAGENET_MEAN, IMAGENET_STD, card_from_torchvision
from lrp_engine.models.efficientnet_lite import EfficientNetLite0, MBConv, same_padding
from lrp_engine.ops import bn_scale_shift

ROOT = Path(__file__).resolve().parents[1]
CAT = ROOT / "lrp_engine" / "assets" / "images" / "cat_chelsea.jpg"
CAT_CLASSES = {281, 282, 285}  # tabby, tiger cat, Egyptian cat

VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"

# torchvision's vgg16 state-dict layout, written out independently of the registry
_CONVS = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256),
          (12, 256, 256), (14, 256, 256), (17, 256, 512), (19, 512, 512), (21, 512, 512),
          (24, 512, 512), (26, 512, 512), (28, 512, 512)]


def torchvision_vgg16_layout(num_classes: int) -> dict[str, torch.Size]:
    shapes: dict[str, torch.Size] = {}
    for i, cin, cout in _CONVS:
        shapes[f"features.{i}.weight"] = torch.Size([cout, cin, 3, 3])
        shapes[f"features.{i}.bias"] = torch.Size([cout])
    for i, fin, fout in [(0, 25088, 4096), (3, 4096, 4096), (6, 4096, num_classes)]:
        shapes[f"classifier.{i}.weight"] = torch.Size([fout, fin])
        shapes[f"classifier.{i}.bias"] = torch.Size([fout])
    return shapes


def random_state(layout: dict[str, torch.Size], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g) * 0.01 for k, s in layout.items()}


@pytest.fixture(scope="module")
def effnet() -> nn.Module:
    return zoo.load_efficientnet_lite0()


@pytest.fixture(scope="module")
def cat() -> torch.Tensor:
    return zoo.prepare_image(Image.open(CAT), "efficientnet_lite0")


# -- registry ------------------------------------------------------------------------------

@pytest.mark.parametrize("arch,shape", [("lenet", (2, 1, 32, 32)), ("mlp", (2, 1, 28, 28)),
                                        ("efficientnet_lite0", (2, 3, 64, 64)),
                                        ("mri_demo", (2, 1, 96, 96))])
def test_build_gives_eval_models_with_the_requested_classes(arch, shape) -> None:
    model = zoo.build(arch, num_classes=7)
    assert not model.training
    with torch.no_grad():
        assert model(torch.randn(shape)).shape == (2, 7)
    assert zoo.build(arch)(torch.randn(shape)).shape[1] == zoo.spec(arch).default_classes


def test_registry_names_and_unknown_arch() -> None:
    assert {"lenet", "mlp", "vgg16", "efficientnet_lite0", "mri_demo", "resnet50",
            "densenet121", "efficientnet_b0", "convnext_tiny", "vit_b_16",
            "swin_t"} <= set(zoo.ARCHITECTURES)
    assert len(zoo.ARCHITECTURES) == 84
    with pytest.raises(ValueError, match=r"unknown architecture 'resnet'.*vgg16"):
        zoo.build("resnet")
    with pytest.raises(ValueError, match="did you mean resnet50"):
        zoo.spec("resnet5O")


_LISTING = """
import json, sys, time
t = time.perf_counter()
from lrp_engine.models import ARCHITECTURES, preprocessing
rows = [(a, s.label, s.family, s.description, preprocessing(a).size) for a, s in
        ARCHITECTURES.items()]
print(json.dumps({"n": len(rows), "tv": "torchvision" in sys.modules,
                  "s": time.perf_counter() - t}))
"""


def test_listing_every_architecture_imports_no_torchvision_and_builds_nothing() -> None:
    out = subprocess.run([sys.executable, "-c", _LISTING], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["n"] == 84 and got["tv"] is False


def test_the_torchvision_rows_are_torchvision_s_classifiers_and_default_transforms() -> None:
    from lrp_engine.torchvision_compat import import_torchvision

    tv = import_torchvision()
    ours = {a: s for a, s in zoo.ARCHITECTURES.items() if s.torchvision}
    assert set(ours) == set(tv.models.list_models(module=tv.models))
    assert len({s.label for s in ours.values()}) == len(ours)  # labels tell them apart
    for arch, s in ours.items():
        weights = tv.models.get_model_weights(arch).DEFAULT
        expected = card_from_torchvision(weights.transforms())
        card = s.preprocessing
        if arch in ("googlenet", "inception_v3"):  # normalised by 0.5 (transform_input)
            assert card.mean == card.std == (0.5, 0.5, 0.5)
            card = card.replace(mean=IMAGENET_MEAN, std=IMAGENET_STD)
        assert card == expected, arch
        assert s.default_classes == len(weights.meta["categories"]) == 1000
        assert s.family in tvm.FAMILY_TEXT and s.description.endswith(
            f"3×{card.size[0]}×{card.size[1]} RGB")
    assert zoo.preprocessing("inception_v3").size == (299, 299)
    assert zoo.preprocessing("inception_v3").resize_size == 342
    assert zoo.preprocessing("vit_h_14").size == (518, 518)
    assert zoo.spec("resnet50").label == "ResNet-50" and zoo.spec("swin_t").family == "swin"


def test_build_empty_has_every_shape_and_no_memory() -> None:
    """RegNet computes its widths with tensors and Swin its position index: both build."""
    for arch in ("regnet_y_400mf", "swin_t", "vit_h_14", "lenet"):
        model = zoo.build_empty(arch, 7)
        assert not model.training
        assert all(p.is_meta for p in model.parameters())
    assert zoo.build_empty("vit_h_14").encoder.pos_embedding.shape == (1, 37 * 37 + 1, 1280)


def test_preprocessing_bounds_are_black_and_white_in_normalised_units() -> None:
    vgg = zoo.preprocessing("vgg16")
    assert vgg.size == (224, 224) and vgg.channels == 3
    torch.testing.assert_close(torch.tensor(vgg.low),
                               torch.tensor([-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225]))
    torch.testing.assert_close(torch.tensor(vgg.high),
                               torch.tensor([0.515 / 0.229, 0.544 / 0.224, 0.594 / 0.225]))
    eff = zoo.preprocessing("efficientnet_lite0")
    assert eff.low == (-1.0, -1.0, -1.0) and eff.high == (1.0, 1.0, 1.0)
    assert zoo.preprocessing("lenet").low[0] == pytest.approx(-0.1307 / 0.3081)
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(vgg.denormalise(vgg.normalise(x)), x)


def test_imagenet_class_list() -> None:
    assert len(zoo.IMAGENET_CLASSES) == 1000 == len(set(zoo.IMAGENET_WNIDS))
    assert zoo.IMAGENET_CLASSES[0] == "tench, Tinca tinca"
    assert zoo.IMAGENET_CLASSES[281] == "tabby, tabby cat"
    assert zoo.IMAGENET_CLASSES[285] == "Egyptian cat"
    assert zoo.IMAGENET_CLASSES[967] == "espresso"
    assert zoo.IMAGENET_WNIDS == sorted(zoo.IMAGENET_WNIDS)


# -- VGG-16 --------------------------------------------------------------------------------

def test_vgg16_loads_a_torchvision_layout_state_dict_strictly() -> None:
    model = zoo.build("vgg16", num_classes=4)
    layout = torchvision_vgg16_layout(4)
    assert {k: v.shape for k, v in model.state_dict().items()} == layout
    state = random_state(layout)
    model.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 32, 32)  # adaptive pooling: small inputs work
    with torch.no_grad():
        assert model(x).shape == (1, 4)
    assert le.explain(model, x, composite="epsilon").shape == x.shape


@pytest.fixture
def offline(monkeypatch, tmp_path) -> list[str]:
    """No hub cache, and every download fails like a machine without internet."""
    calls: list[str] = []

    def no_network(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    return calls


def test_vgg16_offline_without_a_file_says_both_ways(offline) -> None:
    with pytest.raises(zoo.WeightsUnavailableError) as info:
        zoo.load_pretrained("vgg16", progress=False)
    msg = str(info.value)
    assert offline == [VGG16_URL]
    assert "not on this computer" in msg and "internet" in msg and VGG16_URL in msg
    assert "vgg16-397923af.pth" in msg and "path" in msg and "528 MB" in msg
    assert "name resolution" in msg


def test_offline_message_for_any_torchvision_model(offline, monkeypatch, tmp_path) -> None:
    kwargs: list[dict] = []

    def no_network(url, *args, **kw):
        kwargs.append(kw)
        raise urllib.error.URLError("[Errno 101] Network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(zoo.WeightsUnavailableError) as info:
        zoo.load_pretrained("resnet50", progress=False)
    msg = str(info.value)
    assert msg.startswith("The ImageNet weights of ResNet-50 are not on this computer")
    assert "https://download.pytorch.org/models/resnet50-11ad3fa6.pth, 98 MB" in msg
    assert str(tmp_path / "hub" / "checkpoints") in msg and "Network is unreachable" in msg
    assert "load_pretrained('resnet50', path=...)" in msg
    assert kwargs[0]["check_hash"] is True and kwargs[0]["weights_only"] is True
    with pytest.raises(zoo.WeightsUnavailableError, match=r"ViT-H/14.*2.4 GB"):
        zoo.load_pretrained("vit_h_14", progress=False)


def test_vgg16_uses_the_hub_cache_then_a_named_file_without_downloading(offline, monkeypatch,
                                                                        tmp_path) -> None:
    cached = zoo.weights_cache_file("vgg16")
    assert cached == tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"placeholder")
    read: list[Path] = []
    state = random_state(torchvision_vgg16_layout(1000), seed=1)

    def fake_read(path: Path) -> dict:
        read.append(path)
        return state

    monkeypatch.setattr(zoo, "_read_state_dict", fake_read)
    loaded = zoo.load_pretrained("vgg16", progress=False)
    assert read == [cached] and offline == []
    assert not loaded.model.training
    torch.testing.assert_close(loaded.model.state_dict()["classifier.6.bias"],
                               state["classifier.6.bias"])
    zoo.load_pretrained("vgg16", path=tmp_path / "mine.pth")
    assert read[-1] == tmp_path / "mine.pth" and offline == []


def test_vgg16_missing_named_file_is_reported(tmp_path) -> None:
    with pytest.raises(zoo.WeightsUnavailableError, match="not found"):
        zoo.pretrained_state_dict("vgg16", tmp_path / "nope.pth")


def test_a_local_file_of_random_weights_loads_with_the_categories(offline, tmp_path) -> None:
    from lrp_engine.torchvision_compat import import_torchvision

    tv = import_torchvision()
    torch.manual_seed(0)
    ref = tv.models.squeezenet1_1().eval()
    path = tmp_path / "squeezenet1_1-b8a52dc0.pth"
    torch.save(ref.state_dict(), path)
    loaded = zoo.load_pretrained("squeezenet1_1", path=path)
    assert offline == [] and loaded.num_classes == 1000
    categories = tv.models.SqueezeNet1_1_Weights.DEFAULT.meta["categories"]
    assert loaded.class_names == list(categories) and loaded.class_names[281] == "tabby"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), ref(x))
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    with pytest.raises(zoo.WeightsUnavailableError, match=r"does not hold the SqueezeNet 1.1 "
                                                           r"weights"):
        zoo.load_pretrained("squeezenet1_1", path=tmp_path / "other.pth")


def test_torchvision_s_own_file_layouts_load(offline, tmp_path) -> None:
    """DenseNet's published files use the old ``norm.1`` names; GoogLeNet's carry the
    auxiliary classifiers. GoogLeNet normalised by 0.5 equals torchvision's pretrained
    GoogLeNet (``transform_input=True``) fed ImageNet-normalised pixels."""
    from lrp_engine.torchvision_compat import import_torchvision

    tv = import_torchvision()
    torch.manual_seed(0)
    dense = tv.models.densenet121(num_classes=1000).eval()
    # the published file: layers named norm.1, conv.2, …, no BatchNorm counters
    old = {re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", k): v
           for k, v in dense.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    torch.save(old, tmp_path / "densenet121.pth")
    loaded = zoo.load_pretrained("densenet121", path=tmp_path / "densenet121.pth")
    assert any("old 'norm.1' form" in n for n in loaded.notes)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), dense(x))

    google = tv.models.googlenet(aux_logits=True, init_weights=False, transform_input=True)
    torch.save(google.state_dict(), tmp_path / "googlenet.pth")
    loaded = zoo.load_pretrained("googlenet", path=tmp_path / "googlenet.pth")
    assert any("aux1, aux2" in n for n in loaded.notes)
    google.aux_logits, google.aux1, google.aux2 = False, None, None  # as torchvision does
    pixels = torch.rand(1, 3, 32, 32)
    imagenet = (pixels - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(
        IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.model(zoo.preprocessing("googlenet").normalise(pixels)),
            google.eval()(imagenet), rtol=1e-4, atol=1e-4)


def test_bundled_models_through_load_pretrained() -> None:
    lenet = zoo.load_pretrained("lenet")
    assert lenet.class_names == list("0123456789") and not lenet.model.training
    mri = zoo.load_pretrained("mri_demo")
    assert mri.num_classes == 4 and len(mri.class_names) == 4


# -- EfficientNet-Lite0 --------------------------------------------------------------------

def test_bundled_efficientnet_weights_are_the_recorded_file() -> None:
    import hashlib

    digest = hashlib.sha256(zoo.EFFICIENTNET_LITE0_FILE.read_bytes()).hexdigest()
    assert digest == zoo.EFFICIENTNET_LITE0_SHA256


def test_efficientnet_lite0_structure(effnet) -> None:
    blocks = [b for b in effnet.modules() if isinstance(b, MBConv)]
    assert len(blocks) == 16 and sum(b.residual for b in blocks) == 9
    assert not any(isinstance(m, (nn.SiLU, nn.Sigmoid)) for m in effnet.modules())  # no SE
    assert same_padding(224, 3, 2) == (0, 1) and same_padding(112, 5, 2) == (1, 2)
    assert sum(p.numel() for p in effnet.parameters()) == 4_652_008


def test_efficientnet_lite0_recognises_the_cat(effnet, cat) -> None:
    with torch.no_grad():
        probs = effnet(cat).softmax(1)[0]
    top3 = probs.topk(3).indices.tolist()
    assert top3[0] in CAT_CLASSES
    assert set(top3) == CAT_CLASSES  # tiger cat, Egyptian cat, tabby
    assert float(probs[list(CAT_CLASSES)].sum()) > 0.8


def test_efficientnet_lite0_recognises_the_espresso(effnet) -> None:
    x = zoo.prepare_image(Image.open(ROOT / "lrp_engine" / "assets" / "images" / "coffee.jpg"),
                          "efficientnet_lite0")
    with torch.no_grad():
        assert int(effnet(x).argmax()) == 967  # espresso


def _folded_copy(model: nn.Module) -> nn.Module:
    """Every conv + BatchNorm pair replaced by one conv with folded weight and bias (the
    BatchNorm becomes an Identity): the reference for the engine's implicit folding."""
    out = copy.deepcopy(model)
    pairs = [(out, "_conv_stem", "_bn0"), (out, "_conv_head", "_bn1")]
    for b in out._blocks:
        if b.has_expand:
            pairs.append((b, "_expand_conv", "_bn0"))
        pairs += [(b, "_depthwise_conv", "_bn1"), (b, "_project_conv", "_bn2")]
    for parent, conv_name, bn_name in pairs:
        conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
        scale, shift = bn_scale_shift(bn)
        with torch.no_grad():
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
        conv.bias = nn.Parameter(shift.clone())
        setattr(parent, bn_name, nn.Identity())
    return out.eval()


LRP0 = le.Composite(default=le.Zero(), maxpool="winner")


def test_lrp0_through_folded_batchnorm_equals_an_explicitly_folded_model(effnet, cat) -> None:
    model = copy.deepcopy(effnet).double()
    folded = _folded_copy(model)
    x = torch.nn.functional.interpolate(cat, size=(128, 128), mode="bilinear").double()
    torch.testing.assert_close(folded(x), model(x))
    r_engine = le.explain(model, x, composite=LRP0)
    r_folded = le.explain(folded, x, composite=LRP0)
    scale = float(r_folded.abs().max())
    torch.testing.assert_close(r_engine, r_folded, rtol=1e-4, atol=1e-4 * scale)
    assert float(r_folded.abs().sum()) > 0


def test_residual_sums_conserve_relevance_in_a_bias_free_efficientnet(effnet, cat) -> None:
    """With every bias and BatchNorm shift zeroed, LRP-0 conserves exactly: each layer's
    input sum equals its output sum, the relevance at a residual block's input equals that
    at its output (the sum splits in proportion), and the input total equals the logit."""
    model = copy.deepcopy(effnet).double()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.zero_()
            nn.init.zeros_(m.bias)
    nn.init.zeros_(model._fc.bias)
    x = torch.nn.functional.interpolate(cat, size=(96, 96), mode="bilinear").double()
    ex = le.analyze(model, x, composite=LRP0)
    out = float(ex.output_relevance[0])
    assert out > 0
    assert float(ex.relevance.sum()) == pytest.approx(out, rel=1e-6)
    sums = {layer.name: layer for layer in ex.layers}
    firsts = []
    for i, b in enumerate(model._blocks):
        firsts.append(f"_blocks.{i}._expand_conv" if b.has_expand else
                      f"_blocks.{i}._depthwise_conv")
    firsts.append("_conv_head")
    # a residual block's first layer reads the block input, whose relevance (the recorded
    # input sum) also includes the skip path's share; every other layer conserves on its own
    skip_readers = {firsts[i] for i, b in enumerate(model._blocks) if b.residual}
    for layer in ex.layers:
        if layer.name not in skip_readers:
            assert float(layer.input_relevance[0]) == pytest.approx(
                float(layer.output_relevance[0]), rel=1e-6, abs=1e-9 * out), layer.name
    checked = 0
    for i, b in enumerate(model._blocks):
        if b.residual:
            r_in = float(sums[firsts[i]].input_relevance[0])
            r_out = float(sums[firsts[i + 1]].input_relevance[0])
            assert r_in == pytest.approx(r_out, rel=1e-6, abs=1e-9 * out), i
            checked += 1
    assert checked == 9


def test_efficientnet_explains_with_the_presets(effnet, cat) -> None:
    x = torch.nn.functional.interpolate(cat, size=(64, 64), mode="bilinear")
    for preset in ("epsilon", "epsilon-plus-flat"):
        r = le.explain(effnet, x, composite=preset)
        assert r.shape == x.shape and torch.isfinite(r).all()
    table = le.layer_table(effnet, x)
    assert table.by_name("_conv_stem").fold == "_bn0"
    assert table.by_name("_conv_stem").kind == "Conv2dSame"
    assert sum(1 for i in table if i.fold) == 49  # every conv carries its BatchNorm


def test_efficientnet_lite0_accepts_other_sizes() -> None:
    model = EfficientNetLite0(num_classes=3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 97, 130)).shape == (1, 3)
