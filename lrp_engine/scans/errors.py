"""The one error a scan reader raises: :class:`ScanLoadError`, with a message for the user."""

from __future__ import annotations


class ScanLoadError(ValueError):
    """A scan that cannot be read, with a message meant for the user (plain words, never a
    traceback, never a patient identifier)."""


__all__ = ["ScanLoadError"]
