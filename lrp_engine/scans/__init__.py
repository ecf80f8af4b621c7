"""Reading clinical scans into volumes, and laying their slices out for a screen.

* :mod:`.volume`: :class:`Volume` (RAS+ voxels, spacing, de-identified meta) and the display
  conventions (radiological / neurological), edge markers and pixel spacing of a slice.
"""

from .volume import (
    AXIS_NAMES,
    CONVENTIONS,
    Convention,
    SliceView,
    Volume,
    convert,
    edge_markers,
    pixel_spacing,
    slice_array,
    stack,
    view,
)

__all__ = ["AXIS_NAMES", "CONVENTIONS", "Convention", "SliceView", "Volume", "convert",
           "edge_markers", "pixel_spacing", "slice_array", "stack", "view"]
