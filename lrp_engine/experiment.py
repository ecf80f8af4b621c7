"""The B-LRP pixel-flipping experiment on MNIST (the README's table), reproducible and batched.

For the first ``n_images`` bundled held-out digits and the bundled LeNet, with the true
label as target: standard LRP-ε, B-LRP percentile maps (α ∈ {5, 25, 50, 75, 95}, one
:func:`lrp_engine.bayes.blrp` call per chunk of images), Gradient×Input and a random order
are each scored by most-relevant-first pixel flipping (:func:`lrp_engine.evaluation.
pixel_flipping`: 64 evaluations, 4 pixels flipped between them, uniform random fill).

    res = run_pixel_flipping_experiment(PixelFlippingConfig(n_images=100, n_samples=20))
    res.mean_curves()          # {method: [steps]}
    print(format_summary(res)); write_outputs(res, "results/pixel_flipping")

The random draws are seeded per image (fill values, the random order) and B-LRP uses the
same ``seed`` for every chunk (the same posterior networks for every image), so the numbers
do not depend on ``chunk_images``. The dashboard reuses :func:`run_pixel_flipping_experiment`
with ``on_progress`` (live curves) and ``should_stop``.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from torch import Tensor, nn

from .core import explain, gradient_x_input
from .data import MNIST_MEAN, MNIST_STD
from .evaluation import (
    Fill,
    Score,
    aopc,
    auc,
    channels_last_twin,
    fill_values,
    fraction_flipped,
    pixel_flipping,
    to_channels_last,
)

#: the bundled digit models' normalisation (raw pixels in [0, 1]): MNIST's mean and std
MNIST_NORMALISE = (MNIST_MEAN, MNIST_STD)
#: the relevance methods an experiment compares
Method = Literal["lrp", "blrp", "gradient_x_input", "random"]
METHOD_KINDS: tuple[Method, ...] = get_args(Method)

ProgressFn = Callable[[int, int, dict[str, np.ndarray]], None]


@dataclass(frozen=True)
class PixelFlippingConfig:
    """Settings of one run; the defaults are the experiment of the README's table.

    ``steps`` evaluations with ``pixels_per_step`` pixels flipped between them; B-LRP with
    ``n_samples`` posterior samples. ``chunk_images``: images per relevance call and
    ``blrp_chunk``: posterior samples per batched B-LRP backward (memory and speed only, not
    results); ``batch_size``: perturbed images per forward.
    """

    n_images: int = 1000
    n_samples: int = 100
    steps: int = 64
    pixels_per_step: int = 4
    fill: Fill = "uniform"
    score: Score = "logit"
    composite: str = "epsilon"
    alphas: tuple[float, ...] = (5, 25, 50, 75, 95)
    methods: tuple[Method, ...] = METHOD_KINDS
    device: str = "cpu"
    seed: int = 0
    chunk_images: int = 50
    blrp_chunk: int | None = 10
    batch_size: int = 256
    data_range: tuple[float, float] = (0.0, 1.0)
    normalise: tuple[float, float] | None = MNIST_NORMALISE

    def method_keys(self) -> list[str]:
        """Curve names in display order: ``lrp``, ``blrp_5`` …, ``gradient_x_input``,
        ``random`` (those selected in ``methods``)."""
        unknown = set(self.methods) - set(METHOD_KINDS)
        if unknown:
            raise ValueError(f"unknown methods {sorted(unknown)}: choose from {METHOD_KINDS}")
        keys: list[str] = []
        for kind in METHOD_KINDS:
            if kind in self.methods:
                keys += [_alpha_key(a) for a in self.alphas] if kind == "blrp" else [kind]
        return keys


def _alpha_key(alpha: float) -> str:
    return f"blrp_{alpha:g}"


def method_label(key: str) -> str:
    """Display name of a curve key (``blrp_5`` → ``B-LRP α=5``)."""
    if key.startswith("blrp_"):
        return f"B-LRP α={key[5:]}"
    return {"lrp": "Standard LRP-ε", "gradient_x_input": "Gradient×Input",
            "random": "Random"}.get(key, key)


@dataclass
class ExperimentResult:
    """Per-image curves of a (possibly stopped) run.

    ``curves``: {method key: [n, steps]} target scores (logit or probability) for the ``n``
    images done; ``fraction_flipped``: [steps] x-axis (0 … (steps−1)·pps / pixels);
    ``targets``: [n] classes scored; ``timings``: seconds per phase.
    """

    config: PixelFlippingConfig
    curves: dict[str, np.ndarray]
    fraction_flipped: np.ndarray
    targets: np.ndarray
    seconds: float
    stopped: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def n_images(self) -> int:
        return int(self.targets.shape[0])

    def mean_curves(self) -> dict[str, np.ndarray]:
        """{method: [steps]} mean score over the images done."""
        return {k: v.mean(0) for k, v in self.curves.items()}

    def summary(self) -> list[dict[str, float | int | str]]:
        """One row per method: mean AUC (lower = more faithful) and AOPC (higher = more
        faithful) over images, with standard errors of the mean."""
        rows: list[dict[str, float | int | str]] = []
        for key, c in self.curves.items():
            t = torch.from_numpy(c)
            a, o = auc(t).numpy(), aopc(t).numpy()
            rows.append({"method": key, "label": method_label(key), "n_images": len(c),
                         "auc_mean": float(a.mean()), "auc_sem": _sem(a),
                         "aopc_mean": float(o.mean()), "aopc_sem": _sem(o)})
        return rows


def _sem(v: np.ndarray) -> float:
    return float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")


# -- inputs ----------------------------------------------------------------------------------

def resolve_device(name: str) -> torch.device:
    """``"cpu"``, ``"cuda"`` (error if unavailable) or ``"auto"``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested, but CUDA is not available to this "
                           f"PyTorch ({torch.__version__}); use --device cpu")
    return torch.device(name)


