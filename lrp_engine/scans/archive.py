"""Zip archives of a study, expanded in memory (never on disk) within caps.

:func:`expand_zip` first checks the central directory's declared sizes against
:class:`ArchiveLimits` (entries, total, per entry, compression ratio), then decompresses
each entry in chunks, counting the bytes it really produces and stopping at the caps, so a
directory that lies about sizes cannot exhaust memory. A refusal raises
:class:`ScanLoadError` naming the cap and the numbers. Folders, macOS metadata, DICOMDIR
indexes and nested zips are skipped, with a note.
"""

from __future__ import annotations

import io
import posixpath
import zipfile
from collections import Counter
from dataclasses import dataclass, field

from .errors import ScanLoadError

_MIB = 1 << 20
#: bytes read from an entry at a time
CHUNK = 1 << 20


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps on an upload (memory and zip-bomb guards).

    Zip archives: at most ``max_entries`` entries, ``max_total_bytes`` expanded in all,
    ``max_entry_bytes`` for one entry, and a compression ratio (expanded ÷ compressed) of
    ``max_ratio`` for an entry (or archive) expanding to more than ``ratio_floor_bytes``
    (small, very compressible files such as blank slices are harmless). Volumes: at most
    ``max_slices`` slices in one volume and ``max_voxels`` decoded voxels in the whole upload
    (float32: 4 bytes each; the default 2**29 is 2 GiB).
    """

    max_entries: int = 2000
    max_total_bytes: int = 2 << 30
    max_entry_bytes: int = 512 << 20
    max_ratio: float = 100.0
    ratio_floor_bytes: int = 1 << 20
    max_slices: int = 5000
    max_voxels: int = 1 << 29


#: the default caps
DEFAULT_LIMITS = ArchiveLimits()


@dataclass
class Expanded:
    """What a zip held: ``files`` (name inside the archive, bytes) to read, ``skipped``
    (name, reason) for entries not read that the user should know about, and ``notes``
    (what was left out on purpose: folders, DICOMDIR, system files)."""

    files: list[tuple[str, bytes]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def is_zip(data: bytes) -> bool:
    """Whether ``data`` starts like a zip archive (a local header or an empty archive)."""
    return data[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def _mib(n: float) -> str:
    return f"{n / _MIB:,.1f} MiB"


def _system_file(name: str) -> bool:
    base = posixpath.basename(name)
    return name.startswith("__MACOSX/") or base.startswith("._") or base in (
        ".DS_Store", "Thumbs.db", "desktop.ini")


def _check_declared(infos: list[zipfile.ZipInfo], size: int, limits: ArchiveLimits) -> None:
    """Refuse from the central directory alone (before anything is decompressed)."""
    if len(infos) > limits.max_entries:
        raise ScanLoadError(f"the archive has {len(infos):,} entries, more than the "
                            f"{limits.max_entries:,} accepted")
    total = sum(i.file_size for i in infos)
    if total > limits.max_total_bytes:
        raise ScanLoadError(f"the archive would expand to {_mib(total)}, more than the "
                            f"{_mib(limits.max_total_bytes)} accepted")
    for i in infos:
        if i.file_size > limits.max_entry_bytes:
            raise ScanLoadError(f"the entry '{i.filename}' would expand to {_mib(i.file_size)},"
                                f" more than the {_mib(limits.max_entry_bytes)} accepted for "
                                "one file")
        ratio = i.file_size / max(i.compress_size, 1)
        if i.file_size > limits.ratio_floor_bytes and ratio > limits.max_ratio:
            raise ScanLoadError(f"the entry '{i.filename}' is compressed {ratio:,.0f} to 1 "
                                f"({_mib(i.file_size)} from {_mib(i.compress_size)}), more "
                                f"than the {limits.max_ratio:g} to 1 accepted: it looks like "
                                "a zip bomb")
    ratio = total / max(size, 1)
    if total > limits.ratio_floor_bytes and ratio > limits.max_ratio:
        raise ScanLoadError(f"the archive is compressed {ratio:,.0f} to 1 ({_mib(total)} from "
                            f"{_mib(size)}), more than the {limits.max_ratio:g} to 1 "
                            "accepted: it looks like a zip bomb")


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int,
                limits: ArchiveLimits) -> bytes:
    """One entry's bytes, decompressed in chunks: at most ``max_entry_bytes``, ``budget``
    (what is left of ``max_total_bytes``), and ``max_ratio`` beyond ``ratio_floor_bytes`` —
    whatever the directory declared."""
    cap = min(limits.max_entry_bytes, budget)
    out = io.BytesIO()
    n = 0
    with zf.open(info) as f:
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                break
            n += len(chunk)
            if n > cap:
                which = "for one file" if cap == limits.max_entry_bytes else "in all"
                raise ScanLoadError(
                    f"the entry '{info.filename}' expands to more than {_mib(cap)} (its "
                    f"directory entry said {_mib(info.file_size)}), beyond the cap "
                    f"{which}: the archive is damaged or crafted")
            if n > limits.ratio_floor_bytes and n / max(info.compress_size, 1) > \
                    limits.max_ratio:
                raise ScanLoadError(
                    f"the entry '{info.filename}' expands more than {limits.max_ratio:g} to "
                    f"1 ({_mib(n)} so far from {_mib(info.compress_size)}): it looks like a "
                    "zip bomb")
            out.write(chunk)
    return out.getvalue()


_NESTED = "a zip inside the zip is not opened: unzip it and upload its contents"


def _not_read(info: zipfile.ZipInfo, out: Expanded) -> str | None:
    """Why an entry is left unread, by its name and flags: ``"folder"`` and ``"system"``
    (counted), ``"dicomdir"`` (a note in ``out``), ``"skipped"`` (a nested zip or an
    encrypted entry, with its reason in ``out``); None: read it."""
    name = info.filename
    if info.is_dir():
        return "folder"
    if _system_file(name):
        return "system"
    if posixpath.basename(name.rstrip("/")).upper() == "DICOMDIR":
        out.notes.append(f"'{name}' (a DICOMDIR index) skipped: the images are read "
                         "directly")
        return "dicomdir"
    if name.lower().endswith(".zip"):
        out.skipped.append((name, _NESTED))
        return "skipped"
    if info.flag_bits & 0x1:
        out.skipped.append((name, "the entry is encrypted (password-protected)"))
        return "skipped"
    return None


def _entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int, limits: ArchiveLimits,
           out: Expanded) -> bytes | None:
    """The entry's bytes; None when it cannot be read (the reason in ``out``). A broken
    cap raises :class:`ScanLoadError`."""
    name = info.filename
    try:
        return _read_entry(zf, info, budget, limits)
    except ScanLoadError:
        raise
    except NotImplementedError as e:
        out.skipped.append((name, f"the entry uses a compression this app cannot "
                                  f"read ({e})"))
    except Exception as e:  # noqa: BLE001 - BadZipFile, zlib.error, bad offsets …
        out.skipped.append((name, "the entry is damaged or its declared size is wrong"
                                  f" ({e})"))
    return None


def expand_zip(data: bytes, limits: ArchiveLimits = DEFAULT_LIMITS) -> Expanded:
    """A zip archive's bytes → :class:`Expanded`, in memory.

    Raises :class:`ScanLoadError` if the archive cannot be opened or breaks a cap (the
    message names the cap and the numbers); a damaged, encrypted or unsupported entry is
    skipped with its reason instead.
    """
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as e:
        raise ScanLoadError(f"this zip archive is damaged or not a zip ({e})") from None
    with zf:
        infos = zf.infolist()
        _check_declared(infos, len(data), limits)
        out = Expanded()
        unread: Counter[str] = Counter()
        budget = limits.max_total_bytes
        for info in infos:
            why = _not_read(info, out)
            if why is not None:
                unread[why] += 1
                continue
            raw = _entry(zf, info, budget, limits, out)
            if raw is None:
                continue
            budget -= len(raw)
            if is_zip(raw):
                out.skipped.append((info.filename, _NESTED))
                continue
            out.files.append((info.filename, raw))
        folders, system = unread["folder"], unread["system"]
        if folders:
            out.notes.append(f"{folders} folder entr{'y' if folders == 1 else 'ies'} in the "
                             "archive skipped (their files are read)")
        if system:
            out.notes.append(f"{system} system file(s) (macOS metadata, thumbnails) skipped")
    return out


__all__ = ["CHUNK", "DEFAULT_LIMITS", "ArchiveLimits", "Expanded", "expand_zip", "is_zip"]
