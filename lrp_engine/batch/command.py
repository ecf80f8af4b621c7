"""``python -m lrp_engine batch`` (and ``lrp-explorer batch``): explain and score a data set.

    python -m lrp_engine batch --input photos/ --model efficientnet_lite0 \\
        --methods epsilon epsilon-gamma-box blrp --blrp-samples 32 --out results/photos
    python -m lrp_engine batch --input mri-demo --methods epsilon gradient_x_input random

Prints the summary table (Markdown) and where the results folder is. Problems with the
inputs (a missing folder, no images, a checkpoint that does not fit, another job's folder)
are one line on stderr and exit status 2; a failure while running is one line and status 1;
Ctrl-C finalises the finished items and exits with 130 (rerun the same command to resume).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from typing import TYPE_CHECKING

from .config import DEVICES, METRIC_FAMILIES, TARGETS, BatchConfig, ConfigError, validate

if TYPE_CHECKING:
    from .local import RunReport

RAY_MISSING = "Ray is an optional extra: pip install 'lrp-explorer[ray]'"
#: ``--ray`` without an address: start a local Ray for the job
LOCAL_RAY = ""


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``batch`` on the top-level subparsers of :func:`lrp_engine.cli.build_parser`."""
    from ..evaluation import FILLS, SCORES

    p = commands.add_parser(
        "batch", help="explain and score a whole data set (locally, or on Ray with --ray)",
        description="Relevance maps and faithfulness/localisation metrics for every item of a "
        "folder or bundled set, into one resumable results folder (per-item .npz maps, "
        "metrics.csv/.parquet, summary, curves, plots, config.json).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--input", required=True, metavar="{mnist,mri-demo,PATH}",
                   help="the bundled digits (mnist), the MRI demo's held-out set (mri-demo, "
                   "or mri-demo:N for N images), or a folder of pictures (ImageFolder layout "
                   "gives labels), DICOM or NIfTI files")
    p.add_argument("--masks", metavar="DIR", default=None,
                   help="masks with the input's relative paths (any picture type, nonzero = "
                   "inside) for relevance mass accuracy and the pointing game")
    p.add_argument("--model", default=None,
                   help="registry name (default: the bundled set's model); with --checkpoint "
                   "a torchvision or bundled architecture")
    p.add_argument("--checkpoint", metavar="FILE", default=None,
                   help="weights (.pt/.pth/.safetensors) for --model")
    p.add_argument("--card", metavar="FILE", default=None,
                   help="model card or preprocessing card (JSON) for the checkpoint")
    p.add_argument("--methods", nargs="+", default=["epsilon", "gradient_x_input", "random"],
                   metavar="METHOD", help="LRP presets, gradient_x_input, random, blrp")
    p.add_argument("--metrics", nargs="+", default=list(METRIC_FAMILIES), metavar="METRIC",
                   help="pf (pixel flipping), rp (region perturbation), rma, pointing "
                   "(the last two where masks exist)")
    p.add_argument("--steps", type=int, default=64, help="evaluations per curve")
    p.add_argument("--pixels-per-step", type=int, default=4,
                   help="pixels flipped between evaluations (pixel flipping)")
    p.add_argument("--patch", type=int, default=9,
                   help="region side in pixels (region perturbation: one region per step)")
    p.add_argument("--fill", choices=FILLS, default="uniform", help="value of flipped pixels")
    p.add_argument("--score", choices=SCORES, default="logit", help="target score")
    p.add_argument("--target", choices=TARGETS, default="true",
                   help="explain the true class (the prediction where unknown) or the "
                   "predicted one")
    p.add_argument("--blrp-alphas", nargs="+", type=float, default=[5, 25, 50, 75, 95],
                   metavar="ALPHA", help="B-LRP percentile maps (0…100)")
    p.add_argument("--blrp-samples", type=int, default=100, help="B-LRP posterior samples")
    p.add_argument("--blrp-composite", default="epsilon", help="B-LRP's LRP preset")
    p.add_argument("--tolerance", type=int, default=0,
                   help="pointing game: grow masks by this many pixels")
    p.add_argument("--lesions-only", action="store_true",
                   help="leave out items without a (non-empty) mask")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="the first N items")
    p.add_argument("--batch-size", type=int, default=50, help="items per worker call")
    p.add_argument("--device", choices=DEVICES, default="cpu")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds dropout masks, fill values, random orders and maps")
    p.add_argument("--out", default="results/batch", help="results folder")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a results folder's contents (of any configuration)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--ray", nargs="?", const=LOCAL_RAY, default=None, metavar="ADDRESS",
                   help="run on Ray: an existing cluster (auto, ray://host:port), or without "
                   "ADDRESS a local Ray started for the job")
    p.add_argument("--workers", type=int, default=None,
                   help="Ray actors (one model each; default: one per GPU or CPU core)")
    p.set_defaults(handler=run)