def load_mnist_inputs(n_images: int) -> tuple[Tensor, Tensor]:
    """The first ``n_images`` bundled held-out digits as LeNet inputs [n, 1, 32, 32]
    (normalised) and their labels [n]."""
    from .data import load_bundled_mnist, mnist_to_tensor

    images, labels = load_bundled_mnist("test")
    if not 1 <= n_images <= len(images):
        raise ValueError(f"n_images must lie in 1…{len(images)} (bundled test digits), "
                         f"got {n_images}")
    return (mnist_to_tensor(images[:n_images], size=32),
            torch.tensor(labels[:n_images], dtype=torch.long))


def load_lenet() -> nn.Module:
    """The bundled trained LeNet, in eval mode."""
    from .models import load_bundled

    return load_bundled("lenet").eval()


# -- the run -------------------------------------------------------------------------------

def _relevance_maps(model: nn.Module, fast: nn.Module, x: Tensor, y: Tensor,
                    cfg: PixelFlippingConfig, timings: dict[str, float]
                    ) -> dict[str, Tensor | None]:
    """{method key: relevance [n, C, H, W]} for one chunk (None: the random order)."""
    out: dict[str, Tensor | None] = {}
    t0 = time.perf_counter()
    if "lrp" in cfg.methods:
        out["lrp"] = explain(model, x, y, cfg.composite)
        t0 = tick(timings, "lrp", t0)
    if "blrp" in cfg.methods:
        from .bayes import blrp

        res = blrp(fast, _like_model(x, fast), y, composite=cfg.composite,
                   n_samples=cfg.n_samples, alphas=cfg.alphas, seed=cfg.seed,
                   chunk_size=cfg.blrp_chunk)
        for alpha, p in zip(cfg.alphas, res.percentiles, strict=True):
            out[_alpha_key(alpha)] = p.contiguous()
        t0 = tick(timings, "blrp", t0)
    if "gradient_x_input" in cfg.methods:
        out["gradient_x_input"] = gradient_x_input(model, x, y)
        t0 = tick(timings, "gradient_x_input", t0)
    if "random" in cfg.methods:
        out["random"] = None
    return out


def tick(timings: dict[str, float], key: str, t0: float) -> float:
    """Add the seconds since ``t0`` to ``timings[key]``; returns now (the next ``t0``)."""
    t = time.perf_counter()
    timings[key] = timings.get(key, 0.0) + t - t0
    return t


def _like_model(x: Tensor, model: nn.Module) -> Tensor:
    """``x`` channels-last when the model's convolutions are (faster on the CPU)."""
    cl = any(p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last)
             and not p.is_contiguous() for p in model.parameters())
    return to_channels_last(x) if cl and x.dim() == 4 else x


