"""``python -m lrp_engine explain``: one picture, one checkpoint, one heatmap PNG.

    python -m lrp_engine explain --model resnet50 --weights w.pt --card card.json img.jpg \\
        -o heat.png [--composite epsilon] [--target N] [--num-classes K] [--overlay]

The model input is defined by a card: ``--card`` (a model card or a preprocessing card,
JSON), else the model card in the checkpoint's safetensors metadata, else the architecture's
default card in the registry. Prints the prediction (class name and logit), the target and
Σ relevance; writes the heatmap (``seismic``, ±max|R|) at the model input's size. Every
problem is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import inspect
import io
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np
import torch
from torch import nn

from .models.card import (
    MAX_JSON_BYTES,
    CardError,
    ModelCard,
    PreprocessingCard,
    card_from_json,
    card_from_safetensors,
)

if TYPE_CHECKING:
    from .composites import Composite
    from .models.zoo import LoadedModel

#: largest image file read (bytes)
MAX_IMAGE_BYTES = 200_000_000
#: largest checkpoint file read (bytes): VGG-16 is 528 MB
MAX_WEIGHTS_BYTES = 4_000_000_000


class ExplainError(Exception):
    """A problem the command reports in one line (exit status 2)."""


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``explain`` on the top-level subparsers of :func:`lrp_engine.cli.build_parser`."""
    from .composites import PRESETS

    p = commands.add_parser(
        "explain", help="explain one picture with a checkpoint and write the heatmap PNG",
        description="LRP heatmap of one picture. The input is made as a card says: --card, "
        "else the model card stored in a safetensors checkpoint, else the architecture's "
        "default card.")
    p.add_argument("image", help="picture (PNG, JPEG, TIFF, …) or a 2-D/3-D .npy array")
    p.add_argument("--model", default=None,
                   help="architecture name (default: the model card's architecture)")
    p.add_argument("--weights", required=True, help="checkpoint (.pt/.pth or .safetensors)")
    p.add_argument("--card", default=None, help="model card or preprocessing card (JSON)")
    p.add_argument("--composite", default="epsilon", choices=list(PRESETS),
                   metavar="NAME", help=f"LRP preset: {', '.join(PRESETS)} (default: epsilon)")
    p.add_argument("--target", type=int, default=None,
                   help="class index to explain (default: the predicted class)")
    p.add_argument("--num-classes", type=int, default=None,
                   help="expected number of classes (default: read from the checkpoint)")
    p.add_argument("-o", "--output", default="heatmap.png",
                   help="heatmap PNG to write (default: heatmap.png)")
    p.add_argument("--overlay", action="store_true",
                   help="draw the heatmap over the (grey) model input instead of alone")
    p.add_argument("--scale", type=int, default=1, help="enlarge each pixel scale×scale")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handler of ``explain``: 0 on success, 2 with one line on stderr otherwise."""
    try:
        explain_file(args, out=sys.stdout)
    except ExplainError as e:
        return _fail(str(e))
    except (ValueError, OSError, RuntimeError, TypeError, MemoryError) as e:
        # CardError, CheckpointError, ImageLoadError are ValueErrors with plain messages
        return _fail(str(e) or type(e).__name__)
    return 0


def _fail(message: str) -> int:
    print("error: " + " ".join(message.split()), file=sys.stderr)
    return 2


def _read(path: str, what: str, limit: int) -> bytes:
    p = Path(path).expanduser()
    try:
        size = p.stat().st_size
        if p.is_dir():
            raise ExplainError(f"the {what} {p} is a folder, not a file")
        if size > limit:
            raise ExplainError(f"the {what} {p} is {size:,} bytes; at most {limit:,} are read")
        return p.read_bytes()
    except FileNotFoundError:
        raise ExplainError(f"{what} not found: {p}") from None
    except PermissionError:
        raise ExplainError(f"no permission to read the {what} {p}") from None


def _given_card(args: argparse.Namespace, data: bytes
                ) -> tuple[ModelCard | PreprocessingCard | None, str]:
    """The card of ``--card``, else the one in the checkpoint's safetensors metadata, else
    None; with where it came from."""
    if args.card is not None:
        text = _read(args.card, "card", 10 * MAX_JSON_BYTES)
        try:
            return card_from_json(text), args.card
        except CardError as e:
            raise ExplainError(f"{args.card}: {e}") from None
    stored = card_from_safetensors(data)
    if stored is not None:
        return stored, "the checkpoint's safetensors metadata"
    return None, ""


def resolve_preprocessing(card: ModelCard | PreprocessingCard | None, source: str,
                   loaded: LoadedModel, arch: str) -> tuple[PreprocessingCard, str, list[str]]:
    """The preprocessing to use (the card's, else ``arch``'s default), where it came from,
    and the class names; a card that does not fit the model raises :class:`CardError`."""
    in_channels = _input_channels(loaded.model)
    names = list(loaded.class_names)
    if isinstance(card, ModelCard):
        card.check_against(loaded.num_classes, arch, in_channels)
        names = list(card.class_names) or names
        pre = card.preprocessing
    elif isinstance(card, PreprocessingCard):
        pre = card
    else:
        pre, source = default_card(arch), f"the default card of {arch}"
    if in_channels is not None and in_channels != pre.channels:
        raise CardError(f"the card gives {pre.channels} channel(s) but the model's first "
                        f"layer takes {in_channels}")
    return pre, source, names


def _write(path: str, png: bytes) -> Path:
    outp = Path(path).expanduser()
    try:
        outp.write_bytes(png)
    except OSError as e:
        raise ExplainError(f"cannot write {outp}: {e.strerror or e}") from None
    return outp


def explain_file(args: argparse.Namespace, out: TextIO | None = None) -> dict[str, object]:
    """Do the work of ``explain`` and print its report to ``out``; returns the facts
    (``arch``, ``card``, ``card_source``, ``prediction``, ``logit``, ``target``,
    ``relevance_sum``, ``output``). Raises :class:`ExplainError` or a plain ValueError."""
    from .checkpoints import load_checkpoint
    from .core import analyze
    from .viz import heatmap_png

    def say(line: str) -> None:
        print(line, file=out if out is not None else sys.stdout)

    if args.scale is not None and not 1 <= args.scale <= 16:
        raise ExplainError(f"--scale must be between 1 and 16, got {args.scale}")
    data = _read(args.weights, "checkpoint", MAX_WEIGHTS_BYTES)
    card, source = _given_card(args, data)
    arch = args.model or (card.architecture if isinstance(card, ModelCard) else None)
    if arch is None:
        raise ExplainError("say which architecture the checkpoint is for (--model NAME), or "
                           "give a model card that names it")
    loaded = load_checkpoint(data, arch, num_classes=args.num_classes,
                             filename=Path(args.weights).name)
    pre, source, names = resolve_preprocessing(card, source, loaded, arch)
    image = read_image(args.image)
    x = pre.to_tensor(image)
    k = loaded.num_classes
    if args.target is not None and not 0 <= args.target < k:
        raise ExplainError(f"--target must be a class index from 0 to {k - 1}, got "
                           f"{args.target}")
    composite = _composite(args.composite, pre)
    try:
        ex = analyze(loaded.model, x, target=args.target, composite=composite, record=False)
    except RuntimeError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ExplainError(f"the model cannot take the card's input {list(x.shape)} "
                           f"({first}); does the card's size fit this model?") from None
    logits = ex.logits[0]
    pred = int(logits.argmax())
    target = pred if args.target is None else int(args.target)
    total = float(ex.relevance.sum())
    outp = _write(args.output, heatmap_png(ex.relevance, scale=args.scale,
                                           image=pre.to_pixels(image) if args.overlay else None))
    for note in loaded.notes:
        say(f"note: {note}")
    say(f"card: {pre.describe()} (from {source})")
    say(f"prediction: {names[pred]!r} (class {pred}), logit {float(logits[pred]):.4g}")
    if target != pred:
        say(f"target: {names[target]!r} (class {target}), logit {float(logits[target]):.4g}")
    out_rel = float(ex.output_relevance[0])
    share = f", {100 * total / out_rel:.1f} % of the target's {out_rel:.4g}" if out_rel else ""
    say(f"relevance: Σ R = {total:.4g}{share} ({args.composite})")
    h, w = ex.relevance.shape[-2:]
    say(f"wrote {outp} ({w * args.scale}×{h * args.scale} pixels)")
    return {"arch": arch, "card": pre, "card_source": source, "prediction": pred,
            "logit": float(logits[pred]), "target": target, "relevance_sum": total,
            "output": outp}


def default_card(arch: str) -> PreprocessingCard:
    """The registry's default :class:`PreprocessingCard` of ``arch`` (for torchvision
    models, their DEFAULT weights' ``transforms()``)."""
    from .models import zoo

    return zoo.spec(arch).preprocessing


