"""Localisation metrics: does a heatmap point at the known object (the synthetic lesion)?

* :func:`relevance_mass_accuracy` (Arras et al. 2022, "CLEVR-XAI"): the share of the positive
  relevance that lies inside the ground-truth mask, per image, in [0, 1].
* :func:`pointing_game` (Zhang et al. 2018): whether the single most relevant pixel lies in
  the mask (optionally grown by a tolerance of a few pixels).
* :func:`localisation_table`: both, averaged over images, for several LRP presets plus
  Gradient×Input and a random-map baseline (whose expected RMA is the mask's area share).

Relevance is summed over channels first. ``python -m lrp_engine.localisation`` runs the table
on the MRI demo's fixed held-out slices (lesion classes only), as a batch job
(:func:`lrp_engine.batch.presets.localisation_config`) into its ``--out`` folder: the same
numbers as :func:`localisation_table` on those slices.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Literal, TypedDict, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .composites import PRESETS, Composite, get_composite
from .core import explain, gradient_x_input

#: the comparison maps :func:`localisation_table` adds to the LRP presets
Baseline = Literal["random", "gradient×input"]
RANDOM: Baseline = "random"
GRADIENT_X_INPUT: Baseline = "gradient×input"
BASELINES: tuple[Baseline, ...] = get_args(Baseline)
#: which class the command line explains: the true label or the model's prediction
ExplainedClass = Literal["true", "predicted"]
#: a row of the table: an LRP preset name, a :class:`Composite`, or a baseline
Method = str | Composite


class LocalisationRow(TypedDict):
    """One method's row of :func:`localisation_table` (rma, pointing: fractions in [0, 1])."""

    method: str
    rma: float
    rma_std: float
    pointing: float
    n: int
    seconds: float