def _fast_model(model: nn.Module, device: torch.device) -> nn.Module:
    """A channels-last copy for CPU runs (B-LRP's many backward passes gain ~1.2–2×)."""
    return channels_last_twin(model) if device.type == "cpu" else model


def _flip_chunk(model: nn.Module, x: Tensor, y: Tensor, maps: dict[str, Tensor | None],
                ids: Sequence[int], cfg: PixelFlippingConfig) -> dict[str, np.ndarray]:
    """Pixel-flipping curves of one chunk: {method key: [n, steps]}. All methods flip to
    the same fill values (drawn per image from ``(seed, image id)``)."""
    values = fill_values(x, cfg.fill, cfg.data_range, cfg.normalise, cfg.seed, ids)
    out = {}
    for key, rel in maps.items():
        curves = pixel_flipping(
            model, x, y, torch.zeros_like(x) if rel is None else rel, steps=cfg.steps,
            pixels_per_step=cfg.pixels_per_step, fill=values,
            order="random" if rel is None else "most", score=cfg.score, seed=cfg.seed,
            batch_size=cfg.batch_size, image_ids=ids)
        out[key] = curves.cpu().numpy()
    return out


def chunk_curves(model: nn.Module, fast: nn.Module, x: Tensor, y: Tensor, ids: Sequence[int],
                 cfg: PixelFlippingConfig, timings: dict[str, float] | None = None
                 ) -> dict[str, np.ndarray]:
    """Curves of one chunk of images: {method key: [n, steps]}.

    ``x`` [n, C, H, W] model inputs with labels ``y`` [n]; ``ids``: their global image
    indices, which seed the fill values and random orders, so a run split into chunks (the
    dashboard's live batches) gives the same curves as one call. ``fast``: the model's
    evaluation twin (``_fast_model``), or the model itself.
    """
    timings = {} if timings is None else timings
    maps = _relevance_maps(model, fast, x, y, cfg, timings)
    t0 = time.perf_counter()
    out = _flip_chunk(model, x, y, maps, ids, cfg)
    tick(timings, "pixel_flipping", t0)
    return out


def run_pixel_flipping_experiment(
        config: PixelFlippingConfig | None = None, *, model: nn.Module | None = None,
        inputs: tuple[Tensor, Tensor] | None = None, on_progress: ProgressFn | None = None,
        should_stop: Callable[[], bool] | None = None) -> ExperimentResult:
    """Run the experiment chunk by chunk and return the per-image curves.

    ``model`` (eval mode, used on its own device) and ``inputs`` = (x [N, C, H, W] model
    inputs, labels [N]) default to the bundled LeNet and held-out MNIST digits (the first
    ``config.n_images``). After each chunk ``on_progress(done, total, mean_curves)`` gets the
    running mean curve per method; when ``should_stop()`` turns true the run ends after the
    current chunk with ``stopped=True`` and the images done so far.
    """
    cfg = config or PixelFlippingConfig()
    keys = cfg.method_keys()
    if model is None:
        device = resolve_device(cfg.device)
        model = load_lenet().to(device)
    else:
        device = next(model.parameters()).device
    x_all, y_all = inputs if inputs is not None else load_mnist_inputs(cfg.n_images)
    x_all, y_all = x_all[:cfg.n_images], y_all[:cfg.n_images]
    total = x_all.shape[0]
    fast = _fast_model(model, device)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    timings: dict[str, float] = {}
    t_start, done, stopped = time.perf_counter(), 0, False
    for start in range(0, total, cfg.chunk_images):
        if should_stop is not None and should_stop():
            stopped = True
            break
        stop = min(start + cfg.chunk_images, total)
        x = x_all[start:stop].to(device)
        y = y_all[start:stop].to(device)
        for key, c in chunk_curves(model, fast, x, y, range(start, stop), cfg,
                                   timings).items():
            parts[key].append(c)
        done = stop
        if on_progress is not None:
            on_progress(done, total, {k: np.concatenate(v).mean(0) for k, v in parts.items()})
    curves = {k: np.concatenate(v) if v else np.zeros((0, cfg.steps), np.float32)
              for k, v in parts.items()}
    n_units = x_all.shape[-1] * x_all.shape[-2]
    return ExperimentResult(
        config=cfg, curves=curves,
        fraction_flipped=fraction_flipped(cfg.steps, cfg.pixels_per_step, n_units).numpy(),
        targets=y_all[:done].cpu().numpy(), seconds=time.perf_counter() - t_start,
        stopped=stopped, timings=timings)


