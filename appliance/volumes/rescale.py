"""Values: Rescale Slope/Intercept per frame, which images keep their stored values (not HU),
the value notes of a series, and the output dtype that holds the full range.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from appliance.volumes.frames.base import Frame
from appliance.volumes.results import MONOCHROME1, STORED_VALUES_NOT_HU, FloatArray, QANote


def keeps_stored_values(dataset: Dataset) -> bool:
    """Palette colour (C.7.9) or a supplemental palette LUT (PS3.3 C.7.6.19): not HU."""
    if str(dataset.get("PhotometricInterpretation", "")).upper() == "PALETTE COLOR":
        return True
    return "RedPaletteColorLookupTableDescriptor" in dataset


def value_notes(datasets: Sequence[Dataset]) -> list[QANote]:
    """Series notes about values: stored values kept (palette), MONOCHROME1."""
    notes = []
    first = datasets[0]
    if any(keeps_stored_values(ds) for ds in datasets):
        image_type = "\\".join(str(v) for v in (first.get("ImageType") or []))
        notes.append(
            QANote(
                STORED_VALUES_NOT_HU,
                f"Derived or palette-colour image (ImageType {image_type or 'unknown'}) with a "
                "palette colour lookup table: stored values are kept, not converted to HU or "
                "other units.",
                {"image_type": image_type},
            )
        )
    if any(
        str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1" for ds in datasets
    ):
        notes.append(
            QANote(
                MONOCHROME1,
                "MONOCHROME1: higher values are displayed darker; values are kept as stored.",
            )
        )
    return notes


def rescaled(pixels: NDArray[Any], frame: Frame, keep_stored: bool) -> FloatArray:
    """Stored values times slope plus intercept, as a new float64 array (computed in place)."""
    values = np.array(pixels, dtype=np.float64)
    if keep_stored:
        return values
    values *= frame.slope
    values += frame.intercept
    return values


def is_integral(frames: Iterable[Frame], keep_stored: bool) -> bool:
    """True when every rescale keeps integers (or stored values are kept)."""
    if keep_stored:
        return True
    return all(float(f.slope).is_integer() and float(f.intercept).is_integer() for f in frames)


def to_output_dtype(values: FloatArray, integral: bool) -> NDArray[Any]:
    """int16 when the rounded range fits, else int32; float32 for non-integral values."""
    if not integral:
        return values.astype(np.float32)
    rounded = np.rint(values)
    low, high = (float(rounded.min()), float(rounded.max())) if rounded.size else (0.0, 0.0)
    info16 = np.iinfo(np.int16)
    if info16.min <= low and high <= info16.max:
        return rounded.astype(np.int16)
    return rounded.astype(np.int32)
