"""The header of a safetensors file: 8 bytes of little-endian length, then a JSON object.

Read without loading any tensor: the checkpoint loader uses it to recognise the format
whatever the file is called, the model card reads its ``__metadata__``.
"""

from __future__ import annotations

import json
import struct

#: a header larger than this is refused (real ones are kilobytes)
MAX_HEADER_BYTES = 100_000_000


class HeaderError(ValueError):
    """A file that starts like safetensors but whose header is broken (plain words)."""


def read_header(data: bytes | bytearray | memoryview) -> dict | None:
    """The parsed header, or None if ``data`` does not start like a safetensors file."""
    view = memoryview(data)
    if len(view) < 10 or view[8:9].tobytes() != b"{":
        return None
    (n,) = struct.unpack("<Q", view[:8].tobytes())
    if n > MAX_HEADER_BYTES:
        raise HeaderError(f"broken safetensors file: its header claims {n:,} bytes (at most "
                          f"{MAX_HEADER_BYTES:,})")
    if n > len(view) - 8:
        raise HeaderError(
            f"broken safetensors file: its header says {n} bytes but the file has only "
            f"{len(view) - 8} after the length field (truncated upload?)")
    try:
        header = json.loads(view[8:8 + n].tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise HeaderError(f"broken safetensors file: its header is not valid JSON ({e})") \
            from None
    if not isinstance(header, dict):
        raise HeaderError("broken safetensors file: its header is not a JSON object")
    return header