def read_image(path: str) -> object:
    """A picture file → PIL image (decoded safely: pixel limit, EXIF orientation), or a
    ``.npy`` file → numpy array (no pickles)."""
    from .io import DEFAULT_MAX_PIXELS, ImageLoadError, _decode, _open

    data = _read(path, "image", MAX_IMAGE_BYTES)
    if Path(path).suffix.lower() == ".npy" or data[:6] == b"\x93NUMPY":
        try:
            return np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise ExplainError(f"{path}: not a readable .npy array ({e})") from None
    try:
        img = _open(data, DEFAULT_MAX_PIXELS)
        return _decode(img)
    except ImageLoadError as e:
        raise ExplainError(f"{path}: {e}") from None


def _input_channels(model: nn.Module) -> int | None:
    """Input channels of the model's first convolution (None when it starts otherwise)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return int(m.in_channels)
        if isinstance(m, nn.Linear):
            return None
    return None


def _composite(name: str, card: PreprocessingCard) -> Composite:
    """The preset ``name``; presets with a zB box get the card's pixel bounds."""
    from .composites import PRESETS, get_composite

    params = inspect.signature(PRESETS[name]).parameters
    if "low" in params and "high" in params:
        return get_composite(name, low=torch.tensor(card.low), high=torch.tensor(card.high))
    return get_composite(name)


__all__ = ["ExplainError", "add_parser", "default_card", "explain_file", "read_image", "run"]
