"""The settings of one batch job: :class:`BatchConfig`, its hash, method keys and columns.

A config is plain data (JSON round-trip through :meth:`BatchConfig.to_dict` /
:meth:`BatchConfig.from_dict`). :func:`config_hash` covers the fields that change what an
item's maps or metrics mean; a results folder written under one hash is never extended under
another. Left out of the hash: where and how the job runs (``out``, ``overwrite``, ``quiet``,
``backend``, ``ray_address``, ``workers``, ``device``) and the speed/memory knobs
(``batch_size``, ``eval_batch``, ``blrp_chunk``), which the engine documents as changing
results by float rounding at most.

Method keys (:func:`method_keys`): preset names (``"epsilon"``, …), ``"gradient_x_input"``,
``"random"``, and for ``"blrp"`` one key per α: ``"blrp_a5"``, ``"blrp_a2p5"`` (α = 2.5: the
point written ``p`` so that a column ``"<method>.<metric>"`` splits at its only dot).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: the methods that are not LRP presets
GRADIENT_X_INPUT = "gradient_x_input"
RANDOM = "random"
BLRP = "blrp"
#: metric families (``--metrics``) → the metric names they add per method
METRIC_FAMILIES: dict[str, tuple[str, ...]] = {
    "pf": ("pf_auc", "pf_aopc"),
    "rp": ("rp_auc", "rp_aopc"),
    "rma": ("rma",),
    "pointing": ("pointing",),
}
#: other spellings accepted for the families
METRIC_ALIASES = {"pixel-flipping": "pf", "region-perturbation": "rp",
                  "relevance-mass-accuracy": "rma", "pointing-game": "pointing"}
#: families that need a ground-truth mask
MASK_FAMILIES = ("rma", "pointing")
#: perturbation names in curve keys: ``curve/<method>/<perturbation>``
PERTURBATIONS: dict[str, str] = {"pf": "pixel flipping", "rp": "region perturbation"}
#: the item-level metric of B-LRP (one value per item, not per method)
CERTAINTY = "blrp_certainty"
#: the bundled data sets (``--input``): MNIST's 1 000 held-out digits, the MRI demo's set
BUNDLED_SETS = ("mnist", "mri-demo")
#: images in the MRI demo's held-out set unless ``mri-demo:N`` says otherwise
MRI_DEMO_DEFAULT_N = 200
#: the default model of each bundled set
BUNDLED_MODELS = {"mnist": "lenet", "mri-demo": "mri_demo"}
TARGETS = ("true", "predicted")
DEVICES = ("cpu", "cuda", "auto")
BACKENDS = ("local", "ray")

#: fields outside the hash (see the module docstring)
UNHASHED = frozenset({"out", "overwrite", "quiet", "backend", "ray_address", "workers",
                      "device", "batch_size", "eval_batch", "blrp_chunk"})


class ConfigError(ValueError):
    """A setting that cannot work, said in one line."""


@dataclass(frozen=True)
class BatchConfig:
    """One batch job: what to read, which model, which methods and metrics, where to write.

    ``input``: ``"mnist"``, ``"mri-demo"`` (``"mri-demo:N"``: the held-out set of N images)
    or a folder (pictures in ImageFolder layout or flat, DICOM or NIfTI files). ``masks``: a
    folder of masks with the same relative paths (nonzero = inside). ``model``: a registry
    name (None: the bundled set's own model); with ``checkpoint`` (and ``card``) a torchvision
    or bundled architecture with the user's weights. ``methods``: preset names,
    ``"gradient_x_input"``, ``"random"``, ``"blrp"``. ``metrics``: families ``"pf"``,
    ``"rp"``, ``"rma"``, ``"pointing"`` (the last two only where masks exist). ``steps``
    evaluations with ``pixels_per_step`` pixels flipped between them (pixel flipping);
    region perturbation replaces one ``patch``×``patch`` region per step, for
    ``min(steps, regions + 1)`` evaluations. ``fill``/``score``: see
    :func:`lrp_engine.evaluation.pixel_flipping`. ``target``: explain and score the true
    class (the prediction where the label is unknown) or the predicted one.
    ``blrp_alphas``/``blrp_samples``/``blrp_composite``: B-LRP's percentiles (0…100),
    posterior samples and composite. ``tolerance``: the pointing game's margin (pixels).
    ``lesions_only``: leave out items whose mask is empty or missing. ``limit``: the first N
    items. ``batch_size``: items per worker call; ``eval_batch``: perturbed images per
    forward; ``blrp_chunk``: posterior samples per B-LRP pass.
    """

    input: str = "mnist"
    masks: str | None = None
    model: str | None = None
    checkpoint: str | None = None
    card: str | None = None
    methods: tuple[str, ...] = ("epsilon", GRADIENT_X_INPUT, RANDOM)
    metrics: tuple[str, ...] = ("pf", "rp", "rma", "pointing")
    steps: int = 64
    pixels_per_step: int = 4
    patch: int = 9
    fill: str = "uniform"
    score: str = "logit"
    target: str = "true"
    blrp_alphas: tuple[float, ...] = (5, 25, 50, 75, 95)
    blrp_samples: int = 100
    blrp_composite: str = "epsilon"
    tolerance: int = 0
    lesions_only: bool = False
    limit: int | None = None
    seed: int = 0
    batch_size: int = 50
    eval_batch: int = 256
    blrp_chunk: int | None = 10
    device: str = "cpu"
    out: str = "results/batch"
    overwrite: bool = False
    quiet: bool = False
    backend: str = "local"
    ray_address: str | None = None
    workers: int | None = None

    def __post_init__(self) -> None:
        for name in ("methods", "metrics", "blrp_alphas"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = (value,)
            object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, "blrp_alphas",
                           tuple(float(a) if float(a) % 1 else int(a) for a in self.blrp_alphas))
        object.__setattr__(self, "metrics",
                           tuple(METRIC_ALIASES.get(m, m) for m in self.metrics))

    # -- JSON --------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (lists for tuples)."""
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BatchConfig:
        """A config from :meth:`to_dict`'s form; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown batch setting(s) {', '.join(unknown)}")
        return cls(**dict(d))

    def replace(self, **changes: Any) -> BatchConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    # -- derived -----------------------------------------------------------------------------

    @property
    def bundled(self) -> str | None:
        """``"mnist"`` or ``"mri-demo"`` for a bundled set, None for a folder."""
        name = self.input.split(":", 1)[0]
        return name if name in BUNDLED_SETS else None

    @property
    def model_name(self) -> str:
        """The registry name of the model (the bundled set's own one by default)."""
        if self.model:
            return self.model
        if self.bundled:
            return BUNDLED_MODELS[self.bundled]
        raise ConfigError("say which model explains the folder: --model NAME (a bundled "
                          "model, or a torchvision name with --checkpoint FILE --card FILE)")

    @property
    def has_masks(self) -> bool:
        """Whether items can have ground-truth masks (a mask folder, or the MRI demo)."""
        return self.masks is not None or self.bundled == "mri-demo"


def alpha_key(alpha: float) -> str:
    """The method key of B-LRP's α-percentile map: 5 → ``"blrp_a5"``, 2.5 → ``"blrp_a2p5"``."""
    return "blrp_a" + f"{alpha:g}".replace(".", "p").replace("-", "m")


def method_label(key: str) -> str:
    """A method key's display name, :func:`alpha_key` read back: ``blrp_a5`` → ``B-LRP α=5``
    (``blrp_a2p5`` → α=2.5), ``gradient_x_input`` → ``Gradient×Input``, ``random`` →
    ``Random``, a preset name → ``LRP <preset>``."""
    if key.startswith("blrp_a"):
        return "B-LRP α=" + key[6:].replace("p", ".").replace("m", "-")
    return {GRADIENT_X_INPUT: "Gradient×Input", RANDOM: "Random"}.get(key, f"LRP {key}")


def method_keys(cfg: BatchConfig) -> list[str]:
    """The method keys of ``cfg`` in the order given (``"blrp"`` expands to its α keys)."""
    keys: list[str] = []
    for m in cfg.methods:
        keys += [alpha_key(a) for a in cfg.blrp_alphas] if m == BLRP else [m]
    return keys


def metric_names(cfg: BatchConfig) -> list[str]:
    """The per-method metric names of ``cfg`` (mask metrics only where masks can exist)."""
    names: list[str] = []
    for fam in cfg.metrics:
        if fam in MASK_FAMILIES and not cfg.has_masks:
            continue
        names += METRIC_FAMILIES[fam]
    return names


def perturbations(cfg: BatchConfig) -> list[str]:
    """The perturbations run (``"pf"``, ``"rp"``), each giving one curve per method."""
    return [p for p in PERTURBATIONS if p in cfg.metrics]


def item_columns(cfg: BatchConfig) -> list[str]:
    """The per-item columns before the method metrics: ``key, name, label, index, target,
    pred, correct`` and ``blrp_certainty`` when B-LRP runs."""
    cols = ["key", "name", "label", "index", "target", "pred", "correct"]
    return [*cols, CERTAINTY] if BLRP in cfg.methods else cols


def metric_columns(cfg: BatchConfig) -> list[str]:
    """``"<method>.<metric>"`` for every method key and metric name, method-major."""
    return [f"{m}.{n}" for m in method_keys(cfg) for n in metric_names(cfg)]


def validate(cfg: BatchConfig) -> None:
    """Raise :class:`ConfigError` naming the first setting that cannot work."""
    from ..composites import PRESETS
    from ..evaluation import FILLS, SCORES

    _check_methods(cfg, PRESETS)
    for fam in cfg.metrics:
        if fam not in METRIC_FAMILIES:
            raise ConfigError(f"unknown metric {fam!r}: choose from "
                              f"{', '.join(METRIC_FAMILIES)}")
    _check_choice("fill", cfg.fill, FILLS)
    _check_choice("score", cfg.score, SCORES)
    _check_choice("target", cfg.target, TARGETS)
    _check_choice("device", cfg.device, DEVICES)
    _check_choice("backend", cfg.backend, BACKENDS)
    _check_numbers(cfg)
    if cfg.input.startswith("mri-demo:"):
        n = cfg.input.split(":", 1)[1]
        if not n.isdigit() or not 1 <= int(n) <= 10_000:
            raise ConfigError(f"--input mri-demo:N needs N from 1 to 10000, got {n!r}")
    if cfg.card and not cfg.checkpoint:
        raise ConfigError("--card goes with --checkpoint (a bundled model has its own card)")


def _check_methods(cfg: BatchConfig, presets: Mapping[str, object]) -> None:
    if not cfg.methods:
        raise ConfigError("no methods: give at least one with --methods")
    allowed = [*presets, GRADIENT_X_INPUT, RANDOM, BLRP]
    for m in cfg.methods:
        if m not in allowed:
            raise ConfigError(f"unknown method {m!r}: choose from {', '.join(allowed)}")
    if len(set(cfg.methods)) != len(cfg.methods):
        raise ConfigError("a method is named twice in --methods")
    if BLRP in cfg.methods:
        if cfg.blrp_composite not in presets:
            raise ConfigError(f"unknown B-LRP composite {cfg.blrp_composite!r}")
        if not cfg.blrp_alphas or any(not 0 <= a <= 100 for a in cfg.blrp_alphas):
            raise ConfigError("--blrp-alphas must be percentiles from 0 to 100")
        if len(set(method_keys(cfg))) != len(method_keys(cfg)):
            raise ConfigError("an α is named twice in --blrp-alphas")


def _check_choice(what: str, value: str, options: Sequence[str]) -> None:
    if value not in options:
        raise ConfigError(f"unknown {what} {value!r}: choose from {', '.join(options)}")


def _check_numbers(cfg: BatchConfig) -> None:
    checks = [("steps", cfg.steps, 2), ("pixels-per-step", cfg.pixels_per_step, 1),
              ("patch", cfg.patch, 1), ("blrp-samples", cfg.blrp_samples, 1),
              ("batch-size", cfg.batch_size, 1), ("eval_batch", cfg.eval_batch, 1),
              ("tolerance", cfg.tolerance, 0)]
    if cfg.limit is not None:
        checks.append(("limit", cfg.limit, 1))
    if cfg.workers is not None:
        checks.append(("workers", cfg.workers, 1))
    if cfg.blrp_chunk is not None:
        checks.append(("blrp_chunk", cfg.blrp_chunk, 1))
    for what, value, low in checks:
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(f"--{what} must be a whole number ≥ {low}, got {value!r}")


def hashed_fields(cfg: BatchConfig) -> dict[str, Any]:
    """The fields :func:`config_hash` covers, paths made absolute."""
    d = {k: v for k, v in cfg.to_dict().items() if k not in UNHASHED}
    for name in ("input", "masks", "checkpoint", "card"):
        value = d.get(name)
        if value and not (name == "input" and cfg.bundled):
            d[name] = str(Path(value).expanduser().resolve())
    return d


def config_hash(cfg: BatchConfig) -> str:
    """sha256 (hex) of the canonical JSON of :func:`hashed_fields`."""
    text = json.dumps(hashed_fields(cfg), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


__all__ = ["BACKENDS", "BLRP", "BUNDLED_SETS", "CERTAINTY", "GRADIENT_X_INPUT",
           "METRIC_FAMILIES", "PERTURBATIONS", "RANDOM", "BatchConfig", "ConfigError",
           "alpha_key", "config_hash", "hashed_fields", "item_columns", "method_keys",
           "metric_columns", "metric_names", "perturbations", "validate"]
