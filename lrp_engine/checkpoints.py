"""Loading a user's checkpoint safely into one of the zoo's architectures.

``load_checkpoint(source, arch)`` accepts the bytes of an upload or a path, in either format:

* PyTorch ``.pt``/``.pth`` (zip or legacy): read with ``torch.load(weights_only=True)``, which
  only rebuilds tensors and plain containers. A file with pickled Python objects (a whole
  model saved with ``torch.save(model)``, or a malicious pickle) is refused **before** any of
  its code can run; the file is never unpickled any other way.
* ``.safetensors``: detected by its header (8-byte little-endian length + JSON), whatever
  the file is called.

The state dict may be wrapped (``{"state_dict": …}``, ``{"model": …}``,
``{"model_state_dict": …}``, …) and its keys may carry a prefix from a wrapper module
(``module.`` from DataParallel, ``vgg16.`` like the fine-tuning notebook's ``CNNModel``,
``model.``, ``net.``, ``backbone.``, ``_orig_mod.`` from ``torch.compile``). A prefix is
stripped only when every key has it *and* stripping makes more keys match the architecture
(our LeNet's own keys start with ``model.``). The number of classes is read from the last
layer's weight. Every problem is one :class:`CheckpointError` with a plain-words message.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from .models.zoo import IMAGENET_CLASSES, spec

#: wrapper keys that may hold the state dict, tried in this order
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "weights",
                "params", "module", "ema")
#: key prefixes that wrapper modules add
PREFIXES = ("module.", "_orig_mod.", "model.", "vgg16.", "net.", "backbone.", "network.")
MAX_LISTED = 5


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with a message meant for the user."""


@dataclass
class LoadedModel:
    """A model ready to explain: ``model`` (CPU, eval mode), its ``arch``, ``num_classes``,
    ``class_names`` (one per output) and ``notes`` (what was done to load it)."""

    model: nn.Module
    arch: str
    num_classes: int
    class_names: list[str]
    notes: list[str] = field(default_factory=list)


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
    if len(data) < 10:
        return None
    (n,) = struct.unpack("<Q", data[:8])
    if data[8:9] != b"{":
        return None
    if n > len(data) - 8:
        raise CheckpointError(
            f"broken safetensors file: its header says {n} bytes but the file has only "
            f"{len(data) - 8} after the length field (truncated upload?)")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"broken safetensors file: its header is not valid JSON ({e})") \
            from None
    if not isinstance(header, dict):
        raise CheckpointError("broken safetensors file: its header is not a JSON object")
    return header


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


def _is_tensor_dict(obj: object) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())


def _find_state_dict(obj: object, depth: int = 0) -> tuple[dict[str, Tensor], str]:
    """The state dict inside a loaded object: itself, or under a wrapper key (two levels)."""
    if _is_tensor_dict(obj):
        return dict(obj), ""
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

def _strip(sd: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in sd.items()}


def match_prefixes(sd: dict[str, Tensor], expected: set[str]
                   ) -> tuple[dict[str, Tensor], list[str]]:
    """Strip wrapper prefixes (each only if every key has it) when that makes more keys
    match ``expected``; returns the best dict and the prefixes stripped, in order."""
    best, best_score, best_path = sd, len(expected & sd.keys()), []
    frontier = [(sd, [])]
    for _ in range(3):
        nxt = []
        for cand, path in frontier:
            for p in PREFIXES:
                if all(k.startswith(p) for k in cand):
                    s = _strip(cand, p)
                    score = len(expected & s.keys())
                    if score > best_score:
                        best, best_score, best_path = s, score, path + [p]
                    nxt.append((s, path + [p]))
        frontier = nxt
    return best, best_path


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED])
    return shown + (f" … and {len(keys) - MAX_LISTED} more" if len(keys) > MAX_LISTED else "")


def _output_weight_key(model: nn.Module) -> str:
    """Name of the last layer's weight (the one whose first dimension is the class count)."""
    last = None
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)) and m.weight is not None:
            last = f"{name}.weight"
    if last is None:
        raise RuntimeError("architecture without a linear or conv layer")
    return last


