"""Command line: ``python -m lrp_engine <command> …``.

    python -m lrp_engine experiment pixel-flipping [--images 1000] [--samples 100] …
    python -m lrp_engine localisation [--images 200] [--presets …]
    python -m lrp_engine explain --model resnet50 --weights w.pt [--card c.json] x.jpg -o h.png
    python -m lrp_engine batch --input {mnist,mri-demo,FOLDER} [--methods …] [--ray [ADDR]]

The two experiments run through ``batch`` (:mod:`lrp_engine.batch.presets`): each is a batch
job into its ``--out`` folder, printing its own table.

Commands are nested subparsers (``experiment`` → ``pixel-flipping``); a new experiment is one
more ``_add_…`` function and handler.
"""

from __future__ import annotations

import argparse
import ctypes
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from .evaluation import FILLS, SCORES


class ProgressBar:
    """A one-line progress bar on ``stream`` (stderr): ``[####....] 300/1000 images``.

    Redraws in place on a terminal; elsewhere (logs, pipes) prints a line per update.
    """

    def __init__(self, total: int, label: str = "", width: int = 30,
                 stream: TextIO | None = None) -> None:
        self.total, self.label, self.width = total, label, width
        self.stream = stream if stream is not None else sys.stderr
        self.t0 = time.perf_counter()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, done: int) -> None:
        frac = done / self.total if self.total else 1.0
        filled = round(frac * self.width)
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / frac - elapsed if frac > 0 else float("nan")
        line = (f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
                f"{done}/{self.total} images  {elapsed:5.1f} s  ETA {eta:5.1f} s")
        end = "" if self.tty and done < self.total else "\n"
        self.stream.write(("\r" if self.tty else "") + line + end)
        self.stream.flush()


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the OS.

    B-LRP allocates and frees tensors of 10–150 MB per chunk; by default glibc maps each
    anew (mmap above 32 MB) or trims the heap, and the kernel zero-fills every page again:
    about 10 million page faults for the 1000-digit experiment, ~40 % of B-LRP's time on
    2 cores. For a batch run that is pure waste. Process-wide, so only the command line does
    this (never the library or the dashboard). Returns False where it does not apply.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4
        return bool(libc.mallopt(m_mmap_max, 0)) and bool(
            libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):
        return False


def build_parser(prog: str = "python -m lrp_engine") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="LRP Explorer engine: reproducible experiments from the command line.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    experiment = commands.add_parser("experiment", help="run a reproducible experiment",
                                     description="Run a reproducible experiment.")
    kinds = experiment.add_subparsers(dest="experiment", metavar="EXPERIMENT")
    _add_pixel_flipping(kinds)
    loc = commands.add_parser(
        "localisation", add_help=False,
        help="does the heatmap point at the lesion? (the synthetic MRI demo, per preset)")
    loc.add_argument("args", nargs=argparse.REMAINDER)
    loc.set_defaults(handler=lambda a: _localisation_main(a.args))
    from .cli_explain import add_parser as _add_explain

    _add_explain(commands)
    from .batch.command import add_parser as _add_batch

    _add_batch(commands)
    return parser


def _localisation_main(argv: list[str]) -> int:
    from .localisation import main

    return main(argv)


def _add_pixel_flipping(kinds: argparse._SubParsersAction) -> None:
    p = kinds.add_parser(
        "pixel-flipping", help="B-LRP pixel flipping on MNIST (the README's experiment)",
        description="Pixel flipping (most relevant first) of standard LRP-ε, B-LRP "
        "percentile maps, Gradient×Input and a random order on the bundled held-out MNIST "
        "digits with the bundled LeNet; target = true label.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--images", type=int, default=1000, help="number of test digits (≤ 1000)")
    p.add_argument("--samples", type=int, default=100, help="B-LRP posterior samples (N_MC)")
    p.add_argument("--steps", type=int, default=64, help="evaluations per curve")
    p.add_argument("--pixels-per-step", type=int, default=4,
                   help="pixels flipped between evaluations")
    p.add_argument("--fill", choices=FILLS, default="uniform", help="value of flipped pixels")
    p.add_argument("--score", choices=SCORES, default="logit", help="target score")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds dropout masks, fill values and the random order")
    p.add_argument("--chunk", type=int, default=None,
                   help="images per relevance call (speed/memory only; default: 50 on the "
                   "CPU, 200 on a GPU)")
    p.add_argument("--out", default="results/pixel_flipping", help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run_pixel_flipping)


def _run_pixel_flipping(args: argparse.Namespace) -> int:
    """The experiment as a batch job into ``--out`` (resumed when the settings are the same,
    replaced otherwise), then its table."""
    from .batch.local import Interrupted
    from .batch.presets import run_pixel_flipping_batch
    from .experiment import PixelFlippingConfig, format_summary, resolve_device

    try:
        device = resolve_device(args.device)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    chunk = args.chunk or (50 if device.type == "cpu" else 200)
    cfg = PixelFlippingConfig(
        n_images=args.images, n_samples=args.samples, steps=args.steps,
        pixels_per_step=args.pixels_per_step, fill=args.fill, score=args.score,
        device=str(device), seed=args.seed, chunk_images=chunk)
    keep_freed_memory()
    t0 = time.perf_counter()
    try:
        result, report = run_pixel_flipping_batch(cfg, args.out, quiet=args.quiet)
    except Interrupted as e:
        print(f"\ninterrupted: {e.report.n_done_before + e.report.n_computed} of "
              f"{e.report.n_items} digits are finished in {e.report.out}; rerun the same "
              "command to resume", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    wall = time.perf_counter() - t0
    print(format_summary(result))
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
    resumed = f"; {report.n_done_before} digits from an earlier run" if report.n_done_before \
        else ""
    print(f"\n{result.n_images} images, {cfg.n_samples} B-LRP samples, {cfg.steps} steps × "
          f"{cfg.pixels_per_step} pixels, fill {cfg.fill}, device {device}: "
          f"{wall:.1f} s ({phases}){resumed}")
    print(f"wrote {report.out} (a batch results folder: summary.md, summary.csv, curves.csv, "
          "metrics.csv, items/, plots/curves.html; curves.npz: the per-digit curves)")
    for note in report.notes:
        print(f"note: {note}")
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "python -m lrp_engine") -> int:
    """Entry point; returns the exit status. No command: print help. ``prog``: the name
    the help shows (``lrp-explorer`` reaches these commands too)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["localisation"]:  # its own parser, options and --help included
        return _localisation_main(argv[1:])
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        if args.command == "experiment":
            parser.parse_args([args.command, "--help"])  # prints the experiment list, exits
        parser.print_help()
        return 0
    return handler(args)
