"""Models and data, loaded once per server process (``st.cache_resource``).

Cached functions elsewhere never receive a model object (it must not be hashed): they get
the model's id and call :func:`get_model`, which returns the shared instance. Explaining
with a shared model is safe: the engine attaches its hooks per pass and per thread.
"""

from __future__ import annotations

import numpy as np
import streamlit as st
import torch
from torch import nn

from lrp_engine.data import load_bundled_mnist
from lrp_engine.models import BUNDLED, load_bundled

#: display names of the bundled models, in the order offered
MODEL_NAMES = {"lenet": "LeNet (seed 000, 32×32 input)", "mlp": "MLP 784-300-100-10"}


def device() -> torch.device:
    """The GPU when PyTorch sees one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_label() -> str:
    """E.g. ``GPU (NVIDIA H100)`` or ``CPU (2 threads)``."""
    if torch.cuda.is_available():
        return f"GPU ({torch.cuda.get_device_name(0)})"
    return f"CPU ({torch.get_num_threads()} threads)"


@st.cache_resource(show_spinner="Loading the model…")
def get_model(model_id: str) -> nn.Module:
    """The bundled trained model ``model_id`` (a key of ``BUNDLED``), eval mode, on
    :func:`device`. Shared by all sessions: never modify it."""
    return load_bundled(model_id).to(device()).eval()


def model_meta(model_id: str) -> dict:
    """``BUNDLED[model_id]``: input size, classes, held-out accuracy."""
    return BUNDLED[model_id]


@st.cache_resource(show_spinner=False)
def heldout() -> tuple[np.ndarray, np.ndarray]:
    """The 1 000 bundled held-out digits: uint8 [1000, 28, 28] and labels int64 [1000]."""
    return load_bundled_mnist("test")
