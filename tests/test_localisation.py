"""Localisation metrics on hand-made maps, and the trained demo model's heatmaps against the
synthetic lesion masks."""

from __future__ import annotations

import math

import pytest
import torch

from lrp_engine import mri_demo as md
from lrp_engine.localisation import (
    GRADIENT_X_INPUT,
    RANDOM,
    dilate,
    format_table,
    localisation_table,
    main,
    pointing_game,
    relevance_mass_accuracy,
)


def test_relevance_all_inside_gives_rma_one() -> None:
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, 2:5, 2:5] = True
    rel = torch.zeros(1, 3, 8, 8)
    rel[0, :, 3, 3] = 1.0
    rel[0, 0, 0, 0] = -5.0  # negative relevance outside does not count
    assert relevance_mass_accuracy(rel, mask).tolist() == [1.0]


def test_rma_is_the_positive_share_inside_channel_summed() -> None:
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[:, 0, 0] = True
    rel = torch.zeros(2, 2, 4, 4)
    rel[0, 0, 0, 0], rel[0, 1, 0, 0] = 1.0, 2.0  # 3 inside
    rel[0, 0, 3, 3] = 1.0  # 1 outside
    rel[1, 0, 0, 0], rel[1, 1, 0, 0] = 1.0, -1.0  # sums to 0 inside
    rel[1, 0, 2, 2] = 4.0
    torch.testing.assert_close(relevance_mass_accuracy(rel, mask), torch.tensor([0.75, 0.0]))
    none_positive = -torch.ones(1, 1, 4, 4)
    assert math.isnan(float(relevance_mass_accuracy(none_positive, mask[:1])[0]))


def test_pointing_game_hit_miss_and_tolerance() -> None:
    mask = torch.zeros(3, 6, 6, dtype=torch.bool)
    mask[:, 1:3, 1:3] = True
    rel = torch.zeros(3, 6, 6)
    rel[0, 2, 2] = 1.0  # hit
    rel[1, 5, 5] = 1.0  # far miss
    rel[2, 3, 3] = 1.0  # one pixel outside
    assert pointing_game(rel, mask).tolist() == [True, False, False]
    assert pointing_game(rel, mask, tolerance=1).tolist() == [True, False, True]
    assert pointing_game(rel[:, None], mask[:, None]).tolist() == [True, False, False]
    assert dilate(mask, 1)[0].sum() == 16


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        relevance_mass_accuracy(torch.ones(2, 4, 4), torch.ones(2, 5, 5, dtype=torch.bool))


@pytest.fixture(scope="module")
def lesions() -> tuple[torch.nn.Module, md.LesionBatch]:
    batch = md.held_out_set(48)
    keep = batch.labels > 0
    sub = md.LesionBatch(batch.images[keep], batch.masks[keep], batch.labels[keep],
                         batch.slice_index[keep])
    return md.load_mri_demo_model(), sub


def test_trained_heatmaps_point_at_the_lesion(lesions) -> None:
    model, b = lesions
    rows = localisation_table(model, b.images, b.masks, b.labels,
                              ["epsilon", "epsilon-gamma-box"])
    by = {r["method"]: r for r in rows}
    assert list(by) == ["epsilon", "epsilon-gamma-box", GRADIENT_X_INPUT, RANDOM]
    assert all(r["n"] == len(b) == 36 for r in rows)
    area = float(b.masks.float().mean())
    assert by[RANDOM]["rma"] == pytest.approx(area, abs=0.01)
    for m in ("epsilon", "epsilon-gamma-box", GRADIENT_X_INPUT):
        assert by[m]["pointing"] >= 0.9 > by[RANDOM]["pointing"] + 0.5
        assert by[m]["rma"] > 20 * by[RANDOM]["rma"]
    assert by["epsilon-gamma-box"]["rma"] > 0.6  # measured 0.73 on 150 images
    text = format_table(rows, area)
    assert "| epsilon-gamma-box |" in text and "mask area" in text


def test_empty_masks_are_refused(lesions) -> None:
    model, b = lesions
    with pytest.raises(ValueError, match="non-empty mask"):
        localisation_table(model, b.images[:2], torch.zeros(2, 96, 96, dtype=torch.bool),
                           b.labels[:2], ["epsilon"])


def test_command_line(capsys) -> None:
    assert main(["--images", "16", "--presets", "epsilon", "--tolerance", "1"]) == 0
    out = capsys.readouterr().out
    assert "| epsilon |" in out and "| random |" in out and "not diagnostic" in out
    with pytest.raises(ValueError, match="unknown composite"):
        main(["--presets", "nope"])


def test_relevance_mass_accuracy_and_pointing_game() -> None:
    rel = torch.zeros(3, 2, 4, 4)
    rel[0, 0, 0, 0] = 3.0   # inside
    rel[0, 1, 3, 3] = 1.0   # outside
    rel[0, 0, 1, 1] = -5.0  # negative relevance is ignored
    rel[1, 0, 3, 3] = 2.0   # all positive mass outside
    rel[1, 1, 0, 0] = 1.0
    rel[1, 0, 0, 0] = -0.5  # channel sum at (0, 0): 0.5 < 2 → argmax outside
    rel[2] = -1.0           # no positive relevance
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[:2, :2] = True
    rma = relevance_mass_accuracy(rel, mask)
    torch.testing.assert_close(rma[:2], torch.tensor([0.75, 0.5 / 2.5]))
    assert math.isnan(float(rma[2]))
    assert pointing_game(rel, mask).tolist() == [True, False, True]  # ties: first pixel
    per_image = mask.expand(3, 1, 4, 4)
    torch.testing.assert_close(relevance_mass_accuracy(rel.sum(1), per_image), rma,
                               equal_nan=True)
    empty = per_image.clone()
    empty[0] = False  # e.g. a "no lesion" image: undefined, not 0
    rma_empty = relevance_mass_accuracy(rel, empty)
    assert math.isnan(float(rma_empty[0])) and float(rma_empty[1]) == pytest.approx(0.2)
    assert not bool(pointing_game(rel, empty)[0])


def test_cli_routes_localisation(capsys: pytest.CaptureFixture[str]) -> None:
    from lrp_engine.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["localisation", "--help"])
    assert exc.value.code == 0
    assert "pointing game" in capsys.readouterr().out
