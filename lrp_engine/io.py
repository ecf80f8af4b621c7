"""Reading user images safely: uploads in any common format → a plain RGB picture.

:func:`load_image` accepts the raw bytes of an upload and either returns an ``RGB`` PIL
image or raises :class:`ImageLoadError` with a sentence a user can act on. It handles:
empty, corrupt and truncated files, non-images renamed ``.png``, decompression bombs (the
pixel count is checked from the header *before* decoding), transparency (composited on
black or white), 16-bit and 32-bit greyscale (scaled, no overflow), palette images, CMYK,
animated images (first frame) and EXIF orientation.

:func:`image_to_digit` turns such a picture into an MNIST-style 28×28 digit: greyscale,
inverted when the background is light, then cropped, scaled and centred like MNIST
(:func:`lrp_engine.digits.ink_to_digit`).
"""

from __future__ import annotations

import io
import warnings
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .digits import ink_to_digit

#: default pixel limit (width × height): 25 MP, a large phone photo; digits need far less
DEFAULT_MAX_PIXELS = 25_000_000
#: what transparent pixels become: ``"auto"`` (contrasting with the opaque ones), black, white
Background = Literal["auto", "black", "white"]
#: uploads are reduced to this longest side before digit preprocessing (speed only)
DIGIT_WORK_SIDE = 560


class ImageLoadError(ValueError):
    """An uploaded file cannot be used as an image; ``str(e)`` is a plain message."""


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Open (header only) and check the declared size before anything is decoded."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageLoadError(f"Expected the file's bytes, got {type(data).__name__}.")
    if len(data) == 0:
        raise ImageLoadError("The file is empty (0 bytes).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(bytes(data)))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageLoadError(_too_large_message(None, max_pixels, str(e))) from None
    except UnidentifiedImageError:
        raise ImageLoadError(
            "This file is not an image that can be read (PNG, JPEG, GIF, BMP, TIFF, WebP). "
            "Is it a renamed document or text file?") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageLoadError(f"The image file is corrupt and cannot be opened ({e}).") from None
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageLoadError(f"The image declares an empty size ({w}×{h} pixels).")
    if w * h > max_pixels:
        raise ImageLoadError(_too_large_message((w, h), max_pixels))
    return img


def _too_large_message(size: tuple[int, int] | None, max_pixels: int, detail: str = "") -> str:
    what = f"{size[0]}×{size[1]} = {size[0] * size[1]:,} pixels" if size else detail
    return (f"The image is too large ({what}); the limit is {max_pixels:,} pixels. This "
            "protects the app from 'decompression bombs'. Resize the image and upload it "
            "again.")


def _decode(img: Image.Image) -> Image.Image:
    """Decode the first frame fully (truncated data raises here), EXIF orientation applied."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageLoadError(_too_large_message(None, 0, str(e))) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as e:
        msg = str(e)
        if "truncated" in msg.lower():
            raise ImageLoadError("The image file is truncated (incomplete download or "
                                 "upload?): it ends before all pixels were read.") from None
        raise ImageLoadError(f"The image data is corrupt and cannot be decoded ({msg}).") \
            from None
    try:
        img = ImageOps.exif_transpose(img) or img
    except Exception:  # noqa: BLE001 - a broken EXIF block must not reject a good image
        pass
    return img


def _scale_to_uint8(a: np.ndarray) -> np.ndarray:
    """High bit-depth greyscale → uint8 without overflow: 0…255 kept, 0…65535 divided by
    257, anything else min–max scaled (float64 throughout)."""
    x = np.nan_to_num(a.astype(np.float64))
    lo, hi = float(x.min()), float(x.max())
    if lo >= 0 and hi <= 1.0 and a.dtype.kind == "f":
        x = x * 255.0
    elif lo >= 0 and hi <= 255:
        pass
    elif lo >= 0 and hi <= 65535:
        x = x / 257.0
    elif hi > lo:
        x = (x - lo) / (hi - lo) * 255.0
    else:
        x = np.zeros_like(x)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _auto_background(rgba: np.ndarray) -> str:
    """'white' when the opaque pixels are mostly dark (dark ink on transparent paper), else
    'black': the background that contrasts with what is drawn."""
    alpha = rgba[..., 3].astype(np.float64) / 255
    if alpha.sum() <= 0:
        return "black"
    brightness = rgba[..., :3].astype(np.float64).mean(-1)
    mean = float((brightness * alpha).sum() / alpha.sum())
    return "white" if mean < 128 else "black"


def _to_rgb(img: Image.Image, background: Background) -> Image.Image:
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return Image.fromarray(_scale_to_uint8(np.asarray(img))).convert("RGB")
    if mode == "1":
        return img.convert("L").convert("RGB")
    if mode in ("LA", "La", "PA", "RGBA", "RGBa") or (mode == "P" and "transparency"
                                                       in img.info):
        rgba = img.convert("RGBA")
        arr = np.asarray(rgba)
        bg = _auto_background(arr) if background == "auto" else background
        if bg not in ("black", "white"):
            raise ValueError(f"background must be 'auto', 'black' or 'white', got {bg!r}")
        base = Image.new("RGBA", rgba.size, (255, 255, 255, 255) if bg == "white"
                         else (0, 0, 0, 255))
        return Image.alpha_composite(base, rgba).convert("RGB")
    try:
        return img.convert("RGB")  # P, L, CMYK, YCbCr, LAB, HSV, RGB
    except (OSError, ValueError) as e:
        raise ImageLoadError(f"The image's colour mode {mode!r} cannot be converted to RGB "
                             f"({e}).") from None


def load_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
               background: Background = "auto") -> Image.Image:
    """Decode an uploaded file into an ``RGB`` PIL image.

    ``max_pixels``: the largest width × height accepted (checked from the header, before
    decoding). ``background``: what transparent pixels become — ``"black"``, ``"white"``
    or ``"auto"`` (the one contrasting with the opaque pixels). Raises
    :class:`ImageLoadError` with a plain message for anything unusable.
    """
    img = _open(data, max_pixels)
    try:
        img = _decode(img)
        if img.size[0] * img.size[1] > max_pixels:  # EXIF rotation keeps the count; be safe
            raise ImageLoadError(_too_large_message(img.size, max_pixels))
        return _to_rgb(img, background)
    finally:
        img.close()


def image_to_digit(img: Image.Image) -> np.ndarray:
    """A picture of one digit → MNIST-style uint8 [28, 28] (white digit on black).

    The picture is made greyscale; when its border is mostly light (a dark digit on paper)
    it is inverted; faint background (< 10 % of the ink range above the background level)
    is dropped; then the digit is cropped, scaled to a 20 px box and centred by mass. Raises
    :class:`ImageLoadError` for a blank (flat) picture.
    """
    grey = img.convert("L")
    if max(grey.size) > DIGIT_WORK_SIDE:
        grey = grey.copy()
        grey.thumbnail((DIGIT_WORK_SIDE, DIGIT_WORK_SIDE), Image.Resampling.BOX)
    a = np.asarray(grey, dtype=np.float64) / 255
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    if float(np.median(border)) > 0.5:
        a = 1.0 - a
    bg = float(np.median(np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])))
    span = float(a.max()) - bg
    if span < 0.05:
        raise ImageLoadError("The image is blank (one flat colour): there is no digit to "
                             "read.")
    ink = np.clip((a - bg) / span, 0.0, 1.0)
    res = ink_to_digit(ink, source="image")
    if res.image is None:
        raise ImageLoadError(res.reason or "No digit was found in the image.")
    return res.image
