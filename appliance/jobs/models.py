"""Job schemas: the row as the API shows it, and what a handler receives."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field


class JobStatus(enum.StrEnum):
    """``queued`` -> ``running`` -> ``done`` | ``failed`` | ``cancelled`` (a running job whose
    process died goes back to ``queued`` or to ``failed``, see the runner)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = frozenset({JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED})
#: Reason given to a running job found by a runner starting up that may not be re-queued.
INTERRUPTED = "interrupted by a restart"


class JobOut(BaseModel):
    """A job as ``GET /api/jobs/{id}`` shows it; payload and result hold ids only."""

    id: str
    kind: str
    status: JobStatus
    stage: str | None = Field(description="What the job is doing (or did last), plain text")
    progress: float = Field(ge=0, le=1, description="0..1")
    attempts: int
    error: str | None = Field(description="Why the job failed or was cancelled")
    cancel_requested: bool
    payload: dict[str, Any]
    result: dict[str, Any] | None = Field(description="What a finished job produced (ids)")
    created_at: str
    started_at: str | None
    heartbeat_at: str | None
    finished_at: str | None


class JobAccepted(BaseModel):
    """Answer of an endpoint that queued work: poll ``status_url`` until it is finished."""

    job_id: str
    status: JobStatus
    status_url: str


@dataclass(frozen=True)
class Job:
    """What a handler gets: the claimed row's id, kind, payload and attempt number (1-based)."""

    id: str
    kind: str
    payload: dict[str, Any] = field(default_factory=dict)
    attempts: int = 1


class JobCancelled(Exception):
    """Raised by :meth:`JobContext.check_cancelled` when the job was asked to stop."""


class JobFailed(Exception):
    """A handler raises this to fail its job with a plain reason (no traceback logged)."""
