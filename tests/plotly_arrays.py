"""Read data arrays out of a plotly figure's JSON (what ``st.plotly_chart`` sends).

Plotly encodes numpy arrays as base64 typed arrays (``{"dtype": "f4", "bdata": "…",
"shape": "32, 32"}``) and plain sequences as lists; :func:`values` gives a float array for
either.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np


def values(v: Any) -> np.ndarray:
    """A figure's data array (typed array dict or nested lists, ``None`` → NaN) as float64."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        shape = v.get("shape")
        if shape is not None:
            dims = [int(d) for d in str(shape).split(",")] if isinstance(shape, str) else shape
            a = a.reshape(dims)
        return a.astype(np.float64)
    if isinstance(v, np.ndarray):
        return v.astype(np.float64)
    return np.array(v, dtype=object).astype(np.float64)
