"""Analysis endpoints: request one (admins, radiologists, technicians), read them (everyone
signed in). Cancelling goes through ``POST /api/jobs/{job_id}/cancel``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status
from fastapi.responses import JSONResponse

from appliance.analysis import service
from appliance.analysis.models import AnalysisAccepted, AnalysisOut, AnalysisRequest
from appliance.audit.models import Actor
from appliance.auth.access import Allow
from appliance.auth.models import Role
from appliance.context import AppContext
from appliance.dependencies import Jobs, get_context
from appliance.jobs.routes import accepted as accepted_response

router = APIRouter(tags=["analysis"])
Ctx = Annotated[AppContext, Depends(get_context)]
Requesters = Allow(Role.ADMIN, Role.RADIOLOGIST, Role.TECHNICIAN)
Readers = Allow(Role.ADMIN, Role.RADIOLOGIST, Role.TECHNICIAN, Role.VIEWER)
Reader = Annotated[Actor, Depends(Readers)]


@router.post(
    "/api/analysis",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=AnalysisAccepted,
    responses={
        404: {"description": "No such study or series"},
        409: {
            "description": "The study is still arriving: the problem document says how many "
            "images have arrived (instances) and when it counts as complete (complete_at)"
        },
        503: {"description": "No AI engine is configured (nothing queued)"},
    },
)
def request_analysis(
    body: AnalysisRequest,
    actor: Annotated[Actor, Depends(Requesters)],
    ctx: Ctx,
    runner: Jobs,
) -> JSONResponse:
    """Queue an analysis (a persisted ``analysis`` job); poll ``status_url``."""
    analysis_id, job_id = service.request_analysis(ctx, body, actor, runner.enqueue)
    accepted = AnalysisAccepted(
        analysis_id=analysis_id,
        job_id=job_id,
        status="queued",
        status_url=f"/api/analysis/{analysis_id}",
        job_url=f"/api/jobs/{job_id}",
    )
    return accepted_response(accepted)


@router.get("/api/analysis/{analysis_id}", response_model=AnalysisOut)
def get_analysis(analysis_id: str, actor: Reader, ctx: Ctx) -> AnalysisOut:
    """Status, stage, findings with confidences, measurements, engine, timings, disclaimer."""
    return service.get_analysis(ctx.pool.get(), analysis_id, actor)


@router.get("/api/analysis/study/{study_id}/analyses", response_model=list[AnalysisOut])
def study_analyses(study_id: str, actor: Reader, ctx: Ctx) -> list[AnalysisOut]:
    """The analyses of a study, newest first."""
    return service.study_analyses(ctx.pool.get(), study_id, actor)
