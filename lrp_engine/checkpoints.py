"""Loading a user's checkpoint safely into any architecture of the registry.

``load_checkpoint(source, arch)`` accepts the bytes of an upload or a path, in either format:

* PyTorch ``.pt``/``.pth`` (zip or legacy): read with ``torch.load(weights_only=True)``, which
  only rebuilds tensors and plain containers. A file with pickled Python objects (a whole
  model saved with ``torch.save(model)``, or a malicious pickle) is refused **before** any of
  its code can run; the file is never unpickled any other way.
* ``.safetensors``: detected by its header (8-byte little-endian length + JSON), whatever
  the file is called.

The state dict may be wrapped (``{"state_dict": …}``, ``{"model": …}``,
``{"model_state_dict": …}``, …) and its keys may carry a prefix from a wrapper module
(``module.`` from DataParallel, ``vgg16.`` from a model holding a VGG-16 as ``self.vgg16``,
``model.``, ``net.``, ``backbone.``, ``_orig_mod.`` from ``torch.compile``). A prefix is
stripped only when every key has it *and* stripping makes more keys match the architecture
(our LeNet's own keys start with ``model.``); a wrapper attribute named like the
architecture (``resnet50.``) is stripped too. Torchvision-format state dicts load strictly
under torchvision's names, after what torchvision itself does to them (DenseNet's old key
names, GoogLeNet / Inception v3 auxiliary classifiers dropped). The number of classes is
read from the output layer: the weight whose shape follows the class count (``fc``,
``classifier.6``, ``heads.head``, squeezenet's conv ``classifier.1``, …). Every problem is
one :class:`CheckpointError` with a plain-words message.
"""

from __future__ import annotations

import functools
import io
import os
import pickle
import re
import struct
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TypeGuard

import torch
from torch import Tensor

from .models.zoo import (
    ARCHITECTURES,
    LoadedModel,
    add_missing_counters,
    build_empty,
    fix_torchvision_keys,
    key_mismatch,
    known_class_names,
    load_state,
    metadata_of,
    spec,
    with_metadata,
)
from .safetensors_header import HeaderError, read_header

#: wrapper keys that may hold the state dict, tried in this order
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "weights",
                "params", "module", "ema")
