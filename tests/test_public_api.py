"""The public API of ``import lrp_engine as le``: every exported name resolves, the
evaluation/localisation/volume functions run from the top level, the import stays light;
layer roles are a str enum and ``ByType`` matches classes."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

import lrp_engine as le


def _tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(3 * 6 * 6, 4)).eval()


PUBLIC = ("pixel_flipping", "region_perturbation", "auc", "aopc", "fraction_flipped",
          "fill_values", "pixel_ranks", "relevance_mass_accuracy", "pointing_game",
          "localisation_table", "random_relevance", "LocalisationRow", "explain_slices",
          "explain_volume", "SliceExplanation", "VolumeExplanation", "Role", "Fill", "Order",
          "Score", "MaxPoolMode", "Baseline", "Predicted", "SliceTarget", "explain", "analyze",
          "ByType", "Sum")
HEAVY = ("streamlit", "plotly", "pydicom", "nibabel", "torchvision")


def test_every_exported_name_resolves_and_all_is_sorted() -> None:
    assert le.__all__ == sorted(le.__all__) and len(set(le.__all__)) == len(le.__all__)
    missing = [n for n in le.__all__ if not hasattr(le, n)]
    assert missing == []
    assert [n for n in PUBLIC if n not in le.__all__] == []


def test_import_does_not_pull_ui_plotting_or_scan_libraries() -> None:
    code = ("import lrp_engine, sys; print(sorted(m for m in "
            f"{HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=300)
    assert out.stdout.strip() == "[]"


def test_pixel_flipping_end_to_end_from_the_top_level() -> None:
    model = _tiny_cnn()
    x = torch.rand(2, 1, 6, 6)
    rel = le.explain(model, x, None, "epsilon")
    curves = le.pixel_flipping(model, x, None, rel, steps=5, pixels_per_step=3, seed=1)
    assert curves.shape == (2, 5) and torch.isfinite(curves).all()
    with torch.no_grad():
        logits = model(x)
    assert torch.allclose(curves[:, 0], logits.max(1).values)
    assert le.auc(curves).shape == (2,) and le.aopc(curves).shape == (2,)
    assert torch.equal(le.aopc(curves), (curves[:, :1] - curves).mean(1))
    with pytest.raises(ValueError, match="unknown score"):
        le.pixel_flipping(model, x, None, rel, steps=2, score="probability")  # type: ignore[arg-type]


def test_region_perturbation_is_pixel_flipping_over_patches() -> None:
    model = _tiny_cnn()
    x = torch.rand(2, 1, 6, 6)
    rel = torch.randn(2, 1, 6, 6)
    got = le.region_perturbation(model, x, 1, rel, region=2, seed=3)
    want = le.pixel_flipping(model, x, 1, rel, steps=10, pixels_per_step=1, patch=2, seed=3)
    assert got.shape == (2, 10) and torch.equal(got, want)  # 3×3 regions, all replaced
    two = le.region_perturbation(model, x, 1, rel, region=4, regions_per_step=2, fill="zero")
    assert two.shape == (2, 3)  # 2×2 regions (edges cut), two per step


def test_localisation_metrics_on_a_tiny_map() -> None:
    rel = torch.zeros(2, 4, 4)
    rel[0, 1, 1], rel[0, 3, 3] = 3.0, 1.0  # 3/4 of the positive relevance in the mask
    rel[1, 3, 3], rel[1, 0, 0] = 2.0, -5.0  # the maximum outside the mask
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[:2, :2] = True
    assert torch.allclose(le.relevance_mass_accuracy(rel, mask), torch.tensor([0.75, 0.0]))
    assert le.pointing_game(rel, mask).tolist() == [True, False]
    assert le.pointing_game(rel, mask, tolerance=2).tolist() == [True, True]


def test_option_aliases_list_the_checked_values() -> None:
    from typing import get_args

    assert get_args(le.Fill) == le.FILLS == ("uniform", "zero", "mean", "blur")
    assert get_args(le.Order) == le.ORDERS and get_args(le.Score) == le.SCORES
    assert get_args(le.MaxPoolMode) == ("avg", "winner")
    with pytest.raises(ValueError, match="maxpool must be one of"):
        le.Composite(maxpool="max")  # type: ignore[arg-type]


class MyConv(nn.Conv2d):
    """A subclass of nn.Conv2d (its class name is not "Conv2d")."""


def test_role_is_a_str_enum_and_exported() -> None:
    table = le.layer_table(_tiny_cnn(), torch.zeros(1, 1, 6, 6))
    roles = [info.role for info in table]
    assert all(isinstance(r, le.Role) for r in roles)
    assert roles == ["linear", "activation", "reshape", "linear"]
    assert roles[0] is le.Role.LINEAR and f"{roles[0]}" == "linear" == str(roles[0])
    assert {"linear": 1}[roles[0]] == 1 and roles[1] in {"activation"}


def test_bytype_matches_subclasses_by_isinstance() -> None:
    net = nn.Sequential(MyConv(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).eval()
    table = le.layer_table(net, torch.zeros(1, 1, 6, 6))
    conv, lin = table.by_name("0"), table.by_name("3")
    assert conv.module_type is MyConv and conv.kind == "MyConv"
    assert le.ByType(nn.Conv2d)(conv, table) and not le.ByType(nn.Conv2d)(lin, table)
    assert le.ByType(nn.Linear)(lin, table) and not le.ByType(nn.Linear)(conv, table)
    # strings name a class exactly, for forms written as text
    assert le.ByType("MyConv")(conv, table) and not le.ByType("Conv2d")(conv, table)
    assert le.First(nn.Conv2d)(conv, table) and le.Last(nn.Conv2d)(conv, table)
    comp = le.Composite([(le.ByType(nn.Conv2d), le.Gamma(0.5))], default=le.Epsilon(0.1))
    assert comp.assign(table) == {"0": le.Gamma(0.5), "3": le.Epsilon(0.1)}


def test_bytype_tells_apart_classes_of_the_same_name() -> None:
    Conv2d = type("Conv2d", (nn.Linear,), {})  # a Linear named like a convolution
    net = nn.Sequential(nn.Flatten(), Conv2d(4, 3)).eval()
    table = le.layer_table(net, torch.zeros(1, 4))
    info = table.by_name("1")
    assert not le.ByType(nn.Conv2d)(info, table) and le.ByType(nn.Linear)(info, table)


def test_bytype_sum_selects_residual_sums() -> None:
    class Res(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.out = nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.a(x) + self.b(x))

    table = le.layer_table(Res().eval(), torch.zeros(1, 3))
    sums = [i for i in table if le.ByType(le.Sum)(i, table)]
    assert [i.role for i in sums] == [le.Role.SUM] and sums[0].module_type is le.Sum