def config_from_args(args: argparse.Namespace) -> BatchConfig:
    """The :class:`BatchConfig` of parsed ``batch`` arguments."""
    return BatchConfig(
        input=args.input, masks=args.masks, model=args.model, checkpoint=args.checkpoint,
        card=args.card, methods=tuple(args.methods), metrics=tuple(args.metrics),
        steps=args.steps, pixels_per_step=args.pixels_per_step, patch=args.patch,
        fill=args.fill, score=args.score, target=args.target,
        blrp_alphas=tuple(args.blrp_alphas), blrp_samples=args.blrp_samples,
        blrp_composite=args.blrp_composite, tolerance=args.tolerance,
        lesions_only=args.lesions_only, limit=args.limit, seed=args.seed,
        batch_size=args.batch_size, device=args.device, out=args.out,
        overwrite=args.overwrite, quiet=args.quiet,
        backend="local" if args.ray is None else "ray",
        ray_address=args.ray or None, workers=args.workers)


def fail(message: str, status: int = 2) -> int:
    """One line on stderr; returns ``status``."""
    print("error: " + " ".join(str(message).split()), file=sys.stderr)
    return status


def run(args: argparse.Namespace) -> int:
    """Handler of ``batch``: 0 done, 2 bad input, 1 a failure while running, 130 Ctrl-C."""
    try:
        cfg = config_from_args(args)
        validate(cfg)
    except ConfigError as e:
        return fail(str(e))
    try:
        return _run(cfg)
    except KeyboardInterrupt:
        print("interrupted before any item was finished", file=sys.stderr)
        return 130
    except ValueError as e:  # ConfigError, BatchError, CheckpointError, CardError, …
        return fail(str(e) or type(e).__name__)
    except (RuntimeError, OSError, MemoryError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return fail(first[:400], 1)


def _run(cfg: BatchConfig) -> int:
    from .local import Interrupted, run_local

    if cfg.backend == "ray":
        if importlib.util.find_spec("ray") is None:
            print(RAY_MISSING, file=sys.stderr)
            return 2
        try:  # imported only here: Ray is never imported by the engine core
            ray_backend = importlib.import_module("lrp_engine.batch.ray_backend")
        except ImportError as e:
            return fail(f"the Ray backend cannot be loaded: {e}")
        runner = ray_backend.run_ray
    else:
        from ..cli import keep_freed_memory

        keep_freed_memory()
        runner = run_local
    try:
        report = runner(cfg)
    except Interrupted as e:
        r = e.report
        print(f"\ninterrupted: {r.n_done_before + r.n_computed} of {r.n_items} items are "
              f"finished and finalised in {r.out}; rerun the same command to resume",
              file=sys.stderr)
        return 130
    return _report(cfg, report)


def _report(cfg: BatchConfig, report: RunReport) -> int:
    from .results import ResultsFolder

    folder = ResultsFolder(report.out)
    print(folder.summary_markdown(), end="")
    print(f"\n{report.n_items} items: {report.n_computed} computed now, "
          f"{report.n_done_before} from an earlier run, {report.n_skipped} skipped "
          f"(skipped.csv); {report.seconds:.1f} s")
    for note in report.notes:
        print(f"note: {note}")
    print(f"wrote {folder.path} (config.json, items/, metrics.csv, summary.csv, curves.csv, "
          "summary.md, plots/)")
    return 0


__all__ = ["RAY_MISSING", "add_parser", "config_from_args", "run"]
