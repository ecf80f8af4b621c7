"""Models and data, loaded once per server process (``st.cache_resource``).

Cached functions elsewhere never receive a model object (it must not be hashed): they get
the model's id and call :func:`get_model`, which returns the shared instance. Explaining
with a shared model is safe: the engine attaches its hooks per pass and per thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import streamlit as st
import torch
from torch import nn

from lrp_engine.data import load_bundled_mnist
from lrp_engine.models import BUNDLED, load_bundled, model_label

if TYPE_CHECKING:
    from lrp_engine.checkpoints import LoadedModel
    from lrp_engine.mri_demo import LesionBatch

#: display names of the bundled digit models (the registry's), in the order offered
MODEL_NAMES = {name: model_label(name) for name in BUNDLED}


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


# -- the Image explorer's and the MRI inspector's models ---------------------------------------


@st.cache_resource(max_entries=2, show_spinner=False)
def imagenet_model(arch: str, path: str | None = None) -> nn.Module:
    """A registry model with its pretrained weights (:func:`lrp_engine.models.zoo.
    load_pretrained`: EfficientNet-Lite0's bundled file; torchvision's, e.g. VGG-16, from
    the local file ``path``, the hub cache or a download), eval mode, on :func:`device`. Raises
    :class:`lrp_engine.models.zoo.WeightsUnavailableError` (not cached) when the weights
    cannot be had. Shared by all sessions: never modify it."""
    from lrp_engine.models.zoo import load_pretrained

    model = load_pretrained(arch, path, progress=False).model
    return model.to(device()).eval()


@st.cache_resource(max_entries=4, show_spinner=False)
def user_checkpoint(_data: bytes, digest: str, arch: str, num_classes: int | None,
                    class_names: tuple[str, ...] | None, _filename: str = "") -> LoadedModel:
    """An uploaded checkpoint loaded into ``arch`` (safe loading, see
    :func:`lrp_engine.checkpoints.load_checkpoint`), on :func:`device`. ``digest`` (sha256
    of ``_data``) is the cache key, so a large file is not hashed on every rerun;
    ``_filename`` (the upload's name) only words the messages, e.g. for a ``.safetensors``
    file that is not one. Raises :class:`lrp_engine.checkpoints.CheckpointError` (not
    cached)."""
    from lrp_engine.checkpoints import load_checkpoint

    loaded = load_checkpoint(_data, arch, num_classes,
                             None if class_names is None else list(class_names),
                             filename=_filename)
    loaded.model = loaded.model.to(device()).eval()
    return loaded


@st.cache_resource(show_spinner=False)
def mri_demo_model() -> nn.Module:
    """The bundled MRI demo CNN (synthetic lesions; not diagnostic), eval mode, on
    :func:`device`. Shared: never modify it."""
    from lrp_engine.mri_demo import load_mri_demo_model

    return load_mri_demo_model().to(device()).eval()


@st.cache_resource(max_entries=2, show_spinner=False)
def mri_held_out(n: int = 40) -> LesionBatch:
    """The MRI demo's fixed held-out set of ``n`` synthetic slices (images, masks, labels)."""
    from lrp_engine.mri_demo import held_out_set

    return held_out_set(n)


@st.cache_resource(show_spinner=False)
def mri_demo3d_model() -> nn.Module:
    """The bundled 3-D MRI demo CNN (synthetic lesion volumes; not diagnostic), eval mode,
    on :func:`device`. Shared: never modify it."""
    from lrp_engine.mri_demo3d import load_mri_demo3d_model

    return load_mri_demo3d_model().to(device()).eval()


@st.cache_data(max_entries=8, show_spinner=False)
def mri_demo_volume(i: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Synthetic demo volume ``i``: (float32 [32, 96, 96] axial slices, bool lesion mask of
    the same shape, true class)."""
    from lrp_engine.mri_demo3d import demo_volume

    return demo_volume(i)
