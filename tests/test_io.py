"""lrp_engine.io: every bad upload gives ImageLoadError with a specific message; every odd but
valid format gives the right pixels."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from lrp_engine.digits import centre_of_mass
from lrp_engine.io import ImageLoadError, image_to_digit, load_image


def _png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def _digit_picture(size: int = 120, dark_on_light: bool = True) -> Image.Image:
    """A '1'-like bar: dark on light paper (or light on dark)."""
    a = np.full((size, size), 255 if dark_on_light else 0, np.uint8)
    a[size // 6: size - size // 6, size // 2 - 6: size // 2 + 6] = 0 if dark_on_light else 255
    return Image.fromarray(a)


def _patch_ihdr(png: bytes, width: int, height: int) -> bytes:
    """Rewrite a PNG's IHDR width/height (and its CRC): a header that lies about the size."""
    assert png[12:16] == b"IHDR"
    ihdr = bytearray(png[16:29])
    ihdr[0:8] = struct.pack(">II", width, height)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)) & 0xFFFFFFFF)
    return png[:16] + bytes(ihdr) + crc + png[33:]


# -- bad files -------------------------------------------------------------------------------

def test_empty_file():
    with pytest.raises(ImageLoadError, match=r"empty \(0 bytes\)"):
        load_image(b"")


def test_random_bytes_are_not_an_image():
    rng = np.random.default_rng(0)
    with pytest.raises(ImageLoadError, match="not an image"):
        load_image(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())


def test_text_renamed_png():
    with pytest.raises(ImageLoadError, match="renamed document or text file"):
        load_image(b"Dear colleague,\nplease find the scan attached.\n" * 20)


