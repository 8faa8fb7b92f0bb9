"""Job endpoints: everyone signed in reads a job's state; admins, radiologists and technicians
may cancel one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from appliance.audit.models import Actor
from appliance.auth.access import Allow
from appliance.auth.models import Role
from appliance.context import AppContext
from appliance.dependencies import Jobs, get_context
from appliance.jobs import service
from appliance.jobs.models import JobOut

router = APIRouter(prefix="/api/jobs", tags=["jobs"])
Ctx = Annotated[AppContext, Depends(get_context)]
Writers = Allow(Role.ADMIN, Role.RADIOLOGIST, Role.TECHNICIAN)
Readers = Allow(Role.ADMIN, Role.RADIOLOGIST, Role.TECHNICIAN, Role.VIEWER)


def accepted(body: BaseModel) -> JSONResponse:
    """202 Accepted for queued work, with ``Location`` set to the body's ``status_url``."""
    status_url = str(getattr(body, "status_url"))  # noqa: B009 (every accepted model has one)
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=status.HTTP_202_ACCEPTED,
        headers={"Location": status_url},
    )


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, actor: Annotated[Actor, Depends(Readers)], ctx: Ctx) -> JobOut:
    """Status, stage, progress (0..1), error and, once done, the result (ids)."""
    return service.get(ctx.pool.get(), job_id)


@router.post(
    "/{job_id}/cancel",
    response_model=JobOut,
    responses={409: {"description": "The job has already finished"}},
)
def cancel_job(
    job_id: str, actor: Annotated[Actor, Depends(Writers)], ctx: Ctx, runner: Jobs
) -> JobOut:
    """Cancel a job: a queued one is cancelled at once; a running one stops at its next check
    (``cancel_requested`` is true until then)."""
    job = service.request_cancel(ctx.pool.get(), job_id, actor)
    runner.signal_cancel(job_id)
    return job
