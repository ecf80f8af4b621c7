"""Importing torchvision where its C++ operators cannot load.

torchvision's wheels on PyPI are built for CUDA; next to a CPU-only torch their C++
extension does not load, and ``import torchvision`` then fails while registering a fake
kernel for the detection operator ``torchvision::nms``, with
``RuntimeError: operator torchvision::nms does not exist``. The classification models and
transforms do not need that operator at all.

:func:`import_torchvision` first tries the plain import (on a normal install that is all
that happens). Only after exactly that error does it drop the partly imported
``torchvision*`` modules, define the two operator schemas (``nms``, ``qnms``) through
``torch.library`` without any kernel, and import again: models and transforms then work,
and only the detection operators stay unavailable (calling them raises).
"""

from __future__ import annotations

import sys
import threading
from types import ModuleType

#: the error torchvision raises when its C++ operators are missing
MISSING_OPS_ERROR = "operator torchvision::nms does not exist"
#: operator schemas torchvision registers fake kernels for at import time
SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor",
}

_LOCK = threading.Lock()
_LIBRARY: list = []  # the torch.library.Library holding the schemas, kept alive


def _drop_partial_imports() -> None:
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]


def _define_schemas() -> None:
    import torch

    if _LIBRARY:
        return
    lib = torch.library.Library("torchvision", "DEF")
    for schema in SCHEMAS.values():
        lib.define(schema)
    _LIBRARY.append(lib)


def import_torchvision() -> ModuleType:
    """``torchvision``, imported (see the module docstring). Raises ImportError with a plain
    message if torchvision is not installed or fails in any other way."""
    with _LOCK:
        try:
            import torchvision
        except RuntimeError as e:
            if MISSING_OPS_ERROR not in str(e):
                raise ImportError(f"torchvision could not be imported: {e}") from e
            _drop_partial_imports()
            _define_schemas()
            import torchvision
        except ModuleNotFoundError as e:
            raise ImportError("torchvision is not installed: pip install torchvision==0.28.0 "
                              "(the version that matches torch 2.13.0)") from e
        return torchvision


def uses_fallback() -> bool:
    """Whether torchvision was imported through the schema fallback (C++ ops missing)."""
    return bool(_LIBRARY)


__all__ = ["MISSING_OPS_ERROR", "import_torchvision", "uses_fallback"]