def test_png_signature_with_garbage_body_is_corrupt():
    data = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    with pytest.raises(ImageLoadError, match=r"corrupt|not an image"):
        load_image(data)


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_truncated_file(fmt):
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 256, (200, 200, 3), dtype=np.uint8))
    data = _png(img) if fmt == "png" else _jpeg(img, quality=95)
    with pytest.raises(ImageLoadError, match="truncated") as exc:
        load_image(data[: len(data) // 2])
    assert "Traceback" not in str(exc.value)


def test_decompression_bomb_header_50000_squared():
    bomb = _patch_ihdr(_png(Image.new("L", (1, 1))), 50000, 50000)
    assert struct.unpack(">II", bomb[16:24]) == (50000, 50000)  # the header really lies
    assert len(bomb) < 100
    with pytest.raises(ImageLoadError, match="too large") as exc:
        load_image(bomb)
    assert "decompression bomb" in str(exc.value)


def test_pixel_limit_is_checked_before_decoding():
    with pytest.raises(ImageLoadError, match=r"100×100 = 10,000 pixels.*limit is 5,000"):
        load_image(_png(Image.new("L", (100, 100))), max_pixels=5000)
    assert load_image(_png(Image.new("L", (50, 50))), max_pixels=5000).size == (50, 50)


# -- odd but valid formats -------------------------------------------------------------------

def test_rgba_composited_on_requested_or_contrasting_background():
    a = np.zeros((10, 10, 4), np.uint8)
    a[2:8, 4:6] = (255, 255, 255, 255)  # white ink, rest fully transparent
    data = _png(Image.fromarray(a, "RGBA"))
    auto = np.asarray(load_image(data))
    assert auto.shape == (10, 10, 3)
    assert auto[0, 0].tolist() == [0, 0, 0] and auto[4, 4].tolist() == [255, 255, 255]
    white = np.asarray(load_image(data, background="white"))
    assert white[0, 0].tolist() == [255, 255, 255]

    a[..., :3] = 0  # now black ink on transparent paper: auto picks white paper
    dark = np.asarray(load_image(_png(Image.fromarray(a, "RGBA"))))
    assert dark[0, 0].tolist() == [255, 255, 255] and dark[4, 4].tolist() == [0, 0, 0]


def test_16bit_greyscale_scaled_without_overflow():
    a = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    img16 = Image.fromarray(a)
    assert img16.mode.startswith("I;16")
    out = np.asarray(load_image(_png(img16)))[..., 0]
    assert out.tolist() == [[0, 1, 128, 255]]


def test_32bit_integer_image_min_max_scaled():
    a = np.array([[-1000, 0, 1000, 3000]], dtype=np.int32)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="TIFF")
    out = np.asarray(load_image(buf.getvalue()))[..., 0]
    assert out.tolist() == [[0, 64, 128, 255]]


def test_palette_png():
    img = Image.new("P", (4, 1))
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.putdata([0, 1, 1, 0])
    out = np.asarray(load_image(_png(img)))
    assert out[0, 0].tolist() == [255, 0, 0] and out[0, 1].tolist() == [0, 0, 255]


def test_palette_png_with_transparency():
    img = Image.new("P", (2, 1))
    img.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
    img.putdata([0, 1])
    out = np.asarray(load_image(_png(img, transparency=1), background="black"))
    assert out[0].tolist() == [[255, 255, 255], [0, 0, 0]]


def test_cmyk_jpeg():
    img = Image.new("CMYK", (16, 16), (0, 0, 0, 0))  # no ink: white
    img.paste((0, 0, 0, 255), (0, 0, 8, 16))  # full black on the left half
    rgb = load_image(_jpeg(img, quality=95))
    assert rgb.mode == "RGB"
    a = np.asarray(rgb).astype(int)
    assert a[8, 2].max() < 40 and a[8, 13].min() > 215


def test_animated_gif_gives_first_frame():
    frames = [Image.new("L", (8, 8), 255), Image.new("L", (8, 8), 0)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(io.BytesIO(buf.getvalue())).n_frames == 2
    out = np.asarray(load_image(buf.getvalue()))
    assert out.min() == 255


def test_exif_orientation_applied():
    img = Image.new("L", (40, 20), 0)
    img.paste(255, (0, 0, 10, 20))  # white band on the left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    out = load_image(_jpeg(img, exif=exif.tobytes(), quality=95))
    assert out.size == (20, 40)
    a = np.asarray(out)[..., 0].astype(int)
    assert a[:10].mean() > 200 and a[-10:].mean() < 50  # the band is now at the top


def test_bmp_and_webp_and_greyscale_load():
    for fmt in ("BMP", "WEBP"):
        buf = io.BytesIO()
        Image.new("L", (5, 7), 200).save(buf, format=fmt, lossless=True) if fmt == "WEBP" \
            else Image.new("L", (5, 7), 200).save(buf, format=fmt)
        out = load_image(buf.getvalue())
        assert out.size == (5, 7) and out.mode == "RGB"
        assert abs(int(np.asarray(out)[3, 2, 0]) - 200) <= 2


# -- image_to_digit --------------------------------------------------------------------------

@pytest.mark.parametrize("dark_on_light", [True, False])
def test_image_to_digit_inverts_light_background(dark_on_light):
    digit = image_to_digit(load_image(_png(_digit_picture(dark_on_light=dark_on_light))))
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    assert digit[0, 0] == 0 and digit.max() == 255  # white digit on black, like MNIST
    r, c = centre_of_mass(digit.astype(float))
    assert abs(r - 13.5) <= 1 and abs(c - 13.5) <= 1


def test_image_to_digit_large_photo_is_reduced():
    big = _digit_picture(size=3000)
    digit = image_to_digit(big)
    assert digit.shape == (28, 28)
    ys, _ = np.nonzero(digit)
    assert ys.min() >= 4 and ys.max() <= 23  # 20 px tall, centred


def test_image_to_digit_blank_image():
    with pytest.raises(ImageLoadError, match="blank"):
        image_to_digit(Image.new("RGB", (50, 50), (240, 240, 240)))
