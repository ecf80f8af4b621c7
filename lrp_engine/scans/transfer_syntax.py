"""Which DICOM transfer syntaxes decode here, and what to tell the user about one that does not.

The transfer syntax (file meta element (0002,0010)) says how the pixel data is encoded.
pydicom decodes the uncompressed ones itself; its plugins decode the rest: pylibjpeg-libjpeg
(JPEG baseline, extended, lossless, JPEG-LS), pylibjpeg-openjpeg (JPEG 2000, HTJ2K),
pylibjpeg-rle / pydicom (RLE), Pillow (8-bit JPEG, JPEG 2000). :func:`decode_error_message`
turns a failed decode into one sentence that names the syntax and its UID, says what would
decode it, and keeps the general advice (export uncompressed).
"""

from __future__ import annotations

#: the advice that ends every message about pixel data that cannot be decoded
EXPORT_ADVICE = "Export the image uncompressed (Explicit VR Little Endian) and try again."

_GDCM = "GDCM (`pip install python-gdcm`) decodes"
_VIDEO = ("this is video, not a set of images: export the frames (as an uncompressed DICOM "
          "series or as pictures)")
_JPIP = ("the pixel data is not in the file (JPIP: it is fetched from a server): retrieve the "
         "images themselves from the archive")

#: what would decode a syntax that the installed plugins do not (UID, or prefix ending in
#: "*", → a sentence)
_ADVICE: dict[str, str] = {
    # libjpeg refuses 12-bit JPEG Extended files with non-conformant scan headers
    "1.2.840.10008.1.2.4.51": f"{_GDCM} the 12-bit JPEG Extended files that libjpeg refuses",
    "1.2.840.10008.1.2.4.92": f"{_GDCM} JPEG 2000 Part 2 (multi-component)",
    "1.2.840.10008.1.2.4.93": f"{_GDCM} JPEG 2000 Part 2 (multi-component)",
    "1.2.840.10008.1.2.4.94": _JPIP,
    "1.2.840.10008.1.2.4.95": _JPIP,
    "1.2.840.10008.1.2.4.204": _JPIP,
    "1.2.840.10008.1.2.4.205": _JPIP,
    "1.2.840.10008.1.2.4.10*": _VIDEO,  # MPEG-2, MPEG-4 AVC/H.264, HEVC/H.265: .100 … .108
    "1.2.840.10008.1.2.7.*": _VIDEO,  # SMPTE ST 2110 video
    "1.2.840.10008.1.2.4.11*": "JPEG XL needs a decoder that pydicom 3.0 does not have",
    "1.2.840.10008.1.2.4.20*": "pylibjpeg-openjpeg 2.4 or newer decodes HTJ2K",
    "1.2.840.10008.1.2.8.*": "a newer pydicom may decode Deflated Image Frame Compression",
}
#: names of syntaxes newer than pydicom 3.0's dictionary
_NAMES = {"1.2.840.10008.1.2.4.110": "JPEG XL Lossless",
          "1.2.840.10008.1.2.4.111": "JPEG XL JPEG Recompression",
          "1.2.840.10008.1.2.4.112": "JPEG XL",
          "1.2.840.10008.1.2.8.1": "Deflated Image Frame Compression"}
#: retired JPEG processes (3, 5–13, 15–29): only GDCM or DCMTK still decode them
_RETIRED_JPEG = {f"1.2.840.10008.1.2.4.{n}" for n in (52, 53, 54, 55, 56, 58, 59, 60, 61, 62,
                                                       63, 64, 65, 66)}


def syntax_name(uid: str) -> str:
    """The transfer syntax's name as pydicom knows it, or ``"<uid> (unknown to pydicom)"``."""
    from pydicom.uid import UID

    u = UID(str(uid))
    if u.is_transfer_syntax and u.name != str(u):
        return u.name
    return _NAMES.get(str(u), f"{u} (unknown to pydicom)")


def label(uid: str) -> str:
    """``'name' (uid)`` for a known syntax, ``uid (unknown to pydicom)`` otherwise."""
    name = syntax_name(uid)
    return name if name.endswith("(unknown to pydicom)") else f"'{name}' ({uid})"


def advice(uid: str) -> str | None:
    """What would decode ``uid`` when the plugins here do not (None: nothing specific)."""
    uid = str(uid)
    if uid in _RETIRED_JPEG:
        return f"{_GDCM} this retired JPEG process"
    for key, text in _ADVICE.items():
        if uid == key or (key.endswith("*") and uid.startswith(key[:-1])):
            return text
    return None


def can_decode(uid: str) -> bool:
    """Whether an installed decoder handles ``uid`` (native syntaxes included)."""
    from pydicom.pixels import get_decoder

    try:
        return bool(get_decoder(str(uid)).is_available)
    except (NotImplementedError, ValueError, KeyError):
        return False


def decode_error_message(uid: str | None, reason: str = "") -> str:
    """The sentence for pixel data in ``uid`` that did not decode (``reason``: the decoder's
    own first line, kept short). Names the syntax and UID; a syntax the plugins decode is
    probably damaged; one they do not gets what would decode it."""
    if not uid:
        return f"the file does not say how its pixel data is encoded. {EXPORT_ADVICE}"
    reason = _short(reason)
    because = f" ({reason})" if reason else ""
    tip = advice(uid)
    if can_decode(uid):
        extra = f" If it is not, {tip}." if tip else ""
        return (f"the pixel data in the transfer syntax {label(uid)} could not be decoded"
                f"{because}: the file may be damaged.{extra} {EXPORT_ADVICE}")
    if syntax_name(uid).endswith("(unknown to pydicom)"):
        tip = tip or "it is probably private to the device that wrote it"
    tip = f" {tip[0].upper()}{tip[1:]}." if tip else ""
    return (f"the pixel data uses the transfer syntax {label(uid)}, which cannot be decoded "
            f"here{because}.{tip} {EXPORT_ADVICE}")


def _short(reason: str, limit: int = 160) -> str:
    """The most telling line of a decoder's error, at most ``limit`` characters."""
    lines = [ln.strip() for ln in str(reason).splitlines() if ln.strip()]
    if not lines:
        return ""
    # pydicom: "Unable to decode … by all available plugins:" then one line per plugin
    first = lines[1] if len(lines) > 1 and lines[0].endswith(":") else lines[0]
    first = first.rstrip(":. ")
    return first if len(first) <= limit else first[: limit - 1] + "…"


__all__ = ["EXPORT_ADVICE", "advice", "can_decode", "decode_error_message", "label",
           "syntax_name"]
