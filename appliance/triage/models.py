"""Schemas of the triage API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Urgency = Literal["routine", "urgent", "critical"]


class UrgencyReview(BaseModel):
    """A radiologist's decision on an analysis' urgency: ``confirm`` it or ``clear`` it."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["confirm", "clear"]


class StudyUrgency(BaseModel):
    """A study's urgency: the highest one of its finished analyses that no radiologist cleared.

    AI output: ``verification_flag`` stays ``UNVERIFIED`` until a radiologist confirms it."""

    study_id: str
    level: Urgency
    analysis_id: str | None = Field(description="The analysis the level comes from")
    review: Literal["confirmed"] | None = None
    reviewed_by: str | None = None
    reviewed_at: str | None = None
    verification_flag: Literal["UNVERIFIED", "VERIFIED"] = "UNVERIFIED"
    reasons: list[str] = Field(default_factory=list, description="Hedged, English")
    detail: dict[str, Any] | None = Field(default=None, description="The safety layer's record")
    cleared: list[str] = Field(default_factory=list, description="Analyses a radiologist cleared")


class Alert(BaseModel):
    """An open critical alert: ids, modalities and times only (no patient data)."""

    id: str
    study_id: str
    analysis_id: str
    level: Literal["critical"]
    raised_at: str
    modalities: str | None = Field(default=None, description="DICOM modalities, '\\' separated")
    received_at: str


class AlertAck(BaseModel):
    """The name of the person acknowledging (the signed-in account is recorded too)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)


class StudyTurnaround(BaseModel):
    """When a study reached each step (ISO 8601 UTC, None until it did), and the minutes from
    its arrival to each step."""

    study_id: str
    arrival: str
    complete: str | None = None
    analysed: str | None = None
    handed_over: str | None = None
    signed: str | None = None
    minutes: dict[str, float | None] = Field(description="complete, analysed, handed_over, signed")


class DayTurnaround(BaseModel):
    """One day's arrivals (UTC day), how many are signed, and the median minutes from arrival to
    each step among the studies that reached it (None when none did)."""

    day: str
    arrived: int
    signed: int
    median_minutes: dict[str, float | None]
