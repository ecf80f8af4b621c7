"""The two fixed commands as batch jobs, with their own tables.

* :func:`pixel_flipping_config` / :func:`run_pixel_flipping_batch`: ``experiment
  pixel-flipping`` (bundled LeNet, held-out digits, true class; LRP-ε, B-LRP percentiles,
  Gradient×Input, random; pixel flipping only). Batches are the experiment's chunks
  (``chunk_images``), B-LRP runs with its ``blrp_chunk`` and the curves with its forward
  batch, and the draws are seeded by digit index, so the curves are the experiment's bit for
  bit and :func:`~lrp_engine.experiment.format_summary` prints the same table.
* :func:`localisation_config` / :func:`run_localisation_batch`: ``localisation`` (the MRI
  demo's held-out set, lesion slices only, batches of 64, the random baseline drawn as one
  stream over the set), giving :func:`~lrp_engine.localisation.localisation_table`'s rows.

Both resume a folder of the same settings and replace one of other settings (each old
command replaced its outputs on every run).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import numpy as np
import torch

from ..experiment import ExperimentResult, PixelFlippingConfig
from ..localisation import GRADIENT_X_INPUT as LOC_GXI
from ..localisation import LocalisationRow
from .config import BLRP, GRADIENT_X_INPUT, RANDOM, BatchConfig, ConfigError, alpha_key
from .local import RunReport, run_local
from .results import ResultsFolder

#: experiment method kinds → batch methods (``lrp`` is the experiment's composite)
_KINDS = {"blrp": BLRP, "gradient_x_input": GRADIENT_X_INPUT, "random": RANDOM}
#: worker timing keys → the experiment's phases
_PHASES = {"blrp": "blrp", "gradient_x_input": "gradient_x_input", "pf": "pixel_flipping"}


# -- pixel flipping ------------------------------------------------------------------------

def pixel_flipping_config(cfg: PixelFlippingConfig, out: str | Path,
                          quiet: bool = False) -> BatchConfig:
    """The batch job computing ``cfg``'s experiment into ``out``."""
    from ..data import MNIST_MEAN, MNIST_STD

    if cfg.normalise != (MNIST_MEAN, MNIST_STD) or tuple(cfg.data_range) != (0.0, 1.0):
        raise ConfigError("the batch preset of the experiment uses LeNet's own input "
                          "normalisation and pixel range")
    cfg.method_keys()  # unknown methods fail here
    methods = [cfg.composite if kind == "lrp" else _KINDS[kind]
               for kind in ("lrp", "blrp", "gradient_x_input", "random") if kind in cfg.methods]
    return BatchConfig(
        input="mnist", model="lenet", methods=tuple(methods), metrics=("pf",),
        steps=cfg.steps, pixels_per_step=cfg.pixels_per_step, fill=cfg.fill, score=cfg.score,
        target="true", blrp_alphas=tuple(cfg.alphas), blrp_samples=cfg.n_samples,
        blrp_composite=cfg.composite, limit=cfg.n_images, seed=cfg.seed,
        batch_size=cfg.chunk_images, eval_batch=cfg.batch_size, blrp_chunk=cfg.blrp_chunk,
        device=cfg.device, out=str(out), quiet=quiet)


def _experiment_key(batch_key: str, cfg: PixelFlippingConfig) -> str:
    """A batch method key → the experiment's curve key (``epsilon`` → ``lrp``,
    ``blrp_a5`` → ``blrp_5``)."""
    for alpha in cfg.alphas:
        if batch_key == alpha_key(alpha):
            return f"blrp_{alpha:g}"
    return "lrp" if batch_key == cfg.composite else batch_key


def experiment_result(folder: ResultsFolder, cfg: PixelFlippingConfig,
                      report: RunReport | None = None) -> ExperimentResult:
    """The experiment's result read back from a batch folder: per-digit curves in index
    order, targets, and (from ``report``) seconds and phase timings."""
    from ..evaluation import fraction_flipped

    rows = folder.metrics_rows()
    keys = [str(r["key"]) for r in rows]
    curves = {_experiment_key(m, cfg): folder.item_curves(m, "pf", keys)
              for m in folder.methods}
    curves = {k: curves[k] for k in cfg.method_keys()}
    side = folder.item(keys[0]).input.shape[-1] if keys else 32
    timings: dict[str, float] = {}
    for k, v in (report.timings if report else {}).items():
        phase = "lrp" if k == cfg.composite else _PHASES.get(k)
        if phase is not None:
            timings[phase] = timings.get(phase, 0.0) + v
    return ExperimentResult(
        config=cfg, curves=curves,
        fraction_flipped=fraction_flipped(cfg.steps, cfg.pixels_per_step, side * side).numpy(),
        targets=np.array([int(r["target"]) for r in rows], dtype=np.int64),
        seconds=report.seconds if report else 0.0, timings=timings)


