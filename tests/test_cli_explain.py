"""``python -m lrp_engine explain`` on generated checkpoints (random weights, no network)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lrp_engine as le
from lrp_engine.cli import main
from lrp_engine.models import zoo
from lrp_engine.models.card import CARD_PRESETS, ModelCard, PreprocessingCard, save_safetensors

ROOT = Path(__file__).resolve().parents[1]
CAT = ROOT / "lrp_engine" / "assets" / "images" / "cat_chelsea.jpg"
DIGIT_CARD = PreprocessingCard(size=(32, 32), resize="stretch", channels=1, mean=(),
                               std=())
NAMES = [f"digit {i}" for i in range(10)]


@pytest.fixture(scope="module")
def lenet() -> torch.nn.Module:
    torch.manual_seed(0)
    return zoo.build("lenet", 10)


@pytest.fixture()
def files(tmp_path: Path, lenet: torch.nn.Module) -> dict[str, Path]:
    paths = {"pt": tmp_path / "lenet.pt", "st": tmp_path / "lenet.safetensors",
             "card": tmp_path / "card.json", "pre": tmp_path / "pre.json",
             "out": tmp_path / "heat.png"}
    torch.save(lenet.state_dict(), paths["pt"])
    card = ModelCard("lenet", 10, DIGIT_CARD, class_names=tuple(NAMES),
                     provenance="random weights for a test")
    paths["st"].write_bytes(save_safetensors(lenet.state_dict(), card))
    paths["card"].write_text(card.to_json())
    paths["pre"].write_text(DIGIT_CARD.to_json())
    return paths


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(["explain", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def _logits(model: torch.nn.Module, card: PreprocessingCard) -> torch.Tensor:
    with torch.no_grad():
        return model(card.to_tensor(Image.open(CAT)))[0]


def test_default_card(files, lenet, capsys) -> None:
    rc, out, err = _run(["--model", "lenet", "--weights", files["pt"], CAT, "-o",
                         files["out"]], capsys)
    assert rc == 0, err
    card = zoo.spec("lenet").preprocessing
    card = card if isinstance(card, PreprocessingCard) else None
    assert "from the default card of lenet" in out
    with Image.open(files["out"]) as img:
        assert img.size == (32, 32) and img.mode == "RGB"
    if card is not None:  # the registry's card: the printed logit is the model's own
        logits = _logits(lenet, card)
        assert f"logit {float(logits.max()):.4g}" in out


def test_model_card_file_and_target(files, lenet, capsys) -> None:
    rc, out, err = _run(["--model", "lenet", "--weights", files["pt"], "--card",
                         files["card"], "--target", 3, "--composite", "epsilon-gamma-box",
                         CAT, "-o", files["out"]], capsys)
    assert rc == 0, err
    logits = _logits(lenet, DIGIT_CARD)
    pred = int(logits.argmax())
    assert f"prediction: 'digit {pred}' (class {pred}), logit {float(logits[pred]):.4g}" in out
    if pred != 3:
        assert f"target: 'digit 3' (class 3), logit {float(logits[3]):.4g}" in out
    r = le.explain(lenet, DIGIT_CARD.to_tensor(Image.open(CAT)), target=3,
                   composite=le.get_composite("epsilon-gamma-box", low=torch.tensor([0.0]),
                                              high=torch.tensor([1.0])))
    assert f"Σ R = {float(r.sum()):.4g}" in out
    assert "stretch to 32×32 · grey · pixels 0…1 · no normalisation" in out


def test_card_from_safetensors_metadata_names_the_model(files, capsys) -> None:
    rc, out, err = _run(["--weights", files["st"], CAT, "-o", files["out"], "--overlay",
                         "--scale", 2], capsys)
    assert rc == 0, err
    assert "from the checkpoint's safetensors metadata" in out and "'digit " in out
    with Image.open(files["out"]) as img:
        assert img.size == (64, 64)


def test_preprocessing_card_file_and_npy_scan(tmp_path, files, capsys) -> None:
    scan = np.random.default_rng(0).gamma(2.0, 300.0, size=(50, 70)).astype(np.float32)
    np.save(tmp_path / "slice.npy", scan)
    pre = tmp_path / "scan.json"
    pre.write_text(CARD_PRESETS["scan slice, percentile window"].replace(size=(32, 32))
                   .to_json())
    rc, out, err = _run(["--model", "lenet", "--weights", files["pt"], "--card", pre,
                         tmp_path / "slice.npy", "-o", files["out"]], capsys)
    assert rc == 0, err
    assert "percentile window" in out


def test_mri_demo(tmp_path, capsys) -> None:
    torch.manual_seed(1)
    model = zoo.build("mri_demo")
    torch.save(model.state_dict(), tmp_path / "mri.pt")
    np.save(tmp_path / "slice.npy", np.random.default_rng(2).normal(size=(80, 96)))
    card = tmp_path / "card.json"
    card.write_text(CARD_PRESETS["scan slice, percentile window"].to_json())
    rc, out, err = _run(["--model", "mri_demo", "--weights", tmp_path / "mri.pt", "--card",
                         card, tmp_path / "slice.npy", "-o", tmp_path / "h.png"], capsys)
    assert rc == 0, err
    assert "prediction:" in out and "Σ R" in out


def _bad_cases(files: dict[str, Path], tmp: Path) -> dict[str, tuple[list, str]]:
    text = tmp / "notes.txt"
    text.write_text("hello, not a checkpoint\n")
    fake_png = tmp / "x.png"
    fake_png.write_text("not a picture")
    garbage = tmp / "garbage.json"
    garbage.write_text("{size: 32")
    wrong_k = tmp / "k4.json"
    wrong_k.write_text(ModelCard("lenet", 4, DIGIT_CARD).to_json())
    wrong_arch = tmp / "arch.json"
    wrong_arch.write_text(ModelCard("vgg16", 10, DIGIT_CARD).to_json())
    rgb = tmp / "rgb.json"
    rgb.write_text(CARD_PRESETS["ImageNet evaluation"].replace(size=(32, 32)).to_json())
    big = tmp / "big.json"
    big.write_text(DIGIT_CARD.replace(size=(64, 64)).to_json())
    huge = tmp / "huge.json"
    huge.write_bytes(b'{"x": "' + b"a" * 5_000_000 + b'"}')
    pt, out = files["pt"], files["out"]
    base = ["--model", "lenet", "--weights", pt, "-o", out]
    return {
        "missing weights": (["--model", "lenet", "--weights", tmp / "no.pt", CAT],
                            "checkpoint not found"),
        "missing image": ([*base, tmp / "no.jpg"], "image not found"),
        "missing card": ([*base, "--card", tmp / "no.json", CAT], "card not found"),
        "text checkpoint": (["--model", "lenet", "--weights", text, CAT], "text file"),
        "bad image": ([*base, fake_png], "not an image"),
        "garbage card": ([*base, "--card", garbage, CAT], "not valid JSON"),
        "5 MB card": ([*base, "--card", huge, CAT], "1 MB"),
        "class count": ([*base, "--card", wrong_k, CAT],
                        "says 4 classes but the checkpoint has 10"),
        "architecture": ([*base, "--card", wrong_arch, CAT],
                         "'vgg16' but the checkpoint was loaded as 'lenet'"),
        "channels": ([*base, "--card", rgb, CAT], "3 channel\\(s\\) but the model's first"),
        "size": ([*base, "--card", big, CAT], "cannot take the card's input \\[1, 1, 64, 64\\]"),
        "target": ([*base, "--target", 10, CAT], "from 0 to 9"),
        "num classes": ([*base, "--num-classes", 4, CAT], "10 output classes, you chose 4"),
        "unknown arch": (["--model", "resnet9000", "--weights", pt, CAT],
                         "unknown architecture"),
        "no arch": (["--weights", pt, CAT], "--model"),
        "folder output": ([*base, CAT, "-o", tmp], "cannot write"),
        "scale": ([*base, CAT, "--scale", 0], "--scale"),
    }


def test_errors_are_one_line_and_exit_2(files, tmp_path, capsys) -> None:
    for name, (argv, match) in _bad_cases(files, tmp_path).items():
        rc, out, err = _run(argv, capsys)
        assert rc == 2, (name, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, err)
        assert __import__("re").search(match, lines[0]), (name, lines[0])


def test_python_m_subprocess(files) -> None:
    """``python -m lrp_engine explain`` (through __main__): a card given as the checkpoint
    is one line on stderr, exit 2, no traceback."""
    cmd = [sys.executable, "-m", "lrp_engine", "explain", "--model", "lenet", "--weights",
           str(files["card"]), str(CAT), "-o", str(files["out"])]
    bad = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1
    assert "text file" in bad.stderr and not files["out"].exists()


def test_resnet18_with_a_fine_tuning_card(tmp_path, capsys) -> None:
    """A torchvision architecture by name, fine-tuned to 4 classes inside a wrapper module
    (keys 'model.…', as the seed 003 notebook's CNNModel), on its notebook's kind of input:
    stretched to a square (64×64 here, for speed; the notebook's 255), no normalisation."""
    torch.manual_seed(0)
    net = zoo.build("resnet18", 4)
    torch.save({"model_state_dict": {f"model.{k}": v for k, v in net.state_dict().items()}},
               tmp_path / "w.pt")
    square = CARD_PRESETS["resize to a square, no normalisation"].replace(size=(64, 64))
    card = ModelCard("resnet18", 4, square,
                     class_names=("glioma", "meningioma", "no tumour", "pituitary"))
    (tmp_path / "card.json").write_text(card.to_json())
    rc, out, err = _run(["--model", "resnet18", "--weights", tmp_path / "w.pt", "--card",
                         tmp_path / "card.json", CAT, "-o", tmp_path / "h.png"], capsys)
    assert rc == 0, err
    with torch.no_grad():
        logits = net.eval()(card.preprocessing.to_tensor(Image.open(CAT)))[0]
    pred = int(logits.argmax())
    assert f"prediction: '{card.class_names[pred]}' (class {pred}), logit " \
           f"{float(logits[pred]):.4g}" in out
    with Image.open(tmp_path / "h.png") as img:
        assert img.size == (64, 64)
    from lrp_engine.cli_explain import default_card

    assert default_card("resnet18") == CARD_PRESETS["ImageNet evaluation"]  # without --card
