"""The Pixel-flipping page's job: settings → batches of held-out digits → live mean curves.

A run scores every chosen method (standard LRP-ε, B-LRP α-maps, Gradient×Input, a random
order) by most-relevant-first pixel flipping on the first ``n_images`` held-out digits, in
batches of :data:`BATCH` images. The per-batch work is the command-line experiment's own
(:mod:`lrp_engine.experiment`: relevance per method for a chunk, then the vectorised
:func:`lrp_engine.evaluation.pixel_flipping` with per-image random streams keyed by the
global image index), so the numbers equal one ``run_pixel_flipping_experiment`` call with
the same settings, whatever the batching.

Each batch is cached with ``st.cache_data`` keyed by all settings and the batch's image
range: a finished (or stopped) run with the same settings replays instantly, for every
session. The running job lives in ``st.session_state`` and is updated in place after every
batch; the Stop button (any rerun interrupts a running script) then finds what was finished.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch
from streamlit.delta_generator import DeltaGenerator
from torch import nn

from lrp_engine import viz
from lrp_engine.data import mnist_to_tensor
from lrp_engine.evaluation import channels_last_twin, fraction_flipped
from lrp_engine.experiment import (
    MNIST_NORMALISE,
    ExperimentResult,
    PixelFlippingConfig,
    chunk_curves,
    method_label,
)
from lrp_explorer.ui.resources import get_model, heldout, model_meta

#: images per batch: the live chart and the progress bar move once per batch
BATCH = 25
#: session-state key of the current :class:`Job`
JOB_KEY = "pixel_flipping_job"
#: method kinds offered, in display order, with their names in the method picker
METHOD_NAMES = {"lrp": "Standard LRP-ε", "blrp": "B-LRP (percentile maps)",
                "gradient_x_input": "Gradient×Input", "random": "Random order (baseline)"}
#: B-LRP percentiles offered (α = 5: relevance nearly all posterior samples agree on)
ALPHA_OPTIONS = (1, 5, 10, 25, 50, 75, 90, 95, 99)
DEFAULT_ALPHAS = (5, 25, 50, 75, 95)


@dataclass(frozen=True)
class FlipSettings:
    """Everything a run's numbers depend on (hashed as the cache key of each batch)."""

    model_id: str = "lenet"
    methods: tuple[str, ...] = ("lrp", "blrp", "gradient_x_input", "random")
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    n_images: int = 100
    n_samples: int = 32
    steps: int = 64
    pixels_per_step: int = 4
    fill: str = "uniform"
    score: str = "logit"
    seed: int = 0

    def config(self) -> PixelFlippingConfig:
        """The engine's experiment settings (MNIST normalisation for the fill values)."""
        return PixelFlippingConfig(
            n_images=self.n_images, n_samples=self.n_samples, steps=self.steps,
            pixels_per_step=self.pixels_per_step, fill=self.fill, score=self.score,
            alphas=tuple(self.alphas), methods=tuple(self.methods), seed=self.seed,
            chunk_images=BATCH, normalise=MNIST_NORMALISE)

    def problem(self) -> str | None:
        """A plain-words reason these settings cannot run, or None (the engine checks the
        rest, e.g. more flips than pixels, when the first batch runs)."""
        if not self.methods:
            return "Choose at least one method."
        if "blrp" in self.methods and not self.alphas:
            return "B-LRP needs at least one percentile α."
        if not 1 <= self.n_images <= len(heldout()[0]):
            return f"The number of images must lie between 1 and {len(heldout()[0])}."
        if self.steps < 2:
            return "A curve needs at least 2 steps for an area."
        return None


@dataclass
class Job:
    """A run in progress or finished: per-image curves {method key: [done, steps]}."""

    settings: FlipSettings
    curves: dict[str, np.ndarray]
    targets: np.ndarray
    done: int = 0
    status: str = "running"  # running | done | stopped | failed
    note: str = ""
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return self.settings.n_images

    def result(self) -> ExperimentResult:
        """The images done so far as the engine's result (summary, mean curves)."""
        cfg = self.settings.config()
        return ExperimentResult(
            config=cfg, curves=self.curves,
            fraction_flipped=x_axis(self.settings).numpy(), targets=self.targets,
            seconds=self.seconds, stopped=self.status == "stopped")


