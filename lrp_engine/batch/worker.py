"""One worker of a batch job: :class:`BatchWorker` explains, scores and writes its items.

The same class runs in-process (:func:`lrp_engine.batch.local.run_local`) and as a Ray
actor (:mod:`lrp_engine.batch.ray_backend`): it loads the model once, then each call takes
a batch of item rows in columnar form (columns ``key, name, label, index, payload, mask``:
lists or numpy arrays, Ray Data's "numpy" format), and for the items it can decode

1. builds the model inputs [n, C, H, W] (the bundled sets as the old commands feed them;
   files through the model's :class:`~lrp_engine.models.card.PreprocessingCard`);
2. predicts, picks each target (the true class, or the prediction);
3. computes every method's relevance [n, C, H, W] in one batched call per method (B-LRP:
   one :func:`lrp_engine.bayes.blrp` call for all its percentile maps);
4. scores them: pixel flipping and region perturbation curves with AUC and AOPC, relevance
   mass accuracy and the pointing game against the item's mask;
5. writes ``items/<key>.npz`` per item, atomically (a temporary file, then ``os.replace``).

It returns the items' metric rows, columnar. An item that cannot be decoded is written as
``skipped/<key>.json`` (its reason) and returned with ``skipped`` set.

Random draws depend on the item, never on its batch: the fill values and random orders come
from :func:`lrp_engine.evaluation.image_generator` seeded by ``(seed, seed id)``, where the
seed id is the data-set index for the bundled sets (as the pixel-flipping experiment seeds by
image index) and the first 60 bits of the key for files. The ``random`` method's map is
uniform noise in [0, 1): for a bundled set the ``index``-th [H, W] block of one stream seeded
by ``seed`` (the localisation command's chance baseline, drawn for its whole set at once),
for files a stream of its own.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn

from ..evaluation import Fill, Order, Score
from ..experiment import tick
from .config import (
    BLRP,
    CERTAINTY,
    GRADIENT_X_INPUT,
    RANDOM,
    BatchConfig,
    ConfigError,
    alpha_key,
    item_columns,
    method_keys,
    metric_columns,
    metric_names,
    perturbations,
)
from .sources import MAX_FILE_BYTES, PICTURE_EXT, from_npy

#: the stream of the ``random`` method's map for files (0, 1: fill values, random order)
RANDOM_MAP_STREAM = 2
#: the models a bundled set is fed to as its own tensors (the digit models take MNIST through
#: ``mnist_to_tensor``, the MRI demo model the demo's slices as they are)
OWN_MODELS = {"mnist": ("lenet", "mlp"), "mri-demo": ("mri_demo",)}
ITEMS, SKIPPED = "items", "skipped"

Row = dict[str, Any]


class BatchError(ValueError):
    """A problem with the job's inputs (model, checkpoint, card), said in one line."""


@dataclass
class BatchModel:
    """The loaded model: ``model`` (eval mode, on ``device``), its ``arch``, input ``card``,
    ``class_names``, ``notes`` on loading, and ``own_set``: whether the model is the bundled
    set's own (then the set's tensors are fed as the old commands do)."""

    model: nn.Module
    arch: str
    card: Any
    class_names: list[str]
    device: torch.device
    notes: list[str] = field(default_factory=list)
    own_set: bool = False


# -- the model -----------------------------------------------------------------------------

def _read_file(path: str, what: str, limit: int) -> bytes:
    p = Path(path).expanduser()
    if not p.exists():
        raise BatchError(f"{what} not found: {p}")
    if p.is_dir():
        raise BatchError(f"the {what} {p} is a folder, not a file")
    if p.stat().st_size > limit:
        raise BatchError(f"the {what} {p} is larger than {limit:,} bytes")
    try:
        return p.read_bytes()
    except OSError as e:
        raise BatchError(f"cannot read the {what} {p}: {e.strerror or e}") from None


