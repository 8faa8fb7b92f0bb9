"""What a reconstruction returns: ``VolumeResult``, its ``QANote`` findings and their
stable codes, and ``VolumeError`` for input that cannot be reconstructed at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from appliance.volumes import geometry

FloatArray = NDArray[np.float64]


# Note codes.
GANTRY_TILT_CORRECTED = "gantry_tilt_corrected"
VARIABLE_SPACING_RESAMPLED = "variable_spacing_resampled"
SPLIT_4D = "split_4d"
SPLIT_NON_SPATIAL = "split_non_spatial"
MISSING_SLICES = "missing_slices"
NOT_A_VOLUME = "not_a_volume"
STORED_VALUES_NOT_HU = "stored_values_not_hu"
RESCALE_NOT_HU = "rescale_not_hu"
MONOCHROME1 = "monochrome1"
MOSAIC_UNPACKED = "mosaic_unpacked"
MULTIPLE_SERIES = "multiple_series"

PROJECTION_MODALITIES = frozenset({"CR", "DX", "MG", "XA", "RF", "IO", "PX"})


class VolumeError(ValueError):
    """The input cannot be reconstructed at all (not DICOM, no pixels, undecodable, colour)."""


@dataclass(frozen=True, slots=True)
class QANote:
    """One geometry or value finding: a stable code, a plain-English sentence, and figures."""

    code: str
    text: str
    details: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(slots=True, eq=False)
class VolumeResult:
    """One reconstructed volume (or a lone 2D image flagged ``not_a_volume``).

    ``voxels`` is (z, y, x); ``origin`` is the centre of voxel (0, 0, 0) in LPS mm;
    ``spacing`` is (x, y, z) in mm; ``direction`` holds the unit x, y, z axis directions as
    columns (x along a row, y down a column, z along the slice normal).
    """

    voxels: NDArray[Any]
    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    direction: FloatArray
    notes: list[QANote]
    label: str
    modality: str = ""
    series_instance_uid: str = ""
    frame_count: int = 0

    @property
    def affine(self) -> FloatArray:
        """Voxel index (x, y, z) to LPS mm."""
        return geometry.affine_lps(self.origin, self.spacing, self.direction)

    @property
    def is_volume(self) -> bool:
        """False for images flagged ``not_a_volume``."""
        return not self.has_note(NOT_A_VOLUME)

    def has_note(self, code: str) -> bool:
        """True when a note with this code is attached."""
        return any(note.code == code for note in self.notes)

    def note(self, code: str) -> QANote | None:
        """The first note with this code, if any."""
        return next((note for note in self.notes if note.code == code), None)
