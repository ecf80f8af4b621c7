"""AppTests of the Pixel-flipping page (lrp_explorer/app_pages/pixel_flipping.py,
lrp_explorer/ui/flipping.py).

Small runs only (≤ 50 images, ≤ 8 B-LRP samples) so that each test stays well under a
minute on two CPU cores. The seed is fixed (0), so the numbers are reproducible.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest

from lrp_explorer.ui import flipping

PAGE = str(Path(__file__).resolve().parents[2] / "lrp_explorer" / "app_pages" / "pixel_flipping.py")


def _app(**values) -> AppTest:
    """The page after a first run, with number inputs set by key (not yet rerun)."""
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception
    for key, value in values.items():
        at.number_input(key=key).set_value(value)
    return at


def _traces(at: AppTest) -> dict[str, dict]:
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    spec = json.loads(charts[0].proto.spec)
    return {tr["name"]: tr for tr in spec["data"]}


def _table(at: AppTest) -> pd.DataFrame:
    assert len(at.dataframe) == 1
    return at.dataframe[0].value


def test_page_load_computes_nothing() -> None:
    """Opening the page shows the settings and a hint, no job, no chart, no error."""
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception
    assert not at.error
    assert not at.get("plotly_chart")
    assert "press **Run**" in at.info[0].value
    assert at.number_input(key="pf_images").value == 100
    assert at.number_input(key="pf_samples").value == 32
    assert at.selectbox(key="pf_fill").value == "uniform"


def test_run_draws_curves_table_and_download() -> None:
    """20 digits, every method: finite curves that agree at step 0, LRP falls, one table row
    per curve, random order less faithful (higher AUC, lower AOPC) than LRP and B-LRP."""
    at = _app(pf_images=20, pf_samples=8, pf_seed=0)
    at.multiselect(key="pf_alphas").set_value([5, 50, 95])
    at.button(key="pf_run").click().run()
    assert not at.exception
    assert not at.error
    assert at.success and at.success[0].value.startswith("Done: 20 images")

    traces = _traces(at)
    expected = ["Standard LRP-ε", "B-LRP α=5", "B-LRP α=50", "B-LRP α=95", "Gradient×Input",
                "Random"]
    assert list(traces) == expected
    for tr in traces.values():
        assert len(tr["x"]) == len(tr["y"]) == 64
        assert all(math.isfinite(v) for v in tr["x"] + tr["y"])
    x = traces["Random"]["x"]
    assert x[0] == 0 and x[-1] == pytest.approx(100 * 63 * 4 / 1024, abs=1e-4)  # 32×32 input
    start = {name: tr["y"][0] for name, tr in traces.items()}
    assert max(start.values()) - min(start.values()) < 1e-3  # nothing flipped yet
    lrp = traces["Standard LRP-ε"]["y"]
    assert lrp[0] > lrp[-1] + 5  # the true-class logit collapses

    table = _table(at).set_index("method")
    assert list(table.index) == expected
    assert (table["images"] == 20).all()
    auc = table["AUC (lower = more faithful)"]
    aopc = table["AOPC (higher = more faithful)"]
    assert auc["Random"] > auc["Standard LRP-ε"]
    assert auc["Random"] > auc["B-LRP α=50"]
    assert aopc["Random"] < aopc["Standard LRP-ε"]
    assert len(at.get("download_button")) == 1


def test_stop_keeps_the_finished_batches_and_a_rerun_resumes() -> None:
    """A job interrupted after its first batch: Stop shows those 25 images and says it was
    stopped; an interruption without Stop (same settings) continues to the end."""
    at = _app(pf_images=50)
    at.multiselect(key="pf_methods").set_value(["lrp", "random"])
    at.button(key="pf_run").click().run()
    assert not at.exception and not at.error
    job = at.session_state[flipping.JOB_KEY]
    assert job.status == "done" and job.done == 50
    full = _table(at).set_index("method")

    def interrupted() -> flipping.Job:  # as left by a rerun during the second batch
        return replace(job, curves={k: v[:flipping.BATCH] for k, v in job.curves.items()},
                       targets=job.targets[:flipping.BATCH], done=flipping.BATCH,
                       status="running")

    at.session_state[flipping.JOB_KEY] = interrupted()
    at.button(key="pf_stop").click().run()
    assert not at.exception and not at.error
    assert at.warning[0].value.startswith("Stopped after 25 of 50 images")
    assert (_table(at)["images"] == 25).all()
    assert set(_traces(at)) == {"Standard LRP-ε", "Random"}

    at.session_state[flipping.JOB_KEY] = interrupted()
    at.run()
    assert not at.exception and not at.error
    assert at.session_state[flipping.JOB_KEY].status == "done"
    resumed = _table(at).set_index("method")
    assert (resumed["images"] == 50).all()
    # the per-image random streams make the numbers independent of how the run was split
    np.testing.assert_allclose(resumed["AUC (lower = more faithful)"],
                               full["AUC (lower = more faithful)"], rtol=1e-5)


def test_too_many_flips_is_an_error_not_an_exception() -> None:
    """300 steps of 4 pixels need 1196 of the LeNet's 1024 pixels: the engine's message."""
    at = _app(pf_images=5, pf_steps=300, pf_pps=4)
    at.multiselect(key="pf_methods").set_value(["lrp"])
    at.button(key="pf_run").click().run()
    assert not at.exception
    assert len(at.error) == 1
    assert "cannot run" in at.error[0].value and "1024" in at.error[0].value
    assert not at.get("plotly_chart")
    assert not at.dataframe


def test_no_method_is_an_error() -> None:
    at = _app()
    at.multiselect(key="pf_methods").set_value([])
    at.button(key="pf_run").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == ["Choose at least one method."]


def test_mlp_runs_and_says_b_lrp_has_nothing_to_sample() -> None:
    """The model picker switches to the MLP (28×28 input, no dropout)."""
    at = _app(pf_images=10, pf_samples=4)
    at.selectbox(key="pf_model").set_value("mlp").run()
    assert at.session_state["model_id"] == "mlp"
    assert any("no dropout" in i.value for i in at.info)
    at.button(key="pf_run").click().run()
    assert not at.exception and not at.error
    traces = _traces(at)
    assert traces["Random"]["x"][-1] == pytest.approx(100 * 63 * 4 / 784, abs=1e-4)
    table = _table(at).set_index("method")
    auc = table["AUC (lower = more faithful)"]
    assert auc["B-LRP α=50"] == auc["Standard LRP-ε"]  # every posterior sample is the model
    assert auc["Random"] > auc["Standard LRP-ε"]


def test_curves_csv_has_fraction_and_one_column_per_method() -> None:
    settings = flipping.FlipSettings(methods=("lrp", "random"), n_images=2, steps=3,
                                     pixels_per_step=8)
    job = flipping.new_job(settings)
    job.curves = {"lrp": np.array([[3.0, 1.0, 0.0], [5.0, 3.0, 2.0]], np.float32),
                  "random": np.array([[3.0, 2.5, 2.0], [5.0, 5.0, 4.0]], np.float32)}
    job.targets, job.done, job.status = np.array([7, 2]), 2, "done"
    frame = pd.read_csv(io.StringIO(flipping.curves_csv(job)))
    assert list(frame.columns) == ["fraction_flipped", "lrp", "random"]
    np.testing.assert_allclose(frame["fraction_flipped"], [0, 8 / 1024, 16 / 1024])
    np.testing.assert_allclose(frame["lrp"], [4.0, 2.0, 1.0])
    np.testing.assert_allclose(frame["random"], [4.0, 3.75, 3.0])


def test_advance_reports_every_batch_and_matches_the_engine_experiment() -> None:
    """The live callback sees 25 then 30 images; the curves equal one engine run."""
    from lrp_engine.data import mnist_to_tensor
    from lrp_engine.experiment import run_pixel_flipping_experiment
    from lrp_explorer.ui.resources import get_model, heldout

    settings = flipping.FlipSettings(methods=("lrp", "gradient_x_input", "random"),
                                     n_images=30, steps=16)
    job = flipping.new_job(settings)
    seen: list[tuple[int, int]] = []
    model = get_model("lenet")
    flipping.advance(job, model, on_batch=lambda j: seen.append((j.done, len(j.targets))))
    assert seen == [(25, 25), (30, 30)]
    assert job.status == "done"
    images, labels = heldout()
    ref = run_pixel_flipping_experiment(
        settings.config(), model=model,
        inputs=(mnist_to_tensor(images[:30], 32), torch.tensor(np.array(labels[:30]))))
    for key, curves in ref.curves.items():
        np.testing.assert_allclose(job.curves[key], curves, rtol=1e-5, atol=1e-5)