def _check_keys(sd: dict[str, Tensor], reference: dict[str, Tensor], arch: str,
                notes: list[str]) -> dict[str, Tensor]:
    missing = [k for k in reference if k not in sd]
    # older BatchNorm checkpoints lack the (unused in eval) num_batches_tracked counters
    counters = [k for k in missing if k.endswith("num_batches_tracked")]
    if counters:
        sd = dict(sd)
        for k in counters:
            sd[k] = torch.zeros((), dtype=torch.long)
        missing = [k for k in missing if k not in counters]
        notes.append(f"added {len(counters)} missing BatchNorm counters (num_batches_tracked)")
    unexpected = [k for k in sd if k not in reference]
    if missing or unexpected:
        parts = [f"the checkpoint does not fit the {spec(arch).label} architecture"]
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_listing(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected)}")
        raise CheckpointError("; ".join(parts) + ". Is it a checkpoint of another "
                              "architecture?")
    wrong = [f"{k} {list(sd[k].shape)} (expected {list(v.shape)})"
             for k, v in reference.items() if sd[k].shape != v.shape]
    if wrong:
        raise CheckpointError(f"the checkpoint does not fit the {spec(arch).label} "
                              f"architecture: {len(wrong)} tensor(s) of the wrong shape: "
                              f"{_listing(wrong)}")
    return sd


def _default_class_names(arch: str, k: int, notes: list[str]) -> list[str]:
    if k == 1000 and arch in ("vgg16", "efficientnet_lite0"):
        notes.append("1000 outputs: using the ImageNet class names")
        return list(IMAGENET_CLASSES)
    if k == 10 and arch in ("lenet", "mlp"):
        return [str(d) for d in range(10)]
    if arch == "mri_demo" and k == 4:
        from .mri_demo import CLASS_NAMES

        return list(CLASS_NAMES)
    return [f"class {i}" for i in range(k)]


def load_checkpoint(source: bytes | str | Path, arch: str, num_classes: int | None = None,
                    class_names: list[str] | None = None, filename: str = "") -> LoadedModel:
    """Load a checkpoint (bytes of an upload, or a path) into a fresh ``arch`` model.

    ``num_classes``: expected number of outputs; None reads it from the checkpoint's last
    layer. ``class_names``: one per output (default: ImageNet/digit names where they fit,
    else "class i"). ``filename``: the upload's name, used only as a hint in messages.
    Returns a :class:`LoadedModel` (CPU, eval mode); raises :class:`CheckpointError`.
    """
    s = spec(arch)
    data, name = _read_source(source)
    sd, notes = read_state_dict(data, filename or name)
    with torch.device("meta"):  # shapes and names only: no memory, no random init
        probe = s.builder(s.default_classes)
    reference = probe.state_dict()
    sd, stripped = match_prefixes(sd, set(reference))
    if stripped:
        notes.append("removed key prefix " + " then ".join(f"'{p}'" for p in stripped))
    out_key = _output_weight_key(probe)
    if out_key not in sd:
        sd = _check_keys(sd, reference, arch, notes)  # raises: lists missing/unexpected keys
    k_file = int(sd[out_key].shape[0])
    if num_classes is not None and int(num_classes) != k_file:
        raise CheckpointError(f"the checkpoint has {k_file} output classes, you chose "
                              f"{int(num_classes)}")
    if num_classes is None:
        notes.append(f"{k_file} classes (read from {out_key})")
    with torch.device("meta"):
        model = s.builder(k_file)
    sd = _check_keys(sd, model.state_dict(), arch, notes)
    floats = {v.dtype for v in sd.values() if v.is_floating_point()}
    if floats - {torch.float32}:
        notes.append("converted " + ", ".join(sorted(str(d).replace("torch.", "")
                                                     for d in floats - {torch.float32}))
                     + " weights to float32")
        sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
    try:  # assign: the model's parameters become the checkpoint's (CPU) tensors
        model.load_state_dict(sd, strict=True, assign=True)
    except RuntimeError as e:  # pragma: no cover - _check_keys catches what strict would
        raise CheckpointError(f"the checkpoint does not fit {s.label}: {e}") from None
    if any(not torch.isfinite(v).all() for v in sd.values() if v.is_floating_point()):
        raise CheckpointError("the checkpoint contains NaN or infinite weights")
    if class_names is None:
        class_names = _default_class_names(arch, k_file, notes)
    elif len(class_names) != k_file:
        raise CheckpointError(f"{len(class_names)} class names given for a model with "
                              f"{k_file} outputs")
    return LoadedModel(model=model.eval(), arch=arch, num_classes=k_file,
                       class_names=[str(c) for c in class_names], notes=notes)


__all__ = ["CheckpointError", "LoadedModel", "load_checkpoint", "match_prefixes",
           "read_state_dict"]