def new_job(settings: FlipSettings) -> Job:
    """An empty job (nothing computed yet) for ``settings``."""
    keys = settings.config().method_keys()
    return Job(settings, {k: np.zeros((0, settings.steps), np.float32) for k in keys},
               np.zeros(0, np.int64))


def x_axis(settings: FlipSettings) -> torch.Tensor:
    """Fraction of the model input's pixels flipped at each step, [steps] (LeNet: of the
    32×32 input the digit is resized to; MLP: of 28×28)."""
    side = int(model_meta(settings.model_id)["input_size"])
    return fraction_flipped(settings.steps, settings.pixels_per_step, side * side)


# -- computation ---------------------------------------------------------------------------

def fast_twin(model_id: str) -> nn.Module:
    """The shared model as B-LRP runs it: on the CPU its channels-last copy (~1.2–2× faster;
    :func:`lrp_engine.evaluation.channels_last_twin`, kept by the engine), elsewhere the
    model itself."""
    model = get_model(model_id)
    on_cpu = next(model.parameters()).device.type == "cpu"
    return channels_last_twin(model) if on_cpu else model


@st.cache_data(max_entries=200, show_spinner=False)
def batch_curves(settings: FlipSettings, start: int, stop: int, _model: nn.Module
                 ) -> dict[str, np.ndarray]:
    """Pixel-flipping curves of held-out digits ``start … stop−1`` per method key,
    {key: float32 [stop − start, steps]} (target score: logit or probability of the true
    class). ``_model`` is ``get_model(settings.model_id)``: the hashed ``settings`` name it,
    so the unhashed model never has to be. Raises ValueError for impossible settings."""
    cfg = settings.config()
    images, labels = heldout()
    device = next(_model.parameters()).device
    size = int(model_meta(settings.model_id)["input_size"])
    x = mnist_to_tensor(images[start:stop], size=size).to(device)
    y = torch.tensor(np.array(labels[start:stop]), dtype=torch.long, device=device)
    return chunk_curves(_model, fast_twin(settings.model_id), x, y, range(start, stop), cfg)


def advance(job: Job, model: nn.Module, on_batch: Callable[[Job], None] | None = None
            ) -> None:
    """Compute the job's remaining batches, updating ``job`` in place after each one (so an
    interrupted run keeps what it finished) and calling ``on_batch(job)``. Sets ``status``
    to ``done``, or ``failed`` with the engine's message in ``note``."""
    _, labels = heldout()
    s = job.settings
    while job.done < job.total:
        start, stop = job.done, min(job.done + BATCH, job.total)
        t0 = time.perf_counter()
        try:
            part = batch_curves(s, start, stop, model)
        except ValueError as e:
            job.status, job.note = "failed", f"These settings cannot run: {e}"
            return
        except (RuntimeError, MemoryError) as e:
            job.status, job.note = "failed", (
                f"The computation failed ({type(e).__name__}: {e}). Try fewer images or "
                "posterior samples.")
            return
        job.curves = {k: np.concatenate([v, part[k]]) for k, v in job.curves.items()}
        job.targets = np.concatenate([job.targets, labels[start:stop].astype(np.int64)])
        job.done = stop
        job.seconds += time.perf_counter() - t0
        if on_batch is not None:
            on_batch(job)
    job.status = "done"


# -- presentation --------------------------------------------------------------------------

def labels(keys: Iterable[str]) -> dict[str, str]:
    """Display names of curve keys (``blrp_5`` → ``B-LRP α=5``)."""
    return {k: method_label(k) for k in keys}


def figure(job: Job, title: str) -> go.Figure:
    """The mean curves of the images done, as a plotly figure (``viz.curves_figure``)."""
    res = job.result()
    score = "logit" if job.settings.score == "logit" else "probability"
    return viz.curves_figure(100 * res.fraction_flipped, res.mean_curves(),
                             labels=labels(res.curves), title=title,
                             y_title=f"mean score of the true class ({score})")