#: key prefixes that wrapper modules add
PREFIXES = ("module.", "_orig_mod.", "model.", "vgg16.", "net.", "backbone.", "network.")
MAX_LISTED = 5


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with a message meant for the user."""


# -- reading the file ----------------------------------------------------------------------

def _read_source(source: bytes | bytearray | memoryview | str | Path) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), ""
    if isinstance(source, (str, Path)):
        path = Path(os.fspath(source)).expanduser()
        try:
            return path.read_bytes(), path.name
        except FileNotFoundError:
            raise CheckpointError(f"file not found: {path}") from None
        except IsADirectoryError:
            raise CheckpointError(f"{path} is a folder, not a checkpoint file") from None
        except OSError as e:
            raise CheckpointError(f"could not read {path}: {e.strerror or e}") from None
    raise TypeError(f"source must be bytes or a path, got {type(source).__name__}")


def _safetensors_header(data: bytes) -> dict | None:
    """The parsed safetensors header, None if ``data`` does not start like one; raises
    :class:`CheckpointError` for a header that starts like one but is broken."""
    try:
        return read_header(data)
    except HeaderError as e:
        raise CheckpointError(str(e)) from None


def _load_safetensors(data: bytes) -> dict[str, Tensor]:
    from safetensors.torch import load

    try:
        return load(data)
    except Exception as e:  # noqa: BLE001 - the library raises several types
        raise CheckpointError(f"broken safetensors file: {e}") from None


def _looks_like_text(data: bytes) -> bool:
    head = data[:512]
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(b >= 32 or b in (9, 10, 13) for b in head)


def _load_torch(data: bytes) -> object:
    """``torch.load`` restricted to tensors and plain containers. Never falls back to full
    unpickling."""
    try:
        with warnings.catch_warnings():  # e.g. "pickle protocol 4": the error below says more
            warnings.simplefilter("ignore")
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        found = re.search(r"GLOBAL ([\w.]+)", msg)
        detail = f" (it refers to `{found.group(1)}`)" if found else ""
        if "Weights only load failed" in msg or "Unsupported" in msg:
            raise CheckpointError(
                f"this file contains a pickled Python object, not a state dict{detail}: save "
                "`model.state_dict()` instead (torch.save(model.state_dict(), 'model.pt')). "
                "For safety, such files are never unpickled here.") from None
        raise CheckpointError(f"this file is not a readable PyTorch checkpoint ({msg})") \
            from None
    except (RuntimeError, EOFError, ValueError, KeyError, AttributeError, struct.error,
            UnicodeDecodeError, IndexError, TypeError, OverflowError) as e:
        raise CheckpointError(
            f"this file is not a readable PyTorch checkpoint ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else 'damaged data'})") from None


def read_state_dict(data: bytes, filename: str = "") -> tuple[dict[str, Tensor], list[str]]:
    """Bytes of a checkpoint → (state dict of tensors, notes). Format by content."""
    notes: list[str] = []
    if not data:
        raise CheckpointError("the file is empty")
    header = _safetensors_header(data)
    if header is not None:
        notes.append("read as safetensors")
        return _load_safetensors(data), notes
    if filename.lower().endswith(".safetensors"):
        raise CheckpointError("broken safetensors file: it does not start with a safetensors "
                              "header (8-byte length, then a JSON object)")
    is_zip = data[:4] == b"PK\x03\x04"
    is_pickle = data[:1] == b"\x80" and len(data) > 2 and 2 <= data[1] <= 5
    if not (is_zip or is_pickle):
        kind = "a text file" if _looks_like_text(data) else "binary data of an unknown kind"
        raise CheckpointError(
            f"this is not a PyTorch (.pt/.pth) or safetensors checkpoint: it looks like "
            f"{kind}")
    obj = _load_torch(data)
    sd, where = _find_state_dict(obj)
    if where:
        notes.append(f"weights found under {where}")
    return sd, notes


def _is_tensor_dict(obj: object) -> TypeGuard[dict[str, Tensor]]:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())


def _find_state_dict(obj: object, depth: int = 0) -> tuple[dict[str, Tensor], str]:
    """The state dict inside a loaded object: itself, or under a wrapper key (two levels)."""
    if _is_tensor_dict(obj):
        return with_metadata(obj, metadata_of(obj)), ""  # module versions kept
    if isinstance(obj, dict) and depth < 2:
        for key in WRAPPER_KEYS:
            if key in obj:
                try:
                    sd, inner = _find_state_dict(obj[key], depth + 1)
                except CheckpointError:
                    continue
                return sd, f"'{key}'" + (f" → {inner}" if inner else "")
        tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, Tensor)}
        if tensors and len(tensors) >= len(obj) / 2:
            return tensors, ""
    if isinstance(obj, Tensor):
        raise CheckpointError("this file holds a single tensor, not a state dict (a dict of "
                              "parameter names to tensors)")
    kind = type(obj).__name__
    keys = f" with keys {sorted(map(str, obj))[:MAX_LISTED]}" if isinstance(obj, dict) else ""
    raise CheckpointError(f"this file holds a {kind}{keys}, not a state dict: save "
                          "`model.state_dict()`")


# -- matching to an architecture -----------------------------------------------------------

def _strip(sd: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """Keys without ``prefix``; the recorded module versions follow (``vgg16.features`` →
    ``features``, ``vgg16`` → the root)."""
    meta = metadata_of(sd)
    if meta is not None:
        top = prefix[:-1]
        meta = {("" if k == top else k[len(prefix):]): v for k, v in meta.items()
                if k == top or k.startswith(prefix)}
    return with_metadata({k[len(prefix):]: v for k, v in sd.items()}, meta)


def match_prefixes(sd: dict[str, Tensor], expected: set[str],
                   prefixes: tuple[str, ...] = PREFIXES) -> tuple[dict[str, Tensor], list[str]]:
    """Strip wrapper prefixes (each only if every key has it) when that makes more keys
    match ``expected``; returns the best dict and the prefixes stripped, in order."""
    best, best_score, best_path = sd, len(expected & sd.keys()), []
    frontier: list[tuple[dict[str, Tensor], list[str]]] = [(sd, [])]
    for _ in range(3):
        nxt = []
        for cand, path in frontier:
            for p in prefixes:
                if all(k.startswith(p) for k in cand):
                    s = _strip(cand, p)
                    score = len(expected & s.keys())
                    if score > best_score:
                        best, best_score, best_path = s, score, [*path, p]
                    nxt.append((s, [*path, p]))
        frontier = nxt
    return best, best_path


@functools.cache
def _shapes(arch: str) -> dict[str, torch.Size]:
    """Key → shape of ``arch`` at its default class count (built on the meta device)."""
    return {k: v.shape for k, v in build_empty(arch).state_dict().items()}


@functools.cache
def output_weight_key(arch: str) -> str:
    """The key of ``arch``'s output layer weight: the one weight whose shape changes with
    the class count (found by building it twice on the meta device), e.g. ``fc.weight``
    (ResNet, RegNet, GoogLeNet, Inception v3: not ``AuxLogits.fc``), ``classifier.6.weight``
    (VGG), ``classifier.1.weight`` (EfficientNet; SqueezeNet's conv), ``heads.head.weight``
    (ViT), ``head.weight`` (Swin)."""
    a = _shapes(arch)
    b = build_empty(arch, spec(arch).default_classes + 1).state_dict()
    changed = [k for k, v in a.items() if len(v) >= 2 and b[k].shape != v]
    if len(changed) != 1:  # pragma: no cover - every registry architecture has one head
        raise RuntimeError(f"{arch}: no single output layer ({changed})")
    return changed[0]


def _fits(sd: Mapping[str, Tensor], shapes: Mapping[str, torch.Size]) -> bool:
    """Whether ``sd`` has ``shapes``' keys (BatchNorm counters aside) with their shapes,
    the output layer's first dimension (the class count) aside."""
    def keys(d: Mapping) -> set[str]:
        return {k for k in d if not k.endswith("num_batches_tracked")}

    if keys(sd) != keys(shapes):
        return False
    differ = [k for k in keys(shapes) if sd[k].shape != shapes[k]]
    return len(differ) <= 2 and all(sd[k].shape[1:] == shapes[k][1:] for k in differ)


def _guess(sd: Mapping[str, Tensor], arch: str) -> str | None:
    """Another architecture of ``arch``'s family that ``sd`` fits exactly, if any."""
    family = spec(arch).family
    for other, s in ARCHITECTURES.items():
        if other != arch and s.family == family and _fits(sd, _shapes(other)):
            return other
    return None


def _finite(t: Tensor) -> bool:
    """Whether every value of ``t`` is finite. A finite sum proves it (NaN and ±inf
    propagate) and is ~40× faster than ``isfinite`` on a CPU; only a non-finite sum
    (a non-finite value, or an overflow of huge ones) is checked value by value."""
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def _misfit(sd: Mapping[str, Tensor], reference: Mapping[str, torch.Size], arch: str,
            error: Exception | None = None) -> CheckpointError:
    """The error for a state dict that does not fit ``arch``: missing, unexpected and
    wrongly shaped keys (a few of each), and the architecture it fits, when one of the same
    family does."""
    parts = key_mismatch(sd, reference)
    head = f"the checkpoint does not fit the {spec(arch).label} architecture"
    if not parts:
        detail = str(error).strip().splitlines()[0][:300] if error is not None else ""
        return CheckpointError(f"{head}: {detail}" if detail else f"{head}.")
    other = _guess(sd, arch)
    if other is not None:
        tail = f". It fits {spec(other).label} ('{other}'): choose that architecture."
    elif any("missing" in p or "unexpected" in p for p in parts):
        tail = ". Is it a checkpoint of another architecture?"
    else:
        tail = "."
    return CheckpointError("; ".join([head, *parts]) + tail)


def _to_arch_keys(sd: dict[str, Tensor], arch: str, shapes: Mapping[str, torch.Size],
                  notes: list[str]) -> dict[str, Tensor]:
    """``sd`` under ``arch``'s own key names: wrapper prefixes stripped, torchvision's older
    layouts renamed (each said in ``notes``)."""
    extra = (f"{arch}.",) if f"{arch}." not in PREFIXES else ()
    sd, stripped = match_prefixes(sd, set(shapes), PREFIXES + extra)
    if stripped:
        notes.append("removed key prefix " + " then ".join(f"'{p}'" for p in stripped))
    if spec(arch).torchvision:
        sd, fixed = fix_torchvision_keys(arch, sd)
        notes += fixed
    return sd


def _class_count(sd: Mapping[str, Tensor], out_key: str, num_classes: int | None,
                 notes: list[str]) -> int:
    """The checkpoint's class count (its output layer's rows), checked against the one
    chosen."""
    k_file = int(sd[out_key].shape[0])
    if num_classes is not None and int(num_classes) != k_file:
        raise CheckpointError(f"the checkpoint has {k_file} output classes, you chose "
                              f"{int(num_classes)}")
    if num_classes is None:
        notes.append(f"{k_file} classes (read from {out_key})")
    return k_file


def _float32(sd: dict[str, Tensor], notes: list[str]) -> dict[str, Tensor]:
    """``sd`` with float32 weights (other float types converted, said in ``notes``); raises
    on NaN or infinite weights."""
    floats = {v.dtype for v in sd.values() if v.is_floating_point()}
    if floats - {torch.float32}:
        notes.append("converted " + ", ".join(sorted(str(d).replace("torch.", "")
                                                     for d in floats - {torch.float32}))
                     + " weights to float32")
        sd = with_metadata({k: v.float() if v.is_floating_point() else v
                            for k, v in sd.items()}, metadata_of(sd))
    if not all(_finite(v) for v in sd.values() if v.is_floating_point()):
        raise CheckpointError("the checkpoint contains NaN or infinite weights")
    return sd


def _class_names(arch: str, k_file: int, class_names: list[str] | None, notes: list[str]
                 ) -> list[str]:
    """The names given (one per output), else the known ones (ImageNet, digits), else
    "class i"."""
    if class_names is None:
        class_names = known_class_names(arch, k_file)
        if class_names is not None and k_file == 1000:
            notes.append("1000 outputs: using the ImageNet class names")
        class_names = class_names or [f"class {i}" for i in range(k_file)]
    elif len(class_names) != k_file:
        raise CheckpointError(f"{len(class_names)} class names given for a model with "
                              f"{k_file} outputs")
    return [str(c) for c in class_names]


def load_checkpoint(source: bytes | str | Path, arch: str, num_classes: int | None = None,
                    class_names: list[str] | None = None, filename: str = "") -> LoadedModel:
    """Load a checkpoint (bytes of an upload, or a path) into a fresh ``arch`` model (any
    registry name: the bundled ones or torchvision's, e.g. ``"resnet50"``).

    ``num_classes``: expected number of outputs; None reads it from the checkpoint's output
    layer. ``class_names``: one per output (default: ImageNet/digit names where they fit,
    else "class i"). ``filename``: the upload's name, used only as a hint in messages.
    Returns a :class:`LoadedModel` (CPU, eval mode); raises :class:`CheckpointError`.
    """
    s = spec(arch)
    data, name = _read_source(source)
    sd, notes = read_state_dict(data, filename or name)
    try:
        shapes, out_key = _shapes(arch), output_weight_key(arch)
    except ImportError as e:
        raise CheckpointError(f"the {s.label} architecture needs torchvision: {e}") from None
    sd = _to_arch_keys(sd, arch, shapes, notes)
    if out_key not in sd:
        raise _misfit(sd, shapes, arch)
    k_file = _class_count(sd, out_key, num_classes, notes)
    model = build_empty(arch, k_file)
    reference = {k: v.shape for k, v in model.state_dict().items()}
    sd, added = add_missing_counters(sd, reference)
    if added:
        notes.append(f"added {added} missing BatchNorm counters (num_batches_tracked)")
    sd = _float32(sd, notes)
    try:  # strict; assign: the model's parameters become the checkpoint's (CPU) tensors
        load_state(model, sd)
    except (RuntimeError, ValueError) as e:
        raise _misfit(sd, reference, arch, e) from None
    return LoadedModel(model=model, arch=arch, num_classes=k_file,
                       class_names=_class_names(arch, k_file, class_names, notes), notes=notes)


__all__ = ["CheckpointError", "LoadedModel", "load_checkpoint", "match_prefixes",
           "output_weight_key", "read_state_dict"]
