"""Where a finding is: its box mapped back to pixels of the original image and to mm, and
the instance it is on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ai.boxes import box_to_pixels, box_to_pixels_unpadded
from appliance.analysis.preparation import Prepared


def box_json(box: Any, prepared: Prepared) -> dict[str, Any]:
    """A finding box as stored: the 0..1000 box, its edges in pixels of the original image and,
    when the spacing is known, its size in mm."""
    out: dict[str, Any] = {
        "y0": box.y0,
        "x0": box.x0,
        "y1": box.y1,
        "x1": box.x1,
        "label": box.label,
    }
    padding = prepared.images.padding
    try:
        if padding is None:  # a volume slice, sent unpadded: each axis scales on its own
            pixels = box_to_pixels_unpadded(box, int(prepared.shape[-2]), int(prepared.shape[-1]))
        else:
            pixels = box_to_pixels(box, padding)
    except ValueError:
        return out
    out["pixels"] = {
        "row0": round(pixels.row0, 2),
        "col0": round(pixels.col0, 2),
        "row1": round(pixels.row1, 2),
        "col1": round(pixels.col1, 2),
        "clamped": pixels.clamped,
        "empty": pixels.empty,
    }
    spacing: tuple[float, float, str] | None = None
    if prepared.spacing is not None:
        spacing = (prepared.spacing.row_mm, prepared.spacing.col_mm, prepared.spacing.source)
    elif prepared.affine is not None:
        col_mm = float(np.linalg.norm(prepared.affine[:3, 0]))
        row_mm = float(np.linalg.norm(prepared.affine[:3, 1]))
        if col_mm > 0 and row_mm > 0:
            spacing = (row_mm, col_mm, "volume")
    if spacing is not None:
        row_mm, col_mm, source = spacing
        out["mm"] = {
            "width": round((pixels.col1 - pixels.col0) * col_mm, 2),
            "height": round((pixels.row1 - pixels.row0) * row_mm, 2),
            "spacing": source,
        }
    return out


def image_link(prepared: Prepared, slice_number: int | None) -> tuple[str, int] | None:
    """(instance id, display index) of the image a finding is on: the slice it names, else the
    only image sent (a radiograph, a focused slice)."""
    count = len(prepared.images.images)
    if slice_number is not None and 1 <= slice_number <= count:
        return prepared.image_instance.get(slice_number - 1)
    if count == 1:
        return prepared.image_instance.get(0)
    return None
