"""A corpus of hostile, broken and odd files, generated in memory for the page tests.

``bad_files`` must be refused with a clear message; ``odd_files`` are valid pictures in
unusual modes that must be read. ``bad_scans``/``odd_scans`` (DICOM, NIfTI),
``bad_checkpoints`` and ``class_name_files`` do the same for the Image explorer's and the MRI
inspector's other uploaders. Each entry: file name → bytes.
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


# -- scans (DICOM, NIfTI) ------------------------------------------------------------------------

def dicom_bytes(pixels: np.ndarray | None, syntax: str = "1.2.840.10008.1.2.1",
                photometric: str = "MONOCHROME2", frames: int = 1, **tags: object) -> bytes:
    """A small MR DICOM file written to bytes (no disk). ``pixels`` (uint16/int16 [H, W] or
    [frames, H, W]) None: no pixel data. ``syntax``: the transfer syntax UID (default
    Explicit VR Little Endian); any other one gets a dummy encapsulated fragment that no
    decoder here can read. ``tags``: extra attributes (RescaleSlope=2.0, …)."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import UID, ExplicitVRLittleEndian, MRImageStorage, generate_uid

    uid = UID(syntax)
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = uid
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientName, ds.PatientID = "MR", "Doe^Jane", "12345"
    if pixels is not None:
        ds.Rows, ds.Columns = pixels.shape[-2:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
        ds.BitsAllocated = ds.BitsStored = pixels.dtype.itemsize * 8
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
        if frames > 1:
            ds.NumberOfFrames = frames
        if uid == ExplicitVRLittleEndian:
            ds.PixelData = pixels.tobytes()
        else:  # compressed: an encapsulated fragment (its contents never decode)
            ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7" + bytes(32)])
            ds["PixelData"].VR = "OB"
    for k, v in tags.items():
        setattr(ds, k, v)
    buf = io.BytesIO()
    private = {} if uid.is_transfer_syntax else {"implicit_vr": False, "little_endian": True}
    pydicom.dcmwrite(buf, ds, enforce_file_format=True, **private)
    return buf.getvalue()


def mr_slice(h: int = 128, w: int = 160) -> np.ndarray:
    """A 16-bit MR-like slice (uint16 [h, w]): a ramp near 20 000 and a bright disc."""
    yy, xx = np.mgrid[:h, :w]
    a = 20_000 + 100 * xx.astype(np.float64)
    a[(yy - h // 2) ** 2 + (xx - 5 * w // 8) ** 2 < (h // 8) ** 2] = 60_000
    return np.clip(a, 0, 65_535).astype(np.uint16)


def nifti_bytes(volume: np.ndarray, gz: bool = False) -> bytes:
    """``volume`` as a NIfTI-1 file (identity affine), gzipped when ``gz``."""
    import gzip

    import nibabel as nib

    raw = nib.Nifti1Image(volume, np.eye(4)).to_bytes()
    return gzip.compress(raw) if gz else raw


def head_volume(shape: tuple[int, ...] = (40, 48, 30)) -> np.ndarray:
    """A float32 volume: a smooth ramp with a bright ball (the first three axes)."""
    x, y, z = np.meshgrid(*(np.arange(n) for n in shape[:3]), indexing="ij")
    vol = (100 + 2 * x + y + z).astype(np.float32)
    vol[(x - shape[0] // 3) ** 2 + (y - shape[1] // 2) ** 2 + (z - shape[2] // 2) ** 2 < 36] = 400
    return vol


def bad_scans() -> dict[str, bytes]:
    """Scans the MRI inspector must refuse with a message naming the problem."""
    px = mr_slice(16, 16)
    nii = nifti_bytes(head_volume())
    return {
        "no_pixels.dcm": dicom_bytes(None),
        "jpeg_ls.dcm": dicom_bytes(px, syntax="1.2.840.10008.1.2.4.80"),  # JPEG-LS Lossless
        "private_syntax.dcm": dicom_bytes(px, syntax="1.2.3.4.5.6"),
        "letter.dcm": b"Dear colleague,\nplease find the scan attached.\n" * 20,
        "random.nii": np.random.default_rng(1).integers(0, 256, 4000, np.uint8).tobytes(),
        "damaged.nii.gz": b"\x1f\x8b" + bytes(50),
        "truncated.nii": nii[: len(nii) // 2],
    }


def odd_scans() -> dict[str, bytes]:
    """Valid scans in unusual shapes or with unusual values: read, with a note."""
    nan = head_volume()
    nan[0, 0, :3] = np.nan, np.inf, -np.inf
    nan[10:20, 10:20, 15] = np.nan
    four_d = np.stack([head_volume(), 2 * head_volume()], -1)  # two volumes
    return {
        "nan_inf.nii": nifti_bytes(nan),
        "four_d.nii.gz": nifti_bytes(four_d, gz=True),
        "flat_2d.nii": nifti_bytes(head_volume()[:, :, 15]),
        "multiframe.dcm": dicom_bytes(np.stack([mr_slice(64, 64)] * 3), frames=3),
        "monochrome1.dcm": dicom_bytes(mr_slice(), photometric="MONOCHROME1"),
        "constant.dcm": dicom_bytes(np.full((32, 32), 1000, np.uint16)),
    }


# -- checkpoints and class names ------------------------------------------------------------------

class _Evil:
    """Unpickling this runs ``open(marker, "w")``: the marker file would appear."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (self.marker, "w"))


class _EvilShell:
    """Unpickling this runs ``os.system("touch marker")``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        import os

        return (os.system, (f"touch {self.marker}",))


def malicious_pickle(marker: str) -> bytes:
    """A bare pickle (protocol 2) that would create the file ``marker`` if unpickled."""
    import pickle

    return pickle.dumps(_Evil(marker), protocol=2)


def torch_bytes(obj: object) -> bytes:
    """``torch.save(obj)`` to bytes."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def lenet_checkpoint(seed: int = 0, classes: int = 10) -> bytes:
    """A valid LeNet state dict (random weights, ``torch.save``): the good file after a bad
    one."""
    import torch

    from lrp_engine.models import zoo

    torch.manual_seed(seed)
    return torch_bytes(zoo.build("lenet", classes).state_dict())


def bad_checkpoints(marker: str) -> dict[str, bytes]:
    """Checkpoints a LeNet upload must refuse. The two malicious pickles would create the file
    ``marker`` if they were ever unpickled."""
    import torch
    from safetensors.torch import save as safetensors_bytes

    from lrp_engine.models import zoo

    torch.manual_seed(0)
    lenet = zoo.build("lenet", 10)
    state = lenet.state_dict()
    wrong = dict(state)
    wrong["model.conv2.weight"] = torch.zeros(48, 24, 3, 3)
    nan = {k: v.clone() for k, v in state.items()}
    nan["model.conv1.weight"][0, 0, 0, 0] = float("nan")
    st = safetensors_bytes({k: v.contiguous() for k, v in state.items()})
    (n,) = struct.unpack("<Q", st[:8])
    return {
        "empty.pt": b"",
        "random.pt": np.random.default_rng(2).integers(7, 256, 4096, np.uint8).tobytes(),
        "notes.pt": b"epoch,loss\n1,0.5\n2,0.3\n",
        "broken_zip.pt": b"PK\x03\x04" + bytes(100),
        "whole_model.pt": torch_bytes(lenet),
        "evil_open.pt": malicious_pickle(marker),
        "evil_system.pt": torch_bytes({"state_dict": _EvilShell(marker)}),
        "single_tensor.pt": torch_bytes(torch.zeros(3)),
        "other_arch.pt": torch_bytes(zoo.build("mlp", 10).state_dict()),
        "wrong_shapes.pt": torch_bytes(wrong),
        "nan_weights.pt": torch_bytes(nan),
        "bad_header.safetensors": st[:8] + b"{not json" + st[17:],
        "truncated.safetensors": st[: 8 + n // 2],
        "not_really.safetensors": b"\x00\x13\x37" + bytes(range(256)),
    }


#: a class name that would be markup if it were ever rendered as Markdown or HTML
HTML_NAME = "<script>alert(1)</script><b>x</b>"


def class_name_files(n: int = 10) -> dict[str, bytes]:
    """Class-names files for a model with ``n`` outputs: ``*_bad`` ones must be refused,
    the others used verbatim (as text)."""
    html = [f"{i} {HTML_NAME}" for i in range(n)]
    return {
        "html.txt": "\n".join(html).encode(),
        "markdown.txt": "\n".join(["**bold**", "![x](http://example.invalid/x.png)",
                                   "[link](javascript:alert(1))", "$x^2$", ":red[red]",
                                   *(f"c{i}" for i in range(5, n))]).encode(),
        "latin1_bad.txt": "caf\xe9\nna\xefve\n".encode("latin-1"),
        "blank_bad.txt": b"\n \n\t\n",
        "count_bad.txt": b"one\ntwo\n",
        "huge_bad.txt": b"x\n" * 100_001,
    }