def _user_checkpoint(cfg: BatchConfig) -> tuple[nn.Module, str, Any, list[str], list[str]]:
    """``--model`` with ``--checkpoint`` (and ``--card``), as the explain command and the
    app's own-model path load them: (model, arch, card, class names, notes)."""
    from ..checkpoints import load_checkpoint
    from ..cli_explain import MAX_WEIGHTS_BYTES, resolve_preprocessing
    from ..models.card import (
        MAX_JSON_BYTES,
        ModelCard,
        PreprocessingCard,
        card_from_json,
        card_from_safetensors,
    )

    assert cfg.checkpoint is not None
    data = _read_file(cfg.checkpoint, "checkpoint", MAX_WEIGHTS_BYTES)
    card: ModelCard | PreprocessingCard | None = None
    if cfg.card:
        card = card_from_json(_read_file(cfg.card, "card", 10 * MAX_JSON_BYTES))
    if card is None:
        card = card_from_safetensors(data)
    model_card = card if isinstance(card, ModelCard) else None
    arch = cfg.model or (model_card.architecture if model_card else None)
    if arch is None:
        raise BatchError("say which architecture the checkpoint is for (--model NAME), or "
                         "give a model card that names it")
    loaded = load_checkpoint(data, arch, filename=Path(cfg.checkpoint).name)
    pre, _, names = resolve_preprocessing(card, "", loaded, arch)
    return loaded.model, arch, pre, names, list(loaded.notes)


def _registry_model(arch: str) -> tuple[nn.Module, list[str], list[str]]:
    """A registry model with its bundled or pretrained weights: (model, class names, notes).
    The digit models and the MRI demo load as the experiment and localisation commands
    load them (the same tensors, so the same numbers)."""
    from ..models import BUNDLED, load_bundled
    from ..models.zoo import load_pretrained

    if arch in BUNDLED:
        return load_bundled(arch), list(BUNDLED[arch]["classes"]), []
    if arch == "mri_demo":
        from ..mri_demo import CLASS_NAMES, load_mri_demo_model

        return load_mri_demo_model(), list(CLASS_NAMES), []
    loaded = load_pretrained(arch, progress=False)
    return loaded.model, list(loaded.class_names), list(loaded.notes)


def load_batch_model(cfg: BatchConfig) -> BatchModel:
    """The job's model on its device; raises :class:`BatchError` / ValueError in plain words."""
    from ..experiment import resolve_device
    from ..models import zoo

    try:
        device = resolve_device(cfg.device)
    except RuntimeError as e:
        raise BatchError(str(e)) from None
    if cfg.checkpoint:
        model, arch, card, names, notes = _user_checkpoint(cfg)
        own = False
    else:
        arch = cfg.model_name
        card = zoo.spec(arch).preprocessing
        model, names, notes = _registry_model(arch)
        own = arch in OWN_MODELS.get(cfg.bundled or "", ())
    return BatchModel(model.eval().to(device), arch, card, names, device, notes, own)


# -- decoding ------------------------------------------------------------------------------

def _picture(data: bytes) -> object:
    from ..io import DEFAULT_MAX_PIXELS, _decode, _open

    return _decode(_open(data, DEFAULT_MAX_PIXELS))


def _scan_slice(name: str, data: bytes) -> np.ndarray:
    """A DICOM/NIfTI file holding one 2-D image → its slice [rows, cols] (radiological, as
    the app shows it); a 3-D volume is refused (explain its slices as files instead)."""
    from ..scans import read_scans, slice_array

    vol = read_scans([(name, data)]).volumes[0]
    flat = [a for a in range(3) if vol.data.shape[a] == 1]
    if not flat:
        raise ValueError(f"a 3-D volume ({' × '.join(map(str, vol.data.shape[:3]))} voxels): "
                         "batch explains 2-D images; export its slices as files")
    return slice_array(vol.data, flat[-1], 0)


def decode_image(name: str, data: bytes) -> object:
    """A picture (PIL image, modes kept) or a 2-D scan slice (numpy array) from file bytes."""
    low = name.lower()
    if low.endswith(PICTURE_EXT):
        return _picture(data)
    if low.endswith((".nii", ".nii.gz", ".dcm", ".dicom", ".ima")) or data[128:132] == b"DICM":
        return _scan_slice(name, data)
    return _picture(data)


def decode_mask_any(data: bytes) -> bool:
    """Whether a mask picture has any nonzero pixel."""
    from PIL import Image

    img = _picture(data)
    assert isinstance(img, Image.Image)
    return bool(np.asarray(img).any())


def _mask_tensor(card: Any, data: bytes) -> Tensor:
    """A mask picture → bool [H, W] at the model input's size: resized and cropped as the
    card does the image (nearest neighbour, no windowing); nonzero = inside."""
    from PIL import Image

    img = _picture(data)
    assert isinstance(img, Image.Image)
    grey = Image.fromarray((np.asarray(img.convert("F")) != 0).astype(np.uint8) * 255)
    plain = card.replace(channels=1, mean=(), std=(), windowing="none",
                         interpolation="nearest", pixel_range=1.0)
    return plain.to_pixels(grey)[0, 0] > 0.5


