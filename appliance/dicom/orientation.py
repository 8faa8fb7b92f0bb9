"""Orientation markers for the four edges of a displayed image (A/P, R/L, H/F letters).

DICOM's patient coordinate system (PS3.3 C.7.6.2.1.1): +x towards the patient's Left, +y
Posterior, +z Head. Image Orientation (Patient) (0020,0037) holds the direction cosines of the
row (first three values: towards the last column) and of the column (last three: towards the
last row), so the right edge of the image lies in the row direction and the bottom edge in the
column direction; the left and top edges are their opposites.

A direction along one axis is one letter; an oblique one gets a letter per axis whose share is
at least :data:`OBLIQUE_SHARE` (about 6 degrees off), the largest first (``LP``: mostly left,
somewhat posterior). An image without (0020,0037), such as a radiograph, may state Patient
Orientation (0020,0020) (PS3.3 C.7.6.1.1.1): the row direction, then the column direction, as
letters; anything else gives no markers (never a guess).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: A cosine at least this large (about 6 degrees off its axis) adds its letter to an oblique
#: direction; smaller ones are rounding and tilt noise.
OBLIQUE_SHARE = 0.1

_POSITIVE = ("L", "P", "H")  # +x, +y, +z
_NEGATIVE = ("R", "A", "F")
_OPPOSITE = {"L": "R", "R": "L", "P": "A", "A": "P", "H": "F", "F": "H"}
_AXIS = {"L": 0, "R": 0, "P": 1, "A": 1, "H": 2, "F": 2}


@dataclass(frozen=True)
class Markers:
    """The letters shown at the middle of each edge of the image."""

    left: str
    right: str
    top: str
    bottom: str


def direction_letters(vector: Sequence[float]) -> str:
    """The letters of a direction in patient coordinates, largest component first
    (``(0.8, 0.6, 0)`` is ``LP``); empty for a zero or non-finite vector."""
    if len(vector) != 3 or not all(math.isfinite(v) for v in vector):
        return ""
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0:
        return ""
    shares = [(abs(v) / norm, axis, v) for axis, v in enumerate(vector)]
    shares.sort(key=lambda item: (-item[0], item[1]))
    letters = [
        (_POSITIVE if v > 0 else _NEGATIVE)[axis]
        for share, axis, v in shares
        if share >= OBLIQUE_SHARE or share == shares[0][0]
    ]
    return "".join(letters)


def opposite(letters: str) -> str:
    """The opposite direction, letter by letter (``LP`` -> ``RA``)."""
    return "".join(_OPPOSITE[letter] for letter in letters)


def from_image_orientation(values: Sequence[Any] | None) -> Markers | None:
    """Markers from Image Orientation (Patient) (0020,0037); None when it is not six finite
    numbers describing two non-zero, non-parallel directions."""
    try:
        cosines = [float(v) for v in values or ()]
    except (TypeError, ValueError):
        return None
    if len(cosines) != 6 or not all(math.isfinite(v) for v in cosines):
        return None
    row, column = cosines[:3], cosines[3:]
    right, bottom = direction_letters(row), direction_letters(column)
    if not right or not bottom:
        return None
    cross = (
        row[1] * column[2] - row[2] * column[1],
        row[2] * column[0] - row[0] * column[2],
        row[0] * column[1] - row[1] * column[0],
    )
    size = math.sqrt(sum(v * v for v in row)) * math.sqrt(sum(v * v for v in column))
    if math.sqrt(sum(v * v for v in cross)) < 1e-3 * size:
        return None  # parallel: not an image plane
    return Markers(left=opposite(right), right=right, top=opposite(bottom), bottom=bottom)


def _patient_letters(value: Any) -> str | None:
    text = str(value).strip().upper()
    if not 1 <= len(text) <= 3 or any(letter not in _OPPOSITE for letter in text):
        return None
    if len({_AXIS[letter] for letter in text}) != len(text):
        return None  # one letter per axis at most ("LR" means nothing)
    return text


def from_patient_orientation(values: Sequence[Any] | str | None) -> Markers | None:
    """Markers from Patient Orientation (0020,0020): two values, the row direction (right
    edge) then the column direction (bottom edge), in the letters A, P, R, L, H, F (a biped).
    None when absent, not two values, or in other letters (e.g. a quadruped's)."""
    if values is None or isinstance(values, str | bytes):
        return None
    try:
        items = list(values)
    except TypeError:
        return None
    if len(items) != 2:
        return None
    right, bottom = _patient_letters(items[0]), _patient_letters(items[1])
    if right is None or bottom is None or _AXIS[right[0]] == _AXIS[bottom[0]]:
        return None
    return Markers(left=opposite(right), right=right, top=opposite(bottom), bottom=bottom)


def markers(
    image_orientation: Sequence[Any] | None, patient_orientation: Sequence[Any] | str | None
) -> Markers | None:
    """Markers from (0020,0037) when usable, else from (0020,0020), else None."""
    return from_image_orientation(image_orientation) or from_patient_orientation(
        patient_orientation
    )


def frame_markers(ds: Any, frame: int) -> Markers | None:
    """The orientation markers of ``frame``: Image Orientation (Patient) from the Plane
    Orientation functional group (per-frame, then shared) or the top level, else Patient
    Orientation (0020,0020)."""
    iop = None
    for name in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        groups = ds.get(name)
        index = frame if name.startswith("PerFrame") else 0
        if not groups or index >= len(groups):
            continue
        plane = groups[index].get("PlaneOrientationSequence")
        if plane and plane[0].get("ImageOrientationPatient") is not None:
            iop = plane[0].ImageOrientationPatient
            break
    if iop is None:
        iop = ds.get("ImageOrientationPatient")
    try:
        return markers(iop, ds.get("PatientOrientation"))
    except Exception:  # a malformed value never stops the image from showing
        return None
