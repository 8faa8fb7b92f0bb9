"""The answer of a hand-over: who marked a draft ready for a radiologist, when, at which
version (the audit row ``report.handover`` is the record)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class HandOverOut(BaseModel):
    by: str = Field(description="Who handed the draft over (user name)")
    at: str = Field(description="When, ISO 8601 UTC")
    version: int | None = Field(description="The draft version that was handed over")
