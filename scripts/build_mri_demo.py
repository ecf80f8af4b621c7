"""Build ``lrp_engine/assets/mri/mni152_slices.npz``: axial slices of the MNI ICBM152 2009a T1.

Build time only (not needed to run the app or the tests). Needs ``nilearn`` (which ships the
template inside its wheel, no download) and ``nibabel``/``numpy``/``scipy``, e.g. in a
separate virtual environment::

    python3 -m venv /tmp/buildenv && /tmp/buildenv/bin/pip install nilearn
    /tmp/buildenv/bin/python scripts/build_mri_demo.py

What it writes (the synthetic lesions are drawn later, at run time, by
:mod:`lrp_engine.mri_demo`):

* ``slices``: uint8 [S, 96, 96], axial slices of the skull-stripped template every
  ``STEP_MM`` mm from ``Z_MM[0]`` to ``Z_MM[1]`` (MNI z), intensities scaled so that the
  99.5th percentile of brain voxels is 255; anterior at the top, the subject's left on the
  image's left (neurological convention), the midline between columns 47 and 48 (1.97 mm per pixel);
* ``z_mm``: float32 [S], each slice's MNI z coordinate;
* ``mm_per_pixel``: the pixel size after resampling; ``midline_col``: 47.5;
* ``brain_masks``: bool [S, 96, 96], template intensity above 10 % of the maximum.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

SIZE = 96
Z_MM = (-10.0, 52.0)  # from the basal ganglia/third ventricle to above the lateral ventricles
STEP_MM = 2.0
FOV_MM = 189  # square field of view (odd: centred on the midline voxel and the brain's y-centre)


def _resample(img2d: np.ndarray, size: int) -> np.ndarray:
    """Area-preserving linear resampling of a square 2-D array to size × size."""
    from scipy.ndimage import zoom

    return zoom(img2d, size / img2d.shape[0], order=1, prefilter=False, grid_mode=True,
                mode="grid-constant")


def build(out: Path) -> Path:
    import nibabel as nib
    from nilearn.datasets.struct import MNI152_FILE_PATH

    img = nib.as_closest_canonical(nib.load(MNI152_FILE_PATH))  # RAS+: x → right, y → ant.
    data = np.asarray(img.get_fdata(), dtype=np.float32)
    inv = np.linalg.inv(img.affine)
    zooms = img.header.get_zooms()[:3]
    if not np.allclose(zooms, 1.0):
        raise SystemExit(f"expected the 1 mm template, got voxel size {zooms}")
    brain = data > 0.1 * data.max()
    scale = 255.0 / np.percentile(data[brain], 99.5)

    # square FOV around the midline (x = 0) and the brain's y-centre, in voxel indices
    x0 = round((inv @ [0, 0, 0, 1])[0])
    ys = np.where(brain.any(axis=(0, 2)))[0]
    yc = round((ys.min() + ys.max()) / 2)
    half = FOV_MM // 2
    pad = half + 2
    padded = np.pad(data, ((pad, pad), (pad, pad), (0, 0)))
    xs = slice(x0 + pad - half, x0 + pad + half + 1)
    ysl = slice(yc + pad - half, yc + pad + half + 1)

    slices, masks, zs = [], [], []
    for z_mm in np.arange(Z_MM[0], Z_MM[1] + 1e-6, STEP_MM):
        k = round((inv @ [0, 0, z_mm, 1])[2])
        sl = padded[xs, ysl, k]  # [x, y]
        sl = np.rot90(sl)  # rows: y from anterior (top) to posterior; cols: x left → right
        small = _resample(sl, SIZE)
        slices.append(np.clip(small * scale, 0, 255).round().astype(np.uint8))
        masks.append(small > 0.1 * data.max())
        zs.append(z_mm)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out, slices=np.stack(slices), brain_masks=np.stack(masks),
        z_mm=np.asarray(zs, dtype=np.float32),
        mm_per_pixel=np.float32(FOV_MM / SIZE), midline_col=np.float32((SIZE - 1) / 2),
        source=np.array(Path(MNI152_FILE_PATH).name))
    digest = hashlib.sha256(Path(MNI152_FILE_PATH).read_bytes()).hexdigest()
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB): {len(slices)} slices "
          f"{SIZE}×{SIZE}, {FOV_MM / SIZE:.3f} mm/px; source sha256 {digest}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_out = (Path(__file__).resolve().parents[1] / "lrp_engine" / "assets" / "mri"
                   / "mni152_slices.npz")
    p.add_argument("--out", type=Path, default=default_out)
    args = p.parse_args(argv)
    build(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
