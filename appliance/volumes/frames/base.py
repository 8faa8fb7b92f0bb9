"""One 2D image of a series (``Frame``) with its plane, rescale and non-spatial keys, and the
tolerant readers of DICOM header values the frame extractors share.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset

from appliance.volumes.results import FloatArray

FRAME_TYPE_WORDS = {
    "M": "magnitude",
    "MAGNITUDE": "magnitude",
    "P": "phase",
    "PHASE": "phase",
    "R": "real",
    "REAL": "real",
    "I": "imaginary",
    "IMAGINARY": "imaginary",
    "FIELD_MAP": "field map",
    "B0_MAP": "field map",
    "B0MAP": "field map",
}


@dataclass(slots=True)
class Frame:
    """One 2D image: a classic file, a frame of a multi-frame object, or a mosaic tile."""

    dataset: Dataset
    order: int
    frame_index: int | None = None
    tile: tuple[int, int] | None = None
    position: FloatArray | None = None
    orientation: tuple[float, ...] | None = None
    pixel_spacing: tuple[float, float] | None = None
    thickness: float | None = None
    rows: int = 0
    columns: int = 0
    slope: float = 1.0
    intercept: float = 0.0
    rescale_type: str = ""
    instance: int | None = None
    keys: dict[str, Hashable] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


def float_tuple(value: Any) -> tuple[float, ...] | None:
    """A multi-valued number as floats, None when absent or not numeric."""
    if value is None or value == "":
        return None
    try:
        return tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None


def float_value(value: Any, default: float | None = None) -> float | None:
    """A number as a float, ``default`` when absent or not numeric."""
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def int_value(value: Any) -> int | None:
    """A number as an int, None when absent or not numeric."""
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def frame_type_label(tokens: Sequence[str]) -> str:
    """A readable name for a frame type (magnitude, phase, field map...)."""
    for token in tokens:
        word = FRAME_TYPE_WORDS.get(token.upper())
        if word:
            return word
    return "/".join(tokens).lower() or "frame type"


def series_key(dataset: Dataset) -> tuple[str, int | None]:
    """Series Instance UID and Series Number: what separates series."""
    return (str(dataset.get("SeriesInstanceUID", "")), int_value(dataset.get("SeriesNumber")))


def read_pixel_spacing(item: Dataset) -> tuple[float, float] | None:
    """Pixel Spacing, else Imager Pixel Spacing (row, column mm); None when absent or not
    positive."""
    spacing = float_tuple(item.get("PixelSpacing")) or float_tuple(item.get("ImagerPixelSpacing"))
    if spacing is None or len(spacing) != 2 or min(spacing) <= 0:
        return None
    return (spacing[0], spacing[1])
