"""Applying a :class:`~lrp_engine.models.card.PreprocessingCard`: picture or array → model input.

It reproduces torchvision's transforms step for step, on whichever of its two paths the input
takes:

* **8-bit pictures** (PIL modes L, RGB, RGBA, P, 1, CMYK, …, and uint8 arrays): PIL converts
  them to ``"RGB"`` or ``"L"`` (ITU-R 601 luma) as ``ImageFolder``'s loader does
  (``img.convert("RGB")``: an alpha channel is dropped, not composited), PIL resizes them
  (always antialiased, as torchvision on PIL images), the centre crop uses torchvision's
  offsets (``int(round((size - crop) / 2))``, zero padding where the picture is smaller),
  then ``ToTensor`` (uint8 → float32, ÷255). Bit for bit what ``Resize`` + ``CenterCrop`` +
  ``ToTensor`` give.
* **Intensities** (numpy arrays of any other dtype, PIL modes I;16/I/F, and any input under
  ``windowing="percentile"``): float32, resized with ``F.interpolate(antialias=True)`` as
  ``transforms.Resize`` does on tensors. 16-bit pictures (I;16) are scaled by 1/65535 (the
  full 16-bit range, like ``ToDtype(float32, scale=True)``); other arrays and modes I/F stay
  raw with ``windowing="none"``.

Windowing ``"percentile"`` clips to the 0.5–99.5 % percentiles of the finite values and maps
them to 0…1 before resizing; NaN/±Inf pixels become 0 (black); an all-constant image becomes
all 0; an image without a finite value is refused. With ``"none"`` a NaN/±Inf pixel is
refused (it would reach the model). ``"pad-square"`` pads with 0 (black) to a centred square
(the extra pixel of an odd difference goes right/bottom) and resizes to the card's size.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from .card import WINDOW_PERCENTILES, CardError, PreprocessingCard

#: most pixels of an input picture and of any intermediate (resized or padded) picture
MAX_INPUT_PIXELS = 40_000_000
#: a square padded larger than this is shrunk first (to this side; then not bit-exact)
MAX_PAD_SIDE = 6000
#: PIL modes holding intensities rather than 8-bit channels
INTENSITY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_RESAMPLE = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
             "bicubic": Image.Resampling.BICUBIC}
#: ITU-R 601 luma weights, as PIL's convert("L")
LUMA = (0.299, 0.587, 0.114)


def card_pixels(card: PreprocessingCard, image: object) -> Tensor:
    """``image`` made into float32 [1, card.channels, H, W] as ``card`` says, before
    normalisation: pixels 0…1 for pictures and windowed scans, raw intensities otherwise.

    ``image``: a PIL image (any mode), or a numpy array / tensor [H, W], [H, W, C] or
    [C, H, W] (C = 1, 3, or 4 with alpha dropped). Raises :class:`CardError`.
    """
    if not isinstance(card, PreprocessingCard):
        raise CardError(f"expected a PreprocessingCard, got {type(card).__name__}")
    if isinstance(image, Image.Image):
        return _from_pil(card, image)
    if isinstance(image, Tensor):
        image = image.detach().cpu().numpy()
    if isinstance(image, np.ndarray):
        return _from_array(card, image)
    raise CardError(f"expected a PIL image or a numpy array, got {type(image).__name__}")


def _check_pixels(h: int, w: int, what: str) -> None:
    if h <= 0 or w <= 0:
        raise CardError(f"the {what} is empty ({h}×{w} pixels)")
    if h * w > MAX_INPUT_PIXELS:
        raise CardError(f"the {what} would be {h}×{w} = {h * w:,} pixels; at most "
                        f"{MAX_INPUT_PIXELS:,} are handled")


# -- PIL pictures --------------------------------------------------------------------------

def _from_pil(card: PreprocessingCard, img: Image.Image) -> Tensor:
    _check_pixels(img.height, img.width, "picture")
    if img.mode in INTENSITY_MODES:
        a = np.asarray(img).astype(np.float32)
        if img.mode.startswith("I;16") and card.windowing == "none":
            a = a / np.float32(65535.0)
        return _from_float(card, a[..., None])
    img = _convert(img, "RGB" if card.channels == 3 else "L")
    if card.windowing == "percentile":
        a = np.asarray(img, dtype=np.float32)
        return _from_float(card, a if a.ndim == 3 else a[..., None])
    return _from_8bit(card, img)


def _convert(img: Image.Image, target: str) -> Image.Image:
    if img.mode == target:
        return img
    try:
        if img.mode == "P" and "transparency" in img.info:  # PIL warns on P → RGB directly
            img = img.convert("RGBA")
        return img.convert(target)
    except (ValueError, OSError) as e:
        raise CardError(f"a picture in colour mode {img.mode!r} cannot be converted to "
                        f"{'RGB' if target == 'RGB' else 'grey'} ({e})") from None


def _from_8bit(card: PreprocessingCard, img: Image.Image) -> Tensor:
    resample = _RESAMPLE[card.interpolation]
    h, w = card.size
    if card.resize == "pad-square":
        img = _pad_square_pil(img, resample)
    if card.resize == "shorter-side-crop":
        nh, nw = _shorter_side(img.height, img.width, card.resize_side)
        img = _resize_pil(img, nh, nw, resample)
        img = _centre_crop_pil(img, h, w)
    else:
        img = _resize_pil(img, h, w, resample)
    a = np.array(img, dtype=np.uint8, copy=True)
    x = torch.from_numpy(a).view(h, w, -1).permute(2, 0, 1).contiguous()
    return x.to(torch.float32).div(255)[None]  # ToTensor


def _resize_pil(img: Image.Image, h: int, w: int, resample: int) -> Image.Image:
    if (img.height, img.width) == (h, w):  # torchvision returns the picture unchanged
        return img
    return img.resize((w, h), resample)


def _pad_square_pil(img: Image.Image, resample: int) -> Image.Image:
    w, h = img.size
    if w == h:
        return img
    if max(w, h) > MAX_PAD_SIDE:
        f = MAX_PAD_SIDE / max(w, h)
        img = img.resize((max(1, round(w * f)), max(1, round(h * f))), resample)
        w, h = img.size
    n = max(w, h)
    canvas = Image.new(img.mode, (n, n), 0)
    canvas.paste(img, ((n - w) // 2, (n - h) // 2))
    return canvas


def _crop_box(size: int, crop: int) -> tuple[int, int]:
    """torchvision's ``center_crop`` along one axis: (zero padding before, start after
    padding); the padding after is ``crop - size - before`` where ``crop > size``."""
    if crop > size:
        return (crop - size) // 2, 0
    return 0, round((size - crop) / 2.0)


def _centre_crop_pil(img: Image.Image, h: int, w: int) -> Image.Image:
    (pad_top, top), (pad_left, left) = _crop_box(img.height, h), _crop_box(img.width, w)
    if (img.height, img.width) == (h, w):
        return img
    # PIL fills the part of the box outside the picture with 0: torchvision's zero padding
    top, left = top - pad_top, left - pad_left
    return img.crop((left, top, left + w, top + h))


def _shorter_side(h: int, w: int, side: int) -> tuple[int, int]:
    """torchvision's ``Resize(side)`` output (H, W): the shorter side to ``side``, the
    longer ``int(side * long / short)``."""
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = side, int(side * long / short)
    nw, nh = (new_short, new_long) if w <= h else (new_long, new_short)
    _check_pixels(nh, nw, f"picture resized to shorter side {side}")
    return nh, nw


# -- arrays and intensities ----------------------------------------------------------------

def _from_array(card: PreprocessingCard, a: np.ndarray) -> Tensor:
    if a.dtype.kind not in "biuf":
        raise CardError(f"an image array must hold numbers, got dtype {a.dtype}")
    while a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 2:
        a = a[..., None]
    elif a.ndim == 3 and a.shape[2] not in (1, 3, 4) and a.shape[0] in (1, 3):
        a = np.moveaxis(a, 0, -1)  # [C, H, W] → [H, W, C]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise CardError(f"expected an image array [H, W], [H, W, C] or [C, H, W] with 1, 3 "
                        f"or 4 (RGBA) channels, got shape {list(a.shape)}; for a volume "
                        "pick one slice first (lrp_engine.medical.volume_slice)")
    _check_pixels(a.shape[0], a.shape[1], "array")
    if a.dtype == np.uint8:  # a picture: the same path as a PIL image of it
        return _from_pil(card, Image.fromarray(np.ascontiguousarray(
            a[..., 0] if a.shape[2] == 1 else a)))
    return _from_float(card, a.astype(np.float32))


def _from_float(card: PreprocessingCard, a: np.ndarray) -> Tensor:
    """Float [H, W, C] intensities → [1, channels, H, W]: channels, window, resize."""
    if a.shape[2] == 4:
        a = a[..., :3]  # alpha dropped, as PIL's convert("RGB")
    if card.channels == 1 and a.shape[2] == 3:
        a = (a[..., 0] * LUMA[0] + a[..., 1] * LUMA[1] + a[..., 2] * LUMA[2])[..., None]
    finite = np.isfinite(a)
    if card.windowing == "percentile":
        if not finite.any():
            raise CardError("the image has no finite value (all NaN or infinite): nothing "
                            "to window")
        lo, hi = (float(v) for v in np.percentile(a[finite], WINDOW_PERCENTILES))
        a = np.where(finite, a, np.float32(lo))
        if hi > lo:
            a = np.clip((a - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0)
        else:  # all (or nearly all) one value: no contrast to map
            a = np.zeros_like(a)
    elif not finite.all():
        raise CardError(f"the image has {int((~finite).sum()):,} NaN or infinite value(s); "
                        "with windowing 'none' intensities reach the model as they are. Use "
                        "windowing 'percentile' (they become black) or clean the array")
    x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(2, 0, 1)[None]
    h, w = card.size
    mode = card.interpolation
    if card.resize == "pad-square":
        x = _pad_square_tensor(x, mode)
    if card.resize == "shorter-side-crop":
        nh, nw = _shorter_side(x.shape[2], x.shape[3], card.resize_side)
        x = _centre_crop_tensor(_resize_tensor(x, nh, nw, mode), h, w)
    else:
        x = _resize_tensor(x, h, w, mode)
    if card.channels == 3 and x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.contiguous()


def _resize_tensor(x: Tensor, h: int, w: int, mode: str) -> Tensor:
    """torchvision's ``Resize`` on a float tensor (antialiased bilinear/bicubic)."""
    if tuple(x.shape[2:]) == (h, w):
        return x
    if mode == "nearest":
        return F.interpolate(x, size=(h, w), mode="nearest")
    return F.interpolate(x, size=(h, w), mode=mode, align_corners=False, antialias=True)


def _pad_square_tensor(x: Tensor, mode: str) -> Tensor:
    h, w = x.shape[2:]
    if h == w:
        return x
    if max(h, w) > MAX_PAD_SIDE:
        f = MAX_PAD_SIDE / max(h, w)
        x = _resize_tensor(x, max(1, round(h * f)), max(1, round(w * f)), mode)
        h, w = x.shape[2:]
    n = max(h, w)
    top, left = (n - h) // 2, (n - w) // 2
    return F.pad(x, (left, n - w - left, top, n - h - top))


def _centre_crop_tensor(x: Tensor, h: int, w: int) -> Tensor:
    ih, iw = x.shape[2:]
    (pad_top, top), (pad_left, left) = _crop_box(ih, h), _crop_box(iw, w)
    if h > ih or w > iw:
        x = F.pad(x, (pad_left, max(0, w - iw - pad_left), pad_top, max(0, h - ih - pad_top)))
    return x[:, :, top:top + h, left:left + w]


__all__ = ["INTENSITY_MODES", "MAX_INPUT_PIXELS", "MAX_PAD_SIDE", "card_pixels"]
