"""Study, series and instance schemas, and the result of a web upload.

``patient_id`` in a patient summary is the MRN (DICOM PatientID); every ``id`` is ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from appliance.dicom.orientation import Markers

UploadOutcome = Literal["stored", "duplicate", "quarantined", "rejected"]


class PatientSummary(BaseModel):
    id: str
    patient_id: str = Field(description="MRN (DICOM PatientID)")
    first_name: str | None
    last_name: str | None
    sex: Literal["M", "F", "O"] | None
    birth_date: date | None
    demographics_conflict: bool


class StudyOut(BaseModel):
    id: str
    study_uid: str
    study_date: str | None = Field(description="DICOM DA, YYYYMMDD")
    study_time: str | None
    accession_number: str | None
    description: str | None
    modalities: list[str]
    status: str
    series_count: int
    instance_count: int
    created_at: str
    updated_at: str


WorklistSort = Literal["urgency", "arrival", "study_date", "status"]
WorklistStatus = Literal[
    "receiving",
    "stable",
    "volume_ready",
    "analyzing",
    "unreported",
    "draft_ready",
    "handed_over",
    "signed",
    "synced",
]


class StudyListItem(StudyOut):
    patient: PatientSummary
    urgency: Literal["routine", "urgent", "critical"] = Field(
        default="routine",
        description="AI triage (UNVERIFIED until a radiologist confirms; cleared ones left out)",
    )


class StudyPage(BaseModel):
    items: list[StudyListItem] = Field(description="In the order asked (default: urgency)")
    total: int
    limit: int
    offset: int


class SeriesOut(BaseModel):
    id: str
    study_id: str
    series_uid: str
    modality: str | None
    series_number: int | None
    description: str | None
    body_part: str | None
    status: str
    instance_count: int
    created_at: str


class StudyDetail(StudyOut):
    patient: PatientSummary
    series: list[SeriesOut] = Field(description="By series number")


class PatientStudies(BaseModel):
    patient: PatientSummary
    studies: list[StudyOut] = Field(description="Newest first (study date, then arrival)")


class InstanceOut(BaseModel):
    id: str
    series_id: str
    sop_instance_uid: str
    sop_class_uid: str
    instance_number: int | None
    rows: int | None
    columns: int | None
    frames: int = Field(description="Number of frames (1 for a single-frame image)")
    transfer_syntax_uid: str | None
    image_position: list[float] | None
    image_orientation: list[float] | None
    pixel_spacing: list[float] | None
    slice_thickness: float | None
    slice_position: float | None = Field(
        description="Position along the series' slice normal, in mm, when positions exist"
    )
    size: int
    sha256: str
    storage_state: str
    received_at: str


class FileResult(BaseModel):
    """What became of one uploaded file or one archive entry."""

    name: str = Field(description="File name as sent, or the entry's path inside the archive")
    archive: str | None = Field(default=None, description="The zip archive holding the entry")
    outcome: UploadOutcome
    reason: str | None = None
    sop_instance_uid: str | None = None
    study_id: str | None = None
    instance_id: str | None = None
    quarantine_id: str | None = None


class UploadCounts(BaseModel):
    stored: int = 0
    duplicate: int = 0
    quarantined: int = 0
    rejected: int = 0


class UploadReport(BaseModel):
    files: list[FileResult]
    counts: UploadCounts
    study_ids: list[str] = Field(description="Studies that received or already held the files")
    received_bytes: int


@dataclass(frozen=True)
class InstanceFile:
    """Where the original bytes of an instance are, and what they must hash to."""

    instance_id: str
    path: Path
    size: int
    sha256: str


@dataclass(frozen=True)
class PreviewImage:
    png: bytes
    frame: int
    frames: int
    source: str
    preset: str | None
    window_center: float | None
    window_width: float | None
    assumption: str | None = None
    decoder: str | None = None  # a fallback pixel decoder that was needed (gdcm), if any
    markers: Markers | None = None  # orientation letters at the image's edges, if known


class StudyState(BaseModel):
    """What the worklist chips show about a study's progress (ids and states only)."""

    study_id: str
    volume_ready: bool = False
    analysis_status: str | None = Field(default=None, description="Of the newest analysis")
    analysis_progress: float | None = Field(default=None, description="0..1 while it runs")
    report_status: str | None = Field(default=None, description="Of the newest report")
    handed_over: bool = Field(
        default=False, description="An unsigned draft was handed over to a radiologist"
    )
    ai_draft: bool = Field(
        default=False,
        description="An unsigned draft from a finished analysis, not handed over (draft_ready)",
    )
    urgency: str = Field(default="routine", description="AI triage: routine, urgent, critical")
    urgency_confirmed: bool = Field(default=False, description="Confirmed by a radiologist")
    synced: bool = False
