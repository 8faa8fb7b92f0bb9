"""Health schemas."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from appliance.config import Mode


class DatabaseHealth(BaseModel):
    status: Literal["ok", "error"]
    schema_version: int | None
    journal_mode: str | None
    detail: str | None = None


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    mode: Mode
    site: str
    database: DatabaseHealth
