"""lrp_engine.operator_models: the operator's TOML list of their own Python models."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from lrp_engine.models.card import CARD_PRESETS
from lrp_engine.operator_models import OperatorModelError, build, read_config

NET = textwrap.dedent('''
    from torch import nn

    class Net(nn.Module):
        def __init__(self, num_classes=3):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                                          nn.AdaptiveAvgPool2d(4))
            self.head = nn.Linear(64, num_classes)

        def forward(self, x):
            return self.head(self.features(x).flatten(1))
''')


def write_operator_files(root: Path, classes: int = 3) -> Path:
    """net.py, its weights and models.toml under ``root``; returns the TOML path."""
    (root / "net.py").write_text(NET)
    import importlib.util

    spec = importlib.util.spec_from_file_location("_test_net", root / "net.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    torch.save(mod.Net(classes).state_dict(), root / "net.pt")
    toml = root / "models.toml"
    toml.write_text(textwrap.dedent(f'''
        [[model]]
        name = "my_net"
        label = "My scan net"
        code = "net.py:Net"
        weights = "net.pt"
        kwargs = {{num_classes = {classes}}}
        class_names = ["a", "b", "c"]
        [model.preprocessing]
        size = [64, 64]
        resize = "pad-square"
        channels = 1
        mean = []
        std = []
        windowing = "percentile"
    '''))
    return toml


def test_read_and_build(tmp_path: Path) -> None:
    (m,) = read_config(write_operator_files(tmp_path))
    assert m.name == "my_net" and m.class_names == ("a", "b", "c")
    assert m.preprocessing.size == (64, 64) and m.preprocessing.channels == 1
    model = build(m)
    assert model(torch.zeros(1, 1, 64, 64)).shape == (1, 3)


@pytest.mark.parametrize("text, words", [
    ("[[model]]\nname = 'x y'\ncode = 'a.py:A'\nweights = 'w'\n", "name must be"),
    ("[[model]]\nname = 'x'\ncode = 'a.py'\nweights = 'w'\n", "code must be"),
    ("[[model]]\nname = 'x'\ncode = 'a.py:A'\nweights = 'w'\nrun = 'rm -rf /'\n",
     "unknown key"),
    ("[[model]]\nname = 'x'\ncode = 'a.py:A'\nweights = 'w'\npreprocessing = 'nope'\n",
     "unknown preset"),
    ("not = [valid", "not valid TOML"),
])
def test_bad_configs_are_plain_errors(tmp_path: Path, text: str, words: str) -> None:
    p = tmp_path / "m.toml"
    p.write_text(text)
    with pytest.raises(OperatorModelError, match=words):
        read_config(p)


def test_missing_files_and_wrong_weights(tmp_path: Path) -> None:
    toml = write_operator_files(tmp_path)
    (m,) = read_config(toml)
    torch.save({"head.weight": torch.zeros(2, 2)}, tmp_path / "net.pt")
    with pytest.raises(OperatorModelError, match="do not load"):
        build(m)
    (tmp_path / "net.py").unlink()
    with pytest.raises(OperatorModelError, match="does not exist"):
        build(m)
    assert CARD_PRESETS  # the presets are importable beside the loader
