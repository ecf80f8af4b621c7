"""Models the server's operator defines in their own Python files, listed in a TOML file.

The app reads the file named by the environment variable :data:`ENV` (``LRP_MODELS``, e.g.
``LRP_MODELS=models.toml make run`` or ``make run MODELS=models.toml``) when it starts. Each
``[[model]]`` table names a class in a Python file on the server and its weights::

    [[model]]
    name = "brain_vgg"                       # an identifier: letters, digits, _ and -
    label = "Brain-tumour VGG-16 (ours)"     # optional, shown in the sidebar
    code = "models/net.py:CNNModel"          # file (relative to this TOML file) : class
    weights = "models/brain_vgg.pth"         # a state dict (weights_only) or .safetensors
    kwargs = {num_classes = 4}               # optional keyword arguments of the class
    class_names = ["glioma", "meningioma", "no tumour", "pituitary"]   # optional
    preprocessing = "resize to a square, no normalisation"  # a preset name, or a table
                                                            # like a card's JSON

Only files the operator wrote on the server are executed: the path comes from this
configuration, never from anything a browser sends. Weights are read with
``weights_only=True`` (or safetensors) and loaded with ``strict=True``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import tomllib
import torch
from torch import nn

from .models.card import CARD_PRESETS, CardError, PreprocessingCard

ENV = "LRP_MODELS"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_KNOWN = {"name", "label", "code", "weights", "kwargs", "class_names", "preprocessing"}


class OperatorModelError(ValueError):
    """The operator's configuration or one of its models cannot be used (plain words)."""


@dataclass(frozen=True)
class OperatorModel:
    """One configured model: ``name``, ``label``, the Python ``file`` and ``class_name``,
    the ``weights`` file, constructor ``kwargs``, ``class_names`` (may be empty: "class i")
    and the ``preprocessing`` card."""

    name: str
    label: str
    file: Path
    class_name: str
    weights: Path
    kwargs: tuple[tuple[str, object], ...]
    class_names: tuple[str, ...]
    preprocessing: PreprocessingCard


def _card(value: object, where: str) -> PreprocessingCard:
    if value is None:
        return CARD_PRESETS["ImageNet evaluation"]
    try:
        if isinstance(value, str):
            if value not in CARD_PRESETS:
                raise CardError(f"unknown preset '{value}'; known: {', '.join(CARD_PRESETS)}")
            return CARD_PRESETS[value]
        return PreprocessingCard.from_dict(value)
    except CardError as e:
        raise OperatorModelError(f"{where}: preprocessing: {e}") from None


def _rows(path: Path) -> list[dict]:
    """The ``[[model]]`` tables of the TOML file ``path``."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise OperatorModelError(f"{path}: cannot be read ({e.strerror or e})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise OperatorModelError(f"{path}: not valid TOML ({e})") from None
    rows = data.get("model", [])
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise OperatorModelError(f"{path}: models must be [[model]] tables")
    return rows


def _code(row: dict, where: str) -> tuple[str, str]:
    """``code = "path/to/file.py:ClassName"`` → (file, class name)."""
    code = row.get("code")
    if not isinstance(code, str) or ":" not in code:
        raise OperatorModelError(f"{where}: code must be 'path/to/file.py:ClassName'")
    file, _, cls = code.rpartition(":")
    if not cls.isidentifier():
        raise OperatorModelError(f"{where}: '{cls}' is not a Python class name")
    return file, cls


def _fields(row: dict, where: str) -> tuple[str, str, str, str, dict, list[str]]:
    """A ``[[model]]`` table's checked values: name, file, class, weights, kwargs, class
    names."""
    unknown = sorted(set(row) - _KNOWN)
    if unknown:
        raise OperatorModelError(f"{where}: unknown key(s) {', '.join(unknown)}")
    name = row.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise OperatorModelError(f"{where}: name must be letters, digits, _ or -")
    file, cls = _code(row, where)
    weights = row.get("weights")
    if not isinstance(weights, str):
        raise OperatorModelError(f"{where}: weights must be a file path")
    kwargs = row.get("kwargs", {})
    names = row.get("class_names", [])
    if not isinstance(kwargs, dict):
        raise OperatorModelError(f"{where}: kwargs must be a table")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise OperatorModelError(f"{where}: class_names must be a list of strings")
    return name, file, cls, weights, kwargs, names


def read_config(path: str | Path) -> list[OperatorModel]:
    """The models of the TOML file ``path`` (paths in it are relative to its folder)."""
    path = Path(path).expanduser()
    out: list[OperatorModel] = []
    for i, row in enumerate(_rows(path)):
        where = f"{path}, model {i + 1}"
        name, file, cls, weights, kwargs, names = _fields(row, where)
        if any(m.name == name for m in out):
            raise OperatorModelError(f"{where}: the name '{name}' is used twice")
        label = row.get("label", name)
        out.append(OperatorModel(
            name=name, label=str(label)[:200], file=(path.parent / file).resolve(),
            class_name=cls, weights=(path.parent / weights).resolve(),
            kwargs=tuple(sorted(kwargs.items())), class_names=tuple(names),
            preprocessing=_card(row.get("preprocessing"), where)))
    return out


def configured_path() -> str | None:
    """The value of :data:`ENV` (None when unset or empty)."""
    value = os.environ.get(ENV, "").strip()
    return value or None


def build(spec: OperatorModel) -> nn.Module:
    """Import the operator's file, build the class with its kwargs, load the weights
    (strict), eval mode, CPU. Raises :class:`OperatorModelError`."""
    if not spec.file.is_file():
        raise OperatorModelError(f"{spec.name}: the code file {spec.file} does not exist")
    if not spec.weights.is_file():
        raise OperatorModelError(f"{spec.name}: the weights file {spec.weights} does not exist")
    mod_name = f"lrp_operator_{spec.name.replace('-', '_')}"
    module_spec = importlib.util.spec_from_file_location(mod_name, spec.file)
    if module_spec is None or module_spec.loader is None:
        raise OperatorModelError(f"{spec.name}: {spec.file} cannot be imported")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[mod_name] = module
    try:
        module_spec.loader.exec_module(module)
        cls = getattr(module, spec.class_name)
        model = cls(**dict(spec.kwargs))
    except AttributeError:
        raise OperatorModelError(f"{spec.name}: {spec.file} has no class "
                                 f"{spec.class_name}") from None
    except Exception as e:  # noqa: BLE001 - the operator's own code: say what failed
        raise OperatorModelError(f"{spec.name}: building {spec.class_name} from {spec.file} "
                                 f"failed: {type(e).__name__}: {e}") from None
    if not isinstance(model, nn.Module):
        raise OperatorModelError(f"{spec.name}: {spec.class_name} is not a torch.nn.Module")
    try:
        if spec.weights.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(spec.weights))
        else:
            state = torch.load(spec.weights, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state and isinstance(
                state["state_dict"], dict):
            state = state["state_dict"]
        model.load_state_dict(state, strict=True)
    except Exception as e:  # noqa: BLE001 - torch.load and load_state_dict raise many types
        raise OperatorModelError(f"{spec.name}: the weights {spec.weights} do not load: "
                                 f"{str(e).splitlines()[0][:300]}") from None
    return model.eval()


__all__ = ["ENV", "OperatorModel", "OperatorModelError", "build", "configured_path",
           "read_config"]
