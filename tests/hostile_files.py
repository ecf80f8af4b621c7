"""A corpus of hostile, broken and odd image files, generated in memory for the page tests.

``BAD`` files must be refused with a clear message; ``ODD`` files are valid pictures in
unusual modes that must be read. Each entry: file name → bytes.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def _save(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def digit_bar(size: int = 120) -> np.ndarray:
    """A "1": a white vertical bar on black, uint8 [size, size]."""
    a = np.zeros((size, size), np.uint8)
    a[size // 6: size - size // 6, size // 2 - 7: size // 2 + 7] = 255
    return a


def _bomb() -> bytes:
    png = _save(Image.new("L", (1, 1)), "PNG")
    ihdr = bytearray(png[16:29])
    ihdr[0:8] = struct.pack(">II", 50_000, 50_000)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)) & 0xFFFFFFFF)
    return png[:16] + bytes(ihdr) + crc + png[33:]


def bad_files() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (200, 200, 3), dtype=np.uint8))
    png, jpg = _save(noise, "PNG"), _save(noise, "JPEG", quality=95)
    return {
        "empty.png": b"",
        "truncated.png": png[: len(png) // 2],
        "truncated.jpg": jpg[: len(jpg) // 2],
        "letter.png": b"Dear colleague,\nplease find the scan attached.\n" * 20,
        "random.png": rng.integers(0, 256, 4000, dtype=np.uint8).tobytes(),
        "bomb.png": _bomb(),
        "blank.png": _save(Image.new("L", (64, 64), 0), "PNG"),
    }


def odd_files() -> dict[str, bytes]:
    bar = digit_bar()
    rgba = np.zeros((120, 120, 4), np.uint8)
    rgba[..., :3] = bar[..., None]
    rgba[..., 3] = np.where(bar > 0, 255, 0)
    frames = [Image.fromarray(bar), Image.fromarray(255 - bar)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° when shown
    wide = np.zeros((40, 10_000), np.uint8)
    wide[5:35, 4990:5010] = 255
    return {
        "one_pixel.png": _save(Image.new("L", (1, 1), 255), "PNG"),
        "wide_10000x40.png": _save(Image.fromarray(wide), "PNG"),
        "sixteen_bit.png": _save(Image.fromarray(bar.astype(np.uint16) * 257), "PNG"),
        "palette.png": _save(Image.fromarray(bar).convert("P"), "PNG"),
        "cmyk.jpg": _save(Image.fromarray(bar).convert("CMYK"), "JPEG"),
        "rgba.png": _save(Image.fromarray(rgba, "RGBA"), "PNG"),
        "animated.gif": buf.getvalue(),
        "exif_rotated.jpg": _save(Image.fromarray(bar).convert("RGB"), "JPEG", exif=exif),
    }