def summary_table(job: Job) -> pd.DataFrame:
    """One row per method: images, mean AUC and AOPC with standard errors of the mean."""
    rows = job.result().summary()
    return pd.DataFrame({
        "method": [r["label"] for r in rows],
        "images": [r["n_images"] for r in rows],
        "AUC (lower = more faithful)": [r["auc_mean"] for r in rows],
        "AUC s.e.m.": [r["auc_sem"] for r in rows],
        "AOPC (higher = more faithful)": [r["aopc_mean"] for r in rows],
        "AOPC s.e.m.": [r["aopc_sem"] for r in rows],
    })


def curves_csv(job: Job) -> str:
    """The mean curves as CSV: ``fraction_flipped`` then one column per method key."""
    res = job.result()
    frame = pd.DataFrame({"fraction_flipped": res.fraction_flipped,
                          **{k: v.astype(np.float64) for k, v in res.mean_curves().items()}})
    buf = io.StringIO()
    frame.to_csv(buf, index=False, float_format="%.6g")
    return buf.getvalue()


def _draw_live(chart: DeltaGenerator, progress: DeltaGenerator, job: Job) -> None:
    progress.progress(job.done / job.total,
                      text=f"{job.done} of {job.total} images (batches of {BATCH})")
    chart.plotly_chart(figure(job, f"Running… mean over {job.done} of {job.total} images"))


def show(settings: FlipSettings, run: bool, stop: bool) -> None:
    """Start, continue or show the page's job and draw its chart, table and download.

    ``run``: the Run button was pressed (start a job with ``settings``); ``stop``: the Stop
    button was pressed (a running job keeps what it finished). A job that was interrupted by
    some other rerun continues if its settings are still the chosen ones.
    """
    job: Job | None = st.session_state.get(JOB_KEY)
    if stop and job is not None and job.status == "running":
        job.status, job.note = "stopped", "Stopped"
    if run:
        problem = settings.problem()
        if problem is not None:
            st.error(problem)
            return
        job = new_job(settings)
        st.session_state[JOB_KEY] = job
    elif job is not None and job.status == "running" and job.settings != settings:
        job.status, job.note = "stopped", "Interrupted (the settings changed or the page was left)"
    if job is None:
        st.info("Choose the settings and press **Run**. The curves are drawn while the "
                "images are processed; press **Stop** to keep what is finished.")
        return

    message, progress, chart = st.empty(), st.empty(), st.empty()
    if job.status == "running":
        model = get_model(job.settings.model_id)
        progress.progress(job.done / job.total,
                          text=f"{job.done} of {job.total} images (batches of {BATCH})")
        advance(job, model, on_batch=lambda j: _draw_live(chart, progress, j))
        progress.empty()
    _show_finished(job, settings, message, chart)


def _show_finished(job: Job, settings: FlipSettings, message: DeltaGenerator,
                   chart: DeltaGenerator) -> None:
    if job.status == "failed":
        message.error(job.note)
        if job.done == 0:
            return
    elif job.status == "stopped" and job.done == 0:
        message.warning(f"{job.note} before the first batch of {BATCH} images was finished: "
                        "nothing to show yet.")
    elif job.status == "stopped":
        message.warning(f"{job.note} after {job.done} of {job.total} images: the curves and "
                        "the table show those.")
    else:
        noun = "image" if job.done == 1 else "images"
        message.success(f"Done: {job.done} {noun}, {job.seconds:.1f} s of computation "
                        "(repeating a run with the same settings is instant).")
    if job.done == 0:
        return
    if job.settings != settings:
        st.caption("These results are from the previous settings; press **Run** to compute "
                   "with the ones chosen now.")
    chart.plotly_chart(figure(job, f"Mean over {job.done} held-out digits"))
    table = summary_table(job)
    numbers = st.column_config.NumberColumn(format="%.4f")
    st.dataframe(table, hide_index=True, column_config={c: numbers for c in table.columns[2:]})
    st.caption("AUC: area under each image's curve, x-axis scaled to 0…1 over the steps, "
               "averaged over images (lower = the score falls sooner = more faithful). "
               "AOPC: average drop from the unperturbed score (higher = more faithful).")
    st.download_button("Download the curves (CSV)", data=curves_csv(job),
                       file_name="pixel_flipping_curves.csv", mime="text/csv",
                       on_click="ignore")


__all__ = ["BATCH", "JOB_KEY", "FlipSettings", "Job", "advance", "batch_curves", "curves_csv",
           "figure", "new_job", "show", "summary_table", "x_axis"]
