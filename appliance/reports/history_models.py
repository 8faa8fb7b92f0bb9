"""A report's version history as the API gives it: every immutable version with its hash
link and what changed from the one before."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from appliance.reports.models import ReportContent, ReportStatus


class FieldChange(BaseModel):
    path: str = Field(description="Section or field, e.g. impression, findings[f1].text")
    change: Literal["added", "removed", "changed"]


class ReportVersionOut(BaseModel):
    version: int
    status: ReportStatus
    kind: str
    author_id: str | None
    author_name: str | None
    created_at: str
    prev_hash: str
    hash: str
    content: ReportContent
    changes: list[FieldChange] = Field(description="What differs from the previous version")


class ReportVersions(BaseModel):
    report_id: str
    chain_ok: bool
    chain_problem: str | None = None
    versions: list[ReportVersionOut]
