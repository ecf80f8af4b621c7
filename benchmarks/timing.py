"""The benchmarks' one timing loop: methods interleaved round by round, medians.

The machine is shared and noisy; interleaving exposes every method to the same load, so
their ratios mean something even when the absolute times drift.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each function, called round-robin ``repeats`` times after one
    warm-up call each (layer-table probes, allocator)."""
    for f in fns.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}
