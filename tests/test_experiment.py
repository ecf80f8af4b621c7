"""The pixel-flipping experiment: mechanics on a tiny model (always), the scientific check
and the command line with the bundled LeNet and MNIST digits (skipped when not bundled)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lrp_engine.experiment import (
    PixelFlippingConfig,
    format_summary,
    load_lenet,
    load_mnist_inputs,
    method_label,
    run_pixel_flipping_experiment,
    write_outputs,
)

ROOT = Path(__file__).resolve().parents[1]
KEYS = ["lrp", "blrp_5", "blrp_25", "blrp_50", "blrp_75", "blrp_95", "gradient_x_input",
        "random"]


def _bundled() -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    try:
        return load_lenet(), load_mnist_inputs(20)
    except (ImportError, FileNotFoundError, OSError, KeyError) as e:
        pytest.skip(f"bundled LeNet weights or MNIST digits not available: {e!r}")


@pytest.fixture(scope="module")
def tiny() -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Dropout2d(0.3),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 16), nn.ReLU(),
                          nn.Dropout(0.3), nn.Linear(16, 3)).eval()
    g = torch.Generator().manual_seed(1)
    return model, (torch.randn(12, 1, 8, 8, generator=g), torch.randint(0, 3, (12,), generator=g))


TINY = PixelFlippingConfig(n_images=12, n_samples=4, steps=6, pixels_per_step=4,
                           normalise=None, chunk_images=5, batch_size=16)


def test_runs_in_chunks_with_progress_and_does_not_depend_on_chunking(tiny) -> None:
    model, inputs = tiny
    calls = []
    res = run_pixel_flipping_experiment(
        TINY, model=model, inputs=inputs,
        on_progress=lambda done, total, means: calls.append((done, total, means)))
    assert [c[:2] for c in calls] == [(5, 12), (10, 12), (12, 12)]
    assert list(res.curves) == KEYS and not res.stopped and res.n_images == 12
    assert all(c.shape == (12, 6) for c in res.curves.values())
    for k, mean in calls[-1][2].items():
        np.testing.assert_allclose(mean, res.mean_curves()[k])
    np.testing.assert_allclose(res.fraction_flipped, np.arange(6) * 4 / 64)
    np.testing.assert_array_equal(res.targets, inputs[1].numpy())
    # step 0 is the unperturbed logit of the true class, the same for every method
    with torch.no_grad():
        logit0 = model(inputs[0]).gather(1, inputs[1][:, None])[:, 0].numpy()
    for c in res.curves.values():
        np.testing.assert_allclose(c[:, 0], logit0, rtol=1e-5, atol=1e-6)
    one_chunk = run_pixel_flipping_experiment(
        PixelFlippingConfig(**{**TINY.__dict__, "chunk_images": 12}), model=model,
        inputs=inputs)
    for k in KEYS:
        np.testing.assert_allclose(one_chunk.curves[k], res.curves[k], rtol=1e-5, atol=1e-5)
    assert not np.allclose(res.curves["lrp"], res.curves["random"])


def test_should_stop_ends_after_the_current_chunk(tiny) -> None:
    model, inputs = tiny
    chunks = []
    res = run_pixel_flipping_experiment(
        TINY, model=model, inputs=inputs, on_progress=lambda d, t, m: chunks.append(d),
        should_stop=lambda: len(chunks) >= 1)
    assert res.stopped and res.n_images == 5 and chunks == [5]
    assert all(c.shape == (5, 6) for c in res.curves.values())


def test_method_selection_and_labels(tiny) -> None:
    model, inputs = tiny
    cfg = PixelFlippingConfig(**{**TINY.__dict__, "methods": ("lrp", "random"),
                                 "alphas": (50,)})
    res = run_pixel_flipping_experiment(cfg, model=model, inputs=inputs)
    assert list(res.curves) == ["lrp", "random"]
    assert method_label("blrp_50") == "B-LRP α=50" and method_label("lrp") == "Standard LRP-ε"
    with pytest.raises(ValueError, match="unknown methods"):
        PixelFlippingConfig(methods=("lime",)).method_keys()


def test_writes_csv_html_and_summary(tiny, tmp_path) -> None:
    model, inputs = tiny
    res = run_pixel_flipping_experiment(TINY, model=model, inputs=inputs)
    paths, notes = write_outputs(res, tmp_path / "out")
    names = {p.name for p in paths}
    assert {"curves.csv", "summary.csv", "curves.html", "curves.npz", "config.json"} <= names
    with (tmp_path / "out" / "curves.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["step", "fraction_flipped", *KEYS] and len(rows) == 1 + 6
    assert float(rows[2][1]) == pytest.approx(4 / 64)
    assert float(rows[3][2]) == pytest.approx(res.curves["lrp"][:, 2].mean(), abs=1e-5)
    with (tmp_path / "out" / "summary.csv").open() as f:
        summary = list(csv.DictReader(f))
    assert [r["method"] for r in summary] == KEYS
    assert all(int(r["n_images"]) == 12 for r in summary)
    html = (tmp_path / "out" / "curves.html").read_text()
    assert "plotly" in html.lower() and "Standard LRP" in html
    if "curves.png" not in names:  # no kaleido: skipped with a note
        assert any("curves.png skipped" in n for n in notes)
    table = format_summary(res)
    assert "Standard LRP-ε" in table and "Random" in table and "AOPC" in table


def test_bundled_lenet_lrp_is_more_faithful_than_random(tmp_path) -> None:
    """On the trained LeNet, removing the most LRP-relevant pixels must hurt the true-class
    logit faster than removing random pixels (the notebook's central check)."""
    model, inputs = _bundled()
    cfg = PixelFlippingConfig(n_images=20, n_samples=8, steps=8)
    res = run_pixel_flipping_experiment(cfg, model=model, inputs=inputs)
    rows = {r["method"]: r for r in res.summary()}
    assert rows["lrp"]["auc_mean"] < rows["random"]["auc_mean"]
    assert rows["blrp_50"]["auc_mean"] < rows["random"]["auc_mean"]
    assert rows["lrp"]["aopc_mean"] > rows["random"]["aopc_mean"]
    write_outputs(res, tmp_path)
    assert (tmp_path / "curves.html").exists() and (tmp_path / "summary.csv").exists()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lrp_engine", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_pixel_flipping(tmp_path) -> None:
    _bundled()
    out = tmp_path / "pf"
    proc = _cli("experiment", "pixel-flipping", "--images", "10", "--samples", "4", "--steps",
                "4", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Standard LRP-ε" in proc.stdout and "Random" in proc.stdout
    assert "10/10 images" in proc.stderr  # the progress bar
    for name in ("curves.csv", "summary.csv", "plots/curves.html", "curves.npz"):
        assert (out / name).exists(), name
    with (out / "curves.csv").open() as f:
        assert len(list(csv.reader(f))) == 1 + 4


def test_cli_without_arguments_prints_help() -> None:
    proc = _cli()
    assert proc.returncode == 0
    assert "usage: python -m lrp_engine" in proc.stdout and "experiment" in proc.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cli_cuda_without_cuda_is_a_clear_error() -> None:
    proc = _cli("experiment", "pixel-flipping", "--device", "cuda", "--images", "2")
    assert proc.returncode == 2 and "CUDA is not available" in proc.stderr
