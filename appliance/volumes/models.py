"""Volume schemas: a reconstructed volume's row as the API shows it, and build requests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

VolumeStatus = Literal["pending", "building", "ready", "failed", "not_applicable"]


class QANoteOut(BaseModel):
    """A geometry or value finding of the reconstruction (``appliance.volumes.reconstruct``)."""

    code: str = Field(description="Stable code, e.g. gantry_tilt_corrected, split_4d")
    text: str = Field(description="One plain-English sentence")
    details: dict[str, Any] = Field(default_factory=dict, description="Figures behind the text")


class VolumeOut(BaseModel):
    """One volume of a series (or the reason the series, or part of it, is not a volume).

    Geometry is in DICOM patient coordinates (LPS, mm; PS3.3 C.7.6.2.1.1, from Image Position
    and Orientation (Patient)). ``shape`` and ``spacing`` are in voxel
    axis order x (along a row), y (down a column), z (along the slice normal), the NIfTI order.
    ``direction`` is a 3x3 matrix whose columns are the unit x, y, z axis directions (as ITK's
    Direction); ``origin`` is the centre of voxel (0, 0, 0).
    """

    id: str
    series_id: str
    ordinal: int = Field(description="Position among the series' volumes (0-based)")
    label: str | None = Field(description="What separates it from its siblings, e.g. time 3")
    status: VolumeStatus
    reason: str | None = Field(description="Why the images are not a volume (not_applicable)")
    error: str | None = Field(description="Why the reconstruction failed (failed)")
    shape: list[int] | None
    spacing: list[float] | None
    origin: list[float] | None
    direction: list[list[float]] | None
    dtype: str | None
    qa_notes: list[QANoteOut]
    size: int | None = Field(description="Bytes of the .nii.gz file")
    sha256: str | None = Field(description="SHA-256 of the .nii.gz file")
    job_id: str | None = Field(description="The job that built it, when built by one")
    created_at: str
    updated_at: str


class VolumeBuildRequest(BaseModel):
    series_id: str = Field(min_length=1, max_length=64, description="Our series id")


class VolumesBuilt(BaseModel):
    """The series' volumes, already built from its current instances."""

    series_id: str
    volumes: list[VolumeOut]


@dataclass(frozen=True)
class BuildRequested:
    """What ``POST /api/volumes`` found: current volumes, or the job that will build them."""

    series_id: str
    volumes: list[VolumeOut] | None = None
    job_id: str | None = None
    job_status: str | None = None


@dataclass(frozen=True)
class NiftiFile:
    volume_id: str
    path: Path
    size: int
    sha256: str


@dataclass(frozen=True)
class ExportedVolume:
    """A volume written by ``radiant volume build``: file, label and QA notes."""

    path: Path
    label: str
    shape: tuple[int, ...]
    notes: list[QANoteOut]


@dataclass(frozen=True)
class ExportReport:
    written: list[ExportedVolume]
    not_volumes: list[QANoteOut]
