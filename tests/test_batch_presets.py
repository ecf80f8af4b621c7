"""The two old commands as batch presets: the same tables as the functions they ran before
(``run_pixel_flipping_experiment`` + ``format_summary``; ``localisation_table`` +
``format_table``), computed here side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lrp_engine.batch import ResultsFolder
from lrp_engine.batch.presets import (
    localisation_config,
    localisation_facts,
    run_localisation_batch,
    run_pixel_flipping_batch,
)
from lrp_engine.experiment import (
    PixelFlippingConfig,
    format_summary,
    run_pixel_flipping_experiment,
)
from lrp_engine.localisation import format_table, localisation_table


def _no_time(table: str) -> list[str]:
    """A localisation table without its time column."""
    return [line.rsplit("|", 2)[0] for line in table.splitlines()]


def test_pixel_flipping_experiment_through_batch_gives_the_same_table(tmp_path: Path) -> None:
    cfg = PixelFlippingConfig(n_images=20, n_samples=8, steps=8, chunk_images=8)
    old = run_pixel_flipping_experiment(cfg)
    new, report = run_pixel_flipping_batch(cfg, tmp_path / "pf", quiet=True, plots=False)
    assert format_summary(new) == format_summary(old)
    assert list(new.curves) == list(old.curves)
    for k in old.curves:
        np.testing.assert_array_equal(new.curves[k], old.curves[k], err_msg=k)
    np.testing.assert_array_equal(new.targets, old.targets)
    np.testing.assert_array_equal(new.fraction_flipped, old.fraction_flipped)
    assert report.n_items == 20 and report.calls == 3  # the experiment's chunks of 8
    assert set(new.timings) >= {"lrp", "blrp", "gradient_x_input", "pixel_flipping"}
    # the same command again resumes (nothing to do); other settings replace the folder
    again, r2 = run_pixel_flipping_batch(cfg, tmp_path / "pf", quiet=True, plots=False)
    assert r2.calls == 0 and format_summary(again) == format_summary(old)
    other = PixelFlippingConfig(n_images=4, n_samples=2, steps=4, chunk_images=8)
    small, r3 = run_pixel_flipping_batch(other, tmp_path / "pf", quiet=True, plots=False)
    assert r3.n_done_before == 0 and small.n_images == 4
    assert ResultsFolder(tmp_path / "pf").config.steps == 4
    with np.load(tmp_path / "pf" / "curves.npz") as z:
        assert z["lrp"].shape == (4, 4)


def test_localisation_through_batch_gives_the_same_rows(tmp_path: Path) -> None:
    from lrp_engine.mri_demo import held_out_set, load_mri_demo_model

    presets = ["epsilon", "epsilon-gamma-box"]
    model = load_mri_demo_model()
    batch = held_out_set(30)
    keep = batch.labels > 0
    images, masks, labels = batch.images[keep], batch.masks[keep], batch.labels[keep]
    old = localisation_table(model, images, masks, labels, presets)
    new, report, folder = run_localisation_batch(
        localisation_config(30, presets, out=tmp_path / "loc", quiet=True))
    assert report.n_items == int(keep.sum())
    for a, b in zip(old, new, strict=True):
        assert {k: v for k, v in a.items() if k != "seconds"} == \
            {k: v for k, v in b.items() if k != "seconds"}
    with torch.no_grad():
        acc = float((model(images).argmax(1) == labels).float().mean())
    assert localisation_facts(folder) == (acc, float(masks.float().mean()))
    share = float(masks.float().mean())
    assert _no_time(format_table(new, share)) == _no_time(format_table(old, share))


def test_localisation_command_prints_the_table(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from lrp_engine.localisation import main

    assert main(["--images", "12", "--presets", "epsilon", "--out", str(tmp_path / "l"),
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "| epsilon |" in out and "| gradient×input |" in out and "| random |" in out
    assert "lesion images (of 12)" in out
    assert (tmp_path / "l" / "metrics.csv").is_file()