def _heat_and_mask(relevance: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Channel-summed heatmap [N, H, W] and a bool mask broadcast to it."""
    r = relevance.sum(1) if relevance.dim() == 4 else relevance
    if r.dim() != 3:
        raise ValueError(f"relevance must be [N, C, H, W] or [N, H, W], got "
                         f"{list(relevance.shape)}")
    m = mask.to(torch.bool)
    if m.dim() == 4:
        m = m.any(1)
    m = m.expand_as(r) if m.dim() == 2 or m.shape[0] == 1 else m
    if m.shape != r.shape:
        raise ValueError(f"mask shape {list(mask.shape)} does not fit relevance "
                         f"{list(relevance.shape)}")
    return r, m


def relevance_mass_accuracy(relevance: Tensor, mask: Tensor) -> Tensor:
    """Positive relevance inside ``mask`` / all positive relevance, per image: [N] in [0, 1].

    ``relevance``: [N, C, H, W] or [N, H, W]; ``mask``: bool [N, H, W], [N, 1, H, W] or
    [H, W]. NaN where it is undefined: a map without any positive relevance, or an empty
    mask (e.g. a "no lesion" image); average with ``nanmean``.
    """
    r, m = _heat_and_mask(relevance, mask)
    pos = r.clamp(min=0).flatten(1)
    m = m.flatten(1)
    total = pos.sum(1)
    inside = (pos * m).sum(1)
    ok = (total > 0) & m.any(1)
    return torch.where(ok, inside / total.clamp(min=torch.finfo(pos.dtype).tiny),
                       torch.full_like(total, float("nan")))


def dilate(mask: Tensor, pixels: int) -> Tensor:
    """Grow a bool mask [N, H, W] by ``pixels`` in every direction (square neighbourhood)."""
    if pixels <= 0:
        return mask
    k = 2 * pixels + 1
    return F.max_pool2d(mask[:, None].float(), k, stride=1, padding=pixels)[:, 0] > 0


def pointing_game(relevance: Tensor, mask: Tensor, tolerance: int = 0) -> Tensor:
    """Whether the most relevant pixel (channel-summed; first one on ties) lies inside
    ``mask`` grown by ``tolerance`` pixels: bool [N] (False for an empty mask: exclude those
    images). Shapes as in
    :func:`relevance_mass_accuracy`."""
    r, m = _heat_and_mask(relevance, mask)
    m = dilate(m.contiguous(), tolerance)
    idx = r.flatten(1).argmax(1, keepdim=True)
    return m.flatten(1).gather(1, idx)[:, 0]


def random_relevance(shape: Sequence[int], seed: int = 0) -> Tensor:
    """A uniform random heatmap in [0, 1) (the chance baseline), seeded."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(tuple(shape), generator=g)


def _maps(model: nn.Module, images: Tensor, targets: Tensor, method: Method,
          batch_size: int, seed: int) -> Tensor:
    if method == RANDOM:
        return random_relevance((images.shape[0], *images.shape[2:]), seed)
    parts = []
    for i in range(0, images.shape[0], batch_size):
        x, t = images[i:i + batch_size], targets[i:i + batch_size]
        if method == GRADIENT_X_INPUT:
            parts.append(gradient_x_input(model, x, t))
        else:
            parts.append(explain(model, x, t, composite=method))
    return torch.cat(parts)


def _name(method: Method) -> str:
    return method if isinstance(method, str) else method.name


def localisation_table(model: nn.Module, images: Tensor, masks: Tensor, targets: Tensor,
                       presets: Sequence[Method], tolerance: int = 0,
                       baselines: bool = True, batch_size: int = 64, seed: int = 0
                       ) -> list[LocalisationRow]:
    """Mean relevance mass accuracy and pointing-game hit rate per method.

    ``images`` [N, C, H, W], ``masks`` bool [N, H, W] (non-empty), ``targets`` long [N]
    (the class each map explains). ``presets``: preset names or composites; with
    ``baselines`` Gradient×Input and a random map are added. Rows: ``{"method", "rma",
    "rma_std", "pointing", "n", "seconds"}`` (rma/pointing in [0, 1]; NaN RMAs — maps
    without positive relevance — count as 0).
    """
    if masks.flatten(1).sum(1).eq(0).any():
        raise ValueError("every image needs a non-empty mask (leave out 'no lesion' images)")
    methods: list[Method] = list(presets)
    if baselines:
        methods += [GRADIENT_X_INPUT, RANDOM]
    rows: list[LocalisationRow] = []
    for method in methods:
        t0 = time.perf_counter()
        rel = _maps(model, images, targets, method, batch_size, seed)
        seconds = time.perf_counter() - t0
        rma = torch.nan_to_num(relevance_mass_accuracy(rel, masks), nan=0.0)
        hit = pointing_game(rel, masks, tolerance).float()
        rows.append(LocalisationRow(method=_name(method), rma=float(rma.mean()),
                                    rma_std=float(rma.std()) if len(rma) > 1 else 0.0,
                                    pointing=float(hit.mean()), n=len(rma),
                                    seconds=seconds))
    return rows


def format_table(rows: Sequence[LocalisationRow], mask_share: float | None = None) -> str:
    """The rows as a Markdown table (percentages)."""
    lines = ["| method | relevance mass accuracy | pointing game | time (s) |",
             "| --- | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['method']} | {100 * r['rma']:.1f} % ± {100 * r['rma_std']:.1f} "
                     f"| {100 * r['pointing']:.1f} % | {r['seconds']:.2f} |")
    if mask_share is not None:
        lines.append(f"\nmask area: {100 * mask_share:.2f} % of the image on average "
                     "(the random map's expected RMA)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lrp_engine localisation",
        description="Localisation of LRP heatmaps on the synthetic MRI demo's held-out "
                    "slices (lesion classes): relevance mass accuracy and pointing game.")
    p.add_argument("--images", type=int, default=200,
                   help="held-out images generated (about 3/4 have a lesion); default 200")
    p.add_argument("--presets", nargs="+", default=list(PRESETS), metavar="PRESET",
                   help=f"LRP presets (default: all: {', '.join(PRESETS)})")
    p.add_argument("--tolerance", type=int, default=0,
                   help="pointing game: grow the masks by this many pixels (default 0)")
    p.add_argument("--target", choices=get_args(ExplainedClass), default="true",
                   help="explain the true class (default) or the predicted one")
    p.add_argument("--seed", type=int, default=0, help="seed of the random baseline")
    p.add_argument("--out", default="results/localisation",
                   help="results folder of the batch job (resumed when the settings are the "
                   "same, replaced otherwise; default results/localisation)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the table on the MRI demo through batch and print it (Markdown)."""
    from .batch.local import Interrupted
    from .batch.presets import localisation_config, localisation_facts, run_localisation_batch
    from .mri_demo import DISCLAIMER

    args = build_parser().parse_args(argv)
    for name in args.presets:
        get_composite(name)  # unknown names fail before any work
    torch.set_num_threads(min(2, torch.get_num_threads()))
    cfg = localisation_config(args.images, args.presets, tolerance=args.tolerance,
                              target=args.target, seed=args.seed, out=args.out,
                              quiet=args.quiet)
    try:
        rows, report, folder = run_localisation_batch(cfg)
    except Interrupted as e:
        print(f"\ninterrupted: {e.report.n_done_before + e.report.n_computed} of "
              f"{e.report.n_items} slices are finished in {e.report.out}; rerun the same "
              "command to resume", file=sys.stderr)
        return 130
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    accuracy, mask_share = localisation_facts(folder)
    print(DISCLAIMER)
    print(f"{report.n_items} lesion images (of {args.images}), accuracy on them "
          f"{accuracy:.3f}; explaining the {args.target} class; pointing-game tolerance "
          f"{args.tolerance} px\n")
    print(format_table(rows, mask_share))
    if report.n_done_before:
        print(f"\n({report.n_done_before} images from an earlier run in {report.out}: their "
              "time is not counted)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
