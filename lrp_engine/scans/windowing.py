"""Display windows: a (centre, width) pair maps scan values to 0…255 grey levels.

* :func:`window`: values ``centre ± width/2`` → uint8 (clipped).
* :func:`auto_window`: the window spanning two percentiles of an array.
* :func:`window_presets`: the windows offered for a :class:`~.volume.Volume`, in the order a
  user would try them: the file's own, the modality's named presets, automatic, full range.
"""

from __future__ import annotations

import numpy as np

from .volume import Volume

#: named CT windows (centre, width) in Hounsfield units
CT_PRESETS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
    "soft tissue": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
}
AUTO_NAME = "auto (0.5–99.5 %)"
FULL_NAME = "full range"


def auto_window(array: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5
                ) -> tuple[float, float]:
    """(centre, width) spanning the ``low_pct``…``high_pct`` percentiles of ``array``
    (width 1 for a constant array)."""
    lo, hi = np.percentile(np.asarray(array, dtype=np.float64), [low_pct, high_pct])
    width = float(hi - lo) if hi > lo else 1.0
    return float(lo + hi) / 2, width


def window(array: np.ndarray, center: float | None = None, width: float | None = None
           ) -> np.ndarray:
    """Linear display window: values ``center ± width/2`` → 0…255 (clipped, NaN → 0), uint8
    of ``array``'s shape. ``None`` for either: :func:`auto_window`."""
    a = np.asarray(array, dtype=np.float64)
    if center is None or width is None:
        c, w = auto_window(a)
        center = c if center is None else center
        width = w if width is None else width
    if not width > 0:
        raise ValueError(f"window width must be positive, got {width}")
    lo = center - width / 2
    out = np.clip((np.nan_to_num(a, nan=lo) - lo) / width, 0.0, 1.0)
    return (out * 255.0 + 0.5).astype(np.uint8)


def window_presets(volume: Volume) -> dict[str, tuple[float, float]]:
    """Name → (centre, width) for ``volume``: the file's windows (``volume.windows``) first,
    then the named presets of its modality (CT only: brain, subdural, stroke, soft tissue,
    lung, bone), then ``"auto (0.5–99.5 %)"`` and ``"full range"`` (min…max of the data)."""
    out: dict[str, tuple[float, float]] = dict(volume.windows)
    if str(volume.meta.get("modality") or "").upper() == "CT":
        for name, cw in CT_PRESETS.items():
            out.setdefault(name, cw)
    out[AUTO_NAME] = auto_window(volume.data)
    lo, hi = (float(volume.data.min()), float(volume.data.max())) if volume.data.size else (0, 0)
    out[FULL_NAME] = ((lo + hi) / 2, hi - lo if hi > lo else 1.0)
    return out


__all__ = ["AUTO_NAME", "CT_PRESETS", "FULL_NAME", "auto_window", "window", "window_presets"]
