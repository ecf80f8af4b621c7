"""Reading clinical scans into volumes, and laying their slices out for a screen.

* :mod:`.volume`: :class:`Volume` (RAS+ voxels, spacing, de-identified meta) and the display
  conventions (radiological / neurological), edge markers and pixel spacing of a slice.
* :mod:`.read`: :func:`read_scans`, the one entry point for uploads (DICOM files and series,
  zip archives, NIfTI, pictures) → :class:`ScanSet`; built from :mod:`.archive` (zip in
  memory, with caps), :mod:`.dicom` (one dataset), :mod:`.transfer_syntax` (what decodes),
  :mod:`.series` (slices → volume), :mod:`.orientation` (→ RAS+) and :mod:`.nifti`.
* :mod:`.windowing`: display windows and presets. :mod:`.errors`: :class:`ScanLoadError`.
"""

from .archive import ArchiveLimits
from .errors import ScanLoadError
from .read import ScanSet, read_scans
from .series import STORED_LAYOUT
from .volume import (
    AXIS_NAMES,
    CONVENTIONS,
    Convention,
    ScanKind,
    SliceView,
    Volume,
    convert,
    edge_markers,
    pixel_spacing,
    slice_array,
    stack,
    view,
)
from .windowing import auto_window, window, window_presets

__all__ = ["AXIS_NAMES", "CONVENTIONS", "STORED_LAYOUT", "ArchiveLimits", "Convention",
           "ScanKind", "ScanLoadError", "ScanSet", "SliceView", "Volume", "auto_window", "convert",
           "edge_markers", "pixel_spacing", "read_scans", "slice_array", "stack", "view",
           "window", "window_presets"]