# -- the worker ----------------------------------------------------------------------------

@dataclass
class Decoded:
    """The decodable items of one batch: rows, inputs x [n, C, H, W], masks [n, H, W]
    (None: no item has one; all-False rows: that item has none, or an empty one) and
    ``has_mask`` [n]."""

    rows: list[Row]
    x: Tensor
    masks: Tensor | None
    has_mask: list[bool]


def _columns_to_rows(batch: Mapping[str, Any]) -> list[Row]:
    keys = list(batch)
    n = len(batch[keys[0]]) if keys else 0
    rows = []
    for i in range(n):
        row = {}
        for k in keys:
            v = batch[k][i]
            row[k] = v.item() if isinstance(v, np.generic) and not isinstance(
                v, (np.bytes_, np.str_)) else v
        for k in ("payload", "mask"):
            row[k] = bytes(row.get(k) or b"")
        row["key"], row["name"] = str(row["key"]), str(row["name"])
        rows.append(row)
    return rows


def _finite_or_none(v: float) -> float | None:
    return None if not math.isfinite(v) else float(v)


def _write_atomic(path: Path, write: Any) -> None:
    """``write(file)`` into a temporary file beside ``path``, then rename it into place; on
    any error or interrupt the temporary file is removed."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class BatchWorker:
    """Explains, scores and writes batches of items; one model, loaded once.

    ``cfg``: the job; ``out_dir``: the results folder (``items/`` and ``skipped/`` are
    written there). ``timings``: seconds spent per method and phase (``"pf"``, ``"rp"``,
    ``"write"``), summed over calls; ``calls``: how many batches it was given.
    """

    def __init__(self, cfg: BatchConfig, out_dir: str) -> None:
        self.cfg = cfg
        self.out = Path(out_dir)
        (self.out / ITEMS).mkdir(parents=True, exist_ok=True)
        self.m = load_batch_model(cfg)
        from ..experiment import _fast_model

        self.fast = _fast_model(self.m.model, self.m.device)
        self.keys = method_keys(cfg)
        self.metrics = metric_names(cfg)
        self.perturbations = perturbations(cfg)
        self.columns = item_columns(cfg) + metric_columns(cfg)
        self.timings: dict[str, float] = {}
        self.calls = 0
        self._check_steps()

    # -- setup -------------------------------------------------------------------------------

    def _input_size(self) -> tuple[int, int]:
        if self.m.own_set and self.cfg.bundled == "mri-demo":
            return 96, 96
        return tuple(self.m.card.size)

    def _check_steps(self) -> None:
        h, w = self._input_size()
        cfg = self.cfg
        if "pf" in self.perturbations and (cfg.steps - 1) * cfg.pixels_per_step > h * w:
            raise ConfigError(f"--steps {cfg.steps} × --pixels-per-step {cfg.pixels_per_step} "
                              f"flips more than the {h * w} pixels of a {h}×{w} input")

    @property
    def normalise(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """The model input's (mean, std) in raw units, None without normalisation."""
        card = self.m.card
        return (card.mean, card.std) if card.mean else None

    @property
    def data_range(self) -> tuple[float, float]:
        return 0.0, float(self.m.card.pixel_range)

    # -- decoding ----------------------------------------------------------------------------

    def _model_input(self, row: Row) -> Tensor:
        """One item's model input [1, C, H, W] (float32, CPU)."""
        cfg, card = self.cfg, self.m.card
        if cfg.bundled == "mnist":
            digit = from_npy(row["payload"])
            if self.m.own_set:
                from ..data import mnist_to_tensor

                return mnist_to_tensor(digit, size=int(card.size[0]))
            from PIL import Image

            return card.to_tensor(Image.fromarray(digit))
        if cfg.bundled == "mri-demo":
            arr = from_npy(row["payload"])
            if self.m.own_set:
                return torch.from_numpy(np.array(arr, dtype=np.float32))[None]
            return card.to_tensor(arr[0])
        return card.to_tensor(decode_image(row["name"], row["payload"]))

    def _mask(self, row: Row) -> Tensor | None:
        if not row["mask"]:
            return None
        if self.cfg.bundled:
            return torch.from_numpy(np.array(from_npy(row["mask"]), dtype=bool))
        return _mask_tensor(self.m.card, row["mask"])

    def _decode(self, rows: list[Row]) -> tuple[Decoded | None, list[tuple[Row, str]]]:
        ok, xs, masks, bad = [], [], [], []
        for row in rows:
            try:
                x = self._model_input(row)
                mask = self._mask(row)
                if mask is not None and tuple(mask.shape) != tuple(x.shape[-2:]):
                    raise ValueError(f"the mask is {tuple(mask.shape)}, the input "
                                     f"{tuple(x.shape[-2:])}")
            except Exception as e:  # noqa: BLE001 - any undecodable item is skipped, with why
                bad.append((row, _reason(e)))
                continue
            ok.append(row)
            xs.append(x.to(torch.float32))
            masks.append(mask)
        if not ok:
            return None, bad
        shapes = {tuple(x.shape) for x in xs}
        if len(shapes) > 1:
            raise ConfigError(f"the items' inputs differ in shape {sorted(shapes)}")
        # an all-False mask (an image without a lesion) has no region to point at: no mask
        has = [m is not None and bool(m.any()) for m in masks]
        h, w = xs[0].shape[-2:]
        mt = (torch.stack([m if m is not None else torch.zeros(h, w, dtype=torch.bool)
                           for m in masks]) if any(has) else None)
        return Decoded(ok, torch.cat(xs), mt, has), bad

    # -- relevance -------------------------------------------------------------------------

    def _seed_ids(self, rows: list[Row]) -> list[int]:
        if self.cfg.bundled:
            return [int(r["index"]) for r in rows]
        return [int(r["key"][:15], 16) for r in rows]

    def _random_maps(self, rows: list[Row], h: int, w: int) -> Tensor:
        """Uniform [0, 1) maps [n, H, W] (see the module docstring)."""
        from ..evaluation import image_generator

        seed = self.cfg.seed
        if self.cfg.bundled:
            idx = [int(r["index"]) for r in rows]
            stream = torch.rand(((max(idx) + 1) * h * w,),
                                generator=torch.Generator().manual_seed(seed))
            return stream.view(-1, h, w)[idx].clone()
        return torch.stack([torch.rand(h, w, generator=image_generator(seed, i,
                                                                       RANDOM_MAP_STREAM))
                            for i in self._seed_ids(rows)])

    def _composite(self, name: str) -> Any:
        """A preset; for files with zB in it, the card's pixel bounds as the box (as the
        explain command does); the bundled sets keep each image's own min/max (as the two
        old commands do)."""
        if self.cfg.bundled:
            return name
        from ..cli_explain import _composite

        return _composite(name, self.m.card)

    def _maps(self, x: Tensor, t: Tensor, rows: list[Row]) -> tuple[dict[str, Tensor],
                                                                     list[float]]:
        """{method key: relevance [n, C, H, W] (random: [n, H, W])} and B-LRP's certainty
        per item (empty without B-LRP)."""
        from ..core import explain, gradient_x_input

        maps: dict[str, Tensor] = {}
        certainty: list[float] = []
        for method in self.cfg.methods:
            t0 = time.perf_counter()
            if method == BLRP:
                certainty = self._blrp(x, t, maps)
            elif method == GRADIENT_X_INPUT:
                maps[method] = gradient_x_input(self.m.model, x, t)
            elif method == RANDOM:
                maps[method] = self._random_maps(rows, x.shape[-2], x.shape[-1]).to(x.device)
            else:
                maps[method] = explain(self.m.model, x, t, self._composite(method))
            self._tick(method, t0)
        return maps, certainty

    def _blrp(self, x: Tensor, t: Tensor, maps: dict[str, Tensor]) -> list[float]:
        from ..bayes import blrp
        from ..experiment import _like_model

        cfg = self.cfg
        res = blrp(self.fast, _like_model(x, self.fast), t,
                   composite=self._composite(cfg.blrp_composite), n_samples=cfg.blrp_samples,
                   alphas=cfg.blrp_alphas, seed=cfg.seed, chunk_size=cfg.blrp_chunk)
        for alpha, p in zip(cfg.blrp_alphas, res.percentiles, strict=True):
            maps[alpha_key(alpha)] = p.contiguous()
        return blrp_certainty(res.sign_agreement, res.mean).tolist()

    def _tick(self, key: str, t0: float) -> float:
        return tick(self.timings, key, t0)

    # -- metrics -------------------------------------------------------------------------------

    def _curves(self, x: Tensor, t: Tensor, maps: dict[str, Tensor], ids: list[int]
                ) -> dict[tuple[str, str], Tensor]:
        """{(method, perturbation): curves [n, steps]}; every method flips to the same fill
        values (drawn per item)."""
        from ..evaluation import fill_values, pixel_flipping, region_perturbation

        cfg = self.cfg
        out: dict[tuple[str, str], Tensor] = {}
        if not self.perturbations:
            return out
        values = fill_values(x, cast(Fill, cfg.fill), self.data_range, self.normalise,
                             cfg.seed, ids)
        score = cast(Score, cfg.score)
        h, w = x.shape[-2:]
        rp_steps = min(cfg.steps, -(-h // cfg.patch) * -(-w // cfg.patch) + 1)
        for pert in self.perturbations:
            t0 = time.perf_counter()
            for key, rel in maps.items():
                order: Order = "random" if key == RANDOM else "most"
                if pert == "pf":
                    c = pixel_flipping(self.m.model, x, t, rel, steps=cfg.steps,
                                       pixels_per_step=cfg.pixels_per_step, fill=values,
                                       order=order, score=score, seed=cfg.seed,
                                       batch_size=cfg.eval_batch, image_ids=ids)
                else:
                    c = region_perturbation(self.m.model, x, t, rel, region=cfg.patch,
                                            steps=rp_steps, regions_per_step=1, fill=values,
                                            order=order, score=score, seed=cfg.seed,
                                            batch_size=cfg.eval_batch, image_ids=ids)
                out[(key, pert)] = c.detach().cpu()
            self._tick(pert, t0)
        return out

    def _scores(self, d: Decoded, maps: dict[str, Tensor],
                curves: dict[tuple[str, str], Tensor]) -> dict[str, list[float]]:
        """{"<method>.<metric>": one value per item}."""
        from ..evaluation import aopc, auc
        from ..localisation import pointing_game, relevance_mass_accuracy

        out: dict[str, list[float]] = {}
        has = torch.tensor(d.has_mask, dtype=torch.bool)
        nan = torch.full((len(d.rows),), float("nan"), dtype=torch.float64)
        for key, rel in maps.items():
            for pert in self.perturbations:
                c = curves[(key, pert)]
                out[f"{key}.{pert}_auc"] = auc(c).double().tolist()
                out[f"{key}.{pert}_aopc"] = aopc(c).double().tolist()
            if d.masks is None:
                continue
            r = rel.detach().cpu()
            if "rma" in self.metrics:
                rma = torch.nan_to_num(relevance_mass_accuracy(r, d.masks), nan=0.0)
                out[f"{key}.rma"] = torch.where(has, rma.double(), nan).tolist()
            if "pointing" in self.metrics:
                hit = pointing_game(r, d.masks, self.cfg.tolerance).double()
                out[f"{key}.pointing"] = torch.where(has, hit, nan).tolist()
        return out

    # -- writing -----------------------------------------------------------------------------

    def _display(self, x: Tensor) -> np.ndarray:
        """Model inputs → display images in [0, 1]: [n, H, W] (grey) or [n, H, W, 3]."""
        if self.m.own_set and self.cfg.bundled == "mri-demo":
            pix = x
        else:
            pix = self.m.card.denormalise(x)
        pix = pix.detach().cpu().clamp(0, 1).float()
        return (pix[:, 0] if pix.shape[1] == 1 else pix.permute(0, 2, 3, 1)).numpy()

    def _write_item(self, arrays: dict[str, np.ndarray], row: dict[str, Any]) -> None:
        arrays["row"] = np.array(json.dumps(row, ensure_ascii=False, allow_nan=False))
        path = self.out / ITEMS / f"{row['key']}.npz"
        _write_atomic(path, lambda f: np.savez_compressed(f, **arrays))  # type: ignore[arg-type]
        (self.out / SKIPPED / f"{row['key']}.json").unlink(missing_ok=True)

    def _write_skipped(self, row: Row, reason: str) -> None:
        folder = self.out / SKIPPED
        folder.mkdir(exist_ok=True)
        text = json.dumps({"key": row["key"], "name": row["name"], "reason": reason},
                          ensure_ascii=False).encode()
        _write_atomic(folder / f"{row['key']}.json", lambda f: f.write(text))

    # -- one call ------------------------------------------------------------------------------

    def __call__(self, batch: Mapping[str, np.ndarray | list]) -> dict[str, np.ndarray]:
        """Explain, score and write one batch; returns the metric rows, columnar (the
        columns of :func:`~lrp_engine.batch.config.item_columns` and
        :func:`~lrp_engine.batch.config.metric_columns`, then ``skipped``: "" or why)."""
        self.calls += 1
        rows = _columns_to_rows(batch)
        d, bad = self._decode(rows)
        results: dict[str, dict[str, Any]] = {}
        for row, reason in bad:
            self._write_skipped(row, reason)
            results[row["key"]] = self._skipped_row(row, reason)
        if d is not None:
            for r in self._run(d):
                results[r["key"]] = r
        return self._columnar([results[r["key"]] for r in rows])

    def _run(self, d: Decoded) -> list[dict[str, Any]]:
        """Explain, score and write the decoded items; their rows."""
        dev = self.m.device
        x = d.x.to(dev)
        labels = torch.tensor([int(r["label"]) for r in d.rows], dtype=torch.long)
        with torch.no_grad():
            pred = self.m.model(x).argmax(1).cpu()
        use_label = (labels >= 0) & torch.tensor(self.cfg.target == "true")
        t = torch.where(use_label, labels, pred).to(dev)
        maps, certainty = self._maps(x, t, d.rows)
        ids = self._seed_ids(d.rows)
        curves = self._curves(x, t, maps, ids)
        scores = self._scores(d, maps, curves)
        t0 = time.perf_counter()
        display = self._display(d.x)
        flat = {k: (v.sum(1) if v.dim() == 4 else v).detach().cpu().float().numpy()
                for k, v in maps.items()}
        out = []
        for i, row in enumerate(d.rows):
            rec = self._row(row, int(pred[i]), int(t[i]), certainty[i] if certainty else None,
                            {k: v[i] for k, v in scores.items()})
            arrays = {"input": display[i]}
            arrays.update({f"map/{k}": v[i] for k, v in flat.items()})
            if d.masks is not None and d.has_mask[i]:
                arrays["mask"] = d.masks[i].numpy()
            arrays.update({f"curve/{k}/{p}": c[i].float().numpy()
                           for (k, p), c in curves.items()})
            self._write_item(arrays, rec)
            out.append(rec)
        self._tick("write", t0)
        return out

    def _row(self, row: Row, pred: int, target: int, certainty: float | None,
             scores: dict[str, float]) -> dict[str, Any]:
        label = int(row["label"])
        rec: dict[str, Any] = {
            "key": row["key"], "name": row["name"], "label": label, "index": int(row["index"]),
            "target": target, "pred": pred,
            "correct": None if label < 0 else float(pred == label)}
        if BLRP in self.cfg.methods:
            rec[CERTAINTY] = None if certainty is None else _finite_or_none(certainty)
        for col in metric_columns(self.cfg):
            v = scores.get(col)
            rec[col] = None if v is None else _finite_or_none(v)
        return rec

    def _skipped_row(self, row: Row, reason: str) -> dict[str, Any]:
        rec: dict[str, Any] = dict.fromkeys(self.columns)
        rec.update({"key": row["key"], "name": row["name"], "label": int(row["label"]),
                    "index": int(row["index"]), "target": -1, "pred": -1, "skipped": reason})
        return rec

    def _columnar(self, recs: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for col in [*self.columns, "skipped"]:
            values = [r.get(col) for r in recs]
            if col in ("key", "name"):
                out[col] = np.array(values, dtype=object)
            elif col == "skipped":
                out[col] = np.array([v or "" for v in values], dtype=object)
            elif col in ("label", "index", "target", "pred"):
                out[col] = np.array(values, dtype=np.int64)
            else:
                out[col] = np.array([np.nan if v is None else v for v in values],
                                    dtype=np.float64)
        return out


def blrp_certainty(sign_agreement: Tensor, mean: Tensor) -> Tensor:
    """B-LRP's certainty per item, [n] in [0, 1]: the mean over elements of
    |2·sign_agreement − 1| (1: every posterior sample gives the element the same sign),
    weighted by the posterior mean's |relevance|; NaN for an all-zero mean map.
    ``sign_agreement``, ``mean``: [n, ...]."""
    w = mean.detach().abs().flatten(1).double()
    agree = (2 * sign_agreement.detach().flatten(1).double() - 1).abs()
    total = w.sum(1)
    return torch.where(total > 0, (agree * w).sum(1) / total.clamp(min=1e-300),
                       torch.full_like(total, float("nan"))).cpu()


def _reason(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:300]


def read_item_row(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metrics row stored in an item file (JSON nulls become NaN)."""
    with np.load(path, allow_pickle=False) as z:
        row = json.loads(str(z["row"]))
    return {k: (float("nan") if v is None else v) for k, v in row.items()}


__all__ = ["MAX_FILE_BYTES", "BatchError", "BatchModel", "BatchWorker", "blrp_certainty",
           "decode_image", "load_batch_model", "read_item_row"]
