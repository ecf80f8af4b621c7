"""Scaling the gradient arriving at a tensor: how a rescaling rule (LRP-0, ε on a layer's
native output) acts in the backward pass, and what the fusions move between tensors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor


def scale_gradient(t: Tensor, ratio: Tensor | Callable[[], Tensor], keep: bool = False
                   ) -> Any:
    """Scale the gradient arriving at ``t`` by ``ratio``: a tensor, or a function forming it
    in the backward (from values the graph keeps anyway: nothing held from the forward).
    Unless ``keep`` (B-LRP's shared trunk runs several backward passes), the hook lets go
    of the ratio and what it is formed from once used: they are freed as the backward goes,
    like the graph's own saved tensors, not when its last node dies, so a pass holds no more
    memory than the plain gradient does. Returns the hook's handle."""
    box: list = [ratio]

    def hook(g: Tensor) -> Tensor:
        if not box:
            raise RuntimeError("a relevance pass's graph was run backward twice; "
                               "create the RelevancePass with reuse_ratios=True")
        r = box[0]
        if callable(r):
            r = r()
        if keep:
            box[0] = r
        else:
            box.clear()
        return g * r

    return t.register_hook(hook)


__all__ = ["scale_gradient"]
