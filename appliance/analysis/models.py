"""Schemas of the analysis API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

AnalysisType = Literal["primary", "comparison", "focused"]


class AnalysisRequest(BaseModel):
    """What to analyse; ``series_id`` and ``prior_study_id`` are chosen automatically if absent."""

    model_config = ConfigDict(extra="forbid")

    study_id: str
    clinical_indication: str | None = Field(default=None, max_length=2000)
    analysis_type: AnalysisType = "primary"
    series_id: str | None = None
    prior_study_id: str | None = None
    target: str | None = Field(default=None, max_length=500)
    analyse_partial: bool = Field(
        default=False,
        description="Radiologists only: analyse a study that is still arriving (what has "
        "arrived so far); the analysis is marked partial. Otherwise such a request is 409.",
    )


class AnalysisAccepted(BaseModel):
    analysis_id: str
    job_id: str
    status: str
    status_url: str
    job_url: str


class MeasurementOut(BaseModel):
    id: str
    name: str
    value: float
    unit: str


class FindingOut(BaseModel):
    id: str
    series_id: str | None
    instance_id: str | None
    slice_index: int | None = Field(description="0-based index in the series' display order")
    location: str | None
    description: str
    impression: str | None
    confidence: float
    box: dict[str, Any] | None
    flags: list[Any]
    review_state: str
    measurements: list[MeasurementOut]


class AnalysisOut(BaseModel):
    id: str
    study_id: str
    series_id: str | None
    prior_study_id: str | None
    analysis_type: str
    status: str
    stage: str | None
    engine: str | None
    model_id: str | None
    model_revision: str | None
    prompt_id: str | None
    prompt_version: str | None
    images_sha256: str | None
    tokens_in: int | None
    tokens_out: int | None
    latency_ms: int | None
    overall_impression: str | None
    disclaimer: str | None
    verification_flag: str
    partial: bool = Field(
        description="Forced while the study was still arriving: it saw only instance_count"
    )
    instance_count: int | None = Field(description="Instances of the study when requested")
    review_reasons: list[str] = Field(
        default=[], description="Why the safety layer asks for review (needs_review)"
    )
    overall_flags: list[Any] = Field(
        default=[], description="Flags and rewordings of the overall impression"
    )
    repairs: list[str] = Field(default=[], description="Repairs the parser made to the answer")
    error: str | None = Field(description="The technical reason of a failure (for support)")
    failure: str | None = Field(
        default=None,
        description="A failed analysis's kind (engine_unreachable, engine_limit, "
        "engine_unavailable, no_series, no_prior, images_missing, interrupted, unexpected)",
    )
    created_at: str
    started_at: str | None
    completed_at: str | None
    urgency: str | None = Field(default=None, description="routine, urgent or critical (AI)")
    urgency_review: str | None = Field(default=None, description="confirmed or cleared")
    findings: list[FindingOut] = []