def run_pixel_flipping_batch(cfg: PixelFlippingConfig, out: str | Path, quiet: bool = False,
                             stream: TextIO | None = None, plots: bool = True
                             ) -> tuple[ExperimentResult, RunReport]:
    """Run the experiment as a batch job into ``out``; the experiment's result (for
    :func:`~lrp_engine.experiment.format_summary`) and the run's report. Also writes
    ``curves.npz`` (per-digit curves, targets, fraction flipped) as the command did."""
    bcfg = pixel_flipping_config(cfg, out, quiet)
    report = run_local(bcfg, plots=plots, stream=stream, label="pixel flipping",
                       replace_other=True)
    result = experiment_result(ResultsFolder(report.out), cfg, report)
    np.savez_compressed(report.out / "curves.npz", fraction_flipped=result.fraction_flipped,
                        targets=result.targets, **result.curves)  # type: ignore[arg-type]
    return result, report


# -- localisation --------------------------------------------------------------------------

def localisation_config(images: int = 200, presets: Sequence[str] = (), tolerance: int = 0,
                        target: str = "true", seed: int = 0,
                        out: str | Path = "results/localisation", quiet: bool = False
                        ) -> BatchConfig:
    """The batch job of the localisation table: the MRI demo's held-out set of ``images``,
    lesion slices only, ``presets`` plus Gradient×Input and the random baseline."""
    return BatchConfig(
        input=f"mri-demo:{images}", model="mri_demo",
        methods=(*presets, GRADIENT_X_INPUT, RANDOM), metrics=("rma", "pointing"),
        target=target, tolerance=tolerance, lesions_only=True, seed=seed, batch_size=64,
        out=str(out), quiet=quiet)


def localisation_rows(folder: ResultsFolder, report: RunReport | None = None
                      ) -> list[LocalisationRow]:
    """:func:`~lrp_engine.localisation.localisation_table`'s rows from a batch folder
    (float32 means and standard deviations over items, as the table computes them;
    ``seconds`` from ``report``'s timings, 0 for items of an earlier run)."""
    rows = folder.metrics_rows()
    timings = report.timings if report else {}
    out: list[LocalisationRow] = []
    for m in folder.methods:
        rma = torch.tensor([r[f"{m}.rma"] for r in rows], dtype=torch.float32)
        hit = torch.tensor([r[f"{m}.pointing"] for r in rows], dtype=torch.float32)
        out.append(LocalisationRow(
            method=LOC_GXI if m == GRADIENT_X_INPUT else m, rma=float(rma.mean()),
            rma_std=float(rma.std()) if len(rma) > 1 else 0.0, pointing=float(hit.mean()),
            n=len(rows), seconds=float(timings.get(m, 0.0))))
    return out


def _mask(folder: ResultsFolder, key: str) -> np.ndarray:
    mask = folder.item(key).mask
    if mask is None:
        raise ValueError(f"item {key} has no mask")
    return mask


def localisation_facts(folder: ResultsFolder) -> tuple[float, float]:
    """(accuracy on the items, the masks' mean area share) as the command computes them."""
    rows = folder.metrics_rows()
    correct = torch.tensor([r["correct"] for r in rows], dtype=torch.float32)
    masks = torch.from_numpy(np.stack([_mask(folder, str(r["key"])) for r in rows]))
    return float(correct.mean()), float(masks.float().mean())


def run_localisation_batch(cfg: BatchConfig, stream: TextIO | None = None,
                           plots: bool = False) -> tuple[list[LocalisationRow], RunReport,
                                                         ResultsFolder]:
    """Run a :func:`localisation_config` job locally; its rows, report and folder."""
    report = run_local(cfg, plots=plots, stream=stream, label="localisation",
                       replace_other=True)
    folder = ResultsFolder(report.out)
    return localisation_rows(folder, report), report, folder


__all__ = ["experiment_result", "localisation_config", "localisation_facts",
           "localisation_rows", "pixel_flipping_config", "run_localisation_batch",
           "run_pixel_flipping_batch"]