# -- reporting -----------------------------------------------------------------------------

def format_summary(result: ExperimentResult) -> str:
    """A plain-text table: mean ± s.e.m. AUC and AOPC per method."""
    rows = result.summary()
    lines = [f"{'method':<18} {'images':>6}  {'AUC (lower = better)':>22}  "
             f"{'AOPC (higher = better)':>22}"]
    for r in rows:
        lines.append(f"{r['label']:<18} {r['n_images']:>6}  "
                     f"{r['auc_mean']:>13.4f} ± {r['auc_sem']:<6.4f}  "
                     f"{r['aopc_mean']:>13.4f} ± {r['aopc_sem']:<6.4f}")
    return "\n".join(lines)


def curves_figure(result: ExperimentResult, title: str | None = None):
    """Plotly figure: mean score vs percentage of pixels flipped, one line per method
    (:func:`lrp_engine.viz.curves_figure`)."""
    from .viz import curves_figure as figure

    cfg = result.config
    score = "logit" if cfg.score == "logit" else "probability"
    means = result.mean_curves()
    fig = figure(100 * result.fraction_flipped, means, {k: method_label(k) for k in means},
                 title=title or (f"Pixel flipping, MNIST ({result.n_images} images, "
                                 f"B-LRP {cfg.n_samples} samples, fill {cfg.fill})"),
                 y_title=f"Mean output score ({score})", height=600,
                 x_title="Percentage of pixels flipped")
    fig.update_layout(legend_title_text="Relevance")
    return fig


def write_outputs(result: ExperimentResult, out_dir: str | Path) -> tuple[list[Path], list[str]]:
    """Write ``curves.csv`` (mean score per step and method), ``summary.csv``,
    ``curves.npz`` (per-image curves and targets), ``config.json``, ``curves.html``
    (interactive) and ``curves.png`` when plotly's static export works. Returns the paths
    written and notes on what was skipped."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [_write_curves_csv(result, out / "curves.csv"),
             _write_summary_csv(result, out / "summary.csv")]
    # numpy's stub matches the curves' **kwargs against its allow_pickle keyword
    np.savez_compressed(out / "curves.npz", fraction_flipped=result.fraction_flipped,
                        targets=result.targets, **result.curves)  # type: ignore[arg-type]
    paths.append(out / "curves.npz")
    paths.append(_write_config(result, out / "config.json"))
    fig = curves_figure(result)
    fig.write_html(out / "curves.html", include_plotlyjs=True)
    paths.append(out / "curves.html")
    notes = []
    try:
        fig.write_image(out / "curves.png", width=900, height=600, scale=2)
        paths.append(out / "curves.png")
    except Exception as e:  # noqa: BLE001 - kaleido (static export) is optional
        notes.append(f"curves.png skipped: plotly static export unavailable "
                     f"({type(e).__name__}; install kaleido for PNG)")
    return paths, notes


def _write_curves_csv(result: ExperimentResult, path: Path) -> Path:
    means = result.mean_curves()
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "fraction_flipped", *means])
        for s, frac in enumerate(result.fraction_flipped):
            w.writerow([s, f"{frac:.6f}", *(f"{m[s]:.6f}" for m in means.values())])
    return path


def _write_summary_csv(result: ExperimentResult, path: Path) -> Path:
    rows = [{k: f"{v:.6g}" if isinstance(v, float) else v for k, v in r.items()}
            for r in result.summary()]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["method"])
        w.writeheader()
        w.writerows(rows)
    return path


def _write_config(result: ExperimentResult, path: Path) -> Path:
    info = {"config": asdict(result.config), "n_images_done": result.n_images,
            "stopped": result.stopped, "seconds": round(result.seconds, 3),
            "timings_s": {k: round(v, 3) for k, v in result.timings.items()},
            "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads()}
    path.write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return path
