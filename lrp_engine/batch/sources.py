"""The items of a batch job, listed in a fixed order: :func:`list_items`.

Each item is a row ``{"key", "name", "label", "index", "payload", "mask"}``:

* ``payload``: the file's bytes (picture, DICOM, NIfTI), or for a bundled set ``np.save``
  bytes of its array (an MNIST digit uint8 [28, 28]; an MRI-demo slice float32
  [1, 96, 96], the demo model's input); ``mask``: the mask file's bytes or ``np.save`` bytes
  of a bool [96, 96] mask, ``b""`` when there is none.
* ``key``: sha256 of payload then mask, hex, first 24 characters (a finished item is found
  again by its content, whatever its name).
* ``label``: class index (ImageFolder: the sorted sub-folder names; bundled sets: their
  labels), −1 when unknown; ``index``: position in the listing (0, 1, …), which for the
  bundled sets is the data set's own index.

Folders: pictures (``.png .jpg .jpeg .bmp .gif .tif .tiff .webp``), DICOM (``.dcm .dicom
.ima``, or any file with the DICM marker) and NIfTI (``.nii .nii.gz``) files, found
recursively (hidden names skipped), sorted by relative path. When every file lies in a
sub-folder the layout is ImageFolder's (label = the first folder's rank among the sorted
class folders); otherwise labels are unknown. Masks: ``masks/<same relative path minus
extension>.<any picture extension>``. Two files with the same content are one item (the
second is listed as skipped).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import MRI_DEMO_DEFAULT_N, BatchConfig, ConfigError

PICTURE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
SCAN_EXT = (".dcm", ".dicom", ".ima", ".nii", ".nii.gz")
#: largest file read as one item (bytes)
MAX_FILE_BYTES = 200_000_000

Row = dict[str, Any]


class SourceError(ConfigError):
    """The input cannot be listed (missing folder, no images), in one line."""


@dataclass
class Listing:
    """What :func:`list_items` found: ``rows`` in order, ``skipped`` (name, reason) for
    files not read, ``classes`` (ImageFolder class names, else the bundled set's), and
    ``notes`` on what was decided."""

    rows: list[Row]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def item_key(payload: bytes, mask: bytes = b"") -> str:
    """sha256 of ``payload`` then ``mask``, hex, first 24 characters."""
    h = hashlib.sha256(payload)
    h.update(mask)
    return h.hexdigest()[:24]


def npy_bytes(a: np.ndarray) -> bytes:
    """``np.save`` bytes of ``a`` (read back with :func:`from_npy`)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def from_npy(data: bytes) -> np.ndarray:
    """The array of :func:`npy_bytes` (no pickles)."""
    return np.load(io.BytesIO(data), allow_pickle=False)


def list_items(cfg: BatchConfig) -> Listing:
    """The items of ``cfg.input`` in order, after ``lesions_only`` and ``limit``; raises
    :class:`SourceError` when there is nothing to read."""
    if cfg.bundled == "mnist":
        listing = _mnist()
    elif cfg.bundled == "mri-demo":
        listing = _mri_demo(cfg.input)
    else:
        listing = _folder(Path(cfg.input).expanduser(), cfg.masks)
    if cfg.lesions_only:
        kept = [r for r in listing.rows if r["mask"] and _mask_nonempty(r, cfg)]
        listing.notes.append(f"{len(listing.rows) - len(kept)} items without a mask (or with "
                             "an empty one) left out")
        listing.rows = kept
    if cfg.limit is not None:
        listing.rows = listing.rows[:cfg.limit]
    if not listing.rows:
        raise SourceError(f"no items to explain in {cfg.input}"
                          + (" (every mask is empty)" if cfg.lesions_only else ""))
    for i, row in enumerate(listing.rows):
        row["index"] = i
    return listing


def _mask_nonempty(row: Row, cfg: BatchConfig) -> bool:
    if cfg.bundled:
        return bool(from_npy(row["mask"]).any())
    from .worker import decode_mask_any

    try:
        return decode_mask_any(row["mask"])
    except ValueError:
        return False


def _row(name: str, label: int, payload: bytes, mask: bytes = b"") -> Row:
    return {"key": item_key(payload, mask), "name": name, "label": int(label), "index": -1,
            "payload": payload, "mask": mask}


# -- bundled sets ----------------------------------------------------------------------------

def _mnist() -> Listing:
    from ..data import load_bundled_mnist

    images, labels = load_bundled_mnist("test")
    rows = [_row(f"mnist/{i:04d}", int(labels[i]), npy_bytes(images[i]))
            for i in range(len(images))]
    return Listing(rows, classes=[str(d) for d in range(10)])


def mri_demo_size(spec: str) -> int:
    """N of ``"mri-demo:N"`` (``"mri-demo"``: the default 200)."""
    return int(spec.split(":", 1)[1]) if ":" in spec else MRI_DEMO_DEFAULT_N


def _mri_demo(spec: str) -> Listing:
    from ..mri_demo import CLASS_NAMES, held_out_set

    batch = held_out_set(mri_demo_size(spec))
    images, masks = batch.images.numpy(), batch.masks.numpy()
    rows = [_row(f"mri-demo/{i:04d}", int(batch.labels[i]), npy_bytes(images[i]),
                 npy_bytes(masks[i])) for i in range(len(batch))]
    return Listing(rows, classes=list(CLASS_NAMES))


# -- folders -------------------------------------------------------------------------------

def _is_item_file(path: Path) -> bool:
    low = path.name.lower()
    if low.endswith(PICTURE_EXT + SCAN_EXT):
        return True
    if "." in low:
        return False
    try:  # an extension-less file: DICOM when it has the marker
        with path.open("rb") as f:
            return f.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _files(root: Path) -> list[Path]:
    """Item files under ``root``, relative, sorted by their posix path."""
    found = [p.relative_to(root) for p in root.rglob("*") if p.is_file()]
    return sorted((p for p in found if not _hidden(p) and _is_item_file(root / p)),
                  key=lambda p: p.as_posix())


def _stem(rel: Path) -> str:
    """The relative path without its extension (``.nii.gz`` counts as one)."""
    posix = rel.as_posix()
    low = posix.lower()
    for ext in sorted(PICTURE_EXT + SCAN_EXT, key=len, reverse=True):
        if low.endswith(ext):
            return posix[:-len(ext)]
    return posix


def _mask_index(masks: Path) -> dict[str, Path]:
    """Mask files by their stem (the first in sorted order when several share one)."""
    index: dict[str, Path] = {}
    for rel in sorted(masks.rglob("*")):
        if rel.is_file() and rel.name.lower().endswith(PICTURE_EXT):
            index.setdefault(_stem(rel.relative_to(masks)), rel)
    return index


def _read(path: Path) -> bytes:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise OSError(f"{size:,} bytes; at most {MAX_FILE_BYTES:,} are read")
    if size == 0:
        raise OSError("the file is empty")
    return path.read_bytes()


def _check_folder(path: Path, what: str) -> None:
    if not path.exists():
        raise SourceError(f"{what} not found: {path}")
    if not path.is_dir():
        raise SourceError(f"{what} {path} is a file, not a folder")


def _labels(files: list[Path], notes: list[str]) -> tuple[list[int], list[str]]:
    """ImageFolder labels when every file lies in a sub-folder, else all −1."""
    if files and all(len(f.parts) > 1 for f in files):
        classes = sorted({f.parts[0] for f in files})
        notes.append(f"ImageFolder layout: {len(classes)} classes from the sub-folder names "
                     f"({', '.join(classes[:5])}{', …' if len(classes) > 5 else ''})")
        rank = {c: i for i, c in enumerate(classes)}
        return [rank[f.parts[0]] for f in files], classes
    notes.append("flat folder: labels unknown (-1); the predicted class is explained")
    return [-1] * len(files), []


def _folder(root: Path, masks: str | None) -> Listing:
    _check_folder(root, "input folder")
    mask_root = Path(masks).expanduser() if masks else None
    if mask_root is not None:
        _check_folder(mask_root, "mask folder")
    files = _files(root)
    if not files:
        raise SourceError(f"no images found in {root} (looked for "
                          f"{', '.join(PICTURE_EXT + SCAN_EXT)} and DICOM files)")
    notes: list[str] = []
    labels, classes = _labels(files, notes)
    mask_files = _mask_index(mask_root) if mask_root is not None else {}
    listing = Listing([], classes=classes, notes=notes)
    first: dict[str, str] = {}
    for rel, label in zip(files, labels, strict=True):
        name = rel.as_posix()
        try:
            payload = _read(root / rel)
            mpath = mask_files.get(_stem(rel))
            mask = _read(mpath) if mpath is not None else b""
        except OSError as e:
            listing.skipped.append((name, f"not read: {e.strerror or e}"))
            continue
        row = _row(name, label, payload, mask)
        if row["key"] in first:
            listing.skipped.append((name, f"the same content as {first[row['key']]}"))
            continue
        first[row["key"]] = name
        listing.rows.append(row)
    if mask_root is not None:
        n = sum(1 for r in listing.rows if r["mask"])
        notes.append(f"masks found for {n} of {len(listing.rows)} items")
    return listing


__all__ = ["MAX_FILE_BYTES", "PICTURE_EXT", "SCAN_EXT", "Listing", "SourceError",
           "from_npy", "item_key", "list_items", "mri_demo_size", "npy_bytes"]
